/**
 * Stopping under faults (issue 23), with real processes: `ldfsam worker`, `serve --with-worker` and
 * `start` spawned from dist/, a real redis-server (append-only file on) that the test stops (gone)
 * or SIGSTOPs (hung), and an Orthanc of its own behind a pass-through that can hold a frames request
 * unanswered (a PACS that hangs), so that a job is caught mid-fetch at a known point. Checked: the
 * stop ends within the bound whatever Redis and the PACS do, the exit code and the last log line say
 * how, a job interrupted runs exactly once more (one "job started" line in the worker that finishes
 * it, one SEG series of one instance), and nothing is left running or listening.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DicomWebClient } from '../../server/src/dicomweb/client.js';
import { RedisJobQueue } from '../../server/src/jobs/redis/redis-queue.js';
import { silentLogger } from '../../server/src/log.js';
import { loadFiles } from '../../server/src/pacs/load.js';
import { startOrthanc, type OrthancHandle } from '../../server/src/pacs/orthanc.js';
import { projectPath } from '../../server/src/util/paths.js';
import { startTestRedis, type TestRedis } from '../integration/queue-redis-server.js';
import { CT_DIR } from '../setup/data.js';
import { testOrthancSettings } from '../setup/orthanc.js';
import { freePorts } from '../setup/ports.js';
import { uniquified } from './fuzz/run-case.js';
import { record, type Row } from './summary.js';

const MODEL = 'threshold-fixture';
const SLICES = ['I10', 'I30', 'I50', 'I70', 'I90', 'I110', 'I130', 'I150'];
/** The stop bound the processes run with: the default (LDFSAM_STOP_TIMEOUT_MS unset). */
const BOUND_MS = 10_000;
/** A dead worker's job is back in the queue within about 2 s + 1 s. */
const LOCK_MS = 2000;

let work: string;
let orthanc: OrthancHandle;
let pacs: DicomWebClient;
let redis: TestRedis;
let queue: RedisJobQueue | undefined;
/** Each test's Redis database: its own queue, whatever an earlier test left in another. */
let db = 0;
let gate: Awaited<ReturnType<typeof startGate>>;
const spawned: ChildProcess[] = [];
const rows: Row[] = [];

/**
 * A pass-through to Orthanc that, once armed, answers `after` more frames requests and then holds
 * every request unanswered until released (the held connections are then dropped).
 */
async function startGate(target: string) {
  let left: number | undefined;
  const held: Socket[] = [];
  let onHeld: (() => void) | undefined;
  const server = http.createServer((req, res) => {
    if (left !== undefined && (req.url ?? '').includes('/frames/') && left-- <= 0) {
      held.push(req.socket);
      onHeld?.();
      return;
    }
    const t = new URL(target);
    const upstream = http.request(
      // Orthanc's own name as Host: it refuses any other (DNS-rebinding guard).
      { host: t.hostname, port: t.port, path: req.url, method: req.method, headers: { ...req.headers, host: t.host } },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => req.socket.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/dicom-web`,
    /** Holds the frames requests after the next `after`; resolves once one is held. */
    hold(after: number): Promise<void> {
      left = after;
      return new Promise((r) => (onHeld = r));
    },
    release() {
      left = undefined;
      onHeld = undefined;
      for (const s of held.splice(0)) s.destroy();
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

async function storeCopy(n: number): Promise<{ studyInstanceUID: string; seriesInstanceUID: string; model: string }> {
  const files = SLICES.map((f) => ({ name: f, bytes: readFileSync(join(CT_DIR, f)) }));
  // This run's Orthanc is its own: the same UIDs in every run do no harm.
  const copy = uniquified({
    id: `stop-${n}`,
    category: 'byte-flip',
    base: 'ct',
    what: '',
    files,
    mustFail: false,
  });
  const dir = join(work, 'copies', String(n));
  await mkdir(dir, { recursive: true });
  for (const f of copy.files) await writeFile(join(dir, f.name), f.bytes);
  const report = await loadFiles(pacs, [dir]);
  expect(report.series).toHaveLength(1);
  const { studyInstanceUID, seriesInstanceUID } = report.series[0]!;
  return { studyInstanceUID, seriesInstanceUID, model: MODEL };
}

interface Proc {
  child: ChildProcess;
  /** stdout and stderr as they came. */
  out: () => string;
  /** Resolves with the exit code once the process exited. */
  exited: Promise<number | null>;
}

/** Runs the CLI (`dist/`) with the test's Redis, PACS gate and model; resolves once `ready` is printed. */
async function spawnCli(args: string[], ready: RegExp, env: Record<string, string> = {}): Promise<Proc> {
  const child = spawn(process.execPath, [projectPath('dist/server/src/cli/main.js'), ...args], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: work,
      LDFSAM_QUEUE: redis.url(db),
      LDFSAM_DICOMWEB_URL: gate.url,
      LDFSAM_DICOMWEB_AUTHORIZATION: orthanc.authorization,
      LDFSAM_MODEL_DIRS: projectPath('test', 'fixtures', 'model-threshold'),
      LDFSAM_BATCH_SIZE: '1',
      LDFSAM_QUEUE_LOCK_MS: String(LOCK_MS),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  spawned.push(child);
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  await until(`${args[0]} ready`, async () => ready.test(out) || child.exitCode !== null, 60_000);
  if (child.exitCode !== null) throw new Error(`${args.join(' ')} exited ${child.exitCode}:\n${out}`);
  return { child, out: () => out, exited };
}

/** Sends a signal; the exit code and how long the process took to exit. */
async function signal(p: Proc, sig: NodeJS.Signals): Promise<{ code: number | null; ms: number }> {
  const t0 = Date.now();
  p.child.kill(sig);
  const code = await p.exited;
  return { code, ms: Date.now() - t0 };
}

/** The structured log lines (JSON) a process wrote. */
function logLines(p: Proc): { msg: string; jobId?: string; [k: string]: unknown }[] {
  return p
    .out()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string });
}

/** The process exited with `code` within the bound, its last log line `last`; its output if not. */
function expectStopped(p: Proc, stop: { code: number | null; ms: number }, code: number, last: string | RegExp): void {
  const seen = { code: stop.code, inBound: stop.ms < BOUND_MS, last: logLines(p).at(-1)?.msg };
  const want = { code, inBound: true, last: typeof last === 'string' ? last : expect.stringMatching(last) };
  expect(seen, `exited after ${stop.ms} ms:\n${p.out()}`).toEqual(want);
}

const started = (p: Proc, jobId: string) => logLines(p).filter((l) => l.msg === 'job started' && l.jobId === jobId).length;

async function until(what: string, probe: () => Promise<unknown>, timeoutMs = 60_000): Promise<void> {
  for (const end = Date.now() + timeoutMs; !(await probe().catch(() => false)); await sleep(50))
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Submits a job on a fresh series and waits until a worker holds it at a frames request the gate holds. */
async function jobHeldMidFetch(n: number): Promise<{ id: string; study: string }> {
  const request = await storeCopy(n);
  const held = gate.hold(3);
  const { job } = await queue!.submit(request);
  await held;
  expect((await queue!.get(job.id))?.state).toBe('running');
  return { id: job.id, study: request.studyInstanceUID };
}

/** The job ends succeeded and its series has one SEG series holding one instance. */
async function expectDoneOnce(id: string, study: string): Promise<void> {
  await until(`job ${id} succeeded`, async () => (await queue!.get(id))?.state === 'succeeded', 60_000);
  const seg = await pacs.searchForSeries({ studyInstanceUID: study, queryParams: { Modality: 'SEG' } });
  expect(seg).toHaveLength(1);
  const uid = String(seg[0]!['0020000E']!.Value![0]);
  expect(await pacs.searchForInstances({ studyInstanceUID: study, seriesInstanceUID: uid })).toHaveLength(1);
}

async function refused(url: string): Promise<boolean> {
  return fetch(url).then(
    () => false,
    () => true,
  );
}

/** The processes whose parent is `pid` (from /proc: field 4 of /proc/<pid>/stat). */
function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return (
          Number(
            readFileSync(`/proc/${d}/stat`, 'utf8')
              .replace(/^.*\) /s, '')
              .split(' ')[1],
          ) === pid
        );
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ldfsam-stop-'));
  orthanc = await startOrthanc(await testOrthancSettings(join(work, 'pacs')), { detached: false });
  pacs = new DicomWebClient({ url: orthanc.dicomwebUrl, headers: { authorization: orthanc.authorization } });
  gate = await startGate(orthanc.httpUrl);
  redis = await startTestRedis();
}, 120_000);

afterAll(async () => {
  for (const c of spawned) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  redis?.resume();
  await queue?.close();
  await gate?.close();
  orthanc?.child?.kill('SIGKILL');
  await redis?.stop();
  await rm(work, { recursive: true, force: true });
  record(rows);
});

// A test that failed with Redis down or frozen does not fail the next ones too.
afterEach(async () => {
  for (const c of spawned) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  gate.release();
  await redis.ensureUp();
  db++;
});

/** Redis must be up for the test's own queue connection; it is made after each outage. */
async function openQueue(): Promise<void> {
  await queue?.close();
  queue = new RedisJobQueue({ url: redis.url(db), log: silentLogger, pacsMaxJobs: 0, lockMs: LOCK_MS });
  await queue.start();
}

describe('ldfsam worker stopped mid-job', () => {
  const notes: string[] = [];
  afterAll(() =>
    rows.push({
      suite: 'stop',
      category: 'worker (SIGTERM)',
      checked: notes.length,
      passed: notes.length,
      note: notes.join('; '),
    }),
  );

  it('Redis up, PACS hung: exits 75 within the bound, the job back in the queue runs once more elsewhere', async () => {
    await openQueue();
    const a = await spawnCli(['worker', '--provider', 'cpu'], /LDFSAM worker /);
    const { id, study } = await jobHeldMidFetch(1);
    const stop = await signal(a, 'SIGTERM');
    expectStopped(a, stop, 75, 'stopped; 1 job(s) handed back to the queue');
    const back = await queue!.get(id);
    expect(back?.state).toBe('queued');
    expect(back?.attempts).toBe(0);
    gate.release();
    const b = await spawnCli(['worker', '--provider', 'cpu'], /LDFSAM worker /);
    await expectDoneOnce(id, study);
    expect(started(a, id) + started(b, id)).toBe(2);
    expect((await queue!.get(id))?.attempts).toBe(1);
    // Idle, Redis up: a clean stop.
    const idle = await signal(b, 'SIGTERM');
    expectStopped(b, idle, 0, 'stopped cleanly');
    notes.push(`mid-job, Redis up, PACS hung: exit 75 in ${stop.ms} ms, handed back, re-run once: one SEG`);
    notes.push(`idle, Redis up: exit 0 in ${idle.ms} ms`);
  });

  it('Redis gone: exits within the bound; the job is recovered once Redis is back and runs once more; idle too', async () => {
    await openQueue();
    const c = await spawnCli(['worker', '--provider', 'cpu'], /LDFSAM worker /);
    const { id, study } = await jobHeldMidFetch(2);
    await redis.down();
    const stop = await signal(c, 'SIGTERM');
    expectStopped(c, stop, 75, "stopped; 1 job(s) left to the queue's stalled-job recovery (Redis unreachable)");
    gate.release();
    await redis.up();
    await openQueue();
    const d = await spawnCli(['worker', '--provider', 'cpu'], /LDFSAM worker /);
    await expectDoneOnce(id, study);
    expect([started(c, id), started(d, id)]).toEqual([1, 1]);
    // The case: an idle worker, Redis gone, SIGTERM.
    await redis.down();
    await sleep(200);
    const idle = await signal(d, 'SIGTERM');
    expectStopped(d, idle, 0, 'stopped cleanly');
    await redis.up();
    notes.push(`mid-job, Redis gone: exit 75 in ${stop.ms} ms, recovered after Redis came back, re-run once: one SEG`);
    notes.push(`idle, Redis gone: exit 0 in ${idle.ms} ms`);
  });

  it('Redis hung: the bound forces the exit (124); a second signal exits at once (143); each job runs once more', async () => {
    await openQueue();
    const e = await spawnCli(['worker', '--provider', 'cpu'], /LDFSAM worker /, { LDFSAM_STOP_TIMEOUT_MS: '1500' });
    const first = await jobHeldMidFetch(3);
    redis.pause();
    const forced = await signal(e, 'SIGTERM');
    expectStopped(e, forced, 124, /^stop forced after 1.5 s/);
    expect(forced.ms).toBeGreaterThanOrEqual(1500);
    redis.resume();
    gate.release();
    // A worker whose orderly stop would wait for a minute.
    const f = await spawnCli(['worker', '--provider', 'cpu'], /LDFSAM worker /, { LDFSAM_STOP_TIMEOUT_MS: '60000' });
    await expectDoneOnce(first.id, first.study);
    expect([started(e, first.id), started(f, first.id)]).toEqual([1, 1]);
    const second = await jobHeldMidFetch(4);
    redis.pause();
    f.child.kill('SIGTERM');
    await sleep(500);
    expect(f.child.exitCode).toBeNull(); // still stopping: the hand-back waits for Redis
    const atOnce = await signal(f, 'SIGTERM');
    expectStopped(f, atOnce, 143, /^stopped at once by a second signal \(SIGTERM\)/);
    expect(atOnce.ms).toBeLessThan(1000);
    redis.resume();
    gate.release();
    const g = await spawnCli(['worker', '--provider', 'cpu'], /LDFSAM worker /);
    await expectDoneOnce(second.id, second.study);
    expect([started(f, second.id), started(g, second.id)]).toEqual([1, 1]);
    await signal(g, 'SIGKILL');
    notes.push(`Redis hung: forced exit 124 after ${forced.ms} ms (bound 1.5 s), re-run once: one SEG`);
    notes.push(`Redis hung, second SIGTERM: exit 143 in ${atOnce.ms} ms, re-run once: one SEG`);
  });
});

describe('serve --with-worker and start', () => {
  const notes: string[] = [];
  afterAll(() =>
    rows.push({ suite: 'stop', category: 'serve, start', checked: notes.length, passed: notes.length, note: notes.join('; ') }),
  );

  it('serve --with-worker, Redis gone mid-job: exits within the bound, nothing listening; the job runs once more', async () => {
    await openQueue();
    const s = await spawnCli(['serve', '--with-worker', '--port', '0'], /LDFSAM API at (\S+)\/api/);
    const api = /LDFSAM API at (\S+)\/api/.exec(s.out())![1]!;
    const { id, study } = await jobHeldMidFetch(5);
    await redis.down();
    const stop = await signal(s, 'SIGTERM');
    expectStopped(s, stop, 75, "stopped; 1 job(s) left to the queue's stalled-job recovery (Redis unreachable)");
    expect(await refused(`${api}/health`)).toBe(true);
    gate.release();
    await redis.up();
    await openQueue();
    const w = await spawnCli(['worker', '--provider', 'cpu'], /LDFSAM worker /);
    await expectDoneOnce(id, study);
    expect([started(s, id), started(w, id)]).toEqual([1, 1]);
    await signal(w, 'SIGKILL');
    notes.push(`serve --with-worker, Redis gone mid-job: exit 75 in ${stop.ms} ms, port closed, re-run once: one SEG`);
  });

  it('serve, embedded queue, mid-job: exits 75, the job stays queued in the store and runs once at the next start', async () => {
    const env = { LDFSAM_QUEUE: 'sqlite', LDFSAM_DATA_DIR: join(work, 'serve-sqlite') };
    const first = await spawnCli(['serve', '--port', '0'], /LDFSAM API at (\S+)\/api/, env);
    const api = () => /LDFSAM API at (\S+)\/api/.exec(first.out())![1]!;
    const request = await storeCopy(6);
    const held = gate.hold(3);
    const res = await fetch(`${api()}/api/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(request),
    });
    const { jobId } = (await res.json()) as { jobId: string };
    await held;
    const stop = await signal(first, 'SIGTERM');
    expectStopped(first, stop, 75, 'stopped; 1 job(s) handed back to the queue');
    gate.release();
    const again = await spawnCli(['serve', '--port', '0'], /LDFSAM API at (\S+)\/api/, env);
    const url = /LDFSAM API at (\S+)\/api/.exec(again.out())![1]!;
    let job: { state: string; attempts: number } | undefined;
    await until(`job ${jobId}`, async () => {
      job = (await (await fetch(`${url}/api/jobs/${jobId}`)).json()) as typeof job;
      return job?.state === 'succeeded';
    });
    expect(job?.attempts).toBe(1);
    expect([started(first, jobId), started(again, jobId)]).toEqual([1, 1]);
    const seg = await pacs.searchForSeries({ studyInstanceUID: request.studyInstanceUID, queryParams: { Modality: 'SEG' } });
    expect(seg).toHaveLength(1);
    const idle = await signal(again, 'SIGTERM');
    expectStopped(again, idle, 0, 'stopped cleanly');
    notes.push(
      `serve (embedded queue) mid-job: exit 75 in ${stop.ms} ms, job queued in the store, run once at the next start: one SEG`,
    );
  });

  it('start (Redis queue, Redis gone) stopped with SIGINT: exit 0, Orthanc and every child gone, nothing listening', async () => {
    const [httpPort, dicomPort, apiPort] = await freePorts(3);
    const dataDir = join(work, 'start');
    const s = await spawnCli(['start', '--no-sample-data', '--no-demo'], /Press Ctrl-C to stop\./, {
      LDFSAM_DATA_DIR: dataDir,
      LDFSAM_PACS_HTTP_PORT: String(httpPort),
      LDFSAM_PACS_DICOM_PORT: String(dicomPort),
      LDFSAM_PORT: String(apiPort),
    });
    const children = childrenOf(s.child.pid!);
    expect(children.length).toBeGreaterThanOrEqual(1); // Orthanc
    await queue?.close();
    queue = undefined;
    await redis.down();
    const stop = await signal(s, 'SIGINT');
    expect([stop.code, stop.ms < BOUND_MS], s.out()).toEqual([0, true]);
    expect(s.out()).toMatch(/Stopped cleanly \(SIGINT, [\d.]+ s\)\.\n$/);
    expect(children.filter(alive)).toEqual([]);
    for (const port of [httpPort, apiPort]) expect(await refused(`http://127.0.0.1:${port}/`)).toBe(true);
    await redis.up();
    notes.push(`start, SIGINT with Redis gone: exit 0 in ${stop.ms} ms, ${children.length} child process(es) gone, ports closed`);
  });
});
