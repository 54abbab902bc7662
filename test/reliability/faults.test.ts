/**
 * Faults against the real stack (server + jobs API + Orthanc of its own, on free ports and its own
 * data folder, so the shared test PACS is not disturbed): Orthanc killed (SIGKILL) and restarted at
 * seeded points while a job fetches and while it stores; and a full disk under the job store (a
 * 1 MB tmpfs; mounting it needs root: as root (as in CI) a failed mount fails the test, without
 * root the test says so and is skipped).
 */
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/src/config.js';
import { DicomWebClient } from '../../server/src/dicomweb/client.js';
import { startServer, type RunningServer } from '../../server/src/http/server.js';
import { silentLogger } from '../../server/src/log.js';
import { loadFiles } from '../../server/src/pacs/load.js';
import { startOrthanc, type OrthancHandle, type OrthancSettings } from '../../server/src/pacs/orthanc.js';
import { projectPath } from '../../server/src/util/paths.js';
import { CT_DIR } from '../setup/data.js';
import { testOrthancSettings } from '../setup/orthanc.js';
import { rng } from './fuzz/cases.js';
import { uniquified } from './fuzz/run-case.js';
import { FULL, record, type Row } from './summary.js';

const SEED = Number(process.env.LDFSAM_FUZZ_SEED ?? 20261130);
const ROUNDS = FULL ? 10 : 2;
const MODEL = 'threshold-fixture';
/** The CT slices each round copies under new UIDs (every other slice: 14 x 512 x 512). */
const SLICES = ['I10', 'I30', 'I50', 'I70', 'I90', 'I110', 'I130', 'I150', 'I170', 'I190', 'I210', 'I230', 'I250', 'I270'];

let work: string;
let settings: OrthancSettings;
let orthanc: OrthancHandle | undefined;
let pacs: DicomWebClient;
const rows: Row[] = [];

async function startPacs(): Promise<void> {
  orthanc = await startOrthanc(settings, { detached: false });
}

async function killPacs(): Promise<void> {
  const child = orthanc?.child;
  orthanc = undefined;
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

/** A copy of the CT slices with UIDs of its own (study, series, instances), stored; its ids. */
async function storeCopy(n: number, slices = SLICES): Promise<{ studyInstanceUID: string; seriesInstanceUID: string }> {
  const files = slices.map((f) => ({ name: f, bytes: readFileSync(join(CT_DIR, f)) }));
  const copy = uniquified({ id: `fault-${SEED}-${n}`, category: 'byte-flip', base: 'ct', what: '', files, mustFail: false });
  const dir = join(work, 'copies', String(n));
  await mkdir(dir, { recursive: true });
  for (const f of copy.files) await writeFile(join(dir, f.name), f.bytes);
  const report = await loadFiles(pacs, [dir]);
  expect(report.series).toHaveLength(1);
  const { studyInstanceUID, seriesInstanceUID } = report.series[0]!;
  return { studyInstanceUID, seriesInstanceUID };
}

async function api(base: string, path: string, init: { method?: string; body?: unknown } = {}) {
  const res = await fetch(`${base}${path}`, {
    method: init.method ?? 'GET',
    headers: { 'content-type': 'application/json' },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function segInstances(study: string): Promise<{ series: number; instances: number }> {
  const series = await pacs.searchForSeries({ studyInstanceUID: study, queryParams: { Modality: 'SEG' } });
  let instances = 0;
  for (const s of series) {
    const uid = (s['0020000E']?.Value?.[0] as string) ?? '';
    instances += (await pacs.searchForInstances({ studyInstanceUID: study, seriesInstanceUID: uid })).length;
  }
  return { series: series.length, instances };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ldfsam-faults-'));
  settings = await testOrthancSettings(join(work, 'pacs'));
  await startPacs();
  pacs = new DicomWebClient({ url: orthanc!.dicomwebUrl, headers: { authorization: orthanc!.authorization } });
}, 120_000);

afterAll(async () => {
  await killPacs();
  await rm(work, { recursive: true, force: true });
  record(rows);
});

/**
 * A pass-through between the server and Orthanc that kills Orthanc at a chosen request: before
 * forwarding it, or after Orthanc answered it (the answer is then lost, as in a crash right after a
 * store). Either way the server sees its connection reset, as with a real crash.
 */
async function startKillSwitch(target: () => string | undefined) {
  let trigger: ((method: string, url: string) => 'before' | 'after' | undefined) | undefined;
  let fired: string | undefined;
  const server = http.createServer((req, res) => {
    const at = trigger?.(req.method ?? '', req.url ?? '');
    if (at) trigger = undefined;
    const base = target();
    if (at === 'before' || !base) {
      if (at) fired = `${at} ${req.method} ${req.url?.replace(/^.*\/(frames|series|studies)\b/, '…/$1')}`;
      if (at) void killPacs();
      return void req.socket.destroy();
    }
    const t = new URL(base);
    const upstream = http.request(
      // Orthanc's own name as Host: it refuses any other (DNS-rebinding guard).
      { host: t.hostname, port: t.port, path: req.url, method: req.method, headers: { ...req.headers, host: t.host } },
      (answer) => {
        const chunks: Buffer[] = [];
        answer.on('data', (c: Buffer) => chunks.push(c));
        answer.on('end', () => {
          if (at === 'after') {
            fired = `after ${req.method} ${req.url?.replace(/^.*\/(frames|series|studies)\b/, '…/$1')} (answered ${answer.statusCode})`;
            void killPacs();
            return void req.socket.destroy();
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.end(Buffer.concat(chunks));
        });
      },
    );
    upstream.on('error', () => req.socket.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    arm(f: typeof trigger) {
      trigger = f;
      fired = undefined;
    },
    fired: () => fired,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

describe('Orthanc killed and restarted mid-job', () => {
  let server: RunningServer;
  let killSwitch: Awaited<ReturnType<typeof startKillSwitch>>;
  beforeAll(async () => {
    killSwitch = await startKillSwitch(() => orthanc?.httpUrl);
    const config = loadConfig({
      env: {},
      flags: {
        dicomwebUrl: `${killSwitch.url}/dicom-web`,
        // The same credentials after every restart: generated once, kept in the data folder.
        dicomwebAuthorization: orthanc!.authorization,
        dataDir: join(work, 'server'),
        modelDirs: [projectPath('test', 'fixtures', 'model-threshold')],
        batchSize: 4,
      },
    });
    server = await startServer({ ...config, port: 0 }, silentLogger, { retryDelayMs: 1000 });
  }, 120_000);
  afterAll(async () => {
    await server?.close();
    await killSwitch?.close();
  });

  it(`${ROUNDS} seeded kills during fetch and during store: succeeded after the PACS returns, or PACS_UNAVAILABLE; never two SEGs`, async () => {
    const outcomes: { category: string; ok: boolean; note: string }[] = [];
    for (let n = 0; n < ROUNDS; n++) {
      const r = rng(SEED + n);
      const during: 'fetch' | 'store' = n % 2 === 0 ? 'fetch' : 'store';
      const ids = await storeCopy(n);
      // Seeded point: the k-th frames request of the job, or its store, before or after Orthanc answered.
      const k = 1 + Math.floor(r() * SLICES.length);
      const when: 'before' | 'after' = during === 'fetch' || r() < 0.5 ? 'before' : 'after';
      let frames = 0;
      killSwitch.arm((method, url) =>
        during === 'fetch'
          ? method === 'GET' && url.includes('/frames/') && ++frames === k
            ? when
            : undefined
          : method === 'POST'
            ? when
            : undefined,
      );
      const down = 300 + Math.floor(r() * 1700);
      const submitted = await api(server.url, '/api/jobs', { method: 'POST', body: { ...ids, model: MODEL } });
      expect(submitted.status).toBe(202);
      const id = submitted.body.jobId as string;
      let job: any;
      let restarted = false;
      for (const end = Date.now() + 120_000; Date.now() < end; await sleep(50)) {
        if (!restarted && killSwitch.fired()) {
          await sleep(down);
          await startPacs();
          restarted = true;
        }
        job = (await api(server.url, `/api/jobs/${id}`)).body;
        if (['succeeded', 'failed', 'cancelled'].includes(job.state)) break;
      }
      if (!restarted) await startPacs().catch(() => undefined);
      const segs = await segInstances(ids.studyInstanceUID);
      const ok =
        killSwitch.fired() !== undefined &&
        ((job.state === 'succeeded' && segs.series === 1 && segs.instances === 1) ||
          (job.state === 'failed' && job.error?.code === 'PACS_UNAVAILABLE' && segs.instances <= 1 && segs.series <= 1));
      outcomes.push({
        category: `kill during ${during}`,
        ok,
        note:
          `killed ${killSwitch.fired() ?? 'never'}${during === 'fetch' ? ` (frames request ${k})` : ''}, down ${down} ms: ${job.state}` +
          `${job.error ? ` ${job.error.code} (${job.error.message})` : ''} after ${job.attempts} attempt(s), SEG ${segs.series}/${segs.instances}`,
      });
      expect(ok, `round ${n} ${outcomes.at(-1)!.note}`).toBe(true);
    }
    for (const category of ['kill during fetch', 'kill during store']) {
      const mine = outcomes.filter((o) => o.category === category);
      rows.push({
        suite: 'faults',
        category,
        checked: mine.length,
        passed: mine.filter((o) => o.ok).length,
        note: mine.map((o) => o.note.replace(/^killed /, '')).join('; '),
      });
    }
  }, 900_000);
});

describe('a full disk under the job store', () => {
  let mount: string | undefined;
  let mountError: string | undefined;
  const root = process.getuid?.() === 0;
  beforeAll(async () => {
    const dir = join(work, 'tmpfs');
    await mkdir(dir, { recursive: true });
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'pipe' });
      mount = dir;
    } catch (err) {
      mountError = `${(err as Error).message}`.trim();
    }
  });
  afterAll(() => {
    if (mount) execFileSync('umount', ['-l', mount], { stdio: 'ignore' });
  });

  it('submissions fail with a clear error, the server keeps serving, and nothing is corrupted', async (ctx) => {
    // As root (as in CI) the mount must work: a check that quietly did not run would read as passed.
    if (!mount && root) throw new Error(`cannot mount the 1 MB tmpfs of the full-disk check as root: ${mountError}`);
    if (!mount) {
      rows.push({
        suite: 'faults',
        category: 'full disk (job store)',
        checked: 0,
        passed: 0,
        note: 'not run: not root, no tmpfs',
      });
      ctx.skip();
    }
    let checked = 0;
    const dataDir = join(mount!, 'data');
    const config = loadConfig({
      env: {},
      flags: {
        dicomwebUrl: orthanc!.dicomwebUrl,
        dicomwebAuthorization: orthanc!.authorization,
        dataDir,
        modelDirs: [projectPath('test', 'fixtures', 'model-threshold')],
      },
    });
    // One-slice series of their own: a request for a series already queued would return that job.
    const series = [];
    series.push(await storeCopy(100)); // 14 slices: still running when the disk fills up
    for (let i = 1; i < 22; i++) series.push(await storeCopy(100 + i, SLICES.slice(0, 1)));
    const ids = series[0]!;
    let server = await startServer({ ...config, port: 0 }, silentLogger, {
      retryDelayMs: 200,
    });
    const accepted: string[] = [];
    const errors: string[] = [];
    let runningJob: string;
    try {
      const first = await api(server.url, '/api/jobs', { method: 'POST', body: { ...ids, model: MODEL } });
      expect(first.status).toBe(202);
      accepted.push(first.body.jobId);
      // Fill the disk.
      let k = 0;
      for (const size of [64 * 1024, 4096, 512, 1]) {
        try {
          for (;;) writeFileSync(join(mount!, `filler-${k++}`), Buffer.alloc(size, 1));
        } catch (err) {
          expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
        }
      }
      for (let i = 0; i < 20; i++) {
        const r = await api(server.url, '/api/jobs', { method: 'POST', body: { ...series[i + 1]!, model: MODEL } });
        if (r.status === 202) accepted.push(r.body.jobId);
        else {
          expect(r.status, JSON.stringify(r.body)).toBe(507);
          expect(r.body.error.code).toBe('STORAGE_FULL');
          errors.push(`${r.status} ${r.body.error.code}: ${r.body.error.message}`);
        }
        checked++; // a submission while full: accepted, or refused with STORAGE_FULL
      }
      // The job that was running when the disk filled up ends (it is not left "running"), and the
      // server keeps answering; every accepted job is still known.
      // Its outcome cannot be written while the disk is full: it ends, or stays "running" on disk (a
      // restart re-queues it, checked below); either way the server does not go down.
      let firstJob: any;
      const since = Date.now();
      for (const end = Date.now() + 5_000; Date.now() < end; await sleep(100)) {
        firstJob = (await api(server.url, `/api/jobs/${first.body.jobId}`)).body;
        if (['succeeded', 'failed'].includes(firstJob.state)) break;
      }
      runningJob = `${firstJob.state}${firstJob.error ? ` ${firstJob.error.code}` : ''} after ${Math.round((Date.now() - since) / 1000)} s`;
      expect((await api(server.url, '/health')).status).toBe(200);
      for (const id of accepted) expect((await api(server.url, `/api/jobs/${id}`)).status).toBe(200);
      // Space again: the server works without a restart.
      for (let i = 0; i < k; i++) await rm(join(mount!, `filler-${i}`), { force: true });
      const again = await api(server.url, '/api/jobs', { method: 'POST', body: { ...series[21]!, model: MODEL } });
      expect(again.status).toBe(202);
      accepted.push(again.body.jobId);
      for (const end = Date.now() + 60_000; Date.now() < end; await sleep(100)) {
        const j = (await api(server.url, `/api/jobs/${again.body.jobId}`)).body;
        if (j.state === 'succeeded') break;
      }
      const done = (await api(server.url, `/api/jobs/${again.body.jobId}`)).body;
      expect(done.state, JSON.stringify(done.error)).toBe('succeeded');
      checked++; // the job submitted after space came back
    } finally {
      await server.close();
    }
    // Nothing corrupted: SQLite's own check, and a restarted server knows every accepted job.
    const db = new Database(join(dataDir, 'jobs.sqlite'), { readonly: true });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    db.close();
    checked++; // the store's integrity
    server = await startServer({ ...config, port: 0 }, silentLogger);
    try {
      for (const id of accepted) expect((await api(server.url, `/api/jobs/${id}`)).status).toBe(200);
      // Every accepted job ends succeeded (one left "running" by the full disk is re-queued at start).
      for (const id of accepted) {
        let j: any;
        for (const end = Date.now() + 60_000; Date.now() < end; await sleep(100)) {
          j = (await api(server.url, `/api/jobs/${id}`)).body;
          if (['succeeded', 'failed'].includes(j.state)) break;
        }
        expect(j.state, `${id} ${JSON.stringify(j.error)}`).toBe('succeeded');
        checked++; // an accepted job, finished after the restart
      }
    } finally {
      await server.close();
    }
    rows.push({
      suite: 'faults',
      category: 'full disk (job store)',
      checked,
      passed: checked, // every check above is an assertion: the row is only written when all held
      note: `checks: 20 submissions while full, 1 after, the store's integrity, ${accepted.length} accepted jobs finished after a restart; ${errors.length} refused while full (${[...new Set(errors)].join(' | ').slice(0, 300)}), ${accepted.length} accepted; the job running meanwhile: ${runningJob}; integrity ok`,
    });
  }, 300_000);
});
