/**
 * Decoder worker thread: decompresses encapsulated frames (JPEG 2000, JPEG-LS, JPEG, RLE) off the
 * thread that serves HTTP. A JPEG 2000 slice takes 30 ms and more of synchronous wasm; on the main
 * thread that was the largest part of the API's status latency under load (test/reliability/load).
 */
import { parentPort } from 'node:worker_threads';
import { decompress } from './index.js';

interface DecodeMessage {
  id: number;
  transferSyntaxUID: string;
  input: Uint8Array;
  expect: Parameters<typeof decompress>[2];
}

const port = parentPort!;
port.on('message', (m: DecodeMessage) => {
  decompress(m.transferSyntaxUID, m.input, m.expect).then(
    (frame) => {
      // A copy that owns its buffer, so that it can be transferred rather than cloned.
      const bytes =
        frame.bytes.byteOffset === 0 && frame.bytes.byteLength === frame.bytes.buffer.byteLength
          ? frame.bytes
          : frame.bytes.slice();
      port.postMessage({ id: m.id, frame: { ...frame, bytes } }, [bytes.buffer as ArrayBuffer]);
    },
    (err: unknown) => port.postMessage({ id: m.id, error: err instanceof Error ? err.message : String(err) }),
  );
});
