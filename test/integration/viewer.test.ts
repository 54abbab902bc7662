/**
 * The viewer on the server's origin, over real HTTP against the real test Orthanc: the prebuilt
 * OHIF files with the SPA fallback, the generated app-config.js, our extension and mode bundles,
 * and the same-origin DICOMweb proxy (QIDO and WADO-RS as Orthanc answers them, BulkDataURIs that
 * point back at the proxy, PACS credentials kept server-side, path traversal and other methods
 * refused before anything reaches the PACS, the API's authentication in front of it).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/src/config.js';
import { parseMultipart } from '../../server/src/dicomweb/multipart.js';
import { startServer, type RunningServer } from '../../server/src/http/server.js';
import { silentLogger } from '../../server/src/log.js';
import { projectPath } from '../../server/src/util/paths.js';
import { DATA_SOURCE_NAME } from '../../server/src/viewer/app-config.js';
import { locateViewer, type ViewerFiles } from '../../server/src/viewer/viewer-routes.js';
import { provided } from '../setup/provided.js';

const { dicomwebUrl, orthancHttpUrl, pacsAuthorization: PACS_AUTH } = provided();
const FIXTURE_DIR = projectPath('test', 'fixtures');
// The test Orthanc runs with authentication, as the embedded PACS does: the server is configured
// with its credentials, and direct requests to it here carry them too.
const PACS_USER_PASS = Buffer.from(PACS_AUTH.slice('Basic '.length), 'base64').toString();
const pacs = { authorization: PACS_AUTH };
const API_TOKEN = 'api-token-5d0f3c9b8e7a6d41';
const VIEWER_TOKEN = 'viewer-token-0b1c2d3e4f5a6b7c';
const OIDC_ISSUER = 'http://127.0.0.1:9/realms/radiology';

let work: string;
let files: ViewerFiles;
/** The open server (loopback, no API auth), straight to Orthanc, with PACS credentials configured. */
let open: RunningServer;
/** A server with API tokens, a viewer token and OIDC, whose PACS is reached through a recorder. */
let secure: RunningServer;
let recorder: Recorder;

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text: string;
  json(): any;
}

/** One request with node:http as given: the path is not normalised, any Host header can be sent. */
function raw(base: string, path: string, init: { method?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: url.hostname, port: url.port, path, method: init.method ?? 'GET', headers: init.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          const text = body.toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text, json: () => JSON.parse(text) });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

interface Recorder {
  dicomwebUrl: string;
  seen: { method: string; url: string; headers: IncomingHttpHeaders }[];
  close(): Promise<void>;
}

/** An HTTP pass-through in front of Orthanc that records what reaches it (Host set to Orthanc's, as a reverse proxy does). */
async function startRecorder(target: string): Promise<Recorder> {
  const t = new URL(target);
  const seen: Recorder['seen'] = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } });
    const upstream = http.request(
      { host: t.hostname, port: t.port, path: req.url, method: req.method, headers: { ...req.headers, host: t.host } },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    dicomwebUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}${t.pathname}`,
    seen,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** app-config.js as the browser runs it, on a page of `origin`. */
function runAppConfig(source: string, origin: string): any {
  const window: { location: { origin: string }; config?: unknown } = { location: { origin } };
  new vm.Script(source, { filename: 'app-config.js' }).runInNewContext({ window });
  return JSON.parse(JSON.stringify(window.config));
}

/** Every BulkDataURI in DICOM JSON, sequences included. */
function bulkDataURIs(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const v of value) bulkDataURIs(v, out);
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === 'BulkDataURI' && typeof v === 'string') out.push(v);
      else bulkDataURIs(v, out);
    }
  }
  return out;
}

/** QIDO answers compared as data: RetrieveURLs name the origin each request was made to. */
function withOrigin(text: string, from: string, to: string): unknown {
  return JSON.parse(text.split(`${from}/dicom-web`).join(`${to}/dicom-web`));
}

beforeAll(async () => {
  const located = locateViewer();
  if ('missing' in located) {
    throw new Error(
      `the viewer files are missing: ${located.missing}. Run npm run setup (scripts/fetch-viewer.sh puts OHIF in vendor/ohif-app/dist, npm run build writes dist/extension).`,
    );
  }
  files = located.files;
  work = await mkdtemp(join(tmpdir(), 'ldfsam-viewer-'));
  const openConfig = loadConfig({
    env: { LDFSAM_DICOMWEB_AUTHORIZATION: PACS_AUTH },
    flags: {
      dicomwebUrl,
      dataDir: join(work, 'open'),
      port: 0,
      modelDirs: [FIXTURE_DIR],
      allowedHosts: ['viewer.hospital.example'],
    },
  });
  open = await startServer({ ...openConfig, port: 0 }, silentLogger);
  recorder = await startRecorder(dicomwebUrl);
  const secureConfig = loadConfig({
    env: {
      LDFSAM_DICOMWEB_AUTHORIZATION: PACS_AUTH,
      LDFSAM_API_TOKENS: API_TOKEN,
      LDFSAM_VIEWER_TOKEN: VIEWER_TOKEN,
      LDFSAM_OIDC_ISSUER: OIDC_ISSUER,
      LDFSAM_OIDC_CLIENT_ID: 'ohif-viewer',
    },
    flags: { dicomwebUrl: recorder.dicomwebUrl, dataDir: join(work, 'secure'), port: 0, modelDirs: [FIXTURE_DIR] },
  });
  secure = await startServer({ ...secureConfig, port: 0 }, silentLogger);
}, 180_000);

afterAll(async () => {
  await open?.close();
  await secure?.close();
  await recorder?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('viewer files', () => {
  it("serves OHIF's index.html, never cached, for / and for the app's client-side routes", async () => {
    expect(open.viewer).toEqual({ url: `${open.url}/` });
    const index = readFileSync(join(files.ohifDist, 'index.html'), 'utf8');
    for (const path of ['/', '/ldfsam?StudyInstanceUIDs=1.2.3', '/viewer/dicomweb?StudyInstanceUIDs=1.2.3', '/callback']) {
      const r = await raw(open.url, path);
      expect(r.status, path).toBe(200);
      expect(r.headers['content-type'], path).toMatch(/^text\/html/);
      expect(r.headers['cache-control'], path).toBe('no-store');
      expect(r.text, path).toBe(index);
    }
    // OHIF's hashed bundles are served as they are, cacheable.
    const bundle = readdirSync(files.ohifDist).find((f) => /^app\.bundle\.[0-9a-f]+\.js$/.test(f));
    expect(bundle, 'an app.bundle.<hash>.js in the OHIF dist').toBeDefined();
    const r = await raw(open.url, `/${bundle}`);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/javascript/);
    expect(r.headers['cache-control']).toMatch(/max-age=3600/);
    expect(r.body.equals(readFileSync(join(files.ohifDist, bundle!)))).toBe(true);
  });

  it('/app-config.js is the generated one: the data source on the proxy, and no PACS credentials', async () => {
    const r = await raw(open.url, '/app-config.js');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/javascript/);
    expect(r.headers['cache-control']).toBe('no-store');
    // Not the app-config.js that ships in the OHIF dist.
    expect(r.text).not.toBe(readFileSync(join(files.ohifDist, 'app-config.js'), 'utf8'));
    expect(r.text).toContain(DATA_SOURCE_NAME);
    for (const secret of [PACS_AUTH, PACS_AUTH.slice(6), PACS_USER_PASS]) expect(r.text).not.toContain(secret);
    const config = runAppConfig(r.text, open.url);
    expect(config.dataSources[0].configuration).toMatchObject({
      qidoRoot: `${open.url}/dicom-web`,
      wadoRoot: `${open.url}/dicom-web`,
    });
    expect(config.extensions).toEqual(['/ldfsam/extension.js']);
    expect(config.modes).toEqual(['/ldfsam/mode.js']);
    expect(config.ldfsam).toMatchObject({ apiBase: '/api', dataSourceName: DATA_SOURCE_NAME });
    expect(config.ldfsam).not.toHaveProperty('token');
    expect(config.oidc).toBeUndefined();
  });

  it('/ldfsam/extension.js and /ldfsam/mode.js are the built ES modules', async () => {
    for (const [path, file] of [
      ['/ldfsam/extension.js', files.extensionFile],
      ['/ldfsam/mode.js', files.modeFile],
    ] as const) {
      const r = await raw(open.url, path);
      expect(r.status, path).toBe(200);
      expect(r.headers['content-type'], path).toMatch(/^application\/javascript/);
      expect(r.headers['cache-control'], path).toBe('no-store');
      expect(r.text, path).toMatch(/\bexport\s*(\{|default\b)/);
      expect(r.body.equals(readFileSync(file)), path).toBe(true);
    }
  });

  it('a missing asset is a 404 with a JSON error, not the HTML app; /api and /health are not the app', async () => {
    for (const path of ['/nope.js', '/ldfsam/nope.js', '/static/missing.css', '/api/nope', '/api']) {
      const r = await raw(open.url, path);
      expect(r.status, path).toBe(404);
      expect(r.headers['content-type'], path).toMatch(/^application\/json/);
      expect(r.json().error.code, path).toBe('NOT_FOUND');
    }
    const health = (await raw(open.url, '/health')).json() as { status: string; provider: string | null };
    expect(Object.keys(health).sort()).toEqual(['provider', 'status']); // JSON, not the app; the provider since issue 18
    expect(health.status).toBe('ok');
  });
});

describe('DICOMweb proxy', () => {
  it('the test Orthanc requires the PACS credentials the server is configured with', async () => {
    expect((await raw(orthancHttpUrl, '/dicom-web/studies?limit=1')).status).toBe(401);
    expect((await raw(orthancHttpUrl, '/dicom-web/studies?limit=1', { headers: pacs })).status).toBe(200);
    expect((await raw(open.url, '/dicom-web/studies?limit=1')).status).toBe(200);
  });

  it('QIDO-RS through the proxy gives the same studies and series as Orthanc directly', async () => {
    const accept = { accept: 'application/dicom+json' };
    const direct = await raw(orthancHttpUrl, '/dicom-web/studies', { headers: { ...accept, ...pacs } });
    const proxied = await raw(open.url, '/dicom-web/studies', { headers: accept });
    expect(direct.status).toBe(200);
    expect(proxied.status).toBe(200);
    expect(proxied.headers['content-type']).toMatch(/^application\/dicom\+json/);
    const studies = proxied.json() as Record<string, { Value?: unknown[] }>[];
    expect(studies.length).toBeGreaterThan(3);
    expect(studies).toEqual(withOrigin(direct.text, orthancHttpUrl, open.url));
    // A query with parameters passes through unchanged.
    const query = '/dicom-web/series?Modality=CT&includefield=0008103E';
    const d = await raw(orthancHttpUrl, query, { headers: { ...accept, ...pacs } });
    const p = await raw(open.url, query, { headers: accept });
    expect(p.json().length).toBeGreaterThan(0);
    expect(p.json()).toEqual(withOrigin(d.text, orthancHttpUrl, open.url));
  });

  it("WADO-RS series metadata through the proxy has BulkDataURIs on the server's own origin, and they resolve", async () => {
    const series = (
      await raw(orthancHttpUrl, '/dicom-web/series?Modality=CT', { headers: { accept: 'application/dicom+json', ...pacs } })
    ).json();
    const first = series[0] as Record<string, { Value: string[] }>;
    const study = first['0020000D']!.Value[0]!;
    const uid = first['0020000E']!.Value[0]!;
    const r = await raw(open.url, `/dicom-web/studies/${study}/series/${uid}/metadata`, {
      headers: { accept: 'application/dicom+json' },
    });
    expect(r.status).toBe(200);
    const instances = r.json() as Record<string, { BulkDataURI?: string }>[];
    expect(instances.length).toBeGreaterThan(0);
    // Every image has its pixel data as bulk data, on this server's proxy: the browser fetches it
    // from there, same origin, never from the PACS.
    for (const instance of instances)
      expect(instance['7FE00010']?.BulkDataURI).toMatch(new RegExp(`^${open.url}/dicom-web/studies/`));
    const uris = bulkDataURIs(instances);
    expect(uris.length).toBeGreaterThanOrEqual(instances.length);
    for (const u of uris) expect(u.startsWith(`${open.url}/dicom-web/`), u).toBe(true);
    // The Host the browser used, when it is one of the server's names (LDFSAM_ALLOWED_HOSTS), is what
    // they are built on (a server reached by another name): the proxy tells Orthanc in Forwarded.
    const renamed = await raw(open.url, `/dicom-web/studies/${study}/series/${uid}/metadata`, {
      headers: { accept: 'application/dicom+json', host: 'viewer.hospital.example' },
    });
    const renamedUris = bulkDataURIs(renamed.json());
    expect(renamedUris.length).toBe(uris.length);
    for (const u of renamedUris) expect(u.startsWith('http://viewer.hospital.example/dicom-web/studies/'), u).toBe(true);
    // Any other name is refused before the proxy runs (DNS rebinding).
    const foreign = await raw(open.url, `/dicom-web/studies/${study}/series/${uid}/metadata`, {
      headers: { accept: 'application/dicom+json', host: 'attacker.example' },
    });
    expect(foreign.status).toBe(421);
    expect(foreign.json().error.code).toBe('HOST_NOT_ALLOWED');
    // The pixel data's BulkDataURI, fetched through the proxy, gives Orthanc's bytes.
    const pixels = instances[0]!['7FE00010']!.BulkDataURI!;
    const path = pixels.slice(open.url.length);
    const viaProxy = await raw(open.url, path);
    const fromPacs = await raw(orthancHttpUrl, path, { headers: pacs });
    expect(viaProxy.status).toBe(200);
    expect(fromPacs.status).toBe(200);
    const a = parseMultipart(viaProxy.body, String(viaProxy.headers['content-type']));
    const b = parseMultipart(fromPacs.body, String(fromPacs.headers['content-type']));
    expect(a).toHaveLength(1);
    expect(a[0]!.body.length).toBeGreaterThan(1000);
    expect(Buffer.from(a[0]!.body).equals(Buffer.from(b[0]!.body))).toBe(true);
  });

  it('refuses path traversal with 400 (raw paths, not normalised by a client)', async () => {
    for (const path of [
      '/dicom-web/../../tools/',
      '/dicom-web/%2e%2e/%2e%2e/system',
      '/dicom-web/studies/..%2f..%2f..%2ftools/create-archive',
      '/dicom-web//127.0.0.1/studies',
      '/dicom-web/studies%5c..%5c..%5csystem',
    ]) {
      const r = await raw(open.url, path);
      expect(r.status, path).toBe(400);
      expect(r.json().error.code, path).toBe('INVALID_INPUT');
    }
  });

  it('refuses PUT and DELETE with 400, and the study stays in the PACS', async () => {
    const studies = (
      await raw(orthancHttpUrl, '/dicom-web/studies', { headers: { accept: 'application/dicom+json', ...pacs } })
    ).json();
    const study = studies[0]['0020000D'].Value[0] as string;
    for (const method of ['PUT', 'DELETE']) {
      const r = await raw(open.url, `/dicom-web/studies/${study}`, { method });
      expect(r.status, method).toBe(400);
      expect(r.json().error, method).toMatchObject({
        code: 'INVALID_INPUT',
        message: `method ${method} is not proxied to the PACS`,
      });
    }
    const still = await raw(orthancHttpUrl, `/dicom-web/studies?StudyInstanceUID=${study}`, {
      headers: { accept: 'application/dicom+json', ...pacs },
    });
    expect(still.json()).toHaveLength(1);
  });
});

describe('with API tokens, a viewer token and OIDC', () => {
  const reachedPacs = (from: number) => recorder.seen.slice(from).filter((s) => !s.url.includes('limit=1'));

  it('the viewer files stay public; app-config.js carries the viewer token and the OIDC client, not the PACS credentials', async () => {
    for (const path of ['/', '/ldfsam?StudyInstanceUIDs=1.2.3', '/ldfsam/extension.js', '/ldfsam/mode.js', '/health']) {
      expect((await raw(secure.url, path)).status, path).toBe(200);
    }
    const r = await raw(secure.url, '/app-config.js');
    expect(r.status).toBe(200);
    for (const secret of [PACS_AUTH, PACS_AUTH.slice(6), PACS_USER_PASS, API_TOKEN]) expect(r.text).not.toContain(secret);
    const config = runAppConfig(r.text, 'https://viewer.hospital.example');
    expect(config.ldfsam.token).toBe(VIEWER_TOKEN);
    expect(config.oidc).toEqual([expect.objectContaining({ authority: OIDC_ISSUER, client_id: 'ohif-viewer' })]);
    expect(config.dataSources[0].configuration.qidoRoot).toBe('https://viewer.hospital.example/dicom-web');
  });

  it('/dicom-web needs a token: 401 without (nothing reaches the PACS), 200 with the API or the viewer token', async () => {
    const before = recorder.seen.length;
    for (const headers of [{}, bearer('wrong-token-0000000000'), { authorization: PACS_AUTH }]) {
      const r = await raw(secure.url, '/dicom-web/studies', { headers });
      expect(r.status, JSON.stringify(headers)).toBe(401);
      expect(r.json().error.code).toBe('UNAUTHORIZED');
    }
    expect(reachedPacs(before)).toEqual([]);
    const direct = await raw(orthancHttpUrl, '/dicom-web/studies', { headers: { accept: 'application/dicom+json', ...pacs } });
    for (const token of [API_TOKEN, VIEWER_TOKEN]) {
      const r = await raw(secure.url, '/dicom-web/studies', {
        headers: { ...bearer(token), accept: 'application/dicom+json', cookie: 'session=browser-cookie' },
      });
      expect(r.status, token).toBe(200);
      expect(r.json()).toEqual(withOrigin(direct.text, orthancHttpUrl, secure.url));
    }
    // The viewer token is an API token too.
    expect((await raw(secure.url, '/api/models')).status).toBe(401);
    expect((await raw(secure.url, '/api/models', { headers: bearer(VIEWER_TOKEN) })).status).toBe(200);
    // What reached the PACS: the PACS credentials instead of the browser's token, the PACS's own
    // Host with the browser's (checked) one in Forwarded, no cookie.
    const reached = reachedPacs(before).filter((s) => s.url.startsWith('/dicom-web/studies'));
    expect(reached).toHaveLength(2);
    for (const s of reached) {
      expect(s.method).toBe('GET');
      expect(s.url).toBe('/dicom-web/studies');
      expect(s.headers.authorization).toBe(PACS_AUTH);
      expect(s.headers.host).toBe(new URL(recorder.dicomwebUrl).host);
      expect(s.headers.forwarded).toBe(`host=${new URL(secure.url).host};proto=http`);
      expect(s.headers['x-forwarded-host']).toBe(new URL(secure.url).host);
      expect(s.headers.cookie).toBeUndefined();
      expect(s.headers['x-forwarded-proto']).toBe('http');
    }
  });

  it('path traversal and PUT/DELETE are refused with a valid token too, and nothing reaches the PACS', async () => {
    const before = recorder.seen.length;
    const headers = bearer(API_TOKEN);
    for (const path of ['/dicom-web/../../tools/', '/dicom-web/%2e%2e/%2e%2e/system', '/dicom-web/studies/%2E%2E/%2E%2E/tools']) {
      const r = await raw(secure.url, path, { headers });
      expect(r.status, path).toBe(400);
      expect(r.json().error.code, path).toBe('INVALID_INPUT');
    }
    for (const method of ['PUT', 'DELETE']) {
      const r = await raw(secure.url, '/dicom-web/studies/1.2.3', { method, headers });
      expect(r.status, method).toBe(400);
      expect(r.json().error.code, method).toBe('INVALID_INPUT');
    }
    // Without a token the same requests are 401: authentication comes first.
    expect((await raw(secure.url, '/dicom-web/../../tools/')).status).toBe(401);
    expect((await raw(secure.url, '/dicom-web/studies/1.2.3', { method: 'DELETE' })).status).toBe(401);
    expect(recorder.seen.slice(before)).toEqual([]);
  });
});
