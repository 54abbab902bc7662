/**
 * Load on loopback: concurrent job submissions, then 50 status requests a second while inference
 * runs (60 s in the full mode, a few seconds in `npm test`). No request may fail, the status p99
 * must stay under 100 ms (full mode; the short run's 200 samples only smoke-test it), the server's
 * memory must stay bounded, and every job must succeed. The server is `ldfsam serve` in a process of
 * its own (so the load generator does not share its event loop), against an Orthanc of its own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DicomWebClient } from '../../server/src/dicomweb/client.js';
import { loadFiles } from '../../server/src/pacs/load.js';
import type { OrthancHandle } from '../../server/src/pacs/orthanc.js';
import { projectPath } from '../../server/src/util/paths.js';
import { SINGLE_DIR } from '../setup/data.js';
import { startTestOrthanc } from '../setup/orthanc.js';
import { freePorts } from '../setup/ports.js';
import { uniquified } from './fuzz/run-case.js';
import { FULL, record } from './summary.js';

const SUBMISSIONS = FULL ? 100 : 20;
const STATUS_SECONDS = FULL ? 60 : 4;
const STATUS_PER_SECOND = 50;
const MODEL = 'threshold-fixture';
/**
 * The latency target, checked by `npm run test:reliability` (the full run, a measurement
 * command). Inside `npm test` the short run only reports its p99 (over 200 samples it is the
 * 2nd-worst answer, and a shared machine moves it by 3x): no timing assertion in the regular tests.
 */
const P99_LIMIT_MS = 100;

let work: string;
let orthanc: OrthancHandle;
let server: { url: string; process: ChildProcess };
const series: { studyInstanceUID: string; seriesInstanceUID: string }[] = [];
let warmUp: (typeof series)[number];

async function api(path: string, init: { method?: string; body?: unknown } = {}) {
  const res = await fetch(`${server.url}${path}`, {
    method: init.method ?? 'GET',
    headers: { 'content-type': 'application/json' },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mb = (n: number) => Math.round(n / 2 ** 20);
/** Resident memory of the server process, bytes (Linux). */
function serverRss(): number {
  const status = readFileSync(`/proc/${server.process.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ldfsam-load-'));
  orthanc = await startTestOrthanc(join(work, 'pacs'));
  // One series per submission (a request for a series already queued returns that job): copies of
  // the JPEG 2000 CT image (107 kB, one 512 x 512 slice) with UIDs of their own.
  const source = readFileSync(join(SINGLE_DIR, '693_J2KR.dcm'));
  const dir = join(work, 'copies');
  await mkdir(dir, { recursive: true });
  for (let i = 0; i <= SUBMISSIONS; i++) {
    const copy = uniquified({
      id: `load-${i}`,
      category: 'byte-flip',
      base: '',
      what: '',
      files: [{ name: 'x', bytes: source }],
      mustFail: false,
    });
    await writeFile(join(dir, `${i}.dcm`), copy.files[0]!.bytes);
  }
  const pacs = new DicomWebClient({ url: orthanc.dicomwebUrl, headers: { authorization: orthanc.authorization } });
  const report = await loadFiles(pacs, [dir]);
  for (const s of report.series) series.push({ studyInstanceUID: s.studyInstanceUID, seriesInstanceUID: s.seriesInstanceUID });
  expect(series).toHaveLength(SUBMISSIONS + 1);
  warmUp = series.pop()!;
  const [port] = await freePorts(1);
  const child = spawn(process.execPath, [projectPath('dist', 'server', 'src', 'cli', 'main.js'), 'serve'], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      LDFSAM_DICOMWEB_URL: orthanc.dicomwebUrl,
      LDFSAM_DICOMWEB_AUTHORIZATION: orthanc.authorization,
      LDFSAM_DATA_DIR: join(work, 'server'),
      LDFSAM_PORT: String(port),
      LDFSAM_MODEL_DIRS: projectPath('test', 'fixtures', 'model-threshold'),
    },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  server = { url: `http://127.0.0.1:${port}`, process: child };
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`ldfsam serve exited (${code})`)));
    child.stdout.on('data', (d: Buffer) => d.toString().includes('LDFSAM API at') && resolve());
  });
}, 180_000);

afterAll(async () => {
  server?.process.kill('SIGTERM');
  orthanc?.child?.kill('SIGTERM');
  await rm(work, { recursive: true, force: true });
});

/** A job ran inside [from, to] (ms since the epoch) if it started before the end and finished after the start. */
function ranWithin(job: { startedAt: string | null; finishedAt: string | null }, from: number, to: number): boolean {
  if (!job.startedAt || !job.finishedAt) return false;
  return Date.parse(job.startedAt) <= to && Date.parse(job.finishedAt) >= from;
}

describe('load', () => {
  it(`${SUBMISSIONS} concurrent submissions, then ${STATUS_PER_SECOND} status requests/s for ${STATUS_SECONDS} s while inference runs`, async () => {
    // One job first, so that the model's worker and the decoder are up before anything is measured.
    const first = await api('/api/jobs', { method: 'POST', body: { ...warmUp, model: MODEL } });
    for (let state = ''; state !== 'succeeded'; await sleep(100)) {
      state = (await api(`/api/jobs/${first.body.jobId}`)).body.state;
      expect(state).not.toBe('failed');
    }
    const rssBefore = serverRss();
    let rssPeak = rssBefore;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, serverRss())), 200);
    try {
      const t0 = performance.now();
      const submitted = await Promise.all(series.map((s) => api('/api/jobs', { method: 'POST', body: { ...s, model: MODEL } })));
      const submitMs = performance.now() - t0;
      expect(submitted.map((r) => r.status)).toEqual(series.map(() => 202));
      const ids = submitted.map((r) => r.body.jobId as string);
      expect(new Set(ids).size).toBe(SUBMISSIONS);

      // Inference must run for the whole window: a job that succeeds is submitted again (force).
      let stop = false;
      let resubmitted = 0;
      const current = [...ids];
      const keepBusy = (async () => {
        while (!stop) {
          await sleep(500);
          // The newest jobs are the ones still queued or running (the list is newest first).
          const states = await api('/api/jobs?limit=10');
          const running = states.body.jobs.filter((j: any) => j.state === 'running' || j.state === 'queued').length;
          if (running > 2) continue;
          for (let i = 0; i < 4 && !stop; i++) {
            const s = series[(resubmitted + i) % series.length]!;
            const r = await api('/api/jobs', { method: 'POST', body: { ...s, model: MODEL, force: true } });
            expect(r.status).toBe(202);
            current.push(r.body.jobId);
          }
          resubmitted += 4;
        }
      })();

      // Open-loop status requests: one every 20 ms whatever the answers take.
      const latencies: number[] = [];
      const failures: string[] = [];
      let running = 0;
      const pending: Promise<void>[] = [];
      const total = STATUS_SECONDS * STATUS_PER_SECOND;
      const start = performance.now();
      const windowFrom = Date.now();
      for (let n = 0; n < total; n++) {
        const due = start + (n * 1000) / STATUS_PER_SECOND;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        const id = current[n % current.length]!;
        pending.push(
          (async () => {
            const t = performance.now();
            try {
              const r = await api(`/api/jobs/${id}`);
              latencies.push(performance.now() - t);
              if (r.status !== 200) failures.push(`${r.status} ${JSON.stringify(r.body)}`);
              else if (r.body.state === 'running') running++;
            } catch (err) {
              failures.push((err as Error).message);
            }
          })(),
        );
      }
      await Promise.all(pending);
      const window = (performance.now() - start) / 1000;
      const windowTo = Date.now();
      stop = true;
      await keepBusy;

      // Every job ends succeeded; its own start and end times say whether it ran inside the window
      // (sampling the job list once a second missed jobs of a few hundred ms on a fast machine).
      let ranInWindow = 0;
      const deadline = Date.now() + 300_000;
      for (;;) {
        const jobs = (await api('/api/jobs?limit=500')).body.jobs as any[];
        const mine = jobs.filter((j) => current.includes(j.id));
        if (mine.every((j) => j.state === 'succeeded' || j.state === 'failed') || Date.now() > deadline) {
          const failed = mine.filter((j) => j.state !== 'succeeded');
          expect(failed.map((j) => `${j.id} ${j.state} ${JSON.stringify(j.error)}`)).toEqual([]);
          ranInWindow = mine.filter((j) => ranWithin(j, windowFrom, windowTo)).length;
          break;
        }
        await sleep(250);
      }
      const sorted = [...latencies].sort((a, b) => a - b);
      const p50 = percentile(sorted, 50);
      const p99 = percentile(sorted, 99);
      const max = sorted.at(-1)!;
      const rssAfter = serverRss();
      const note =
        `${latencies.length} status requests in ${window.toFixed(1)} s (${(latencies.length / window).toFixed(1)}/s), ` +
        `p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${max.toFixed(1)} ms; ${SUBMISSIONS} submissions in ${Math.round(submitMs)} ms; ` +
        `${current.length} jobs succeeded, ${ranInWindow} ran inside the window (${running} answers said running); server RSS ${mb(rssBefore)} -> ${mb(rssAfter)} MB, peak ${mb(rssPeak)} MB`;
      process.stdout.write(`load: ${note}\n`);
      record([
        {
          suite: 'load',
          category: 'concurrent submissions -> 202',
          checked: SUBMISSIONS,
          passed: submitted.filter((r) => r.status === 202).length,
        },
        {
          suite: 'load',
          category: 'status requests while inference runs',
          checked: total,
          passed: total - failures.length,
          note,
        },
        ...(FULL
          ? [{ suite: 'load', category: `status p99 < ${P99_LIMIT_MS} ms`, checked: 1, passed: p99 < P99_LIMIT_MS ? 1 : 0 }]
          : []),
      ]);
      expect(failures).toEqual([]);
      expect(ranInWindow, `inference ran during the measurement: ${note}`).toBeGreaterThan(0);
      if (FULL) expect(p99, note).toBeLessThan(P99_LIMIT_MS);
      expect(mb(rssPeak - rssBefore), note).toBeLessThan(500);
    } finally {
      clearInterval(sampler);
    }
  }, 600_000);
});
