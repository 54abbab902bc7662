/**
 * Inference worker thread: owns a model's onnxruntime sessions - the automatic graph, and the
 * promptable encoder + decoder when the manifest has them. onnxruntime-node's run does its native
 * work synchronously, so it runs here, off the thread that serves HTTP and reads the PACS.
 *
 * Requests run one at a time (two runs at once would fight over the same cores), highest priority
 * first: a decode (a user waiting on a click), then an encode (a slice the user is on), then a
 * batch of an automatic job. So an auto job running on the same model delays a click by at most one
 * of its batches. Between two runs the thread reads its messages, so that the choice sees what came
 * during the run: a click, or the drop of a queued encode nobody waits for any more.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { LdfsamError, toLdfsamError, type ErrorCode } from '../errors.js';
import { autoGraphFile, hasAutoMode, readManifest, type ModelManifest } from '../models/manifest.js';
import { openGraph, type SessionSettings } from '../models/session.js';

/** A decoder input; `shared` numbers a feed in shared memory (the same number, the same contents). */
export interface Feed {
  data: Float32Array;
  dims: readonly number[];
  shared?: number;
}

export type WorkerRequest =
  | { id: number; kind: 'auto' | 'encode'; input: Float32Array; dims: number[] }
  | { id: number; kind: 'decode'; feeds: Record<string, Feed> };

/**
 * Ends the thread by itself: requests not yet started are dropped (their callers see the worker
 * stop), the one running finishes, the sessions are released, the port closes. A thread holding
 * onnxruntime sessions that is terminated from outside instead can abort the whole process while
 * its environment is torn down ("terminate called after throwing an instance of 'Napi::Error'",
 * seen once in a worker stopped by SIGTERM with Redis down).
 */
export interface CloseRequest {
  kind: 'close';
}

/**
 * Drops request `id` if it has not started (answered CANCELLED); one running or done is answered as
 * usual.
 */
export interface DropRequest {
  kind: 'drop';
  id: number;
}

export interface WorkerResult {
  type: 'result';
  id: number;
  outputs?: Record<string, { data: Float32Array; dims: readonly number[] }>;
  /** The worker's own time for the request: building the tensors and session.run. */
  runMs?: number;
  /** An automatic batch's input buffer, handed back (transferred) for the next batch to fill. */
  input?: ArrayBuffer;
  error?: { code: ErrorCode; message: string };
}

const PRIORITY: Record<WorkerRequest['kind'], number> = { decode: 0, encode: 1, auto: 2 };

const { folder, settings } = workerData as { folder: string; settings: SessionSettings };
const port = parentPort!;

interface Pair {
  encoder: ort.InferenceSession;
  decoder: ort.InferenceSession;
}

function openAuto(manifest: ModelManifest): Promise<ort.InferenceSession> {
  return openGraph(
    folder,
    manifest.name,
    { file: autoGraphFile(manifest), inputs: manifest.inputs!, outputs: manifest.outputs! },
    settings,
  );
}

async function openPair(manifest: ModelManifest): Promise<Pair> {
  const spec = manifest.promptable!;
  const encoder = await openGraph(folder, manifest.name, spec.encoder, settings);
  const decoder = await openGraph(folder, manifest.name, spec.decoder, settings);
  return { encoder, decoder };
}

async function runOne(
  manifest: ModelManifest,
  auto: ort.InferenceSession | undefined,
  pair: () => Promise<Pair>,
  m: WorkerRequest,
) {
  let outputs: ort.InferenceSession.OnnxValueMapType;
  const t0 = performance.now();
  if (m.kind === 'decode') {
    const feeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(m.feeds)) feeds[name] = feedTensor(name, t);
    outputs = await (await pair()).decoder.run(feeds);
  } else if (m.kind === 'encode') {
    const name = manifest.promptable!.encoder.inputs[0]!.name;
    outputs = await (await pair()).encoder.run({ [name]: new ort.Tensor('float32', m.input, m.dims) });
  } else {
    if (!auto) throw new LdfsamError('INVALID_INPUT', `${manifest.name} has no automatic graph (it is promptable only)`);
    outputs = await auto.run({ [manifest.inputs![0]!.name]: new ort.Tensor('float32', m.input, m.dims) });
  }
  const runMs = performance.now() - t0;
  const result: Record<string, { data: Float32Array; dims: readonly number[] }> = {};
  for (const [name, tensor] of Object.entries(outputs)) {
    const data = tensor.data as Float32Array;
    result[name] = { data: m.kind === 'encode' ? shared(data) : data, dims: tensor.dims };
  }
  const transfer = Object.values(result)
    .map((r) => r.data.buffer)
    .filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
  // The input goes back whole (a short last batch is a view of it), so that the pipeline refills it
  // instead of allocating and zeroing 3 MB per batch of 4.
  const input = m.kind === 'auto' && m.input.buffer instanceof ArrayBuffer ? m.input.buffer : undefined;
  if (input && !transfer.includes(input)) transfer.push(input);
  port.postMessage({ type: 'result', id: m.id, outputs: result, runMs, input }, transfer);
}

/** Per decoder input: this thread's copy of the shared feed it last ran with, and that feed's number. */
const local = new Map<string, { shared: number; data: Float32Array }>();

/**
 * A feed as a tensor. onnxruntime-node refuses shared memory, so a shared feed is copied into this
 * thread's own buffer for its input, and only when it is not the one copied last time: prompts on
 * one slice (the usual clicks) copy its embedding once. Runs are one at a time, so one buffer per input.
 */
function feedTensor(name: string, feed: Feed): ort.Tensor {
  if (!(feed.data.buffer instanceof SharedArrayBuffer)) return new ort.Tensor('float32', feed.data, feed.dims);
  let kept = local.get(name);
  if (feed.shared === undefined || kept?.shared !== feed.shared) {
    const data = kept?.data.length === feed.data.length ? kept.data : new Float32Array(feed.data.length);
    data.set(feed.data);
    kept = { shared: feed.shared ?? -1, data };
    local.set(name, kept);
  }
  return new ort.Tensor('float32', kept.data, feed.dims);
}

/**
 * A copy in shared memory. Encoder outputs go back this way: the main thread caches them and sends
 * them with every decode, and postMessage shares a SharedArrayBuffer where it would copy an
 * ArrayBuffer (4 MB for a 256 x 64 x 64 embedding, twice per click: serialised, then deserialised here).
 */
function shared(data: Float32Array): Float32Array {
  const copy = new Float32Array(new SharedArrayBuffer(data.byteLength));
  copy.set(data);
  return copy;
}

try {
  const manifest = await readManifest(folder);
  if (!hasAutoMode(manifest) && !manifest.promptable)
    throw new LdfsamError('MODEL_REJECTED', `${manifest.name} has no graph to run`);
  const auto = hasAutoMode(manifest) ? await openAuto(manifest) : undefined;
  // The promptable pair opens on first use (an auto job need not pay for it), or now for a promptable-only model.
  let opening: Promise<Pair> | undefined;
  const pair = () => {
    if (!manifest.promptable)
      return Promise.reject(new LdfsamError('INVALID_INPUT', `${manifest.name} has no promptable export`));
    opening ??= openPair(manifest);
    return opening;
  };
  if (!auto) await pair();
  port.postMessage({ type: 'ready', manifest });

  const queue: WorkerRequest[] = [];
  let busy = false;
  let closing = false;
  const close = async () => {
    await auto?.release();
    const opened = await opening?.catch(() => undefined);
    await opened?.encoder.release();
    await opened?.decoder.release();
    port.close();
  };
  const drain = async () => {
    if (busy) return;
    busy = true;
    while (queue.length > 0 && !closing) {
      let best = 0;
      for (let i = 1; i < queue.length; i++) if (PRIORITY[queue[i]!.kind] < PRIORITY[queue[best]!.kind]) best = i;
      const m = queue.splice(best, 1)[0]!;
      try {
        await runOne(manifest, auto, pair, m);
      } catch (err) {
        const e = err instanceof LdfsamError ? err : new LdfsamError('INFERENCE_FAILED', (err as Error).message);
        port.postMessage({ type: 'result', id: m.id, error: { code: e.code, message: e.message } });
      }
      await new Promise((resolve) => setImmediate(resolve)); // take in the messages that came during the run
    }
    busy = false;
    if (closing) await close();
  };
  port.on('message', (m: WorkerRequest | CloseRequest | DropRequest) => {
    if (closing) return;
    if (m.kind === 'drop') {
      const i = queue.findIndex((r) => r.id === m.id);
      if (i >= 0) {
        queue.splice(i, 1);
        port.postMessage({ type: 'result', id: m.id, error: { code: 'CANCELLED', message: 'dropped before it ran' } });
      }
      return;
    }
    if (m.kind === 'close') {
      closing = true;
      queue.length = 0;
      if (!busy) void close(); // else drain() closes after the run in progress
      return;
    }
    queue.push(m);
    void drain();
  });
} catch (err) {
  port.postMessage({ type: 'error', error: toLdfsamError(err).toJSON() });
}
