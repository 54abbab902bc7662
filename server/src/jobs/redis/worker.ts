/**
 * An inference worker of the Redis queue: takes jobs from BullMQ, runs the segmentation pipeline,
 * writes state and progress into the job records and publishes every update (SSE in the API).
 *
 * A worker that dies mid-job stops renewing its BullMQ lock (lockDuration = LDFSAM_QUEUE_LOCK_MS,
 * renewed every half of it); BullMQ's stalled-job check (every half of it) then moves the job back to
 * the queue and another worker runs it from the start. A job that stalls twice more is failed (it may
 * be what kills the workers). A repeat stores nothing twice: the SEG's UIDs are derived from the
 * source series, the model and the masks, and Orthanc keeps one copy of a re-sent identical instance.
 */
import { hostname } from 'node:os';
import { UnrecoverableError, Worker, type Job as BullJob } from 'bullmq';
import type { Config } from '../../config.js';
import type { DicomWebClient } from '../../dicomweb/client.js';
import { LdfsamError, toLdfsamError } from '../../errors.js';
import { jobResult, type WorkerInfo } from '../queue.js';
import { FINAL_STATES, type Job } from '../types.js';
import type { Logger } from '../../log.js';
import type { ModelRegistry } from '../../inference/registry.js';
import { segmentSeries } from '../../pipeline/segment.js';
import { connectRedis } from './connection.js';
import { HEARTBEAT_MS } from './redis-queue.js';
import { JobRecords, QUEUE_NAME } from './records.js';
import { PacsSlots } from './semaphore.js';

export interface QueueWorkerOptions {
  config: Pick<Config, 'queue' | 'batchSize' | 'minComponentVoxels' | 'pacsMaxJobs' | 'queueLockMs'>;
  client: DicomWebClient;
  registry: ModelRegistry;
  log: Logger;
  provider: string;
  device: number | null;
  concurrency: number;
}

export interface QueueWorker {
  id: string;
  /** Waits for the running jobs to finish (or, with force, leaves them to another worker once their lock expires). */
  close(force?: boolean): Promise<void>;
}

export async function startQueueWorker(opts: QueueWorkerOptions): Promise<QueueWorker> {
  const { config, log } = opts;
  const id = `${hostname()}:${process.pid}:${opts.provider}${opts.device === null ? '' : `:${opts.device}`}`;
  const redis = connectRedis(config.queue);
  const sub = connectRedis(config.queue);
  for (const c of [redis, sub]) c.on('error', (err: Error) => log.warn('redis connection', { message: err.message }));
  const records = new JobRecords(redis);
  const slots = new PacsSlots(redis, records.k.pacs, config.pacsMaxJobs, config.queueLockMs);
  const running = new Map<string, AbortController>();
  const info: WorkerInfo = {
    id,
    host: hostname(),
    pid: process.pid,
    provider: opts.provider,
    device: opts.device,
    concurrency: opts.concurrency,
    active: [],
    processed: 0,
    startedAt: new Date().toISOString(),
    seenAt: new Date().toISOString(),
  };
  const beat = () =>
    redis
      .hset(records.k.workers, id, JSON.stringify({ ...info, active: [...running.keys()], seenAt: new Date().toISOString() }))
      .catch(() => undefined);

  sub.on('message', (_channel: string, jobId: string) => running.get(jobId)?.abort());
  await sub.subscribe(records.k.cancel);

  const processor = async (bj: BullJob<{ id: string }>) => {
    const job = await records.get(bj.data.id);
    // Finished already (a repeat after a lost lock) or unknown: nothing to do.
    if (!job || FINAL_STATES.includes(job.state)) return { skipped: true };
    const controller = new AbortController();
    running.set(job.id, controller);
    void beat();
    try {
      return await run(job, bj, controller);
    } finally {
      running.delete(job.id);
      info.processed++;
      void beat();
    }
  };

  const run = async (job: Job, bj: BullJob<{ id: string }>, controller: AbortController) => {
    const jlog = log.child({ jobId: job.id, worker: id });
    const cancelled = async () => controller.signal.aborted || (await records.cancelRequested(job.id));
    let release: (() => Promise<void>) | undefined;
    try {
      release = await slots.acquire(job.id, async () => {
        if (await cancelled()) throw new LdfsamError('CANCELLED', 'cancelled');
        return false;
      });
      if (await cancelled()) throw new LdfsamError('CANCELLED', 'cancelled');
      await records.transition(job.id, 'running', ['queued', 'running'], {
        worker: id,
        startedAt: new Date().toISOString(),
        error: null,
      });
      await redis.hincrby(records.k.job(job.id), 'attempts', 1);
      let current = (await records.get(job.id))!;
      await records.publish(current);
      jlog.info('job started', { attempt: current.attempts, ...job.request });
      let lastWrite = 0;
      let lastStage = '';
      const result = await segmentSeries(opts.client, opts.registry, job.request, {
        batchSize: config.batchSize,
        minComponentVoxels: config.minComponentVoxels || undefined,
        signal: controller.signal,
        onProgress: (p) => {
          const now = Date.now();
          // Persist at most 4 times a second and at every stage change (and see a cancel flag); publish every step.
          if (p.stage !== lastStage || now - lastWrite > 250 || p.done === p.total) {
            lastWrite = now;
            lastStage = p.stage;
            void records
              .progress(job.id, p)
              .then((cancel) => cancel && controller.abort())
              .catch(() => undefined);
          }
          current = { ...current, progress: p };
          void records.publish(current).catch(() => undefined);
        },
      });
      if (controller.signal.aborted && result.status !== 'stored') throw new LdfsamError('CANCELLED', 'cancelled');
      await records.markSucceeded(current, jobResult(result));
      await records.publish(await records.get(job.id));
      jlog.info('job succeeded', {
        status: result.status,
        frames: result.frames,
        segSeriesInstanceUID: result.segSeriesInstanceUID,
      });
      return { status: result.status, segSeriesInstanceUID: result.segSeriesInstanceUID ?? null };
    } catch (err) {
      const e = toLdfsamError(err);
      const finishedAt = new Date().toISOString();
      if (e.code === 'CANCELLED' || (await cancelled())) {
        jlog.info('job cancelled');
        await records.transition(job.id, 'cancelled', ['queued', 'running'], {
          error: JSON.stringify({ code: 'CANCELLED', message: 'cancelled by request; nothing was stored' }),
          finishedAt,
        });
        await records.publish(await records.get(job.id));
        return { cancelled: true };
      }
      const error = JSON.stringify({ code: e.code, message: e.message });
      // BullMQ retries (with its backoff) what it is given back as a plain error, while attempts are left.
      if (e.retryable && bj.attemptsMade + 1 < (bj.opts.attempts ?? 1)) {
        jlog.warn('job will be retried', { code: e.code, message: e.message, attempt: bj.attemptsMade + 1 });
        await records.transition(job.id, 'queued', ['running'], { error });
        await records.publish(await records.get(job.id));
        throw e;
      }
      jlog.error('job failed', { code: e.code, message: e.message });
      await records.transition(job.id, 'failed', ['queued', 'running'], { error, finishedAt });
      await records.publish(await records.get(job.id));
      throw new UnrecoverableError(`[${e.code}] ${e.message}`);
    } finally {
      await release?.();
    }
  };

  const worker = new Worker(QUEUE_NAME, processor, {
    connection: redis,
    concurrency: opts.concurrency,
    lockDuration: config.queueLockMs,
    stalledInterval: Math.max(500, Math.round(config.queueLockMs / 2)),
    // A job whose worker died twice more is failed: it may be the job that kills them.
    maxStalledCount: 2,
    // After a lost connection (Redis restarting) try again within a second, not BullMQ's 15 s.
    runRetryDelay: 1000,
  });
  worker.on('error', (err) => log.warn('worker', { message: err.message }));
  worker.on('stalled', (jobId) => log.warn('job stalled (its worker stopped); back in the queue', { jobId }));
  await worker.waitUntilReady();
  await beat();
  const heartbeat = setInterval(() => void beat(), HEARTBEAT_MS);
  log.info('worker ready', { worker: id, provider: opts.provider, device: opts.device, concurrency: opts.concurrency });

  return {
    id,
    async close(force = false) {
      clearInterval(heartbeat);
      await worker.close(force);
      await redis.hdel(records.k.workers, id).catch(() => undefined);
      sub.disconnect();
      await redis.quit().catch(() => undefined);
    },
  };
}
