/**
 * Promptable inference worker thread: owns the model's encoder and decoder sessions (each checked
 * against the manifest's `promptable` section when opened). The encoder runs once per slice; the
 * decoder once per prompt.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { LdfsamError, toLdfsamError } from '../errors.js';
import { readManifest } from '../models/manifest.js';
import { openGraph, type SessionSettings } from '../models/session.js';

export interface PromptRunMessage {
  id: number;
  graph: 'encoder' | 'decoder';
  feeds: Record<string, { data: Float32Array; dims: number[] }>;
}

const { folder, settings } = workerData as { folder: string; settings: SessionSettings };
const port = parentPort!;

try {
  const manifest = await readManifest(folder);
  const pair = manifest.promptable;
  if (!pair) throw new LdfsamError('MODEL_REJECTED', `${manifest.name} has no promptable export (encoder.onnx + decoder.onnx)`);
  const sessions = {
    encoder: await openGraph(folder, manifest.name, pair.encoder, settings),
    decoder: await openGraph(folder, manifest.name, pair.decoder, settings),
  };
  port.postMessage({ type: 'ready', manifest });
  port.on('message', async (message: PromptRunMessage) => {
    try {
      const feeds: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(message.feeds)) feeds[name] = new ort.Tensor('float32', t.data, t.dims);
      const outputs = await sessions[message.graph].run(feeds);
      const result: Record<string, { data: Float32Array; dims: readonly number[] }> = {};
      for (const [name, tensor] of Object.entries(outputs))
        result[name] = { data: tensor.data as Float32Array, dims: tensor.dims };
      port.postMessage(
        { type: 'result', id: message.id, outputs: result },
        Object.values(result).map((r) => r.data.buffer as ArrayBuffer),
      );
    } catch (err) {
      port.postMessage({ type: 'result', id: message.id, error: { code: 'INFERENCE_FAILED', message: (err as Error).message } });
    }
  });
} catch (err) {
  port.postMessage({ type: 'error', error: toLdfsamError(err).toJSON() });
}
