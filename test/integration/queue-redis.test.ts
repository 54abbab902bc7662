/**
 * The Redis queue with real `ldfsam worker` processes, a real redis-server (append-only file on) and
 * the test PACS: a batch of 24 jobs on 2 workers, a worker SIGKILLed mid-job, Redis restarted
 * mid-batch, interactive jobs before batch jobs, and the global PACS limit. The series are copies of
 * 8 slices of the shared CT with new UIDs, made here, so no other test file segments them.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/src/config.js';
import { startServer, type RunningServer } from '../../server/src/http/server.js';
import { silentLogger } from '../../server/src/log.js';
import { projectPath } from '../../server/src/util/paths.js';
import { runCli } from '../setup/cli.js';
import { CT_DIR } from '../setup/data.js';
import { pacsClient, pacsEnv, provided } from '../setup/provided.js';
import { runPython, venvPython } from '../setup/python.js';
import { recordCommands, startTestRedis, type TestRedis } from './queue-redis-server.js';

const { dicomwebUrl, pacsAuthorization } = provided();
const pacs = pacsClient();
const SERIES = 24;
/** Worker lock: a dead worker's job is taken over within about 4 s + 2 x 2 s. */
const LOCK_MS = 4000;

let work: string;
let redis: TestRedis;
let server: RunningServer;
let series: { studyInstanceUID: string; seriesInstanceUID: string }[];
const workers: Worker[] = [];

interface Worker {
  child: ChildProcess;
  id: string;
  log: string[];
}

/** Copies of the first 8 CT slices: one new study and series per copy, new SOP Instance UIDs. */
const COPY_SERIES = `
import os, sys, pydicom
from pydicom.uid import generate_uid
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = sorted(f for f in os.listdir(src) if f != 'DIRFILE')[:8]
for i in range(n):
    study, series = generate_uid(), generate_uid()
    os.makedirs(os.path.join(out, f'{i:02d}'))
    for j, f in enumerate(files):
        ds = pydicom.dcmread(os.path.join(src, f))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PatientID, ds.SeriesDescription = f'QUEUE-{i:02d}', 'queue test copy'
        ds.save_as(os.path.join(out, f'{i:02d}', f'{j:03d}.dcm'))
`;

function spawnWorker(env: Record<string, string> = {}): Promise<Worker> {
  const child = spawn(process.execPath, [projectPath('dist/server/src/cli/main.js'), 'worker', '--provider', 'cpu'], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: work,
      LDFSAM_QUEUE: redis.url(),
      LDFSAM_DICOMWEB_URL: dicomwebUrl,
      ...pacsEnv(),
      LDFSAM_MODEL_DIRS: join(work, 'models'),
      LDFSAM_BATCH_SIZE: '1',
      LDFSAM_QUEUE_LOCK_MS: String(LOCK_MS),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: string[] = [];
  child.stderr.on('data', (d: Buffer) => log.push(d.toString()));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /LDFSAM worker (\S+) /.exec(out);
      if (m) {
        const w = { child, id: m[1]!, log };
        workers.push(w);
        resolve(w);
      }
    });
    child.once('exit', (code) => reject(new Error(`worker exited ${code}: ${log.join('')}`)));
  });
}

async function stopWorker(w: Worker, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (w.child.exitCode !== null || w.child.signalCode !== null) return;
  const exited = new Promise((r) => w.child.once('exit', r));
  w.child.kill(signal);
  await exited;
}

/** A call that tolerates the moments Redis is down (the API answers 500 then). */
async function call(path: string, init: { method?: string; body?: unknown } = {}): Promise<any> {
  const res = await fetch(`${server.url}${path}`, {
    method: init.method ?? 'GET',
    headers: { 'content-type': 'application/json' },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const body = (await res.json()) as any;
  if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 180_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const batchDone = (batchId: string, timeoutMs?: number) =>
  until(
    `batch ${batchId}`,
    async () => {
      const b = await call(`/api/batches/${batchId}`);
      return b.done ? b : undefined;
    },
    timeoutMs,
  );

/** Every series has exactly one SEG series holding exactly one instance. */
async function expectOneSegEach(of: typeof series): Promise<void> {
  for (const s of of) {
    const seg = await pacs.searchForSeries({ studyInstanceUID: s.studyInstanceUID, queryParams: { Modality: 'SEG' } });
    expect(seg, s.studyInstanceUID).toHaveLength(1);
    const uid = String(seg[0]!['0020000E']!.Value![0]);
    expect(await pacs.searchForInstances({ studyInstanceUID: s.studyInstanceUID, seriesInstanceUID: uid })).toHaveLength(1);
  }
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ldfsam-queue-'));
  // The random-weight model (~25 ms a slice) makes jobs long enough to be caught running.
  await runPython('test/tools/export_with_reference.py', ['--config', 'tiny', '--out', join(work, 'models', 'random-tiny')]);
  await writeFile(join(work, 'copy_series.py'), COPY_SERIES);
  await promisify(execFile)(venvPython(), [join(work, 'copy_series.py'), CT_DIR, join(work, 'series'), String(SERIES)]);
  const loaded = await runCli(['pacs', 'load', '--json', '--dicomweb', dicomwebUrl, join(work, 'series')], pacsEnv());
  series = (JSON.parse(loaded.stdout) as { series: typeof series }).series
    .map(({ studyInstanceUID, seriesInstanceUID }) => ({ studyInstanceUID, seriesInstanceUID }))
    .sort((a, b) => a.studyInstanceUID.localeCompare(b.studyInstanceUID));
  expect(series).toHaveLength(SERIES);
  redis = await startTestRedis();
  const config = loadConfig({
    env: {},
    flags: {
      dicomwebUrl,
      dicomwebAuthorization: pacsAuthorization,
      dataDir: join(work, 'data'),
      modelDirs: [join(work, 'models')],
      queue: redis.url(),
    },
  });
  // The API alone: with LDFSAM_QUEUE set, `serve` runs no inference unless --with-worker.
  server = await startServer({ ...config, port: 0 }, silentLogger);
}, 240_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => stopWorker(w, 'SIGKILL')));
  await server?.close();
  await redis?.stop();
  await rm(work, { recursive: true, force: true });
});

describe('the Redis queue with ldfsam worker processes', () => {
  it('2 workers finish a batch of 24 jobs, one SEG per series; a worker SIGKILLed mid-job loses its job to the other', async () => {
    const [a, b] = await Promise.all([spawnWorker(), spawnWorker()]);
    const queue = await call('/api/queue');
    expect(queue.workers.map((w: { id: string }) => w.id).sort()).toEqual([a.id, b.id].sort());
    expect(queue.workers[0]).toMatchObject({ provider: 'cpu', device: null, concurrency: 1 });
    const started = Date.now();
    const accepted = await call('/api/batches', {
      method: 'POST',
      body: { studies: series.map((s) => s.studyInstanceUID), model: 'random-tiny' },
    });
    expect(accepted.jobs).toBe(SERIES);
    // Kill worker a once it has finished a job and is inside the next one.
    const victim = await until('a job running on worker a', async () => {
      const jobs = (await call(`/api/batches/${accepted.batchId}`)).jobs as any[];
      if (!jobs.some((j) => j.state === 'succeeded' && j.worker === a.id)) return undefined;
      return jobs.find(
        (j) => j.state === 'running' && j.worker === a.id && j.progress?.stage === 'infer' && j.progress.done >= 1,
      );
    });
    await stopWorker(a, 'SIGKILL');
    const batch = await batchDone(accepted.batchId);
    const seconds = (Date.now() - started) / 1000;
    expect(batch.counts).toEqual({ queued: 0, running: 0, succeeded: SERIES, failed: 0, cancelled: 0 });
    const taken = batch.jobs.find((j: any) => j.id === victim.id);
    expect(taken).toMatchObject({ state: 'succeeded', worker: b.id, result: { status: 'stored', frames: expect.any(Number) } });
    expect(taken.attempts).toBeGreaterThanOrEqual(2);
    expect(new Set(batch.jobs.map((j: any) => j.worker))).toEqual(new Set([a.id, b.id]));
    await expectOneSegEach(series);
    console.log(`queue-redis: ${SERIES} jobs in ${seconds.toFixed(1)} s with 2 workers, one SIGKILLed mid-job`);
  }, 300_000);

  it('Redis restarted mid-batch (append-only file): the batch completes, nothing stored twice', async () => {
    await spawnWorker();
    const half = series.slice(0, 12);
    const accepted = await call('/api/batches', {
      method: 'POST',
      body: { studies: half.map((s) => s.studyInstanceUID), model: 'random-tiny', force: true },
    });
    expect(accepted.jobs).toBe(12);
    const before = await until('3 jobs done', async () => {
      const b = await call(`/api/batches/${accepted.batchId}`);
      return b.counts.succeeded >= 3 && b;
    });
    await redis.restart();
    expect(before.counts.succeeded).toBeLessThan(12);
    const batch = await batchDone(accepted.batchId);
    expect(batch.counts).toEqual({ queued: 0, running: 0, succeeded: 12, failed: 0, cancelled: 0 });
    // Re-runs of the same model send the same SEG instance: the PACS keeps one.
    await expectOneSegEach(half);
  }, 300_000);

  it('interactive jobs overtake queued batch jobs', async () => {
    const [batchSeries, interactive] = [series.slice(0, 12), series[SERIES - 1]!];
    const accepted = await call('/api/batches', {
      method: 'POST',
      body: { studies: batchSeries.map((s) => s.studyInstanceUID), model: 'random-tiny', force: true },
    });
    await until('batch jobs running', async () => (await call(`/api/batches/${accepted.batchId}`)).counts.running >= 1);
    const job = await call('/api/jobs', { method: 'POST', body: { ...interactive, model: 'random-tiny', force: true } });
    const batch = await batchDone(accepted.batchId);
    const mine = await call(`/api/jobs/${job.jobId}`);
    expect(mine.state).toBe('succeeded');
    const startedBefore = batch.jobs.filter((j: any) => j.startedAt < mine.startedAt).length;
    // Only the batch jobs already running (2 workers) or starting at that moment went first.
    expect(startedBefore).toBeLessThanOrEqual(4);
  }, 300_000);

  it('LDFSAM_PACS_MAX_JOBS=1 keeps one job at a time on the PACS over all workers', async () => {
    await Promise.all(workers.map((w) => stopWorker(w)));
    await Promise.all([1, 2].map(() => spawnWorker({ LDFSAM_PACS_MAX_JOBS: '1', LDFSAM_JOB_CONCURRENCY: '2' })));
    const some = series.slice(12, 18);
    const { commands, stop } = await recordCommands(redis.url());
    const accepted = await call('/api/batches', {
      method: 'POST',
      body: { studies: some.map((s) => s.studyInstanceUID), model: 'random-tiny', force: true },
    });
    let most = 0;
    for (;;) {
      const b = await call(`/api/batches/${accepted.batchId}`);
      most = Math.max(most, b.counts.running);
      if (b.done) {
        expect(b.counts.succeeded).toBe(6);
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(most).toBe(1);
    stop();
    // Each job's slot is given back before its final state is written: a job seen final holds none.
    const finals = commands.flatMap((c, i) =>
      c[0] === 'hset' && c[c.indexOf('state') + 1] === 'succeeded' ? [{ at: i, jobId: c[1]!.split(':job:')[1]! }] : [],
    );
    expect(finals).toHaveLength(6);
    for (const { at, jobId } of finals) {
      const released = commands.findIndex((c) => c[0] === 'zrem' && c[1]!.endsWith(':pacs-slots') && c[2] === jobId);
      expect(released, jobId).toBeGreaterThanOrEqual(0);
      expect(released, jobId).toBeLessThan(at);
    }
  }, 300_000);

  // The README's figures: LDFSAM_QUEUE_BENCH=1 npx vitest run --project integration test/integration/queue-redis.test.ts
  it.runIf(process.env.LDFSAM_QUEUE_BENCH)(
    'measures jobs per minute with 1 and 2 workers',
    async () => {
      await Promise.all(workers.map((w) => stopWorker(w)));
      const run = async (studies: typeof series) => {
        const t0 = Date.now();
        const { batchId } = await call('/api/batches', {
          method: 'POST',
          body: { studies: studies.map((s) => s.studyInstanceUID), model: 'random-tiny', force: true },
        });
        const b = await batchDone(batchId, 600_000);
        expect(b.counts.succeeded).toBe(studies.length);
        return (Date.now() - t0) / 1000;
      };
      for (const n of [1, 2]) {
        while (workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null).length < n)
          await spawnWorker({ LDFSAM_BATCH_SIZE: '4' });
        await run(series.slice(0, n)); // warm-up: every worker opens its session
        const seconds = await run(series);
        console.log(
          `queue-redis bench: ${n} worker(s): ${SERIES} jobs (8 slices of 512x512, random-tiny, batch 4) in ${seconds.toFixed(1)} s = ${((SERIES / seconds) * 60).toFixed(1)} jobs/min`,
        );
      }
    },
    1_200_000,
  );
});
