/**
 * The main-thread side of a promptable model's worker thread (prompt-thread.ts): encode a slice,
 * decode a prompt. Kept apart from the automatic InferenceWorker, whose thread opens the automatic
 * graph only.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { LdfsamError, type ErrorCode } from '../errors.js';
import type { ModelManifest } from '../models/manifest.js';
import type { SessionSettings } from '../models/session.js';
import { projectPath } from '../util/paths.js';
import type { Outputs } from './inference-worker.js';

export type Feeds = Record<string, { data: Float32Array; dims: number[] }>;

function threadScript(): string {
  const sibling = fileURLToPath(new URL('./prompt-thread.js', import.meta.url));
  if (existsSync(sibling)) return sibling;
  const built = projectPath('dist', 'server', 'src', 'inference', 'prompt-thread.js');
  if (!existsSync(built)) throw new LdfsamError('INTERNAL', `${built} is missing: run "npm run build"`);
  return built;
}

export class PromptWorker {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (o: Outputs) => void; reject: (e: Error) => void }>();
  private exited: LdfsamError | undefined;

  private constructor(
    private readonly worker: Worker,
    readonly manifest: ModelManifest,
  ) {
    worker.on('message', (m: { type: string; id: number; outputs?: Outputs; error?: { code: ErrorCode; message: string } }) => {
      if (m.type !== 'result') return;
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error) p?.reject(new LdfsamError(m.error.code, m.error.message));
      else p?.resolve(m.outputs!);
    });
    worker.on('exit', (code) => {
      this.exited = new LdfsamError('INFERENCE_FAILED', `the promptable inference worker stopped (exit code ${code})`);
      for (const p of this.pending.values()) p.reject(this.exited);
      this.pending.clear();
    });
  }

  static start(folder: string, settings: SessionSettings = {}): Promise<PromptWorker> {
    const worker = new Worker(threadScript(), { workerData: { folder, settings } });
    return new Promise((resolve, reject) => {
      const fail = (err: Error) => {
        void worker.terminate();
        reject(err);
      };
      worker.once('error', (err) =>
        fail(new LdfsamError('INFERENCE_FAILED', `the promptable inference worker failed: ${err.message}`)),
      );
      worker.once('message', (m: { type: string; manifest?: ModelManifest; error?: { code: ErrorCode; message: string } }) => {
        if (m.type === 'ready') resolve(new PromptWorker(worker, m.manifest!));
        else
          fail(new LdfsamError(m.error?.code ?? 'INFERENCE_FAILED', m.error?.message ?? 'the promptable worker did not start'));
      });
    });
  }

  /** Runs the encoder or the decoder; the feeds' buffers are transferred (do not use them afterwards). */
  run(graph: 'encoder' | 'decoder', feeds: Feeds): Promise<Outputs> {
    if (this.exited) return Promise.reject(this.exited);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const buffers = [...new Set(Object.values(feeds).map((f) => f.data.buffer as ArrayBuffer))];
      this.worker.postMessage({ id, graph, feeds }, buffers);
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
