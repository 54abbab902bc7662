/**
 * An inference worker of the Redis queue: takes jobs from BullMQ, runs each through the one job
 * executor (../execute.ts), writes state and progress into the job records and publishes every
 * update (SSE in the API). Redis writes that fail while a job goes on are logged (droppedWrites).
 *
 * A worker that dies mid-job stops renewing its BullMQ lock (lockDuration = LDFSAM_QUEUE_LOCK_MS,
 * renewed every half of it); BullMQ's stalled-job check (every half of it) then moves the job back to
 * the queue and another worker runs it from the start. A job that stalls twice more is failed (it may
 * be what kills the workers). A repeat stores nothing twice: the SEG's UIDs are derived from the
 * source series, the model and the masks, and Orthanc keeps one copy of a re-sent identical instance.
 *
 * A worker told to stop (stop()) takes no more jobs and aborts the running ones after their current
 * slice batch; each goes back to the queue at once (BullMQ moveToWait, no attempt counted), or, with
 * Redis gone, is left where it is: its lock expires and the stalled-job check of the next worker to
 * see Redis puts it back. stop() never waits for Redis to come back.
 */
import { hostname } from 'node:os';
import { UnrecoverableError, WaitingError, Worker, type Job as BullJob } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../../config.js';
import type { DicomWebClient } from '../../dicomweb/client.js';
import { LdfsamError } from '../../errors.js';
import type { ModelRegistry } from '../../inference/registry.js';
import type { Logger } from '../../log.js';
import {
  CANCELLED_BY_REQUEST,
  executeJob,
  StopRequested,
  type JobBackend,
  type JobEnding,
  type StoreConfig,
} from '../execute.js';
import type { StopReport, WorkerInfo } from '../queue.js';
import { FINAL_STATES, type Job } from '../types.js';
import { connectRedis } from './connection.js';
import { HEARTBEAT_MS } from './redis-queue.js';
import { JobRecords, QUEUE_NAME } from './records.js';
import { PacsSlots } from './semaphore.js';

export interface QueueWorkerOptions {
  config: Pick<Config, 'queue' | 'batchSize' | 'minComponentVoxels' | 'pacsMaxJobs' | 'queueLockMs'> & Partial<StoreConfig>;
  client: DicomWebClient;
  registry: ModelRegistry;
  log: Logger;
  provider: string;
  device: number | null;
  concurrency: number;
}

export interface QueueWorker {
  id: string;
  /**
   * Takes no more jobs, hands the running ones back (or leaves them to the stalled-job recovery when
   * Redis is gone) and closes the connections; `why` is logged with each job handed back.
   */
  stop(why: string): Promise<StopReport>;
}

export async function startQueueWorker(opts: QueueWorkerOptions): Promise<QueueWorker> {
  const { config, log } = opts;
  const id = `${hostname()}:${process.pid}:${opts.provider}${opts.device === null ? '' : `:${opts.device}`}`;
  const redis = connectRedis(config.queue);
  const sub = connectRedis(config.queue);
  for (const c of [redis, sub]) c.on('error', (err: Error) => log.warn('redis connection', { message: err.message }));
  const records = new JobRecords(redis);
  const slots = new PacsSlots(redis, records.k.pacs, config.pacsMaxJobs, config.queueLockMs, log);
  const running = new Map<string, { controller: AbortController; released: Promise<void> }>();
  // Sets: a job left by stop() may also be reported by its processor as it ends.
  const handedBack = new Set<string>();
  const left = new Set<string>();
  let stopping: StopRequested | undefined;
  // Jobs whose final state is being written: no longer listed as active, so that a job seen final is
  // never still listed by its worker (the entry is written before the state).
  const settling = new Set<string>();
  const info = workerInfo(opts, id);
  const dropped = droppedWrites(log);
  const beat = () => {
    const active = [...running.keys()].filter((jobId) => !settling.has(jobId));
    return redis
      .hset(records.k.workers, id, JSON.stringify({ ...info, active, seenAt: new Date().toISOString() }))
      .catch(dropped('heartbeat'));
  };
  const settle = async (jobId: string) => {
    settling.add(jobId);
    await beat();
  };

  sub.on('message', (_channel: string, jobId: string) => running.get(jobId)?.controller.abort());
  await sub.subscribe(records.k.cancel);

  const processor = async (bj: BullJob<{ id: string }>, token?: string) => {
    const job = await records.get(bj.data.id);
    // Finished already (a repeat after a lost lock) or unknown: nothing to do.
    if (!job || FINAL_STATES.includes(job.state)) return { skipped: true };
    const controller = new AbortController();
    // Taken just as the worker was told to stop: handed back before it starts.
    if (stopping) controller.abort(stopping);
    let release = () => undefined as void;
    running.set(job.id, { controller, released: new Promise<void>((r) => (release = r)) });
    void beat();
    try {
      const backend = recordBackend(job, bj, token, controller, { id, redis, records, slots, dropped, settle });
      const ending = await executeJob(job, opts, backend, controller.signal, log.child({ jobId: job.id, worker: id }));
      if (ending.ending === 'handed-back') {
        (ending.queued ? handedBack : left).add(job.id);
        // Back in the queue: BullMQ is told so. Left: nothing more is written; its lock expires.
        if (ending.queued) throw new WaitingError();
        release();
        return await new Promise<never>(() => undefined);
      }
      return bullOutcome(ending);
    } finally {
      running.delete(job.id);
      settling.delete(job.id);
      info.processed++;
      void beat();
      release();
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
    async stop(why) {
      stopping = new StopRequested(why);
      clearInterval(heartbeat);
      const closing = worker.close().catch((err: Error) => log.warn('worker close', { message: err.message }));
      for (const { controller } of running.values()) controller.abort(stopping);
      // Redis gone: what it would take to hand a job back (or to close politely) waits for Redis; give it up.
      const gone = redisGone(redis);
      await Promise.race([Promise.all([...running.values()].map((r) => r.released)), gone.promise]);
      if (redis.status === 'ready') await Promise.race([closing, gone.promise]);
      gone.cancel();
      for (const jobId of running.keys()) if (!handedBack.has(jobId)) left.add(jobId);
      sub.disconnect();
      if (redis.status === 'ready') {
        await redis.hdel(records.k.workers, id).catch(dropped('worker entry removal'));
        await redis.quit().catch(dropped('connection close'));
      } else redis.disconnect();
      return { handedBack: [...handedBack], left: [...left] };
    },
  };
}

/** Resolves once the connection is not ready (at once if it is not now); cancel() stops watching. */
function redisGone(redis: Redis): { promise: Promise<void>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<void>((resolve) => {
    const check = () => (redis.status === 'ready' ? (timer = setTimeout(check, 50)) : resolve());
    check();
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

function workerInfo(opts: QueueWorkerOptions, id: string): WorkerInfo {
  return {
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
}

/** What BullMQ is told: a result, a plain error to retry with its backoff (while attempts are left), or an unrecoverable one. */
function bullOutcome(outcome: Exclude<JobEnding, { ending: 'handed-back' }>): Record<string, unknown> {
  switch (outcome.ending) {
    case 'succeeded':
      return { status: outcome.result.status, segSeriesInstanceUID: outcome.result.segSeriesInstanceUID ?? null };
    case 'cancelled':
      return { cancelled: true };
    case 'retried':
      throw outcome.error;
    case 'failed':
      throw new UnrecoverableError(`[${outcome.error.code}] ${outcome.error.message}`);
  }
}

interface RedisParts {
  id: string;
  redis: Redis;
  records: JobRecords;
  slots: PacsSlots;
  dropped: (what: string, jobId?: string) => (err: Error) => void;
  /** Takes a job off the worker's active list in Redis before its final state is written. */
  settle: (jobId: string) => Promise<void>;
}

/** What the executor's outcomes mean for a job record in Redis (state moves are atomic scripts). */
function recordBackend(
  job: Job,
  bj: BullJob<{ id: string }>,
  token: string | undefined,
  controller: AbortController,
  r: RedisParts,
): JobBackend {
  const { records } = r;
  // Aborted: by a cancel, or because the worker stops (the executor tells them apart by the reason).
  const cancelled = async () => controller.signal.aborted || (await records.cancelRequested(job.id));
  const publishRecord = async () => records.publish(await records.get(job.id));
  let current = job;
  let release: (() => Promise<void>) | undefined;
  const releaseSlot = async () => {
    const held = release;
    release = undefined;
    await held?.();
  };
  // Done with the PACS and the worker: both are told before the job's final state is written, so
  // that whoever sees the job final sees its worker and its PACS slot free.
  const finishing = async () => {
    await r.settle(job.id);
    await releaseSlot();
  };
  return {
    begin: async () => {
      release = await r.slots.acquire(job.id, async () => {
        if (await cancelled()) throw new LdfsamError('CANCELLED', 'cancelled');
        return false;
      });
      if (await cancelled()) throw new LdfsamError('CANCELLED', 'cancelled');
      await records.transition(job.id, 'running', ['queued', 'running'], {
        worker: r.id,
        startedAt: new Date().toISOString(),
        error: null,
      });
      await r.redis.hincrby(records.k.job(job.id), 'attempts', 1);
      current = (await records.get(job.id))!;
      await records.publish(current);
      return current.attempts;
    },
    // The write also reads the cancel flag: a cancel whose pub/sub message was lost is seen here.
    saveProgress: (p) =>
      void records
        .progress(job.id, p)
        .then((cancel) => cancel && controller.abort())
        .catch(r.dropped('progress (and the cancel flag with it)', job.id)),
    publishProgress: (p) => {
      current = { ...current, progress: p };
      void records.publish(current).catch(r.dropped('progress event', job.id));
    },
    cancelRequested: cancelled,
    succeeded: async (result) => {
      await finishing();
      await records.markSucceeded(current, result);
      await publishRecord();
    },
    cancelled: async () => {
      await finishing();
      await records.transition(job.id, 'cancelled', ['queued', 'running'], {
        error: JSON.stringify(CANCELLED_BY_REQUEST),
        finishedAt: new Date().toISOString(),
      });
      await publishRecord();
    },
    retry: async (e) => {
      if (!(bj.attemptsMade + 1 < (bj.opts.attempts ?? 1))) return false;
      await releaseSlot();
      await records.transition(job.id, 'queued', ['running'], { error: JSON.stringify({ code: e.code, message: e.message }) });
      await publishRecord();
      return { attempt: bj.attemptsMade + 1 };
    },
    failed: async (e) => {
      await finishing();
      await records.transition(job.id, 'failed', ['queued', 'running'], {
        error: JSON.stringify({ code: e.code, message: e.message }),
        finishedAt: new Date().toISOString(),
      });
      await publishRecord();
    },
    handBack: async () => {
      if (r.redis.status !== 'ready') return false;
      if (await records.transition(job.id, 'queued', ['running'], { progress: null }))
        await r.redis.hincrby(records.k.job(job.id), 'attempts', -1);
      await bj.moveToWait(token);
      await publishRecord();
      return true;
    },
    end: releaseSlot,
  };
}

/**
 * A logger for Redis writes that fail while the worker goes on (progress, events, heartbeats): at
 * most one line per kind of write a second, with how many failed since. A failing progress write
 * also means a cancel flag goes unseen, so the failures are worth a line, not a flood of them.
 */
function droppedWrites(log: Logger): (what: string, jobId?: string) => (err: Error) => void {
  const last = new Map<string, { at: number; count: number }>();
  return (what, jobId) => (err) => {
    const seen = last.get(what) ?? { at: 0, count: 0 };
    seen.count++;
    const now = Date.now();
    if (now - seen.at >= 1000) {
      log.warn(`redis: ${what} not written`, { message: err.message, failures: seen.count, ...(jobId ? { jobId } : {}) });
      seen.at = now;
      seen.count = 0;
    }
    last.set(what, seen);
  };
}
