/**
 * The slices' encoder outputs, kept so that every prompt after the first on a slice runs only the
 * decoder. One cache for the whole server (two users on the same series share it), bounded by
 * memory: least recently used entries go first. A slice being encoded is encoded once, however
 * many requests ask for it meanwhile, and an encoding nobody waits for any more is dropped: the
 * viewer asks ahead for each slice the user stops on, and a user stepping slowly through a series
 * would otherwise queue encodes of slices already left ahead of the one wanted.
 */
import { LdfsamError } from '../errors.js';
import type { Outputs } from '../inference/inference-worker.js';

export interface CacheStats {
  entries: number;
  bytes: number;
  limitBytes: number;
  hits: number;
  misses: number;
  evictions: number;
  /** Computations every caller gave up on that did not complete (their fetch or queued encode dropped). */
  dropped: number;
}

/**
 * A computation under way: its result, how many callers wait on it, and how to drop it. Given up
 * (its signal aborted) it stays listed until it settles: an encode already running finishes anyway,
 * and a caller meanwhile takes that result rather than a second pass.
 */
interface Computation {
  promise: Promise<Outputs>;
  waiters: number;
  settled: boolean;
  abort: AbortController;
}

export function outputsBytes(outputs: Outputs): number {
  let n = 0;
  for (const t of Object.values(outputs)) n += t.data.byteLength;
  return n;
}

export class EmbeddingCache {
  /** Insertion order = recency (a hit re-inserts). */
  private readonly entries = new Map<string, { outputs: Outputs; bytes: number }>();
  private readonly computing = new Map<string, Computation>();
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  private evictions = 0;
  private dropped = 0;

  constructor(readonly limitBytes: number) {}

  /**
   * The outputs for `key`, computed by `compute` when absent; `hit` says whether they were kept.
   * `signal` ends this caller's wait only (CANCELLED): the computation is shared by every caller of
   * the key meanwhile. Its own signal aborts once every caller has gone (a caller without a signal
   * never goes); a caller after that gets its result if it completes anyway, else a new computation.
   */
  async get(
    key: string,
    compute: (signal: AbortSignal) => Promise<Outputs>,
    signal?: AbortSignal,
  ): Promise<{ outputs: Outputs; hit: boolean }> {
    const kept = this.entries.get(key);
    if (kept) {
      this.entries.delete(key);
      this.entries.set(key, kept);
      this.hits++;
      return { outputs: kept.outputs, hit: true };
    }
    if (signal?.aborted) throw new LdfsamError('CANCELLED', 'request cancelled');
    let run = this.computing.get(key);
    const hit = run !== undefined && !run.abort.signal.aborted;
    if (hit) this.hits++;
    else {
      this.misses++;
      run = this.start(key, compute, run);
    }
    return { outputs: await this.join(run!, signal), hit };
  }

  /** A new computation; after `givenUp` (its signal aborted), that one's result if it completes anyway. */
  private start(key: string, compute: (signal: AbortSignal) => Promise<Outputs>, givenUp?: Computation): Computation {
    const abort = new AbortController();
    const run: Computation = { promise: Promise.resolve({}), waiters: 0, settled: false, abort };
    const result = givenUp ? givenUp.promise.catch(() => compute(abort.signal)) : compute(abort.signal);
    run.promise = result
      .then((outputs) => {
        this.put(key, outputs);
        return outputs;
      })
      .catch((err: unknown) => {
        if (abort.signal.aborted) this.dropped++;
        throw err;
      })
      .finally(() => {
        run.settled = true;
        if (this.computing.get(key) === run) this.computing.delete(key);
      });
    this.computing.set(key, run);
    return run;
  }

  /** Waits on `run` until it settles or `signal` aborts; the last caller to go gives it up. */
  private async join(run: Computation, signal?: AbortSignal): Promise<Outputs> {
    run.waiters++;
    try {
      return await untilAborted(run.promise, signal);
    } finally {
      if (--run.waiters === 0 && !run.settled) run.abort.abort();
    }
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  private put(key: string, outputs: Outputs): void {
    const bytes = outputsBytes(outputs);
    if (bytes > this.limitBytes) return; // larger than the whole cache: used once, not kept
    const old = this.entries.get(key); // a given-up computation's result, passed on by the next one
    if (old) {
      this.entries.delete(key);
      this.bytes -= old.bytes;
    }
    while (this.bytes + bytes > this.limitBytes) {
      const [oldest, entry] = this.entries.entries().next().value!;
      this.entries.delete(oldest);
      this.bytes -= entry.bytes;
      this.evictions++;
    }
    this.entries.set(key, { outputs, bytes });
    this.bytes += bytes;
  }

  stats(): CacheStats {
    return {
      entries: this.entries.size,
      bytes: this.bytes,
      limitBytes: this.limitBytes,
      hits: this.hits,
      misses: this.misses,
      evictions: this.evictions,
      dropped: this.dropped,
    };
  }
}

/** `promise`'s value, or CANCELLED as soon as `signal` aborts (the promise itself runs on). */
function untilAborted<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const cancelled = () => reject(new LdfsamError('CANCELLED', 'request cancelled'));
    if (signal.aborted) cancelled();
    signal.addEventListener('abort', cancelled, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', cancelled));
  });
}
