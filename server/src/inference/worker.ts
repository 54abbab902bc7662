/**
 * Inference worker thread: owns one onnxruntime session. onnxruntime-node's run does its native work
 * synchronously, so it runs here, off the thread that serves HTTP and reads the PACS.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { toLdfsamError } from '../errors.js';
import { loadModel, type SessionSettings } from '../models/session.js';

interface RunMessage {
  id: number;
  input: Float32Array;
  dims: number[];
}

const { folder, settings } = workerData as { folder: string; settings: SessionSettings };
const port = parentPort!;

try {
  const model = await loadModel(folder, settings);
  const inputName = model.manifest.inputs![0]!.name; // loadModel refuses a model without an automatic graph
  port.postMessage({ type: 'ready', manifest: model.manifest });
  port.on('message', async (message: RunMessage) => {
    try {
      const outputs = await model.session.run({ [inputName]: new ort.Tensor('float32', message.input, message.dims) });
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
