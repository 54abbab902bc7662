/**
 * Runs `decompress` in a worker thread (decode-worker.ts), one for the process, started on first
 * use and not keeping the process alive. A decoder that crashes takes the worker, not the server,
 * down: the frames it held fail as undecodable and the next frame starts a new worker. Without the
 * compiled worker (TypeScript run without `npm run build`) frames are decoded in this thread.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { projectPath } from '../../util/paths.js';
import { decompress, type DecodedFrame } from './index.js';

type Pending = { resolve: (f: DecodedFrame) => void; reject: (e: Error) => void };
let worker: { thread: Worker; pending: Map<number, Pending> } | undefined;
let nextId = 0;

function workerScript(): string | undefined {
  const sibling = fileURLToPath(new URL('./decode-worker.js', import.meta.url));
  if (existsSync(sibling)) return sibling;
  const built = projectPath('dist', 'server', 'src', 'dicom', 'codecs', 'decode-worker.js');
  return existsSync(built) ? built : undefined;
}

function start(script: string): NonNullable<typeof worker> {
  const thread = new Worker(script);
  thread.unref();
  const pending = new Map<number, Pending>();
  const self = { thread, pending };
  thread.on('message', (m: { id: number; frame?: DecodedFrame; error?: string }) => {
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (pending.size === 0) thread.unref();
    if (m.error !== undefined) p?.reject(new Error(m.error));
    else p?.resolve(m.frame!);
  });
  const fail = (why: string) => {
    if (worker === self) worker = undefined;
    for (const p of pending.values()) p.reject(new Error(why));
    pending.clear();
  };
  thread.on('error', (err) => fail(`the decoder failed: ${err.message}`));
  thread.on('exit', (code) => fail(`the decoder stopped (exit code ${code})`));
  return self;
}

export function decompressOffThread(
  transferSyntaxUID: string,
  input: Uint8Array,
  expect: Parameters<typeof decompress>[2],
): Promise<DecodedFrame> {
  const script = workerScript();
  if (!script) return decompress(transferSyntaxUID, input, expect);
  worker ??= start(script);
  const { thread, pending } = worker;
  const id = nextId++;
  // Only this frame's bytes travel (the input may be a view into a whole multipart answer).
  const copy = new Uint8Array(input);
  return new Promise<DecodedFrame>((resolve, reject) => {
    pending.set(id, { resolve, reject });
    thread.ref(); // keep the process up while a frame is being decoded
    thread.postMessage({ id, transferSyntaxUID, input: copy, expect }, [copy.buffer]);
  });
}
