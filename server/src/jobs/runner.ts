/**
 * The embedded queue's runner: claims queued jobs from the SQLite store and runs each through the
 * executor (./execute.ts), by default one at a time per inference worker, interactive jobs first,
 * then in submission order. Progress is persisted and published to subscribers (SSE). PACS faults
 * are retried with backoff; cancel aborts the pipeline before anything is stored.
 */
import { EventEmitter } from 'node:events';
import type { Config } from '../config.js';
import type { DicomWebClient } from '../dicomweb/client.js';
import { LdfsamError, toLdfsamError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ModelRegistry } from '../inference/registry.js';
import { CANCELLED_BY_REQUEST, executeJob, StopRequested, type StoreConfig } from './execute.js';
import type { RunnerStats } from './queue.js';
import type { JobStore } from './store.js';
import { FINAL_STATES, type Job, type JobRequest, type JobResult } from './types.js';

export type { RunnerStats };

export class JobRunner {
  private readonly events = new EventEmitter();
  private readonly running = new Map<string, AbortController>();
  private readonly cancelRequested = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  readonly stats: RunnerStats = { slices: 0, stageSeconds: {} };

  constructor(
    private readonly deps: {
      store: JobStore;
      client: DicomWebClient;
      registry: ModelRegistry;
      config: Pick<Config, 'batchSize' | 'minComponentVoxels'> & Partial<StoreConfig>;
      log: Logger;
      concurrency?: number;
      maxAttempts?: number;
      retryDelayMs?: number;
    },
  ) {
    this.events.setMaxListeners(0);
  }

  start(): void {
    const recovered = this.deps.store.recoverRunning();
    if (recovered > 0) this.deps.log.info('re-queued jobs left running by the previous process', { count: recovered });
    this.pump();
  }

  /** Takes no more jobs; the running ones stop after their current slice batch and go back to the queue. */
  async stop(): Promise<{ handedBack: string[] }> {
    this.stopped = true;
    clearTimeout(this.timer);
    const handedBack = [...this.running.keys()];
    for (const c of this.running.values()) c.abort(new StopRequested('the server stops'));
    while (this.running.size > 0) await new Promise((r) => setTimeout(r, 20));
    return { handedBack: handedBack.filter((id) => this.deps.store.get(id)?.state === 'queued') };
  }

  /** Accepts a job, or returns the same request's queued/running job (or its last success unless forced). */
  submit(request: JobRequest, options: { force?: boolean; priority?: number } = {}): { job: Job; created: boolean } {
    const active = this.deps.store.active(request);
    if (active) return { job: active, created: false };
    if (!options.force) {
      const done = this.deps.store.lastFinished(request);
      if (done) return { job: done, created: false };
    }
    const job = this.deps.store.insert(request, { priority: options.priority ?? 1 });
    this.deps.log.info('job accepted', { jobId: job.id, ...request });
    this.publish(job);
    this.pump();
    return { job, created: true };
  }

  /** Wakes the loop after jobs were inserted directly (batches). */
  notify(jobs: Job[]): void {
    for (const job of jobs) this.publish(job);
    this.pump();
  }

  cancel(id: string): Job {
    const job = this.deps.store.get(id);
    if (!job) throw new LdfsamError('NOT_FOUND', `no job ${id}`);
    if (FINAL_STATES.includes(job.state)) return job;
    if (this.deps.store.cancelQueued(id)) {
      const cancelled = this.deps.store.get(id)!;
      this.publish(cancelled);
      return cancelled;
    }
    this.cancelRequested.add(id);
    this.running.get(id)?.abort();
    return this.deps.store.get(id)!;
  }

  subscribe(id: string, listener: (job: Job) => void): () => void {
    this.events.on(id, listener);
    return () => this.events.off(id, listener);
  }

  private publish(job: Job): void {
    this.events.emit(job.id, job);
  }

  private pump(): void {
    if (this.stopped) return;
    while (this.running.size < (this.deps.concurrency ?? 1)) {
      const job = this.deps.store.claimNext();
      if (!job) return;
      const controller = new AbortController();
      this.running.set(job.id, controller);
      this.publish(job);
      void this.run(job, controller)
        // The store could not record the outcome (e.g. SQLITE_FULL on a full disk): an unhandled
        // rejection here stopped the server (found by test/reliability/faults.test.ts). The job stays
        // "running" on disk, and a restart re-queues it.
        .catch((err: unknown) =>
          this.deps.log.error('job outcome not recorded', { jobId: job.id, message: toLdfsamError(err).message }),
        )
        .finally(() => {
          this.running.delete(job.id);
          this.cancelRequested.delete(job.id);
          this.pump();
        });
    }
  }

  private async run(job: Job, controller: AbortController): Promise<void> {
    const { store } = this.deps;
    const publish = (j: Job) => this.publish(j);
    await executeJob(
      job,
      this.deps,
      {
        begin: () => job.attempts,
        saveProgress: (p) => store.progress(job.id, p),
        publishProgress: (p) => publish({ ...job, state: 'running', progress: p }),
        cancelRequested: () => this.cancelRequested.has(job.id),
        succeeded: (result) => {
          this.count(result);
          const finished = store.finish(job.id, 'succeeded', { result });
          const done = { stage: 'done', done: result.slices, total: result.slices };
          store.progress(job.id, done);
          publish({ ...finished, progress: done });
        },
        cancelled: () => publish(store.finish(job.id, 'cancelled', { error: { ...CANCELLED_BY_REQUEST } })),
        retry: (e) => {
          if (!(job.attempts < (this.deps.maxAttempts ?? 3) && !this.stopped)) return false;
          const delay = (this.deps.retryDelayMs ?? 2000) * 2 ** (job.attempts - 1);
          store.requeue(job.id, { code: e.code, message: e.message }, delay);
          clearTimeout(this.timer);
          this.timer = setTimeout(() => this.pump(), delay + 10);
          publish(store.get(job.id)!);
          return { attempt: job.attempts, delayMs: delay };
        },
        failed: (e) => publish(store.finish(job.id, 'failed', { error: { code: e.code, message: e.message } })),
        handBack: () => {
          const queued = store.handBack(job.id);
          publish(store.get(job.id)!);
          return queued;
        },
      },
      controller.signal,
      this.deps.log.child({ jobId: job.id }),
    );
  }

  /** The pipeline statistics of /api/metrics. */
  private count(result: JobResult): void {
    this.stats.slices += result.slices;
    for (const [stage, ms] of Object.entries(result.timingsMs)) {
      const s = (this.stats.stageSeconds[stage] ??= { sum: 0, count: 0 });
      s.sum += ms / 1000;
      s.count++;
    }
  }
}
