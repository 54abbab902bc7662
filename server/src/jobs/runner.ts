/**
 * Runs queued jobs from the store through the segmentation pipeline: by default one at a time per
 * inference worker, interactive jobs first, then in submission order. Progress is persisted and
 * published to subscribers (SSE). PACS faults are retried with backoff; cancel aborts the pipeline
 * before anything is stored.
 */
import { EventEmitter } from 'node:events';
import type { Config } from '../config.js';
import type { DicomWebClient } from '../dicomweb/client.js';
import { LdfsamError, toLdfsamError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ModelRegistry } from '../inference/registry.js';
import { segmentSeries } from '../pipeline/segment.js';
import type { RunnerStats } from './queue.js';
import type { JobStore } from './store.js';
import { FINAL_STATES, type Job, type JobRequest } from './types.js';

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
      config: Pick<Config, 'batchSize' | 'minComponentVoxels'>;
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

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const c of this.running.values()) c.abort();
    while (this.running.size > 0) await new Promise((r) => setTimeout(r, 20));
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
    const log = this.deps.log.child({ jobId: job.id });
    log.info('job started', { attempt: job.attempts, ...job.request });
    let lastWrite = 0;
    let lastStage = '';
    try {
      const result = await segmentSeries(this.deps.client, this.deps.registry, job.request, {
        batchSize: this.deps.config.batchSize,
        minComponentVoxels: this.deps.config.minComponentVoxels || undefined,
        signal: controller.signal,
        onProgress: (p) => {
          const now = Date.now();
          // Persist at most 4 times a second, and at every stage change; publish every step.
          if (p.stage !== lastStage || now - lastWrite > 250 || p.done === p.total) {
            this.deps.store.progress(job.id, p);
            lastWrite = now;
            lastStage = p.stage;
          }
          this.publish({ ...job, state: 'running', progress: p });
        },
      });
      if (this.cancelRequested.has(job.id) && result.status !== 'stored') throw new LdfsamError('CANCELLED', 'cancelled');
      this.stats.slices += result.slices;
      for (const [stage, ms] of Object.entries(result.timingsMs)) {
        const s = (this.stats.stageSeconds[stage] ??= { sum: 0, count: 0 });
        s.sum += ms / 1000;
        s.count++;
      }
      const finished = this.deps.store.finish(job.id, 'succeeded', {
        result: {
          status: result.status,
          segSeriesInstanceUID: result.segSeriesInstanceUID ?? null,
          segSopInstanceUID: result.segSopInstanceUID ?? null,
          frames: result.frames,
          slices: result.slices,
          timingsMs: result.timingsMs,
        },
      });
      this.deps.store.progress(job.id, { stage: 'done', done: result.slices, total: result.slices });
      log.info('job succeeded', {
        status: result.status,
        frames: result.frames,
        segSeriesInstanceUID: result.segSeriesInstanceUID,
      });
      this.publish({ ...finished, progress: { stage: 'done', done: result.slices, total: result.slices } });
    } catch (err) {
      const e = toLdfsamError(err);
      if (this.cancelRequested.has(job.id) || e.code === 'CANCELLED') {
        log.info('job cancelled');
        this.publish(
          this.deps.store.finish(job.id, 'cancelled', {
            error: { code: 'CANCELLED', message: 'cancelled by request; nothing was stored' },
          }),
        );
        return;
      }
      if (e.retryable && job.attempts < (this.deps.maxAttempts ?? 3) && !this.stopped) {
        const delay = (this.deps.retryDelayMs ?? 2000) * 2 ** (job.attempts - 1);
        log.warn('job will be retried', { code: e.code, message: e.message, attempt: job.attempts, delayMs: delay });
        this.deps.store.requeue(job.id, { code: e.code, message: e.message }, delay);
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.pump(), delay + 10);
        this.publish(this.deps.store.get(job.id)!);
        return;
      }
      log.error('job failed', { code: e.code, message: e.message });
      this.publish(this.deps.store.finish(job.id, 'failed', { error: { code: e.code, message: e.message } }));
    }
  }
}
