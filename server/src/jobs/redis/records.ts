/**
 * Job records in Redis, the API's view of a job with the Redis queue: one hash per job, one set per
 * state (counts), a sorted set of every job in submission order, the latest job and the last success
 * per request (idempotency), batches, and the pipeline statistics. BullMQ only dispatches: its job id
 * is the record's id and its data is that id, so what the API shows never depends on BullMQ's
 * retention of finished jobs.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { BatchView, RunnerStats } from '../queue.js';
import { emptyCounts } from '../queue.js';
import { requestKey, type Job, type JobProgress, type JobRequest, type JobResult, type JobState } from '../types.js';

export const STATES: readonly JobState[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
/** BullMQ's queue name (its keys are bull:ldfsam-segment:*). */
export const QUEUE_NAME = 'ldfsam-segment';

export function keys(prefix = 'ldfsam') {
  return {
    job: (id: string) => `${prefix}:job:${id}`,
    state: (s: JobState) => `${prefix}:state:${s}`,
    all: `${prefix}:jobs`,
    seq: `${prefix}:seq`,
    latest: (r: JobRequest) => `${prefix}:req:${requestKey(r)}`,
    ok: (r: JobRequest) => `${prefix}:ok:${requestKey(r)}`,
    lock: (r: JobRequest) => `${prefix}:lock:${requestKey(r)}`,
    batch: (id: string) => `${prefix}:batch:${id}`,
    batchJobs: (id: string) => `${prefix}:batch:${id}:jobs`,
    stats: `${prefix}:stats`,
    workers: `${prefix}:workers`,
    pacs: `${prefix}:pacs-slots`,
    /** Pub/sub: every job update (JSON), and ids of jobs to cancel. */
    events: `${prefix}:events`,
    cancel: `${prefix}:cancel`,
  };
}

/** Moves a job to a state if it is in one of the allowed ones, and sets fields; atomic. */
const TRANSITION = `
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return 0 end
local allowed = false
for s in string.gmatch(ARGV[3], '[^,]+') do if s == cur then allowed = true end end
if not allowed then return 0 end
for i = 2, 6 do redis.call('SREM', KEYS[i], ARGV[1]) end
redis.call('SADD', KEYS[1 + tonumber(ARGV[2])], ARGV[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
return 1`;

type Fields = Record<string, string | number | null>;

function toJob(h: Record<string, string>): Job | undefined {
  if (!h.id) return undefined;
  const j = <T>(s: string | undefined): T | null => (s ? (JSON.parse(s) as T) : null);
  return {
    id: h.id,
    batchId: h.batchId || null,
    state: h.state as JobState,
    request: JSON.parse(h.request!) as JobRequest,
    priority: Number(h.priority ?? 0),
    progress: j<JobProgress>(h.progress),
    result: j<JobResult>(h.result),
    error: j<{ code: string; message: string }>(h.error),
    attempts: Number(h.attempts ?? 0),
    createdAt: h.createdAt!,
    updatedAt: h.updatedAt!,
    startedAt: h.startedAt || null,
    finishedAt: h.finishedAt || null,
    worker: h.worker || null,
  };
}

const flat = (fields: Fields): string[] =>
  Object.entries(fields).flatMap(([k, v]) => [k, v === null ? '' : typeof v === 'number' ? String(v) : v]);

export class JobRecords {
  readonly k: ReturnType<typeof keys>;

  constructor(
    readonly redis: Redis,
    prefix?: string,
  ) {
    this.k = keys(prefix);
  }

  async insert(request: JobRequest, options: { batchId?: string; priority?: number } = {}): Promise<Job> {
    const id = randomUUID();
    const now = new Date().toISOString();
    const seq = await this.redis.incr(this.k.seq);
    const multi = this.redis
      .multi()
      .hset(
        this.k.job(id),
        ...flat({
          id,
          batchId: options.batchId ?? null,
          state: 'queued',
          request: JSON.stringify(request),
          priority: options.priority ?? 0,
          attempts: 0,
          createdAt: now,
          updatedAt: now,
        }),
      )
      .sadd(this.k.state('queued'), id)
      .zadd(this.k.all, seq, id)
      .set(this.k.latest(request), id);
    if (options.batchId) multi.rpush(this.k.batchJobs(options.batchId), id);
    await multi.exec();
    return (await this.get(id))!;
  }

  async get(id: string): Promise<Job | undefined> {
    return toJob(await this.redis.hgetall(this.k.job(id)));
  }

  async getMany(ids: string[]): Promise<Job[]> {
    if (ids.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hgetall(this.k.job(id));
    const out = (await pipe.exec()) ?? [];
    return out.map(([, h]) => toJob(h as Record<string, string>)).filter((j): j is Job => Boolean(j));
  }

  async recent(limit: number): Promise<Job[]> {
    return this.getMany(await this.redis.zrevrange(this.k.all, 0, limit - 1));
  }

  /** The request's queued or running job, if any. */
  async active(request: JobRequest): Promise<Job | undefined> {
    const id = await this.redis.get(this.k.latest(request));
    const job = id ? await this.get(id) : undefined;
    return job && (job.state === 'queued' || job.state === 'running') ? job : undefined;
  }

  /** The request's last succeeded job, if any. */
  async lastSucceeded(request: JobRequest): Promise<Job | undefined> {
    const id = await this.redis.get(this.k.ok(request));
    const job = id ? await this.get(id) : undefined;
    return job?.state === 'succeeded' ? job : undefined;
  }

  /** Runs `body` holding a short per-request lock, so that two API servers do not both create a job. */
  async withRequestLock<T>(request: JobRequest, body: () => Promise<T>): Promise<T> {
    const key = this.k.lock(request);
    const token = randomUUID();
    for (let i = 0; !(await this.redis.set(key, token, 'PX', 10_000, 'NX')); i++) {
      if (i > 500) break; // a lock left by a crashed server expires; after 10 s go on without it
      await new Promise((r) => setTimeout(r, 20));
    }
    try {
      return await body();
    } finally {
      await this.redis.eval(`if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end`, 1, key, token);
    }
  }

  /** Moves a job to `to` if it is in one of `from`; false when it was not (e.g. already cancelled). */
  async transition(id: string, to: JobState, from: readonly JobState[], fields: Fields = {}): Promise<boolean> {
    const now = new Date().toISOString();
    const all = { state: to, updatedAt: now, ...fields };
    const changed = await this.redis.eval(
      TRANSITION,
      6,
      this.k.job(id),
      ...STATES.map((s) => this.k.state(s)),
      id,
      String(STATES.indexOf(to) + 1),
      from.join(','),
      ...flat(all),
    );
    return changed === 1;
  }

  /** Writes progress; says whether a cancel was asked for (the flag survives a missed pub/sub message). */
  async progress(id: string, p: JobProgress): Promise<boolean> {
    const out = await this.redis
      .multi()
      .hset(this.k.job(id), 'progress', JSON.stringify(p), 'updatedAt', new Date().toISOString())
      .hget(this.k.job(id), 'cancel')
      .exec();
    return out?.[1]?.[1] === '1';
  }

  async cancelRequested(id: string): Promise<boolean> {
    return (await this.redis.hget(this.k.job(id), 'cancel')) === '1';
  }

  async requestCancel(id: string): Promise<void> {
    await this.redis.hset(this.k.job(id), 'cancel', '1');
    await this.redis.publish(this.k.cancel, id);
  }

  async markSucceeded(job: Job, result: JobResult): Promise<boolean> {
    const now = new Date().toISOString();
    const ok = await this.transition(job.id, 'succeeded', ['running'], {
      result: JSON.stringify(result),
      error: null,
      progress: JSON.stringify({ stage: 'done', done: result.slices, total: result.slices }),
      finishedAt: now,
    });
    if (ok) {
      const multi = this.redis.multi().set(this.k.ok(job.request), job.id).hincrby(this.k.stats, 'slices', result.slices);
      for (const [stage, ms] of Object.entries(result.timingsMs))
        multi.hincrbyfloat(this.k.stats, `sum:${stage}`, ms / 1000).hincrby(this.k.stats, `count:${stage}`, 1);
      await multi.exec();
    }
    return ok;
  }

  async publish(job: Job | undefined): Promise<void> {
    if (job) await this.redis.publish(this.k.events, JSON.stringify(job));
  }

  async counts(): Promise<Record<JobState, number>> {
    const pipe = this.redis.pipeline();
    for (const s of STATES) pipe.scard(this.k.state(s));
    const out = (await pipe.exec()) ?? [];
    const counts = emptyCounts();
    STATES.forEach((s, i) => (counts[s] = Number(out[i]?.[1] ?? 0)));
    return counts;
  }

  async stats(): Promise<RunnerStats> {
    const h = await this.redis.hgetall(this.k.stats);
    const stats: RunnerStats = { slices: Number(h.slices ?? 0), stageSeconds: {} };
    for (const [k, v] of Object.entries(h)) {
      const m = /^(sum|count):(.+)$/.exec(k);
      if (!m) continue;
      const s = (stats.stageSeconds[m[2]!] ??= { sum: 0, count: 0 });
      if (m[1] === 'sum') s.sum = Number(v);
      else s.count = Number(v);
    }
    return stats;
  }

  async createBatch(body: unknown): Promise<string> {
    const id = randomUUID();
    await this.redis.hset(this.k.batch(id), 'request', JSON.stringify(body), 'createdAt', new Date().toISOString());
    return id;
  }

  async batch(id: string): Promise<BatchView | undefined> {
    const h = await this.redis.hgetall(this.k.batch(id));
    if (!h.request) return undefined;
    const jobs = await this.getMany(await this.redis.lrange(this.k.batchJobs(id), 0, -1));
    return { id, request: JSON.parse(h.request), createdAt: h.createdAt!, jobs };
  }
}
