/**
 * Security checks over real HTTP, in addition to test/integration/api.test.ts (401 on every OpenAPI
 * route with tokens on) and viewer.test.ts (proxy traversal, PUT/DELETE, app-config.js): every route
 * and /dicom-web/* refuse requests without a valid token however it is presented; injection and
 * traversal attempts in every parameter are 400 and reach no PACS; no request can steer the server
 * to another host (no field takes a URL; Host, X-Forwarded-Host and absolute-form targets on the
 * proxy change nothing); the served app-config.js never holds the PACS credentials; DNS rebinding:
 * every route, the viewer and the proxy refuse a Host that is not the server's (421), with or
 * without tokens, and POST/PUT/DELETE from a foreign Origin (403), before anything runs.
 * side-doors.test.ts does the same against real processes and the embedded Orthanc.
 *
 * The PACS here is a stub that records every request (answers: no studies); a second stub stands
 * for "another server" and must never be reached.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/src/config.js';
import { openapi } from '../../server/src/http/openapi.js';
import { startServer, type RunningServer } from '../../server/src/http/server.js';
import { silentLogger } from '../../server/src/log.js';
import { projectPath } from '../../server/src/util/paths.js';
import { record, type Row } from './summary.js';

const TOKEN = 'reliability-api-token-0123456789';
const PACS_AUTH = 'Basic cGFjcy11c2VyOnBhY3Mtc2VjcmV0LXBhc3N3b3Jk'; // pacs-user:pacs-secret-password
const JOB = '00000000-0000-4000-8000-000000000000';

interface Stub {
  url: string;
  seen: { method: string; url: string; headers: IncomingHttpHeaders }[];
  close(): Promise<void>;
}

/** An HTTP server that records requests and answers an empty DICOM JSON list. */
async function startStub(): Promise<Stub> {
  const seen: Stub['seen'] = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } });
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/dicom+json' });
      res.end('[]');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A raw request: the path is sent exactly as given (no client normalisation), headers as given. */
function raw(
  base: string,
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; text: string; json(): any }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, path, method: init.method ?? 'GET', headers: init.headers, setHost: !init.headers?.host },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, text, json: () => JSON.parse(text) });
        });
      },
    );
    req.on('error', reject);
    req.end(init.body);
  });
}

let work: string;
let pacs: Stub;
let other: Stub;
let server: RunningServer;
/** The local default: loopback, no tokens; plus one name configured in LDFSAM_ALLOWED_HOSTS. */
let open: RunningServer;
const rows: Row[] = [];
const auth = { authorization: `Bearer ${TOKEN}` };
const json = { ...auth, 'content-type': 'application/json' };

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ldfsam-security-'));
  pacs = await startStub();
  other = await startStub();
  const config = loadConfig({
    env: { LDFSAM_DICOMWEB_AUTHORIZATION: PACS_AUTH },
    flags: {
      dicomwebUrl: `${pacs.url}/dicom-web`,
      dataDir: join(work, 'data'),
      modelDirs: [projectPath('test', 'fixtures', 'model-threshold')],
      apiTokens: [TOKEN],
    },
  });
  server = await startServer({ ...config, port: 0 }, silentLogger);
  const openConfig = loadConfig({
    env: { LDFSAM_DICOMWEB_AUTHORIZATION: PACS_AUTH, LDFSAM_ALLOWED_HOSTS: 'viewer.hospital.example' },
    flags: {
      dicomwebUrl: `${pacs.url}/dicom-web`,
      dataDir: join(work, 'open'),
      modelDirs: [projectPath('test', 'fixtures', 'model-threshold')],
    },
  });
  open = await startServer({ ...openConfig, port: 0 }, silentLogger);
});

afterAll(async () => {
  await server?.close();
  await open?.close();
  await pacs?.close();
  await other?.close();
  await rm(work, { recursive: true, force: true });
  record(rows);
});

/** Every route: the OpenAPI operations and the DICOMweb proxy. */
function routes(): { method: string; path: string }[] {
  const out: { method: string; path: string }[] = [];
  for (const [path, ops] of Object.entries(openapi.paths)) {
    for (const method of Object.keys(ops)) out.push({ method: method.toUpperCase(), path: path.replace('{id}', JOB) });
  }
  for (const method of ['GET', 'HEAD', 'POST']) out.push({ method, path: '/dicom-web/studies' });
  out.push({ method: 'GET', path: '/dicom-web/studies/1.2.3/series/1.2.3.4/metadata' });
  return out;
}

describe('authentication', () => {
  it('every route but /health refuses a request without a valid token, however it is presented', async () => {
    const attempts: [string, Record<string, string>, string?][] = [
      ['no token', {}],
      ['wrong token', { authorization: 'Bearer not-the-token-000000000000' }],
      ['empty bearer', { authorization: 'Bearer ' }],
      ['token with another scheme', { authorization: `Basic ${TOKEN}` }],
      ['the PACS credentials', { authorization: PACS_AUTH }],
      ['token as a cookie', { cookie: `token=${TOKEN}; access_token=${TOKEN}` }],
      ['token in the query', {}, `access_token=${TOKEN}&token=${TOKEN}`],
      ['token prefix', { authorization: `Bearer ${TOKEN.slice(0, -1)}` }],
      ['token with a suffix', { authorization: `Bearer ${TOKEN}x` }],
      ['X-Forwarded-User', { 'x-forwarded-user': 'admin', 'x-remote-user': 'admin' }],
    ];
    const before = pacs.seen.length;
    let checked = 0;
    let passed = 0;
    for (const { method, path } of routes()) {
      // Open by design: /health, and MONAI Label's login routes (GET /auth tells 3D Slicer whether to
      // log in; POST /auth/token exchanges a user's password for a token).
      if (path === '/health' || path === '/monailabel/auth' || path === '/monailabel/auth/token') continue;
      for (const [what, headers, query] of attempts) {
        checked++;
        const r = await raw(server.url, query ? `${path}${path.includes('?') ? '&' : '?'}${query}` : path, {
          method,
          headers: { ...headers, 'content-type': 'application/json' },
          body: method === 'POST' ? '{}' : undefined,
        });
        expect(r.status, `${what}: ${method} ${path}`).toBe(401);
        if (method !== 'HEAD') expect(r.json().error.code, `${what}: ${method} ${path}`).toBe('UNAUTHORIZED');
        passed++;
      }
    }
    // Nothing reached the PACS (the readiness probe aside, which the server makes on its own).
    expect(pacs.seen.slice(before).filter((s) => !s.url.includes('limit=1'))).toEqual([]);
    expect((await raw(server.url, '/health')).status).toBe(200);
    rows.push({ suite: 'security', category: 'no valid token -> 401 (every route)', checked, passed });
  });
});

describe('injection and traversal', () => {
  const badUids = [
    '../../tools',
    '1.2.3/../../system',
    '1.2.3?expand=1',
    '1.2.3#x',
    '1.2.3\r\nHost: evil',
    '1.2.3%2F..',
    ' 1.2.3',
    '1.2.3 ',
    '01.2.3',
    '1..2',
    '1.2.',
    `1.2.${'3'.repeat(70)}`,
    '',
    "1.2.3' OR '1'='1",
    '1.2.3;DROP TABLE jobs',
    '1.2.3\u0000',
    '１.２.３',
  ];
  const badModels = [
    '../models/x',
    '/etc/passwd',
    'http://127.0.0.1:1/model',
    'ldfsam-hc18/../../x',
    '..',
    'A',
    ' ',
    'x'.repeat(65),
    'a b',
    'a\nb',
  ];
  const badIds = [
    '..',
    '..%2F..%2Fetc%2Fpasswd',
    '%2e%2e',
    "1'%20OR%20'1'='1",
    '1%3BDROP%20TABLE%20jobs',
    'a'.repeat(1000),
    '%00',
    `${JOB}%0D%0AX:%20y`,
    `${JOB}.json`,
    '*',
  ];

  it('job and batch ids, UIDs, model names and query fields: 400 INVALID_INPUT, nothing reaches the PACS', async () => {
    const before = pacs.seen.length;
    const cases: { what: string; method: string; path: string; body?: unknown }[] = [];
    for (const id of badIds) {
      for (const path of [`/api/jobs/${id}`, `/api/jobs/${id}/events`, `/api/batches/${id}`])
        cases.push({ what: `id ${id}`, method: 'GET', path });
      for (const path of [`/api/jobs/${id}`, `/api/batches/${id}`]) cases.push({ what: `id ${id}`, method: 'DELETE', path });
    }
    for (const uid of badUids) {
      cases.push({ what: `study ${JSON.stringify(uid)}`, method: 'POST', path: '/api/jobs', body: { studyInstanceUID: uid } });
      cases.push({
        what: `series ${JSON.stringify(uid)}`,
        method: 'POST',
        path: '/api/jobs',
        body: { studyInstanceUID: '1.2.3', seriesInstanceUID: uid },
      });
      cases.push({
        what: `batch study ${JSON.stringify(uid)}`,
        method: 'POST',
        path: '/api/batches',
        body: { studies: ['1.2.3', uid] },
      });
    }
    for (const v of [123, ['1.2.3'], { $gt: '' }, null, true]) {
      cases.push({
        what: `study of type ${JSON.stringify(v)}`,
        method: 'POST',
        path: '/api/jobs',
        body: { studyInstanceUID: v },
      });
    }
    for (const model of badModels) {
      cases.push({
        what: `model ${JSON.stringify(model)}`,
        method: 'POST',
        path: '/api/jobs',
        body: { studyInstanceUID: '1.2.3', model },
      });
      cases.push({
        what: `batch model ${JSON.stringify(model)}`,
        method: 'POST',
        path: '/api/batches',
        body: { studies: ['1.2.3'], model },
      });
    }
    const badQueries: Record<string, unknown>[] = [
      { ModalitiesInStudy: 'CT\\MR' },
      { ModalitiesInStudy: 'CT&PatientID=*' },
      { ModalitiesInStudy: 'ct' },
      { StudyDate: '2020*' },
      { StudyDate: '20200101&limit=100000' },
      { StudyDate: '../../..' },
      { PatientID: '*' },
      { PatientID: 'a?b' },
      { PatientID: 'a\\b' },
      { PatientID: 'x'.repeat(65) },
      { PatientID: '' },
      { AccessionNumber: '*' },
      { AccessionNumber: 'x'.repeat(17) },
      { StudyInstanceUID: '1.2.3' },
      { includefield: 'all' },
      { limit: 100000 },
      { PatientID: ['a', 'b'] },
      { PatientID: { $ne: '' } },
    ];
    for (const query of badQueries)
      cases.push({ what: `query ${JSON.stringify(query)}`, method: 'POST', path: '/api/batches', body: { query } });
    let passed = 0;
    for (const c of cases) {
      const r = await raw(server.url, c.path, {
        method: c.method,
        headers: json,
        body: c.body === undefined ? undefined : JSON.stringify(c.body),
      });
      expect(r.status, `${c.what}: ${c.method} ${c.path}`).toBe(400);
      expect(r.json().error.code, c.what).toBe('INVALID_INPUT');
      passed++;
    }
    expect(pacs.seen.slice(before).filter((s) => !s.url.includes('limit=1'))).toEqual([]);
    rows.push({
      suite: 'security',
      category: 'injection/traversal in ids, UIDs, models, query -> 400',
      checked: cases.length,
      passed,
    });
  });

  it('a raw traversal in the route path is never served: 400 or 404 with a JSON error', async () => {
    const paths = [
      '/api/jobs/../../../../etc/passwd',
      '/api/../package.json',
      '/api/jobs/%2e%2e/%2e%2e/package.json',
      '/api/models/../../models/ldfsam-hc18/model.json',
      '/ldfsam/../../package.json',
      '/ldfsam/%2e%2e/%2e%2e/server/src/config.ts',
      '/..%2f..%2fpackage.json',
    ];
    let passed = 0;
    for (const path of paths) {
      const r = await raw(server.url, path, { headers: auth });
      expect([400, 404], path).toContain(r.status);
      expect(r.text, path).not.toMatch(/"name":\s*"ldfsam"|"sha256"|LDFSAM_/);
      passed++;
    }
    rows.push({ suite: 'security', category: 'raw path traversal -> 400/404, nothing served', checked: paths.length, passed });
  });

  it('GET /api/jobs?limit= takes only an integer 1..500; anything else is INVALID_INPUT', async () => {
    for (const limit of ['-1', '0', '501', 'abc', '1e9', '../..', "1' OR 1=1", '%00']) {
      const r = await raw(server.url, `/api/jobs?limit=${encodeURIComponent(limit)}`, { headers: auth });
      expect(r.status, limit).toBe(400);
      expect(r.json().error.code, limit).toBe('INVALID_INPUT');
    }
    const ok = await raw(server.url, '/api/jobs?limit=500', { headers: auth });
    expect(ok.status).toBe(200);
    expect(Array.isArray(ok.json().jobs)).toBe(true);
  });

  it('QIDO filter values reach the PACS as one encoded parameter each, never as extra parameters', async () => {
    const before = pacs.seen.length;
    const r = await raw(server.url, '/api/batches', {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ query: { PatientID: 'P1&StudyInstanceUID=1.2.3&includefield=all', AccessionNumber: 'A#1 %41' } }),
    });
    expect(r.status).toBe(202);
    const qido = pacs.seen.slice(before).filter((s) => s.url.startsWith('/dicom-web/studies?'));
    expect(qido.length).toBeGreaterThan(0);
    const params = new URL(qido[0]!.url, 'http://x').searchParams;
    expect(params.getAll('PatientID')).toEqual(['P1&StudyInstanceUID=1.2.3&includefield=all']);
    expect(params.getAll('AccessionNumber')).toEqual(['A#1 %41']);
    expect(params.getAll('StudyInstanceUID')).toEqual([]);
    rows.push({ suite: 'security', category: 'QIDO values encoded, no parameter smuggling', checked: 1, passed: 1 });
  });
});

describe('the server talks only to the configured PACS', () => {
  it('no request field takes a URL: 400, and the other server is never reached', async () => {
    const target = `${other.url}/dicom-web`;
    const bodies: [string, unknown][] = [
      ['/api/jobs', { studyInstanceUID: '1.2.3', dicomwebUrl: target }],
      ['/api/jobs', { studyInstanceUID: '1.2.3', pacs: target }],
      ['/api/jobs', { studyInstanceUID: '1.2.3', url: target }],
      ['/api/jobs', { studyInstanceUID: '1.2.3', model: target }],
      ['/api/jobs', { studyInstanceUID: target }],
      ['/api/jobs', JSON.parse(`{"studyInstanceUID":"1.2.3","__proto__":{"dicomwebUrl":"${target}"}}`)],
      ['/api/jobs', JSON.parse(`{"studyInstanceUID":"1.2.3","constructor":{"prototype":{"dicomwebUrl":"${target}"}}}`)],
      ['/api/batches', { studies: ['1.2.3'], dicomwebUrl: target }],
      ['/api/batches', { query: { PatientID: 'x' }, dicomweb: target }],
      ['/api/batches', { query: { PatientID: 'x', url: target } }],
    ];
    let passed = 0;
    for (const [path, body] of bodies) {
      const r = await raw(server.url, path, { method: 'POST', headers: json, body: JSON.stringify(body) });
      expect(r.status, JSON.stringify(body)).toBe(400);
      passed++;
    }
    // Query strings and headers naming another server are ignored.
    for (const path of [
      `/api/ready?dicomwebUrl=${encodeURIComponent(target)}`,
      `/api/models?pacs=${encodeURIComponent(target)}`,
    ]) {
      expect((await raw(server.url, path, { headers: auth })).status).toBeLessThan(500);
      passed++;
    }
    expect(other.seen).toEqual([]);
    rows.push({ suite: 'security', category: 'no field/query names another PACS', checked: bodies.length + 2, passed });
  });

  it('Host, X-Forwarded-Host and absolute-form targets on the proxy do not change where it goes', async () => {
    const otherHost = new URL(other.url).host;
    const before = pacs.seen.length;
    const attempts: [string, string, Record<string, string>][] = [
      ['Host of the other server', '/dicom-web/studies', { ...auth, host: otherHost }],
      ['X-Forwarded-Host', '/dicom-web/studies', { ...auth, 'x-forwarded-host': otherHost, forwarded: `host=${otherHost}` }],
      ['Host with a path', '/dicom-web/studies', { ...auth, host: `${otherHost}/dicom-web` }],
      ['Host with credentials', '/dicom-web/studies', { ...auth, host: `user@${otherHost}` }],
      ['absolute-form target', `${other.url}/dicom-web/studies`, auth],
      ['absolute-form to the proxy path', `http://${otherHost}/dicom-web/studies`, { ...auth, host: new URL(server.url).host }],
      ['userinfo in the path', `/dicom-web/@${otherHost}/studies`, auth],
      ['scheme-relative path', `/dicom-web//${otherHost}/studies`, auth],
      ['encoded scheme', `/dicom-web/http:%2F%2F${otherHost}/studies`, auth],
    ];
    let passed = 0;
    for (const [what, path, headers] of attempts) {
      const r = await raw(server.url, path, { headers });
      expect(r.status, what).toBeLessThan(500);
      passed++;
    }
    expect(other.seen, 'the other server was reached').toEqual([]);
    // What did reach the PACS went to the configured PACS, with its credentials, below /dicom-web,
    // naming the PACS by its own host and the server by its own in Forwarded: never the other host.
    const reached = pacs.seen.slice(before).filter((s) => !s.url.includes('limit=1'));
    expect(reached.length).toBeGreaterThan(0);
    for (const s of reached) {
      expect(s.url.startsWith('/dicom-web/'), s.url).toBe(true);
      expect(s.headers.authorization).toBe(PACS_AUTH);
      expect(s.headers.host).toBe(new URL(pacs.url).host);
      expect(s.headers.forwarded).toBe(`host=${new URL(server.url).host};proto=http`);
      expect(JSON.stringify(s.headers)).not.toContain(otherHost);
    }
    rows.push({ suite: 'security', category: 'Host/absolute-form tricks on the proxy', checked: attempts.length, passed });
  });
});

describe('app-config.js', () => {
  it('never holds the PACS credentials, whatever the request says', async () => {
    const probe = await raw(server.url, '/app-config.js');
    // Without the OHIF dist nothing is served and nothing would be checked: that is a set-up failure, not a pass.
    expect(probe.status, 'no /app-config.js: run npm run setup (scripts/fetch-viewer.sh puts OHIF in vendor/ohif-app/dist)').toBe(
      200,
    );
    const secrets = [PACS_AUTH, PACS_AUTH.slice(6), 'pacs-secret-password', pacs.url, new URL(pacs.url).host];
    let checked = 0;
    // A foreign Host is refused outright (below); every allowed request leaves the credentials out.
    const variants: Record<string, string>[] = [{}, auth, { 'x-forwarded-host': 'evil.example' }, { authorization: PACS_AUTH }];
    for (const headers of variants) {
      for (const path of ['/app-config.js', '/app-config.js?debug=1', '/app-config.js?token=1']) {
        const r = await raw(server.url, path, { headers });
        expect(r.status).toBe(200);
        for (const s of secrets) expect(r.text, `${path} ${JSON.stringify(headers)}`).not.toContain(s);
        checked++;
      }
    }
    // Asked for under a foreign Host, it is not served at all.
    const foreign = await raw(server.url, '/app-config.js', { headers: { host: 'evil.example' } });
    expect(foreign.status).toBe(421);
    for (const s of secrets) expect(foreign.text).not.toContain(s);
    checked++;
    rows.push({ suite: 'security', category: 'app-config.js without PACS credentials', checked, passed: checked });
  });
});

/** Every path a browser could be sent to: the API (OpenAPI), /health, the proxy, the viewer's files and routes, MONAI Label. */
function everyPath(): { method: string; path: string }[] {
  return [
    ...routes(),
    { method: 'GET', path: '/health' },
    { method: 'GET', path: '/' },
    { method: 'GET', path: '/app-config.js' },
    { method: 'GET', path: '/ldfsam/extension.js' },
    { method: 'GET', path: '/monailabel/info/' },
    { method: 'GET', path: '/ldfsam?StudyInstanceUIDs=1.2.3' },
    { method: 'GET', path: '/no/such/thing' },
    { method: 'PUT', path: '/dicom-web/studies/1.2.3' },
    { method: 'DELETE', path: '/dicom-web/studies/1.2.3' },
  ];
}

describe('DNS rebinding and foreign origins', () => {
  it("a Host that is not the server's gets 421 HOST_NOT_ALLOWED on every path, with or without a token, and reaches nothing", async () => {
    const before = pacs.seen.length;
    let checked = 0;
    for (const target of [open, server]) {
      const port = new URL(target.url).port;
      const foreign = [
        `attacker.example:${port}`,
        'attacker.example',
        `127.0.0.1.attacker.example:${port}`,
        `localhost.attacker.example:${port}`,
        `localhost:${Number(port) + 1}`,
        `127.0.0.1:${Number(port) + 1}`,
        `[::1]:${Number(port) + 1}`,
        '127.0.0.1', // port 80: not this server's
        `127.0.0.2:${port}`,
        `0.0.0.0:${port}`,
        `attacker.example:${port}@127.0.0.1`,
        `127.0.0.1:${port}.attacker.example`,
        `viewer.hospital.example.attacker.example`,
        `*.hospital.example`,
        ' ',
      ];
      for (const host of foreign) {
        for (const { method, path } of everyPath()) {
          const r = await raw(target.url, path, {
            method,
            headers: { host, ...auth, 'content-type': 'application/json' },
            body: method === 'POST' ? '{"studyInstanceUID":"1.2.3"}' : undefined,
          });
          expect(r.status, `${method} ${path} Host ${host}`).toBe(421);
          if (method !== 'HEAD') expect(r.json().error.code, `${method} ${path} Host ${host}`).toBe('HOST_NOT_ALLOWED');
          checked++;
        }
      }
    }
    // Nothing reached the PACS (the readiness probe aside, which the server makes on its own).
    expect(pacs.seen.slice(before).filter((s) => !s.url.includes('limit=1'))).toEqual([]);
    // The page can read the 421: it does not tell it the configured names.
    const refused = await raw(open.url, '/api/models', { headers: { host: 'attacker.example' } });
    expect(refused.text).toContain('LDFSAM_ALLOWED_HOSTS');
    expect(refused.text).not.toContain('viewer.hospital.example');
    rows.push({
      suite: 'security',
      category: 'foreign Host -> 421 (every path, both servers)',
      checked,
      passed: checked,
      note: `${everyPath().length} paths (API, /health, proxy, viewer, MONAI Label) x 15 Hosts x open and token server`,
    });
  });

  it("the server's own names are served: loopback on its port, LDFSAM_ALLOWED_HOSTS on any port, any letter case", async () => {
    const port = new URL(open.url).port;
    let checked = 0;
    for (const host of [
      `127.0.0.1:${port}`,
      `localhost:${port}`,
      `LOCALHOST:${port}`,
      `[::1]:${port}`,
      'viewer.hospital.example',
      `viewer.hospital.example:${port}`,
      'Viewer.Hospital.Example:8443',
    ]) {
      const r = await raw(open.url, '/api/models', { headers: { host } });
      expect(r.status, host).toBe(200);
      checked++;
    }
    // The token server has no LDFSAM_ALLOWED_HOSTS: the configured name of the other one is foreign there.
    expect((await raw(server.url, '/api/models', { headers: { host: 'viewer.hospital.example', ...auth } })).status).toBe(421);
    rows.push({ suite: 'security', category: 'own Host names served', checked: checked + 1, passed: checked + 1 });
  });

  it('POST/PUT/DELETE with a foreign Origin get 403 ORIGIN_NOT_ALLOWED and change nothing; the own origin and no Origin pass', async () => {
    const port = new URL(open.url).port;
    const before = pacs.seen.length;
    const writes = [
      ...everyPath().filter((r) => ['POST', 'PUT', 'DELETE'].includes(r.method)),
      { method: 'DELETE', path: `/api/jobs/${JOB}` },
    ];
    const origins = [
      'http://attacker.example',
      `http://attacker.example:${port}`,
      'null',
      `http://127.0.0.1:${Number(port) + 1}`,
      `http://localhost.attacker.example:${port}`,
      'file://',
      `ftp://127.0.0.1:${port}`,
      'not a url',
    ];
    let checked = 0;
    for (const target of [open, server]) {
      for (const origin of origins) {
        for (const { method, path } of writes) {
          const r = await raw(target.url, path, {
            method,
            headers: { origin, ...auth, 'content-type': 'application/json' },
            // No body on DELETE: node:http would send it unframed (no Content-Length for DELETE).
            body: method === 'DELETE' ? undefined : '{"studyInstanceUID":"1.2.3"}',
          });
          expect(r.status, `${method} ${path} Origin ${origin}`).toBe(403);
          expect(r.json().error.code).toBe('ORIGIN_NOT_ALLOWED');
          checked++;
        }
      }
    }
    expect(pacs.seen.slice(before).filter((s) => !s.url.includes('limit=1'))).toEqual([]);
    // Reads are not refused for their Origin (a page elsewhere cannot read them: no CORS headers).
    const read = await raw(open.url, '/api/models', { headers: { origin: 'http://attacker.example' } });
    expect(read.status).toBe(200);
    expect(read.text).not.toMatch(/access-control/i);
    // The server's own origins, and requests without Origin (CLI, curl), pass the guard.
    for (const origin of [`http://127.0.0.1:${port}`, `http://localhost:${port}`, 'https://viewer.hospital.example', undefined]) {
      const r = await raw(open.url, '/api/jobs', {
        method: 'POST',
        headers: { ...(origin ? { origin } : {}), 'content-type': 'application/json' },
        body: '{"studyInstanceUID":"1.2.3"}',
      });
      expect(r.status, String(origin)).toBe(404); // reached the route: study 1.2.3 is not in the (stub) PACS
      expect(r.json().error.code).toBe('NOT_FOUND');
    }
    rows.push({ suite: 'security', category: 'foreign Origin on POST/PUT/DELETE -> 403', checked, passed: checked });
  });

  it('cross-site form posts (no JSON content type) are not parsed: 400, nothing submitted', async () => {
    const before = pacs.seen.length;
    let checked = 0;
    for (const type of ['application/x-www-form-urlencoded', 'text/plain', 'multipart/form-data; boundary=x']) {
      for (const path of ['/api/jobs', '/api/batches']) {
        const r = await raw(open.url, path, {
          method: 'POST',
          headers: { 'content-type': type },
          body: type.startsWith('multipart')
            ? '--x\r\nContent-Disposition: form-data; name="studyInstanceUID"\r\n\r\n1.2.3\r\n--x--\r\n'
            : type === 'text/plain'
              ? '{"studyInstanceUID":"1.2.3"}'
              : 'studyInstanceUID=1.2.3',
        });
        expect(r.status, `${type} ${path}`).toBe(400);
        expect(r.json().error.code).toBe('INVALID_INPUT');
        checked++;
      }
    }
    expect(pacs.seen.slice(before).filter((s) => !s.url.includes('limit=1'))).toEqual([]);
    rows.push({ suite: 'security', category: 'cross-site form posts -> 400', checked, passed: checked });
  });
});
