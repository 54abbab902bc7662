import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { getEventListeners } from 'node:events';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DicomWebClient } from '../../server/src/dicomweb/client.js';
import { isValidUid } from '../../server/src/util/uid.js';
import { buildMultipart, mediaTypeParam, parseMultipart } from '../../server/src/dicomweb/multipart.js';
import { LdfsamError } from '../../server/src/errors.js';
import { loadConfig } from '../../server/src/config.js';
import { clientFrom } from '../../server/src/dicomweb/from-config.js';
import { nodeTransport } from '../../server/src/dicomweb/transport.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
const servers: import('node:http').Server[] = [];

/** A real HTTP server on loopback that answers with `handlers` in turn. */
async function serve(...handlers: Handler[]): Promise<{ url: string; hits: () => number }> {
  let hits = 0;
  const server = createServer((req, res) => handlers[Math.min(hits++, handlers.length - 1)]!(req, res));
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/dicom-web`, hits: () => hits };
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

const json =
  (status: number, body: unknown): Handler =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/dicom+json' });
    res.end(JSON.stringify(body));
  };

describe('multipart/related', () => {
  it('round-trips binary parts, including CRLF and boundary-like bytes inside them', () => {
    const parts = [new Uint8Array([0x0d, 0x0a, 0x2d, 0x2d, 1, 2]), new Uint8Array(1000).fill(7)];
    const { body, contentType } = buildMultipart(parts);
    const parsed = parseMultipart(body, contentType);
    expect(parsed.map((p) => Array.from(p.body))).toEqual(parts.map((p) => Array.from(p)));
    expect(parsed[0]!.headers['content-type']).toBe('application/dicom');
  });

  it('reads quoted and unquoted media type parameters', () => {
    const ct = 'multipart/related; type="application/octet-stream; transfer-syntax=1.2.840.10008.1.2.5"; boundary=abc';
    expect(mediaTypeParam(ct, 'boundary')).toBe('abc');
    expect(mediaTypeParam(mediaTypeParam(ct, 'type')!, 'transfer-syntax')).toBe('1.2.840.10008.1.2.5');
  });

  it('refuses a truncated answer', () => {
    const { body, contentType } = buildMultipart([new Uint8Array(10)]);
    expect(() => parseMultipart(body.subarray(0, body.length - 20), contentType)).toThrow(/truncated/);
  });
});

describe('the HTTP transport', () => {
  const get = (url: string) => nodeTransport(url, { method: 'GET', headers: {}, signal: new AbortController().signal });
  /** 300 kB of varied bytes, written in pieces with pauses so that they arrive as several socket chunks. */
  const payload = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251));
  const writeSlowly = async (res: ServerResponse, bytes: Buffer) => {
    let at = 0;
    for (; at + 70_000 < bytes.length; at += 70_000) {
      res.write(bytes.subarray(at, at + 70_000));
      await new Promise((r) => setTimeout(r, 5));
    }
    res.end(bytes.subarray(at)); // with the last piece: the connection is idle once the client has it all
  };

  it('gathers an answer with a Content-Length from several chunks, byte for byte', async () => {
    const pacs = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(payload.length) });
      void writeSlowly(res, payload);
    });
    const answer = await get(pacs.url);
    expect(answer.body.length).toBe(payload.length);
    expect(answer.body.equals(payload)).toBe(true);
  });

  it('gathers a chunked answer (no Content-Length), byte for byte', async () => {
    const pacs = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      void writeSlowly(res, payload);
    });
    expect((await get(pacs.url)).body.equals(payload)).toBe(true);
  });

  it('refuses an answer cut short of its Content-Length', async () => {
    const pacs = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(payload.length) });
      res.write(payload.subarray(0, 1000), () => res.socket?.destroy());
    });
    const err = (await get(pacs.url).catch((e: unknown) => e)) as Error & { cause?: { code?: string } };
    expect(err.message).toMatch(/broken off/);
    expect(err.cause?.code).toBe('ECONNRESET');
  });
});

describe('DicomWebClient', () => {
  it('retries 5xx with backoff, then succeeds', async () => {
    const pacs = await serve(json(503, {}), json(502, {}), json(200, [{ '0020000D': { vr: 'UI', Value: ['1.2'] } }]));
    const client = new DicomWebClient({ url: pacs.url, retries: 3, retryDelayMs: 1 });
    const studies = await client.searchForStudies();
    expect(studies).toHaveLength(1);
    expect(pacs.hits()).toBe(3);
  });

  it('never retries a 4xx and reports status and URL', async () => {
    const pacs = await serve(json(400, { Message: 'bad' }));
    const client = new DicomWebClient({ url: pacs.url, retries: 3, retryDelayMs: 1 });
    const err = (await client.searchForSeries({ studyInstanceUID: '1.2.3' }).catch((e: unknown) => e)) as LdfsamError;
    expect(err.code).toBe('PACS_REJECTED');
    expect(err.details).toEqual({ status: 400, url: `${pacs.url}/studies/1.2.3/series` });
    expect(pacs.hits()).toBe(1);
  });

  it('maps 404 to NOT_FOUND', async () => {
    const pacs = await serve(json(404, {}));
    const err = (await new DicomWebClient({ url: pacs.url })
      .retrieveSeriesMetadata({ studyInstanceUID: '1', seriesInstanceUID: '2' })
      .catch((e: unknown) => e)) as LdfsamError;
    expect(err.code).toBe('NOT_FOUND');
  });

  it('gives up after the retries with PACS_UNAVAILABLE when the answer never comes', async () => {
    const pacs = await serve(() => undefined); // accepts, never answers
    const client = new DicomWebClient({ url: pacs.url, retries: 1, retryDelayMs: 1, timeoutMs: 200 });
    const err = (await client.searchForStudies().catch((e: unknown) => e)) as LdfsamError;
    expect(err.code).toBe('PACS_UNAVAILABLE');
    expect(err.message).toMatch(/no answer within 200 ms/);
    expect(pacs.hits()).toBe(2);
  });

  it('stops at once when cancelled', async () => {
    const pacs = await serve(json(503, {}));
    const controller = new AbortController();
    const client = new DicomWebClient({ url: pacs.url, retries: 5, retryDelayMs: 10_000 });
    const pending = client.searchForStudies({ signal: controller.signal }).catch((e: unknown) => e);
    setTimeout(() => controller.abort(), 50);
    expect(((await pending) as LdfsamError).code).toBe('CANCELLED');
  });

  it('stops a request in flight when cancelled, before its time limit', async () => {
    const pacs = await serve(() => undefined); // accepts, never answers
    const controller = new AbortController();
    const client = new DicomWebClient({ url: pacs.url, retries: 5, retryDelayMs: 1, timeoutMs: 10_000 });
    const t0 = performance.now();
    const pending = client.searchForStudies({ signal: controller.signal }).catch((e: unknown) => e);
    setTimeout(() => controller.abort(), 50);
    expect(((await pending) as LdfsamError).code).toBe('CANCELLED');
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(pacs.hits()).toBe(1);
  });

  it("leaves no listener on the caller's signal after retries (a job's signal serves every request)", async () => {
    const pacs = await serve(json(503, {}));
    const controller = new AbortController();
    const client = new DicomWebClient({ url: pacs.url, retries: 12, retryDelayMs: 0 });
    const err = (await client.searchForStudies({ signal: controller.signal }).catch((e: unknown) => e)) as LdfsamError;
    expect(err.code).toBe('PACS_UNAVAILABLE');
    expect(pacs.hits()).toBe(13);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('reads the transfer syntax of each frame part', async () => {
    const pacs = await serve((_req, res) => {
      const boundary = 'b0';
      res.writeHead(200, { 'content-type': `multipart/related; type="application/octet-stream"; boundary=${boundary}` });
      res.end(
        `--${boundary}\r\nContent-Type: application/octet-stream; transfer-syntax=1.2.840.10008.1.2.5\r\n\r\nAB\r\n` +
          `--${boundary}\r\nContent-Type: image/jp2; transfer-syntax="1.2.840.10008.1.2.4.90"\r\n\r\nCD\r\n--${boundary}--\r\n`,
      );
    });
    const frames = await new DicomWebClient({ url: pacs.url }).retrieveInstanceFrames({
      studyInstanceUID: '1',
      seriesInstanceUID: '2',
      sopInstanceUID: '3',
      frameNumbers: [1, 2],
    });
    expect(frames.map((f) => [f.frameNumber, f.transferSyntaxUID, f.bytes.toString()])).toEqual([
      [1, '1.2.840.10008.1.2.5', 'AB'],
      [2, '1.2.840.10008.1.2.4.90', 'CD'],
    ]);
  });

  it('parses STOW-RS answers with stored and failed instances (409)', async () => {
    const pacs = await serve(
      json(409, {
        '00081199': {
          vr: 'SQ',
          Value: [{ '00081150': { vr: 'UI', Value: ['1.2'] }, '00081155': { vr: 'UI', Value: ['1.2.3'] } }],
        },
        '00081198': {
          vr: 'SQ',
          Value: [
            {
              '00081150': { vr: 'UI', Value: ['1.2'] },
              '00081155': { vr: 'UI', Value: ['1.2.4'] },
              '00081197': { vr: 'US', Value: [0xc000] },
            },
          ],
        },
      }),
    );
    const result = await new DicomWebClient({ url: pacs.url }).storeInstances({ datasets: [new Uint8Array(4)] });
    expect(result.stored.map((s) => s.sopInstanceUID)).toEqual(['1.2.3']);
    expect(result.failed).toEqual([{ sopClassUID: '1.2', sopInstanceUID: '1.2.4', failureReason: 0xc000 }]);
  });

  it('adds the configured PACS credentials to every request, server-side', async () => {
    let seen = '';
    const pacs = await serve((req, res) => {
      seen = req.headers.authorization ?? '';
      json(200, [])(req, res);
    });
    const config = loadConfig({ env: { LDFSAM_DICOMWEB_URL: pacs.url, LDFSAM_DICOMWEB_AUTHORIZATION: 'Basic dXNlcjpwYXNz' } });
    await clientFrom(config).searchForStudies();
    expect(seen).toBe('Basic dXNlcjpwYXNz');
  });

  it('sends the PACS credentials to the PACS only, not to a BulkDataURI on another host', async () => {
    const seen: string[] = [];
    const record: Handler = (req, res) => {
      seen.push(req.headers.authorization ?? '(none)');
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(Buffer.from([1, 2, 3]));
    };
    const pacs = await serve(record);
    const elsewhere = await serve(record);
    const client = clientFrom(
      loadConfig({ env: { LDFSAM_DICOMWEB_URL: pacs.url, LDFSAM_DICOMWEB_AUTHORIZATION: 'Basic c2VjcmV0' } }),
    );
    await client.retrieveBulkData({ BulkDataURI: `${pacs.url}/studies/1/series/2/instances/3/bulk/00281201` });
    await client.retrieveBulkData({ BulkDataURI: `${elsewhere.url}/studies/1/series/2/instances/3/bulk/00281201` });
    expect(seen).toEqual(['Basic c2VjcmV0', '(none)']);
  });

  it('accepts only dotted-numeric UIDs of at most 64 characters in paths', () => {
    expect(isValidUid('1.2.840.10008.1.2')).toBe(true);
    for (const bad of ['', '1..2', '01.2', '1.2/../3', '1.2?x=1', `1.${'2'.repeat(63)}`])
      expect(isValidUid(bad), bad).toBe(false);
    expect(() => new DicomWebClient({ url: 'http://x' }).searchForSeries({ studyInstanceUID: '../x' })).toThrow(
      /not a DICOM UID/,
    );
  });
});
