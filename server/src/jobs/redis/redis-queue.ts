/**
 * The Redis queue, the second backend of the one queue interface (../queue.ts), API side: job records in Redis (./records.ts), dispatch through BullMQ to any
 * number of `ldfsam worker` processes (./worker.ts), updates from the workers by Redis pub/sub (SSE).
 * Retries are BullMQ's (attempts 3, exponential backoff from LDFSAM's 2 s); priorities are BullMQ's
 * (interactive 1 before batch 10; lower runs first, then submission order).
 */
import { EventEmitter } from 'node:events';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { LdfsamError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { BatchView, JobQueue, QueueInfo, RunnerStats, StopReport, WorkerInfo } from '../queue.js';
import { FINAL_STATES, type Job, type JobRequest, type JobState } from '../types.js';
import { connectRedis } from './connection.js';
import { JobRecords, QUEUE_NAME } from './records.js';
import { PacsSlots } from './semaphore.js';

export interface RedisQueueOptions {
  url: string;
  log: Logger;
  pacsMaxJobs: number;
  lockMs: number;
  maxAttempts?: number;
  retryDelayMs?: number;
}

/** Workers heartbeat every 5 s; one not seen for 3 beats is gone. */
export const HEARTBEAT_MS = 5000;

export class RedisJobQueue implements JobQueue {
  readonly backend = 'redis' as const;
  private readonly redis: Redis;
  private readonly sub: Redis;
  private readonly records: JobRecords;
  private readonly bull: Queue;
  private readonly events = new EventEmitter();
  private readonly slots: PacsSlots;

  constructor(private readonly opts: RedisQueueOptions) {
    this.redis = connectRedis(opts.url);
    this.sub = connectRedis(opts.url);
    this.records = new JobRecords(this.redis);
    this.bull = new Queue(QUEUE_NAME, { connection: this.redis });
    this.slots = new PacsSlots(this.redis, this.records.k.pacs, opts.pacsMaxJobs, opts.lockMs);
    this.events.setMaxListeners(0);
    for (const c of [this.redis, this.sub])
      c.on('error', (err: Error) => opts.log.warn('redis connection', { message: err.message }));
    // The same errors again through BullMQ (which, unheard, prints them with their stack): logged above.
    this.bull.on('error', () => undefined);
  }

  async start(): Promise<void> {
    this.sub.on('message', (_channel: string, message: string) => {
      const job = JSON.parse(message) as Job;
      this.events.emit(job.id, job);
    });
    await this.sub.subscribe(this.records.k.events);
  }

  async close(): Promise<StopReport> {
    this.sub.disconnect();
    // With Redis gone a polite close waits for it (commands wait for a reconnection): drop the connection.
    if (this.redis.status === 'ready') {
      await this.bull.close();
      await this.redis.quit().catch(() => undefined);
    } else {
      void this.bull.close().catch(() => undefined);
      this.redis.disconnect();
    }
    return { handedBack: [], left: [] };
  }

  async submit(request: JobRequest, options: { force?: boolean; priority?: number } = {}) {
    return this.records.withRequestLock(request, async () => {
      const active = await this.records.active(request);
      if (active) return { job: active, created: false };
      if (!options.force) {
        const done = await this.records.lastSucceeded(request);
        if (done) return { job: done, created: false };
      }
      const job = await this.records.insert(request, { priority: options.priority ?? 1 });
      await this.dispatch([job]);
      this.opts.log.info('job accepted', { jobId: job.id, ...request });
      return { job, created: true };
    });
  }

  async submitBatch(body: unknown, requests: JobRequest[], options: { force?: boolean } = {}) {
    const batchId = await this.records.createBatch(body);
    const jobs: Job[] = [];
    let pending: Job[] = [];
    for (const request of requests) {
      const job = await this.records.withRequestLock(request, async () => {
        if (await this.records.active(request)) return undefined;
        if (!options.force && (await this.records.lastSucceeded(request))) return undefined;
        return this.records.insert(request, { batchId, priority: 0 });
      });
      if (job) pending.push(job);
      // Dispatched in chunks, so that workers start on a large batch while the rest is recorded.
      if (pending.length >= 100) {
        await this.dispatch(pending);
        jobs.push(...pending);
        pending = [];
      }
    }
    await this.dispatch(pending);
    jobs.push(...pending);
    return { batchId, jobs };
  }

  /** Hands jobs to BullMQ; a record whose dispatch failed is failed rather than left queued forever. */
  private async dispatch(jobs: Job[]): Promise<void> {
    if (jobs.length === 0) return;
    try {
      await this.bull.addBulk(
        jobs.map((job) => ({
          name: 'segment',
          data: { id: job.id },
          opts: {
            jobId: job.id,
            priority: job.priority >= 1 ? 1 : 10,
            attempts: this.opts.maxAttempts ?? 3,
            backoff: { type: 'exponential', delay: this.opts.retryDelayMs ?? 2000 },
            // The records keep the history; BullMQ keeps a day of finished jobs for inspection.
            removeOnComplete: { age: 86_400 },
            removeOnFail: { age: 7 * 86_400 },
          },
        })),
      );
    } catch (err) {
      for (const job of jobs)
        await this.records.transition(job.id, 'failed', ['queued'], {
          error: JSON.stringify({ code: 'INTERNAL', message: `not queued: ${(err as Error).message}` }),
          finishedAt: new Date().toISOString(),
        });
      throw err;
    }
    for (const job of jobs) await this.records.publish(job);
  }

  async get(id: string): Promise<Job | undefined> {
    const job = await this.records.get(id);
    return job ? this.reconcile(job) : undefined;
  }

  /**
   * A job that stalled more often than allowed (its workers kept dying) is failed by BullMQ's own
   * script, where no processor sees it: such a record is failed here when it is read.
   */
  private async reconcile(job: Job): Promise<Job> {
    if (FINAL_STATES.includes(job.state) || Date.now() - Date.parse(job.updatedAt) < this.opts.lockMs) return job;
    const bj = await this.bull.getJob(job.id);
    const state = bj ? await bj.getState() : 'missing';
    // (A queued record may not be in BullMQ yet: a large batch is dispatched in chunks.)
    if (state !== 'failed' && !(state === 'missing' && job.state === 'running')) return job;
    const message = bj?.failedReason || 'the job left the queue without a result';
    await this.records.transition(job.id, 'failed', ['queued', 'running'], {
      error: JSON.stringify({ code: 'INTERNAL', message }),
      finishedAt: new Date().toISOString(),
    });
    return (await this.records.get(job.id))!;
  }

  async recent(limit: number): Promise<Job[]> {
    return this.records.recent(limit);
  }

  async batch(id: string): Promise<BatchView | undefined> {
    return this.records.batch(id);
  }

  async cancel(id: string): Promise<Job> {
    const job = await this.records.get(id);
    if (!job) throw new LdfsamError('NOT_FOUND', `no job ${id}`);
    if (FINAL_STATES.includes(job.state)) return job;
    if (job.state === 'queued') {
      const bj = await this.bull.getJob(id);
      let removed = !bj;
      try {
        // remove() refuses a job a worker holds (active); that one is cancelled through the flag below.
        if (bj && ['waiting', 'prioritized', 'delayed'].includes(await bj.getState())) {
          await bj.remove();
          removed = true;
        }
      } catch {
        removed = false;
      }
      if (removed) {
        const done = await this.records.transition(id, 'cancelled', ['queued'], {
          error: JSON.stringify({ code: 'CANCELLED', message: 'cancelled by request; nothing was stored' }),
          finishedAt: new Date().toISOString(),
        });
        if (done) {
          const cancelled = (await this.records.get(id))!;
          await this.records.publish(cancelled);
          return cancelled;
        }
      }
    }
    await this.records.requestCancel(id);
    return (await this.records.get(id))!;
  }

  subscribe(id: string, listener: (job: Job) => void): () => void {
    this.events.on(id, listener);
    return () => this.events.off(id, listener);
  }

  async counts(): Promise<Record<JobState, number>> {
    return this.records.counts();
  }

  async stats(): Promise<RunnerStats> {
    return this.records.stats();
  }

  async info(): Promise<QueueInfo> {
    const c = await this.bull.getJobCounts('waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed');
    return {
      backend: 'redis',
      counts: {
        waiting: (c.waiting ?? 0) + (c.prioritized ?? 0),
        delayed: c.delayed ?? 0,
        active: c.active ?? 0,
        completed: c.completed ?? 0,
        failed: c.failed ?? 0,
      },
      workers: await this.workers(),
      pacs: { maxJobs: this.opts.pacsMaxJobs, inUse: await this.slots.inUse() },
    };
  }

  /** Workers seen in the last three heartbeats; entries silent for an hour are dropped. */
  private async workers(): Promise<WorkerInfo[]> {
    const all = await this.redis.hgetall(this.records.k.workers);
    const now = Date.now();
    const out: WorkerInfo[] = [];
    for (const [id, text] of Object.entries(all)) {
      const w = JSON.parse(text) as WorkerInfo;
      const age = now - Date.parse(w.seenAt);
      if (age < 3 * HEARTBEAT_MS) out.push(w);
      else if (age > 3_600_000) await this.redis.hdel(this.records.k.workers, id);
    }
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }
}
