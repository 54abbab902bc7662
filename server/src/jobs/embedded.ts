/** The embedded queue (the default): the SQLite store and the runner, in the server process. */
import { hostname } from 'node:os';
import type { JobRunner } from './runner.js';
import type { JobStore } from './store.js';
import type { BatchView, JobQueue, QueueInfo, RunnerStats, StopReport } from './queue.js';
import type { Job, JobRequest, JobState } from './types.js';

export class EmbeddedQueue implements JobQueue {
  readonly backend = 'sqlite' as const;
  private readonly startedAt = new Date().toISOString();

  constructor(
    private readonly store: JobStore,
    private readonly runner: JobRunner,
    private readonly worker: { provider: string; concurrency: number; pacsMaxJobs: number },
  ) {}

  async start(): Promise<void> {
    this.runner.start();
  }

  async close(): Promise<StopReport> {
    const { handedBack } = await this.runner.stop();
    this.store.close();
    return { handedBack, left: [] };
  }

  async submit(request: JobRequest, options: { force?: boolean; priority?: number } = {}) {
    return this.runner.submit(request, options);
  }

  async submitBatch(body: unknown, requests: JobRequest[], options: { force?: boolean } = {}) {
    const fresh = requests.filter((r) => !this.store.active(r) && (options.force || !this.store.lastFinished(r)));
    const { batchId, jobs } = this.store.insertBatch(
      body,
      fresh.map((request) => ({ request })),
      0,
    );
    this.runner.notify(jobs);
    return { batchId, jobs };
  }

  async get(id: string): Promise<Job | undefined> {
    return this.store.get(id);
  }

  async recent(limit: number): Promise<Job[]> {
    return this.store.recent(limit);
  }

  async batch(id: string): Promise<BatchView | undefined> {
    const batch = this.store.batch(id);
    return batch ? { ...batch, jobs: this.store.jobsOfBatch(id) } : undefined;
  }

  async cancel(id: string): Promise<Job> {
    return this.runner.cancel(id);
  }

  subscribe(id: string, listener: (job: Job) => void): () => void {
    return this.runner.subscribe(id, listener);
  }

  async counts(): Promise<Record<JobState, number>> {
    return this.store.counts();
  }

  async stats(): Promise<RunnerStats> {
    return this.runner.stats;
  }

  async info(): Promise<QueueInfo> {
    const c = this.store.counts();
    const active = this.store.recent(500).filter((j) => j.state === 'running');
    return {
      backend: 'sqlite',
      counts: { waiting: c.queued, delayed: 0, active: c.running, completed: c.succeeded, failed: c.failed },
      workers: [
        {
          id: `embedded@${hostname()}`,
          host: hostname(),
          pid: process.pid,
          provider: this.worker.provider,
          device: null,
          concurrency: this.worker.concurrency,
          active: active.map((j) => j.id),
          processed: c.succeeded + c.failed,
          startedAt: this.startedAt,
          seenAt: new Date().toISOString(),
        },
      ],
      pacs: { maxJobs: this.worker.pacsMaxJobs, inUse: c.running },
    };
  }
}
