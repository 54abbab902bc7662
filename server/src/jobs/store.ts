/**
 * The embedded job store: SQLite (better-sqlite3 12; 13 needs Node 22) in the data folder, WAL mode.
 * Every accepted job is written before the API answers, so nothing accepted is lost; a restart
 * re-queues what was running.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { LdfsamError } from '../errors.js';
import { requestKey, type Job, type JobProgress, type JobRequest, type JobResult, type JobState } from './types.js';

interface Row {
  id: string;
  batch_id: string | null;
  state: JobState;
  request: string;
  request_key: string;
  priority: number;
  progress: string | null;
  result: string | null;
  error: string | null;
  attempts: number;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  finished_at: string | null;
  seq: number;
}

export interface BatchRow {
  id: string;
  request: unknown;
  createdAt: string;
}

const toJob = (r: Row): Job => ({
  id: r.id,
  batchId: r.batch_id,
  state: r.state,
  request: JSON.parse(r.request) as JobRequest,
  priority: r.priority,
  progress: r.progress ? (JSON.parse(r.progress) as JobProgress) : null,
  result: r.result ? (JSON.parse(r.result) as JobResult) : null,
  error: r.error ? (JSON.parse(r.error) as { code: string; message: string }) : null,
  attempts: r.attempts,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  startedAt: r.started_at,
  finishedAt: r.finished_at,
});

export class JobStore {
  private readonly db: Database.Database;

  constructor(path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    try {
      this.db = new Database(path);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.exec(`
        CREATE TABLE IF NOT EXISTS jobs (
          seq INTEGER PRIMARY KEY AUTOINCREMENT,
          id TEXT UNIQUE NOT NULL,
          batch_id TEXT,
          state TEXT NOT NULL,
          request TEXT NOT NULL,
          request_key TEXT NOT NULL,
          priority INTEGER NOT NULL DEFAULT 0,
          progress TEXT, result TEXT, error TEXT,
          attempts INTEGER NOT NULL DEFAULT 0,
          not_before TEXT,
          created_at TEXT NOT NULL, updated_at TEXT NOT NULL, started_at TEXT, finished_at TEXT
        );
        CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, priority, seq);
        CREATE INDEX IF NOT EXISTS jobs_key ON jobs(request_key, state);
        CREATE INDEX IF NOT EXISTS jobs_batch ON jobs(batch_id);
        CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, request TEXT NOT NULL, created_at TEXT NOT NULL);
      `);
    } catch (err) {
      throw new LdfsamError('CONFIG_INVALID', `cannot open the job store ${path}: ${(err as Error).message}`);
    }
  }

  close(): void {
    this.db.close();
  }

  /** The queued or running job for the same request, if any (idempotent submission). */
  active(request: JobRequest): Job | undefined {
    const row = this.db
      .prepare(`SELECT * FROM jobs WHERE request_key = ? AND state IN ('queued', 'running') ORDER BY seq LIMIT 1`)
      .get(requestKey(request)) as Row | undefined;
    return row ? toJob(row) : undefined;
  }

  /** The last finished job for the same request (a finished one is reused unless forced). */
  lastFinished(request: JobRequest): Job | undefined {
    const row = this.db
      .prepare(`SELECT * FROM jobs WHERE request_key = ? AND state = 'succeeded' ORDER BY seq DESC LIMIT 1`)
      .get(requestKey(request)) as Row | undefined;
    return row ? toJob(row) : undefined;
  }

  insert(request: JobRequest, options: { batchId?: string; priority?: number } = {}): Job {
    const now = new Date().toISOString();
    const id = randomUUID();
    this.db
      .prepare(
        `INSERT INTO jobs (id, batch_id, state, request, request_key, priority, created_at, updated_at) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)`,
      )
      .run(id, options.batchId ?? null, JSON.stringify(request), requestKey(request), options.priority ?? 0, now, now);
    return this.get(id)!;
  }

  insertBatch(request: unknown, jobs: { request: JobRequest }[], priority = 0): { batchId: string; jobs: Job[] } {
    const batchId = randomUUID();
    const tx = this.db.transaction(() => {
      this.db
        .prepare('INSERT INTO batches (id, request, created_at) VALUES (?, ?, ?)')
        .run(batchId, JSON.stringify(request), new Date().toISOString());
      return jobs.map((j) => this.insert(j.request, { batchId, priority }));
    });
    return { batchId, jobs: tx() };
  }

  get(id: string): Job | undefined {
    const row = this.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as Row | undefined;
    return row ? toJob(row) : undefined;
  }

  batch(id: string): BatchRow | undefined {
    const row = this.db.prepare('SELECT * FROM batches WHERE id = ?').get(id) as
      { id: string; request: string; created_at: string } | undefined;
    return row ? { id: row.id, request: JSON.parse(row.request), createdAt: row.created_at } : undefined;
  }

  jobsOfBatch(batchId: string): Job[] {
    return (this.db.prepare('SELECT * FROM jobs WHERE batch_id = ? ORDER BY seq').all(batchId) as Row[]).map(toJob);
  }

  recent(limit = 50): Job[] {
    return (this.db.prepare('SELECT * FROM jobs ORDER BY seq DESC LIMIT ?').all(limit) as Row[]).map(toJob);
  }

  /** Claims the next queued job (interactive first, then submission order) and marks it running. */
  claimNext(): Job | undefined {
    const tx = this.db.transaction(() => {
      const now = new Date().toISOString();
      const row = this.db
        .prepare(
          `SELECT * FROM jobs WHERE state = 'queued' AND (not_before IS NULL OR not_before <= ?) ORDER BY priority DESC, seq LIMIT 1`,
        )
        .get(now) as Row | undefined;
      if (!row) return undefined;
      this.db
        .prepare(
          `UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?, updated_at = ?, error = NULL WHERE id = ?`,
        )
        .run(now, now, row.id);
      return this.get(row.id);
    });
    return tx();
  }

  progress(id: string, progress: JobProgress): void {
    // Progress is not worth an fsync: under load, the fsync of every progress write was the largest
    // stall of the server's thread (status p99 in test/reliability/load). In WAL mode such a commit is
    // still atomic, and the next FULL commit (a submission, a job's end) makes it durable too.
    this.db.pragma('synchronous = NORMAL');
    try {
      this.db
        .prepare('UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ?')
        .run(JSON.stringify(progress), new Date().toISOString(), id);
    } finally {
      this.db.pragma('synchronous = FULL');
    }
  }

  finish(
    id: string,
    state: Exclude<JobState, 'queued' | 'running'>,
    outcome: { result?: JobResult; error?: { code: string; message: string } },
  ): Job {
    const now = new Date().toISOString();
    this.db
      .prepare('UPDATE jobs SET state = ?, result = ?, error = ?, finished_at = ?, updated_at = ? WHERE id = ?')
      .run(
        state,
        outcome.result ? JSON.stringify(outcome.result) : null,
        outcome.error ? JSON.stringify(outcome.error) : null,
        now,
        now,
        id,
      );
    return this.get(id)!;
  }

  /** Back to the queue (a retryable fault, or a restart found it running). */
  requeue(id: string, error?: { code: string; message: string }, delayMs = 0): void {
    const now = Date.now();
    this.db
      .prepare(`UPDATE jobs SET state = 'queued', error = ?, not_before = ?, updated_at = ? WHERE id = ?`)
      .run(
        error ? JSON.stringify(error) : null,
        delayMs > 0 ? new Date(now + delayMs).toISOString() : null,
        new Date(now).toISOString(),
        id,
      );
  }

  /** Puts a running job back in the queue (its worker stops) without counting the attempt; says whether it was running. */
  handBack(id: string): boolean {
    return (
      this.db
        .prepare(
          `UPDATE jobs SET state = 'queued', attempts = MAX(attempts - 1, 0), not_before = NULL, updated_at = ? WHERE id = ? AND state = 'running'`,
        )
        .run(new Date().toISOString(), id).changes > 0
    );
  }

  /** Cancels a queued job at once; says whether it was queued. */
  cancelQueued(id: string): boolean {
    const now = new Date().toISOString();
    return (
      this.db
        .prepare(`UPDATE jobs SET state = 'cancelled', finished_at = ?, updated_at = ? WHERE id = ? AND state = 'queued'`)
        .run(now, now, id).changes > 0
    );
  }

  /** Jobs left running by a process that stopped: back to the queue. */
  recoverRunning(): number {
    return this.db
      .prepare(`UPDATE jobs SET state = 'queued', updated_at = ? WHERE state = 'running'`)
      .run(new Date().toISOString()).changes;
  }

  counts(): Record<JobState, number> {
    const out: Record<JobState, number> = { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
    for (const r of this.db.prepare('SELECT state, COUNT(*) AS n FROM jobs GROUP BY state').all() as {
      state: JobState;
      n: number;
    }[])
      out[r.state] = r.n;
    return out;
  }
}
