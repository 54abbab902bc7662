/**
 * The local default's side doors, checked with real processes as an attacker would: `ldfsam serve` as
 * a user starts it (loopback, no tokens, the embedded PACS's credentials read from the data
 * folder) and the embedded Orthanc started by the project's own code.
 *
 * - DNS rebinding (a page on attacker.example re-pointed at 127.0.0.1 sends `Host:
 *   attacker.example:<port>`): every route group of the server and the proxy answer 421, a foreign
 *   Origin cannot submit; the embedded Orthanc answers 401 without its credentials and 403 with
 *   them, and nothing changes in it.
 * - DICOM: with no peers configured the port is closed; with peers, only those (AE title + address)
 *   may associate: C-ECHO and C-STORE (dcmtk echoscu/storescu) from an unknown AE, from a known AE
 *   at another address, or to another called AE are refused, from a configured one accepted.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DicomWebClient } from '../../server/src/dicomweb/client.js';
import { openapi } from '../../server/src/http/openapi.js';
import { loadFiles } from '../../server/src/pacs/load.js';
import { startOrthanc, type OrthancHandle } from '../../server/src/pacs/orthanc.js';
import { projectPath } from '../../server/src/util/paths.js';
import { ctFiles, singleImages } from '../setup/data.js';
import { startTestOrthanc, testOrthancSettings, type TestOrthancSettings } from '../setup/orthanc.js';
import { freePorts } from '../setup/ports.js';
import { record, type Row } from './summary.js';

const exec = promisify(execFile);
const JOB = '00000000-0000-4000-8000-000000000000';
const PEERS = [
  { aet: 'KNOWN-SCU', host: '127.0.0.1', port: 11112 },
  // A known AE title, but configured at another address than the one it calls from.
  { aet: 'ELSEWHERE', host: '127.0.0.2', port: 104 },
];

let work: string;
/** The embedded PACS with DICOM peers configured (its HTTP side is the one `serve` uses). */
let pacs: OrthancHandle;
/** The embedded PACS as started by default: no peers, so no DICOM port. */
let closed: OrthancHandle;
let closedSettings: TestOrthancSettings;
let client: DicomWebClient;
let server: { url: string; port: number; process: ChildProcess };
let study: { studyInstanceUID: string; seriesInstanceUID: string };
const rows: Row[] = [];

interface Answer {
  status: number;
  text: string;
}

/** One request exactly as a browser on the rebinding page would send it: any Host, any Origin. */
function send(
  url: string,
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, path, method: init.method ?? 'GET', headers: init.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('error', reject);
    req.end(init.body);
  });
}

/** A dcmtk tool's outcome: exit status and what it printed. */
async function dcmtk(tool: string, args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await exec(tool, args, { timeout: 30_000 });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (e.code === 'ENOENT') throw new Error(`${tool} is missing: install dcmtk (npm run setup)`, { cause: err });
    return { code: typeof e.code === 'number' ? e.code : 1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ldfsam-side-doors-'));
  closedSettings = await testOrthancSettings(join(work, 'default'));
  [pacs, closed] = await Promise.all([
    startTestOrthanc(join(work, 'data'), PEERS),
    startOrthanc(closedSettings, { detached: false }),
  ]);
  client = new DicomWebClient({ url: pacs.dicomwebUrl, headers: { authorization: pacs.authorization } });
  const loaded = await loadFiles(client, ctFiles().slice(0, 2));
  study = loaded.series[0]!;
  const [port] = await freePorts(1);
  // `ldfsam serve` as a user runs it after `ldfsam pacs start`: same data folder, the PACS's port,
  // nothing about the PACS's URL or credentials (it finds them itself).
  const child = spawn(process.execPath, [projectPath('dist', 'server', 'src', 'cli', 'main.js'), 'serve'], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: work,
      LDFSAM_DATA_DIR: join(work, 'data'),
      LDFSAM_PACS_HTTP_PORT: String(new URL(pacs.httpUrl).port),
      LDFSAM_PORT: String(port),
      LDFSAM_MODEL_DIRS: projectPath('test', 'fixtures', 'model-threshold'),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server = { url: `http://127.0.0.1:${port}`, port: port!, process: child };
  let log = '';
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`ldfsam serve exited (${code}): ${log}`)));
    child.stdout.on('data', (d: Buffer) => d.toString().includes('LDFSAM API at') && resolve());
  });
}, 180_000);

afterAll(async () => {
  server?.process.kill('SIGTERM');
  pacs?.child?.kill('SIGTERM');
  closed?.child?.kill('SIGTERM');
  await rm(work, { recursive: true, force: true });
  record(rows);
});

/** Every route group: the API (OpenAPI), /health, the proxy, the viewer's files and routes, MONAI Label. */
function serverPaths(): { method: string; path: string }[] {
  const out: { method: string; path: string }[] = [];
  for (const [path, ops] of Object.entries(openapi.paths))
    for (const method of Object.keys(ops)) out.push({ method: method.toUpperCase(), path: path.replace('{id}', JOB) });
  const metadata = `/dicom-web/studies/${study.studyInstanceUID}/series/${study.seriesInstanceUID}/metadata`;
  for (const method of ['GET', 'HEAD', 'POST']) out.push({ method, path: '/dicom-web/studies' });
  out.push({ method: 'GET', path: metadata }, { method: 'GET', path: '/' }, { method: 'GET', path: '/app-config.js' });
  out.push({ method: 'GET', path: '/ldfsam/extension.js' }, { method: 'GET', path: '/ldfsam?StudyInstanceUIDs=1.2.3' });
  out.push({ method: 'GET', path: '/monailabel/info/' });
  return out;
}

describe('DNS rebinding: ldfsam serve (loopback, no tokens)', () => {
  it('answers 421 to a foreign Host on every route group; its own names still work, BulkDataURIs included', async () => {
    const before = await send(server.url, '/api/jobs');
    let checked = 0;
    for (const host of [`attacker.example:${server.port}`, 'attacker.example', `localhost:${server.port + 1}`]) {
      for (const { method, path } of serverPaths()) {
        const r = await send(server.url, path, {
          method,
          headers: { host, 'content-type': 'application/json' },
          body: method === 'POST' ? JSON.stringify({ studyInstanceUID: study.studyInstanceUID }) : undefined,
        });
        expect(r.status, `${method} ${path} Host ${host}`).toBe(421);
        if (method !== 'HEAD') expect(JSON.parse(r.text).error.code).toBe('HOST_NOT_ALLOWED');
        checked++;
      }
    }
    // Nothing was submitted.
    expect((await send(server.url, '/api/jobs')).text).toBe(before.text);
    // Named by its own names it serves, the PACS included (its credentials stay in the server).
    for (const host of [`127.0.0.1:${server.port}`, `localhost:${server.port}`]) {
      expect((await send(server.url, '/api/models', { headers: { host } })).status).toBe(200);
      const r = await send(server.url, serverPaths().find((p) => p.path.endsWith('/metadata'))!.path, {
        headers: { host, accept: 'application/dicom+json' },
      });
      expect(r.status, host).toBe(200);
      const uris = [...r.text.matchAll(/"BulkDataURI"\s*:\s*"([^"]+)"/g)].map((m) => m[1]!);
      expect(uris.length).toBeGreaterThan(0);
      for (const u of uris) expect(u.startsWith(`http://${host}/dicom-web/studies/`), u).toBe(true);
      // And the bulk data there is served through the proxy.
      expect((await send(server.url, new URL(uris[0]!).pathname, { headers: { host } })).status).toBe(200);
    }
    rows.push({
      suite: 'side doors',
      category: 'ldfsam serve: foreign Host -> 421',
      checked,
      passed: checked,
      note: `${serverPaths().length} paths (API, /health, proxy, viewer, MONAI Label) x 3 Hosts; own names served, BulkDataURIs on them`,
    });
  });

  it('refuses a submission or a cancel from a foreign Origin (403) and accepts it from its own', async () => {
    const body = JSON.stringify({ studyInstanceUID: study.studyInstanceUID, model: 'threshold-fixture' });
    const headers = { 'content-type': 'application/json' };
    let checked = 0;
    for (const origin of ['http://attacker.example', `http://attacker.example:${server.port}`, 'null']) {
      for (const [method, path] of [
        ['POST', '/api/jobs'],
        ['POST', '/api/batches'],
        ['DELETE', `/api/jobs/${JOB}`],
        ['POST', '/dicom-web/studies'],
      ] as const) {
        const r = await send(server.url, path, {
          method,
          headers: { ...headers, origin },
          body: method === 'POST' ? (path === '/api/batches' ? `{"studies":["${study.studyInstanceUID}"]}` : body) : undefined,
        });
        expect(r.status, `${method} ${path} ${origin}`).toBe(403);
        expect(JSON.parse(r.text).error.code).toBe('ORIGIN_NOT_ALLOWED');
        checked++;
      }
    }
    expect(JSON.parse((await send(server.url, '/api/jobs')).text).jobs).toEqual([]);
    const own = await send(server.url, '/api/jobs', { method: 'POST', headers: { ...headers, origin: server.url }, body });
    expect(own.status).toBe(202);
    rows.push({ suite: 'side doors', category: 'ldfsam serve: foreign Origin -> 403', checked, passed: checked });
  });
});

describe('DNS rebinding: the embedded Orthanc', () => {
  const requests = (): { method: string; path: string; body?: string }[] => [
    { method: 'GET', path: '/' },
    { method: 'GET', path: '/system' },
    { method: 'GET', path: '/app/explorer.html' },
    { method: 'GET', path: '/patients' },
    { method: 'GET', path: '/studies?expand' },
    { method: 'GET', path: '/instances' },
    { method: 'GET', path: '/dicom-web/studies' },
    { method: 'GET', path: `/dicom-web/studies/${study.studyInstanceUID}/metadata` },
    { method: 'GET', path: '/wado?requestType=WADO' },
    { method: 'GET', path: '/tools/now' },
    { method: 'GET', path: '/webdav/' },
    { method: 'GET', path: '/favicon.ico' },
    { method: 'POST', path: '/tools/find', body: '{"Level":"Study","Query":{}}' },
    { method: 'POST', path: '/instances', body: 'not dicom' },
    { method: 'PUT', path: '/modalities/evil', body: '{"AET":"EVIL","Host":"127.0.0.1","Port":104}' },
    { method: 'DELETE', path: '/patients' },
    { method: 'DELETE', path: `/studies/${'0'.repeat(8)}` },
    { method: 'POST', path: '/tools/reset' },
  ];

  it('answers a foreign Host with 4xx only: 401 without its credentials, 403 with them; nothing changes', async () => {
    const port = new URL(pacs.httpUrl).port;
    const studiesBefore = (await client.searchForStudies()).length;
    let checked = 0;
    for (const host of [`attacker.example:${port}`, 'attacker.example', `127.0.0.1:${server.port}`]) {
      for (const { method, path, body } of requests()) {
        const bare = await send(pacs.httpUrl, path, { method, headers: { host }, body });
        expect(bare.status, `${method} ${path} Host ${host}`).toBe(401);
        const withCredentials = await send(pacs.httpUrl, path, {
          method,
          headers: { host, authorization: pacs.authorization },
          body,
        });
        expect(withCredentials.status, `${method} ${path} Host ${host} with credentials`).toBe(403);
        checked += 2;
      }
    }
    expect((await client.searchForStudies()).length).toBe(studiesBefore);
    // Named as itself, with its credentials, it answers (the filter is not closed to everyone).
    const system = await send(pacs.httpUrl, '/system', { headers: { authorization: pacs.authorization } });
    expect(system.status).toBe(200);
    expect(JSON.parse(system.text).Version).toBe('1.10.1');
    rows.push({
      suite: 'side doors',
      category: 'embedded Orthanc: foreign Host -> 401/403',
      checked,
      passed: checked,
      note: `${requests().length} REST/DICOMweb/Explorer requests x 3 Hosts, without and with the credentials`,
    });
  });

  it('refuses a state-changing request from a foreign Origin even with its credentials (a browser logged in to Orthanc Explorer)', async () => {
    const auth = { authorization: pacs.authorization, 'content-type': 'application/json' };
    let checked = 0;
    for (const origin of ['http://attacker.example', `http://127.0.0.1:${server.port}`, 'null']) {
      for (const { method, path, body } of requests().filter((r) => r.method !== 'GET')) {
        const r = await send(pacs.httpUrl, path, { method, headers: { ...auth, origin }, body });
        expect(r.status, `${method} ${path} Origin ${origin}`).toBe(403);
        checked++;
      }
    }
    const find = '{"Level":"Study","Query":{}}';
    const own = await send(pacs.httpUrl, '/tools/find', {
      method: 'POST',
      headers: { ...auth, origin: pacs.httpUrl },
      body: find,
    });
    expect(own.status).toBe(200);
    expect(JSON.parse(own.text)).toHaveLength(1);
    rows.push({ suite: 'side doors', category: 'embedded Orthanc: foreign Origin -> 403', checked, passed: checked });
  });
});

describe("the embedded Orthanc's DICOM port", () => {
  it('is closed when no peer is configured (the default)', async () => {
    expect(closed.dicomPort).toBeNull();
    const r = await dcmtk('echoscu', ['-aet', 'KNOWN-SCU', '-aec', 'LDFSAM', '127.0.0.1', String(closedSettings.pacsDicomPort)]);
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/Connection refused/);
    rows.push({ suite: 'side doors', category: 'DICOM port closed without peers', checked: 1, passed: 1 });
  });

  it('accepts associations only from configured peers: C-ECHO and C-STORE from others are refused', async () => {
    const port = String(pacs.dicomPort);
    const file = singleImages().find((f) => f.endsWith('US1_UNCR.dcm'))!;
    const uid = (await dcmtk('dcmdump', ['+P', '0008,0018', '-s', file])).output.match(/\[([0-9.]+)\]/)![1]!;
    const stored = async () => (await client.searchForInstances({ queryParams: { SOPInstanceUID: uid } })).length;
    const refusals: [string, string[], RegExp][] = [
      ['unknown calling AE', ['-aet', 'INTRUDER', '-aec', 'LDFSAM'], /Calling AE Title Not Recognized/],
      ['known AE from another address', ['-aet', 'ELSEWHERE', '-aec', 'LDFSAM'], /Calling AE Title Not Recognized/],
      ['another called AE', ['-aet', 'KNOWN-SCU', '-aec', 'ORTHANC'], /Called AE Title Not Recognized/],
    ];
    let checked = 0;
    for (const [what, aets, reason] of refusals) {
      for (const [tool, extra] of [
        ['echoscu', []],
        ['storescu', [file]],
      ] as const) {
        const r = await dcmtk(tool, [...aets, '127.0.0.1', port, ...extra]);
        expect(r.code, `${tool} ${what}: ${r.output}`).not.toBe(0);
        expect(r.output, `${tool} ${what}`).toMatch(reason);
        checked++;
      }
    }
    expect(await stored()).toBe(0);
    const echo = await dcmtk('echoscu', ['-aet', 'KNOWN-SCU', '-aec', 'LDFSAM', '127.0.0.1', port]);
    expect(echo.code, echo.output).toBe(0);
    const store = await dcmtk('storescu', ['-aet', 'KNOWN-SCU', '-aec', 'LDFSAM', '127.0.0.1', port, file]);
    expect(store.code, store.output).toBe(0);
    expect(await stored()).toBe(1);
    rows.push({
      suite: 'side doors',
      category: 'DICOM: only configured peers associate',
      checked: checked + 2,
      passed: checked + 2,
      note: 'echoscu/storescu: unknown AE, known AE at another address, wrong called AE refused; the configured peer stores',
    });
  });
});
