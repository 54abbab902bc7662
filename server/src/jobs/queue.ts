/**
 * The one job-queue interface the HTTP API talks to. Two backends behave the same (state, progress,
 * cancel, retries, idempotency): the embedded one (SQLite store + runner in the server process,
 * ./embedded.ts) and BullMQ on Redis with `ldfsam worker` processes (./redis/redis-queue.ts).
 */
import type { Job, JobRequest, JobResult, JobState } from './types.js';

export interface RunnerStats {
  slices: number;
  stageSeconds: Record<string, { sum: number; count: number }>;
}

/** A worker seen by the queue: what it runs on and what it is doing. */
export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  provider: string;
  device: number | null;
  concurrency: number;
  active: string[];
  processed: number;
  startedAt: string;
  seenAt: string;
}

export interface QueueInfo {
  backend: 'sqlite' | 'redis';
  /** BullMQ's own counts (the embedded queue maps its states onto them). */
  counts: { waiting: number; delayed: number; active: number; completed: number; failed: number };
  workers: WorkerInfo[];
  /** The global PACS limit (0 = none) and the slots held now. */
  pacs: { maxJobs: number; inUse: number };
}

export interface BatchView {
  id: string;
  request: unknown;
  createdAt: string;
  jobs: Job[];
}

/** What stopping took from the running jobs: handed back to the queue, or left to its recovery (queue unreachable). */
export interface StopReport {
  handedBack: string[];
  left: string[];
}

export interface JobQueue {
  readonly backend: 'sqlite' | 'redis';
  start(): Promise<void>;
  /** Stops (the embedded queue hands its running jobs back) and closes its connections. */
  close(): Promise<StopReport>;
  /** Accepts a job, or returns the same request's queued/running job (or its last success unless forced). */
  submit(request: JobRequest, options?: { force?: boolean; priority?: number }): Promise<{ job: Job; created: boolean }>;
  /** One batch job per request not queued, running or (unless forced) done; says how many were skipped. */
  submitBatch(body: unknown, requests: JobRequest[], options?: { force?: boolean }): Promise<{ batchId: string; jobs: Job[] }>;
  get(id: string): Promise<Job | undefined>;
  recent(limit: number): Promise<Job[]>;
  batch(id: string): Promise<BatchView | undefined>;
  /** A queued job is cancelled at once; a running one is aborted before anything is stored. */
  cancel(id: string): Promise<Job>;
  /** Every update of a job (progress, state), in this process. */
  subscribe(id: string, listener: (job: Job) => void): () => void;
  counts(): Promise<Record<JobState, number>>;
  stats(): Promise<RunnerStats>;
  info(): Promise<QueueInfo>;
}

/** Priorities of the API: interactive (viewer) jobs before batch jobs. */
export const PRIORITY = { interactive: 1, batch: 0 } as const;

export function emptyCounts(): Record<JobState, number> {
  return { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
}

/** What a pipeline result becomes in a job. */
export function jobResult(r: {
  status: string;
  segSeriesInstanceUID?: string;
  segSopInstanceUID?: string;
  rtstructSeriesInstanceUID?: string;
  rtstructSopInstanceUID?: string;
  storedIn?: string[];
  notes?: string[];
  frames: number;
  slices: number;
  slicesFound: number;
  scores: number[] | null;
  presenceThreshold: number | null;
  confidence: number | null;
  message: string;
  timingsMs: Record<string, number>;
}): JobResult {
  return {
    status: r.status,
    segSeriesInstanceUID: r.segSeriesInstanceUID ?? null,
    segSopInstanceUID: r.segSopInstanceUID ?? null,
    rtstructSeriesInstanceUID: r.rtstructSeriesInstanceUID ?? null,
    rtstructSopInstanceUID: r.rtstructSopInstanceUID ?? null,
    storedIn: r.storedIn ?? [],
    notes: r.notes ?? [],
    frames: r.frames,
    slices: r.slices,
    slicesFound: r.slicesFound,
    scores: r.scores,
    presenceThreshold: r.presenceThreshold,
    confidence: r.confidence,
    message: r.message,
    timingsMs: r.timingsMs,
  };
}

/** A succeeded job that stored nothing because nothing was found (or segmented). */
export function foundNothing(job: Job): boolean {
  return job.state === 'succeeded' && (job.result?.status === 'not-found' || job.result?.status === 'empty');
}
