/** The main-thread side of an inference worker: start, run batches, close. */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { LdfsamError, type ErrorCode } from '../errors.js';
import type { ModelManifest } from '../models/manifest.js';
import type { SessionSettings } from '../models/session.js';
import { projectPath } from '../util/paths.js';
import type { CloseRequest, DropRequest, Feed, WorkerRequest, WorkerResult } from './worker.js';

/** How long a closing worker may take to finish its run and release its sessions before it is terminated (within the stop bound, 10 s by default). */
const CLOSE_TIMEOUT_MS = 5000;

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;

export type Outputs = Record<string, { data: Float32Array; dims: readonly number[] }>;

/** A decoder answer and the worker's own time for it (tensors + session.run), apart from the round trip. */
export interface Decoded {
  outputs: Outputs;
  runMs: number;
}

/** The compiled worker: beside this file when running from dist/, else the built copy (tests run TS). */
function workerScript(): string {
  const sibling = fileURLToPath(new URL('./worker.js', import.meta.url));
  if (existsSync(sibling)) return sibling;
  const built = projectPath('dist', 'server', 'src', 'inference', 'worker.js');
  if (!existsSync(built)) throw new LdfsamError('INTERNAL', `${built} is missing: run "npm run build"`);
  return built;
}

export class InferenceWorker {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (d: Decoded) => void; reject: (e: Error) => void }>();
  private exited: LdfsamError | undefined;
  private readonly shared = new WeakMap<Float32Array, number>();
  /** Input buffers of finished automatic batches, handed back by the worker (takeInput). */
  private readonly spareInputs: ArrayBuffer[] = [];
  private nextShared = 0;

  private constructor(
    private readonly worker: Worker,
    readonly manifest: ModelManifest,
  ) {
    worker.on('message', (m: WorkerResult) => {
      if (m.type !== 'result') return;
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.input && this.spareInputs.length < 2) this.spareInputs.push(m.input);
      if (m.error) p?.reject(new LdfsamError(m.error.code, m.error.message));
      else p?.resolve({ outputs: m.outputs!, runMs: m.runMs! });
    });
    worker.on('exit', (code) => {
      this.exited = new LdfsamError('INFERENCE_FAILED', `the inference worker stopped (exit code ${code})`);
      for (const p of this.pending.values()) p.reject(this.exited);
      this.pending.clear();
    });
  }

  static start(folder: string, settings: SessionSettings = {}): Promise<InferenceWorker> {
    const worker = new Worker(workerScript(), { workerData: { folder, settings } });
    return new Promise((resolve, reject) => {
      const fail = (err: Error) => {
        void worker.terminate();
        reject(err);
      };
      worker.once('error', (err) => fail(new LdfsamError('INFERENCE_FAILED', `the inference worker failed: ${err.message}`)));
      worker.once('message', (m: { type: string; manifest?: ModelManifest; error?: { code: ErrorCode; message: string } }) => {
        if (m.type === 'ready') resolve(new InferenceWorker(worker, m.manifest!));
        else fail(new LdfsamError(m.error?.code ?? 'INFERENCE_FAILED', m.error?.message ?? 'the inference worker did not start'));
      });
    });
  }

  /** Runs one batch through the automatic graph; `input` is transferred to the worker (do not use it afterwards). */
  async run(input: Float32Array, dims: number[]): Promise<Outputs> {
    return (await this.send({ kind: 'auto', input, dims }, [input.buffer as ArrayBuffer])).outputs;
  }

  /**
   * The input buffer of a finished batch, `length` floats, to fill for the next one (its contents
   * are the old batch's); undefined when none is spare.
   */
  takeInput(length: number): Float32Array | undefined {
    const i = this.spareInputs.findIndex((b) => b.byteLength === length * 4);
    return i < 0 ? undefined : new Float32Array(this.spareInputs.splice(i, 1)[0]!);
  }

  /**
   * The promptable encoder on preprocessed slices (transferred); every output by name, in shared
   * memory (see decode). Goes before auto batches. Aborting `signal` drops it if it has not started
   * (CANCELLED); once started it runs to its end and resolves.
   */
  async encode(input: Float32Array, dims: number[], signal?: AbortSignal): Promise<Outputs> {
    return (await this.send({ kind: 'encode', input, dims }, [input.buffer as ArrayBuffer], signal)).outputs;
  }

  /**
   * The promptable decoder on named inputs (not transferred, so cached embeddings stay usable). Goes
   * first. Inputs in shared memory (the encoder's outputs, constant ones) are shared with the worker,
   * not copied; they must not be written to afterwards.
   */
  decode(feeds: Record<string, { data: Float32Array; dims: readonly number[] }>): Promise<Decoded> {
    const sent: Record<string, Feed> = {};
    for (const [name, feed] of Object.entries(feeds)) sent[name] = { ...feed, shared: this.sharedNumber(feed.data) };
    return this.send({ kind: 'decode', feeds: sent }, []);
  }

  /** A number per shared array, the same each time it is sent (the worker then knows it has it). */
  private sharedNumber(data: Float32Array): number | undefined {
    if (!(data.buffer instanceof SharedArrayBuffer)) return undefined;
    let n = this.shared.get(data);
    if (n === undefined) this.shared.set(data, (n = this.nextShared++));
    return n;
  }

  private send(message: DistributiveOmit<WorkerRequest, 'id'>, transfer: ArrayBuffer[], signal?: AbortSignal): Promise<Decoded> {
    if (this.exited) return Promise.reject(this.exited);
    if (signal?.aborted) return Promise.reject(new LdfsamError('CANCELLED', 'request cancelled'));
    const id = this.nextId++;
    // The worker answers a drop itself (CANCELLED, or the result when the run had started).
    const drop = () => this.worker.postMessage({ kind: 'drop', id } satisfies DropRequest);
    signal?.addEventListener('abort', drop, { once: true });
    return new Promise<Decoded>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...message, id }, transfer);
    }).finally(() => signal?.removeEventListener('abort', drop));
  }

  /**
   * Asks the thread to end by itself (worker.ts, CloseRequest: the run in progress finishes, the
   * sessions are released); one that has not ended after `timeoutMs` (a run that does not return)
   * is terminated. Resolves with how it ended: 'closed' or 'terminated'.
   */
  async close(timeoutMs = CLOSE_TIMEOUT_MS): Promise<'closed' | 'terminated'> {
    if (this.exited) return 'closed';
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    let terminated = false;
    const timer = setTimeout(() => {
      terminated = true;
      void this.worker.terminate();
    }, timeoutMs);
    this.worker.postMessage({ kind: 'close' } satisfies CloseRequest);
    await exited;
    clearTimeout(timer);
    return terminated ? 'terminated' : 'closed';
  }
}
