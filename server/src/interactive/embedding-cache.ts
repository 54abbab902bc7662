/**
 * The slices' encoder outputs, kept so that every prompt after the first on a slice runs only the
 * decoder. One cache for the whole server (two users on the same series share it), bounded by
 * memory: least recently used entries go first. A slice being encoded is encoded once, however
 * many requests ask for it meanwhile.
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
}

export function outputsBytes(outputs: Outputs): number {
  let n = 0;
  for (const t of Object.values(outputs)) n += t.data.byteLength;
  return n;
}

export class EmbeddingCache {
  /** Insertion order = recency (a hit re-inserts). */
  private readonly entries = new Map<string, { outputs: Outputs; bytes: number }>();
  private readonly computing = new Map<string, Promise<Outputs>>();
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  private evictions = 0;

  constructor(readonly limitBytes: number) {}

  /**
   * The outputs for `key`, computed by `compute` when absent; `hit` says whether they were kept.
   * `signal` ends this caller's wait only (CANCELLED): the computation is shared by every caller of
   * the key meanwhile, so it takes no one caller's signal, runs on and is kept.
   */
  async get(key: string, compute: () => Promise<Outputs>, signal?: AbortSignal): Promise<{ outputs: Outputs; hit: boolean }> {
    const kept = this.entries.get(key);
    if (kept) {
      this.entries.delete(key);
      this.entries.set(key, kept);
      this.hits++;
      return { outputs: kept.outputs, hit: true };
    }
    const running = this.computing.get(key);
    if (running) {
      this.hits++;
      return { outputs: await untilAborted(running, signal), hit: true };
    }
    this.misses++;
    const promise = compute()
      .then((outputs) => {
        this.put(key, outputs);
        return outputs;
      })
      .finally(() => this.computing.delete(key));
    this.computing.set(key, promise);
    return { outputs: await untilAborted(promise, signal), hit: false };
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  private put(key: string, outputs: Outputs): void {
    const bytes = outputsBytes(outputs);
    if (bytes > this.limitBytes) return; // larger than the whole cache: used once, not kept
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
