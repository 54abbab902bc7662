/**
 * ONNX Runtime sessions for a model folder, checked against its manifest. Session options are the
 * measured ones (shared/docs/environment-facts.md): full graph optimisation, 2 intra-op threads, 1
 * inter-op thread, and intra-op spinning off so that sessions run one after another do not fight
 * over the cores.
 */
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { LdfsamError } from '../errors.js';
import { autoGraphFile, hasAutoMode, readManifest, type ModelManifest, type TensorSpec } from './manifest.js';

export interface SessionSettings {
  executionProvider?: 'cpu' | 'cuda';
  intraOpNumThreads?: number;
}

export interface LoadedModel {
  folder: string;
  manifest: ModelManifest;
  session: ort.InferenceSession;
}

export function sessionOptions(settings: SessionSettings = {}): ort.InferenceSession.SessionOptions {
  // CUDA_VISIBLE_DEVICES (ldfsam worker --device) leaves one GPU, numbered 0; nodes CUDA lacks run on the CPU.
  const providers: ort.InferenceSession.ExecutionProviderConfig[] =
    settings.executionProvider === 'cuda' ? [{ name: 'cuda', deviceId: 0 }, 'cpu'] : ['cpu'];
  return {
    executionProviders: providers,
    graphOptimizationLevel: 'all',
    intraOpNumThreads: settings.intraOpNumThreads ?? 2,
    interOpNumThreads: 1,
    // disable_quant_qdq: int8-stored weights (DequantizeLinear -> MatMul) are computed in float32, as
    // the Python evaluation computes them; a fused int8 kernel would change the published masks.
    extra: { session: { intra_op: { allow_spinning: '0' }, disable_quant_qdq: '1' } },
  };
}

/** Opens the model's automatic graph and refuses it when its inputs/outputs are not the manifest's. */
export async function loadModel(folder: string, settings: SessionSettings = {}): Promise<LoadedModel> {
  const manifest = await readManifest(folder);
  if (!hasAutoMode(manifest) || !manifest.inputs || !manifest.outputs) {
    throw new LdfsamError('MODEL_REJECTED', `${manifest.name} has no automatic graph (it is promptable only)`);
  }
  const session = await openGraph(
    folder,
    manifest.name,
    {
      file: autoGraphFile(manifest),
      inputs: manifest.inputs,
      outputs: manifest.outputs,
    },
    settings,
  );
  return { folder, manifest, session };
}

/** Opens one graph of a model folder and refuses it when its inputs/outputs are not the ones described. */
export async function openGraph(
  folder: string,
  model: string,
  graph: { file: string; inputs: TensorSpec[]; outputs: TensorSpec[] },
  settings: SessionSettings = {},
): Promise<ort.InferenceSession> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(join(folder, graph.file), sessionOptions(settings));
  } catch (err) {
    throw new LdfsamError('MODEL_REJECTED', `${model}: onnxruntime cannot load ${graph.file}: ${(err as Error).message}`);
  }
  checkIo(`${model} (${graph.file})`, 'input', graph.inputs, session.inputMetadata as unknown as OrtValueMetadata[]);
  checkIo(`${model} (${graph.file})`, 'output', graph.outputs, session.outputMetadata as unknown as OrtValueMetadata[]);
  return session;
}

interface OrtValueMetadata {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: (number | string)[];
}

function checkIo(model: string, kind: string, expected: TensorSpec[], actual: OrtValueMetadata[]): void {
  const show = (name: string, type: string | undefined, shape: (number | string)[] | undefined) =>
    `${name} ${type ?? '?'} [${(shape ?? []).map((d) => (typeof d === 'number' ? d : 'dynamic')).join(', ')}]`;
  const want = expected.map((t) => show(t.name, t.dtype, t.shape));
  const got = actual.map((t) => show(t.name, t.type, t.shape));
  if (want.join('; ') !== got.join('; ')) {
    throw new LdfsamError(
      'MODEL_REJECTED',
      `${model}: the ONNX ${kind}s (${got.join('; ')}) are not the manifest's (${want.join('; ')})`,
    );
  }
}
