/**
 * Runs one job through the segmentation pipeline: the one place that does, for both queue backends
 * (the embedded runner, ./runner.ts, and the Redis worker, ./redis/worker.ts). It persists progress
 * at most 4 times a second (and at every stage change, and at the last slice) and publishes every
 * step, treats a cancel as cancelled when nothing was stored, and sorts a failure into cancelled,
 * retried or failed. A job interrupted because its worker stops (aborted with a StopRequested reason,
 * not a cancel) is handed back to its queue. What each outcome means for the job's record is the
 * backend's (JobBackend).
 */
import type { Config } from '../config.js';
import type { DicomWebClient } from '../dicomweb/client.js';
import { LdfsamError, toLdfsamError } from '../errors.js';
import type { ModelRegistry } from '../inference/registry.js';
import type { Fields, Logger } from '../log.js';
import { segmentSeries, type SegmentResult } from '../pipeline/segment.js';
import { storeTargetsFrom } from '../pipeline/store-results.js';
import { jobResult } from './queue.js';
import type { Job, JobProgress, JobRequest, JobResult } from './types.js';

/** Persisting progress more often than this (ms) costs more than it tells. */
export const PROGRESS_WRITE_MS = 250;

/** What a job needs of the configuration to store its results (absent in tests: STOW-RS only). */
export type StoreConfig = Pick<
  Config,
  'storeVia' | 'storeDimse' | 'storeAet' | 'pacsTimeoutMs' | 'pacsRetries' | 'rtstructTolerance'
>;

export interface ExecutorDeps {
  client: DicomWebClient;
  registry: ModelRegistry;
  config: Pick<Config, 'batchSize' | 'minComponentVoxels'> & Partial<StoreConfig>;
}

/** The pipeline options a job's request and the configuration give: which outputs, where they are stored. */
export function jobOptions(request: JobRequest, config: Partial<StoreConfig>) {
  return {
    outputs: request.outputs ?? 'seg',
    rtstructTolerance: config.rtstructTolerance,
    store: storeTargetsFrom({
      storeVia: config.storeVia ?? 'stow',
      storeDimse: config.storeDimse,
      storeAet: config.storeAet ?? 'LDFSAM',
      pacsTimeoutMs: config.pacsTimeoutMs ?? 60_000,
      pacsRetries: config.pacsRetries ?? 3,
    }),
  };
}

/** What a backend does at each point of a job's run; every hook may be synchronous or not. */
export interface JobBackend {
  /** Before the pipeline (a PACS slot, the record marked running); returns the attempt number to log. */
  begin(): number | Promise<number>;
  /** Persists progress (throttled by the executor). */
  saveProgress(p: JobProgress): void;
  /** Every progress step, for the job's subscribers (SSE). */
  publishProgress(p: JobProgress): void;
  /** Whether a cancel was asked for (the abort signal, or a flag in the record). */
  cancelRequested(): boolean | Promise<boolean>;
  succeeded(result: JobResult): void | Promise<void>;
  cancelled(): void | Promise<void>;
  /** Re-queues a retryable failure when attempts are left: the fields to log, or false when it will not be retried. */
  retry(error: LdfsamError): Fields | false | Promise<Fields | false>;
  failed(error: LdfsamError): void | Promise<void>;
  /**
   * The worker stops: puts the job back in its queue to run again from the start, without counting
   * an attempt; false when it could not (the queue unreachable: its own recovery takes the job back).
   */
  handBack(): boolean | Promise<boolean>;
  /** Always, last (a PACS slot released). */
  end?(): void | Promise<void>;
}

export type JobEnding =
  | { ending: 'succeeded'; result: SegmentResult }
  | { ending: 'cancelled' }
  | { ending: 'retried'; error: LdfsamError }
  | { ending: 'failed'; error: LdfsamError }
  | { ending: 'handed-back'; queued: boolean };

/** The abort reason of a job interrupted because its worker stops: not a cancel, the job runs again. */
export class StopRequested extends Error {
  constructor(readonly why: string) {
    super(`the worker stopped (${why}) before the job ended; it runs again from the start`);
    this.name = 'StopRequested';
  }
}

export const stopRequested = (signal: AbortSignal): StopRequested | undefined =>
  signal.aborted && signal.reason instanceof StopRequested ? signal.reason : undefined;

export const CANCELLED_BY_REQUEST = { code: 'CANCELLED', message: 'cancelled by request; nothing was stored' } as const;

export async function executeJob(
  job: Job,
  deps: ExecutorDeps,
  backend: JobBackend,
  signal: AbortSignal,
  log: Logger,
): Promise<JobEnding> {
  try {
    const attempt = await backend.begin();
    log.info('job started', { attempt, ...job.request });
    const result = await segmentSeries(deps.client, deps.registry, job.request, {
      ...jobOptions(job.request, deps.config),
      batchSize: deps.config.batchSize,
      minComponentVoxels: deps.config.minComponentVoxels || undefined,
      signal,
      onProgress: throttledProgress(backend),
    });
    if (result.status !== 'stored' && (stopRequested(signal) || (await backend.cancelRequested())))
      throw new LdfsamError('CANCELLED', 'cancelled');
    await backend.succeeded(jobResult(result));
    log.info('job succeeded', {
      status: result.status,
      frames: result.frames,
      slicesFound: result.slicesFound,
      segSeriesInstanceUID: result.segSeriesInstanceUID,
      rtstructSeriesInstanceUID: result.rtstructSeriesInstanceUID,
      storedIn: result.storedIn,
    });
    return { ending: 'succeeded', result };
  } catch (err) {
    const stop = stopRequested(signal);
    if (stop) return await handBack(stop, backend, log);
    return await settleFailure(toLdfsamError(err), backend, log);
  } finally {
    await backend.end?.();
  }
}

/** Persist at most 4 times a second and at every stage change (and at the end of a stage); publish every step. */
function throttledProgress(backend: JobBackend): (p: JobProgress) => void {
  let lastWrite = 0;
  let lastStage = '';
  return (p) => {
    const now = Date.now();
    if (p.stage !== lastStage || now - lastWrite > PROGRESS_WRITE_MS || p.done === p.total) {
      lastWrite = now;
      lastStage = p.stage;
      backend.saveProgress(p);
    }
    backend.publishProgress(p);
  };
}

async function handBack(stop: StopRequested, backend: JobBackend, log: Logger): Promise<JobEnding> {
  const queued = await backend.handBack();
  if (queued) log.warn('job handed back to the queue (the worker stops)', { why: stop.why });
  else log.warn("job left to the queue's stalled-job recovery (the worker stops, the queue is unreachable)", { why: stop.why });
  return { ending: 'handed-back', queued };
}

async function settleFailure(e: LdfsamError, backend: JobBackend, log: Logger): Promise<JobEnding> {
  if (e.code === 'CANCELLED' || (await backend.cancelRequested())) {
    log.info('job cancelled');
    await backend.cancelled();
    return { ending: 'cancelled' };
  }
  if (e.retryable) {
    const fields = await backend.retry(e);
    if (fields) {
      log.warn('job will be retried', { code: e.code, message: e.message, ...fields });
      return { ending: 'retried', error: e };
    }
  }
  log.error('job failed', { code: e.code, message: e.message });
  await backend.failed(e);
  return { ending: 'failed', error: e };
}
