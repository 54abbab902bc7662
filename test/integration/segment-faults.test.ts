/**
 * PACS faults during a job, injected by a real HTTP proxy in front of the real Orthanc: a connection
 * that breaks while frames are fetched, and a PACS that answers 503 to the store. Each ends in a
 * coded error, and nothing is stored.
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DicomWebClient } from '../../server/src/dicomweb/client.js';
import { projectPath } from '../../server/src/util/paths.js';
import { runCli } from '../setup/cli.js';
import { provided } from '../setup/provided.js';

const { dicomwebUrl, derivedDir } = provided();
const client = new DicomWebClient({ url: dicomwebUrl });
const FIXTURE = projectPath('test', 'fixtures', 'model-threshold');
let proxy: Server | undefined;

afterEach(async () => {
  await new Promise((r) => (proxy ? proxy.close(r) : r(undefined)));
  proxy = undefined;
});

/** Forwards to Orthanc; `fault(method, url, count)` may answer instead ('reset' or a status). */
async function startProxy(fault: (method: string, url: string, n: number) => 'reset' | number | undefined): Promise<string> {
  const target = new URL(dicomwebUrl);
  let n = 0;
  proxy = createServer((req, res) => {
    const verdict = fault(req.method ?? 'GET', req.url ?? '', n++);
    if (verdict === 'reset') return void req.socket.destroy();
    if (typeof verdict === 'number') {
      res.writeHead(verdict, { 'content-type': 'text/plain' });
      return void res.end('injected fault');
    }
    const upstream = request(
      { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    req.pipe(upstream);
  });
  await new Promise<void>((r) => proxy!.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(proxy!.address() as AddressInfo).port}`;
}

async function idsOf(name: string) {
  const r = await runCli(['pacs', 'load', '--json', '--dicomweb', dicomwebUrl, join(derivedDir, name)]);
  return (JSON.parse(r.stdout) as { series: { studyInstanceUID: string; seriesInstanceUID: string }[] }).series[0]!;
}

describe('PACS faults during segmentation', () => {
  it('a connection broken while frames are fetched: PACS_UNAVAILABLE, nothing stored', async () => {
    const ids = await idsOf('ct-jpegll');
    const base = await startProxy((method, url) => (method === 'GET' && url.includes('/frames/') ? 'reset' : undefined));
    const r = await runCli(['segment', '--model', FIXTURE, '--study', ids.studyInstanceUID, '--series', ids.seriesInstanceUID], {
      LDFSAM_DICOMWEB_URL: `${base}${new URL(dicomwebUrl).pathname}`,
      LDFSAM_PACS_RETRIES: '1',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[PACS_UNAVAILABLE\]: cannot reach the PACS at .*\/frames\//);
    expect(
      await client.searchForSeries({ studyInstanceUID: ids.studyInstanceUID, queryParams: { Modality: 'SEG' } }),
    ).toHaveLength(0);
  });

  it('a store answered 503 (after retries): PACS_UNAVAILABLE, nothing stored', async () => {
    const ids = await idsOf('ct-mono1');
    let stores = 0;
    const base = await startProxy((method) => (method === 'POST' ? (stores++, 503) : undefined));
    const r = await runCli(['segment', '--model', FIXTURE, '--study', ids.studyInstanceUID, '--series', ids.seriesInstanceUID], {
      LDFSAM_DICOMWEB_URL: `${base}${new URL(dicomwebUrl).pathname}`,
      LDFSAM_PACS_RETRIES: '2',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[PACS_UNAVAILABLE\]: PACS answered 503/);
    expect(stores).toBe(3); // first try + 2 retries
    expect(
      await client.searchForSeries({ studyInstanceUID: ids.studyInstanceUID, queryParams: { Modality: 'SEG' } }),
    ).toHaveLength(0);
  });
});
