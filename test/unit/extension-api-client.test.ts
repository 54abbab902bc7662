/**
 * The panel's API client (extension/src/api-client.ts) against a real HTTP server on loopback:
 * JSON calls, coded errors, the Authorization header on every call, and following a job over
 * Server-Sent Events read with fetch, with reconnection. No fetch mock: real sockets throughout.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiError, LdfsamApi, parseEvent, readEvents, type Job } from '../../extension/src/api-client.js';

const STUDY = '1.3.46.670589.33.1.27492712521914879309.27169771283235650014';
const SERIES = '1.3.46.670589.33.1.6002432791750815306.26862469513794233732';
const JOB_ID = '3f1c2a9e-5b7d-4e21-9c0a-8d6f4b2e1a77';

function job(state: Job['state'], done: number, extra: Partial<Job> = {}): Job {
  return {
    id: JOB_ID,
    state,
    request: { studyInstanceUID: STUDY, seriesInstanceUID: SERIES, model: 'ldfsam-hc18' },
    progress: { stage: state === 'succeeded' ? 'done' : 'infer', done, total: 28 },
    result: null,
    error: null,
    createdAt: '2025-03-04T10:00:00.000Z',
    startedAt: state === 'queued' ? null : '2025-03-04T10:00:01.500Z',
    finishedAt: state === 'succeeded' ? '2025-03-04T10:00:09.250Z' : null,
    ...extra,
  };
}

const event = (name: string, j: Job, eol = '\n') => `event: ${name}${eol}data: ${JSON.stringify(j)}${eol}${eol}`;

interface Seen {
  method: string;
  url: string;
  authorization?: string;
  accept?: string;
  contentType?: string;
  body: string;
}

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void | Promise<void>;
const servers: Server[] = [];

/** A real HTTP server on 127.0.0.1 (port 0) that records every request and answers with `handler`. */
async function serve(handler: Handler): Promise<{ base: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    seen.push({
      method: req.method ?? '',
      url: req.url ?? '',
      authorization: req.headers.authorization,
      accept: req.headers.accept,
      contentType: req.headers['content-type'],
      body: Buffer.concat(chunks).toString('utf8'),
    });
    await handler(req, res, seen.length);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api`, seen };
}

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function openEvents(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
}

/** A ReadableStream of the given chunks (strings are UTF-8 encoded; byte arrays go as they are). */
function streamOf(chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const bytes = chunks.map((c) => (typeof c === 'string' ? new TextEncoder().encode(c) : c));
  return new ReadableStream({
    pull(controller) {
      const next = bytes.shift();
      if (next) controller.enqueue(next);
      else controller.close();
    },
  });
}

describe('parseEvent', () => {
  it('reads the event name and the JSON job of its data lines', () => {
    expect(parseEvent(`event: progress\ndata: ${JSON.stringify(job('running', 4))}`)).toEqual({
      name: 'progress',
      job: job('running', 4),
    });
    // CRLF line ends, a comment, an id field, no space after the colon.
    expect(parseEvent(`: keep-alive\r\nid: 7\r\nevent:final\r\ndata:${JSON.stringify(job('succeeded', 28))}`)).toEqual({
      name: 'final',
      job: job('succeeded', 28),
    });
    // Data over several lines is joined with newlines (pretty-printed JSON stays valid).
    const pretty = JSON.stringify(job('running', 8), null, 2).split('\n');
    expect(pretty.length).toBeGreaterThan(10);
    expect(parseEvent(['event: progress', ...pretty.map((l) => `data: ${l}`)].join('\n'))?.job).toEqual(job('running', 8));
    expect(parseEvent(`data: ${JSON.stringify(job('queued', 0))}`)?.name).toBe('message');
  });

  it('gives nothing for a block without data (comments, keep-alives)', () => {
    expect(parseEvent(': ping')).toBeUndefined();
    expect(parseEvent('event: progress')).toBeUndefined();
    expect(parseEvent('')).toBeUndefined();
  });
});

describe('readEvents', () => {
  it('parses events split anywhere across chunks, with LF or CRLF, and stops at `final`', async () => {
    const text =
      ': connected\n\n' +
      event('progress', job('running', 4)) +
      event(
        'progress',
        job('running', 8, { error: null, request: { ...job('running', 8).request, model: 'modèle-é' } }),
        '\r\n',
      ) +
      event('final', job('succeeded', 28)) +
      event('progress', job('running', 99)); // after final: never read
    const bytes = new TextEncoder().encode(text);
    // Every split point, including inside "\r\n\r\n" and inside the two-byte UTF-8 "è" and "é".
    for (let cut = 1; cut < bytes.length; cut += 7) {
      const seen: Job[] = [];
      const final = await readEvents(streamOf([bytes.slice(0, cut), bytes.slice(cut)]), (j) => seen.push(j));
      expect(
        seen.map((j) => j.progress?.done),
        `cut at ${cut}`,
      ).toEqual([4, 8, 28]);
      expect(seen[1]!.request.model).toBe('modèle-é');
      expect(final?.state).toBe('succeeded');
    }
    // One byte per chunk.
    const seen: Job[] = [];
    const final = await readEvents(streamOf(Array.from(bytes, (b) => new Uint8Array([b]))), (j) => seen.push(j));
    expect(seen.map((j) => j.progress?.done)).toEqual([4, 8, 28]);
    expect(final?.progress?.done).toBe(28);
  });

  it('gives undefined when the stream ends without a final event', async () => {
    const seen: Job[] = [];
    const final = await readEvents(streamOf([event('progress', job('running', 4)), 'event: progress\ndata: {"trunc']), (j) =>
      seen.push(j),
    );
    expect(final).toBeUndefined();
    expect(seen).toHaveLength(1);
  });

  it('reads a real text/event-stream response whose chunks split events and CRLF pairs', async () => {
    const whole = event('progress', job('running', 4), '\r\n') + event('final', job('succeeded', 28), '\r\n');
    const cut = whole.indexOf('\r\n\r\n') + 1; // between "\r" and "\n"
    const { base } = await serve(async (_req, res) => {
      openEvents(res);
      for (const part of [whole.slice(0, 10), whole.slice(10, cut), whole.slice(cut, cut + 3), whole.slice(cut + 3)]) {
        res.write(part);
        await sleep(20);
      }
      // The connection stays open: the reader must stop at `final`, not at the end of the stream.
    });
    const res = await fetch(`${base}/jobs/${JOB_ID}/events`);
    const seen: Job[] = [];
    const final = await readEvents(res.body!, (j) => seen.push(j));
    expect(seen.map((j) => j.state)).toEqual(['running', 'succeeded']);
    expect(final?.id).toBe(JOB_ID);
  });
});

describe('LdfsamApi', () => {
  it('calls the JSON routes with the Authorization header looked up for every request', async () => {
    const { base, seen } = await serve((req, res) => {
      if (req.method === 'GET' && req.url === '/api/models')
        return sendJson(res, 200, { models: [{ name: 'ldfsam-hc18', version: '1.0.0', modalities: ['US'] }] });
      if (req.method === 'POST' && req.url === '/api/jobs')
        return sendJson(res, 202, { jobId: JOB_ID, jobIds: [JOB_ID], state: 'queued', created: [true] });
      if (req.url === `/api/jobs/${JOB_ID}`) return sendJson(res, 200, job(req.method === 'DELETE' ? 'cancelled' : 'running', 4));
      sendJson(res, 404, { error: { code: 'NOT_FOUND', message: 'no such route' } });
    });
    let n = 0;
    // A trailing slash on the base is fine.
    const api = new LdfsamApi({ apiBase: `${base}/`, authorization: () => `Bearer token-${++n}` });
    expect((await api.models()).map((m) => m.name)).toEqual(['ldfsam-hc18']);
    const submitted = await api.submit({ studyInstanceUID: STUDY, seriesInstanceUID: SERIES, model: 'ldfsam-hc18' });
    expect(submitted).toMatchObject({ jobId: JOB_ID, jobIds: [JOB_ID], created: [true] });
    expect((await api.job(JOB_ID)).state).toBe('running');
    expect((await api.cancel(JOB_ID)).state).toBe('cancelled');
    expect(seen.map((s) => `${s.method} ${s.url} ${s.authorization}`)).toEqual([
      'GET /api/models Bearer token-1',
      `POST /api/jobs Bearer token-2`,
      `GET /api/jobs/${JOB_ID} Bearer token-3`,
      `DELETE /api/jobs/${JOB_ID} Bearer token-4`,
    ]);
    expect(seen[1]!.contentType).toBe('application/json');
    expect(JSON.parse(seen[1]!.body)).toEqual({
      studyInstanceUID: STUDY,
      seriesInstanceUID: SERIES,
      model: 'ldfsam-hc18',
      priority: 'interactive',
    });
    expect(seen.every((s) => s.accept === 'application/json')).toBe(true);
    expect(seen[0]!.contentType).toBeUndefined();
  });

  it('sends no Authorization header when there is no token, and escapes ids in paths', async () => {
    const { base, seen } = await serve((_req, res) => sendJson(res, 200, job('queued', 0)));
    const api = new LdfsamApi({ apiBase: base, authorization: () => undefined });
    await api.job('a/b?c');
    await new LdfsamApi({ apiBase: base }).job(JOB_ID);
    expect(seen.map((s) => s.url)).toEqual(['/api/jobs/a%2Fb%3Fc', `/api/jobs/${JOB_ID}`]);
    expect(seen.map((s) => s.authorization)).toEqual([undefined, undefined]);
  });

  it("turns the server's {error: {code, message}} into an ApiError with that code and status", async () => {
    const answers: [number, unknown][] = [
      [400, { error: { code: 'INVALID_INPUT', message: 'studyInstanceUID: not a DICOM UID' } }],
      [401, { error: { code: 'UNAUTHORIZED', message: 'the token is not valid' } }],
      [404, { error: { code: 'NOT_FOUND', message: `no job ${JOB_ID}` } }],
      [503, { error: { code: 'PACS_UNAVAILABLE', message: 'not ready: PACS: connection refused' } }],
    ];
    const { base } = await serve((_req, res, n) => sendJson(res, ...answers[n - 1]!));
    const api = new LdfsamApi({ apiBase: base });
    const calls = [
      () => api.submit({ studyInstanceUID: '1.2.abc' }),
      () => api.models(),
      () => api.job(JOB_ID),
      () => api.cancel(JOB_ID),
    ];
    for (const [i, call] of calls.entries()) {
      const err = await call().then(
        () => undefined,
        (e: unknown) => e,
      );
      const [status, body] = answers[i]!;
      expect(err).toBeInstanceOf(ApiError);
      expect(err).toMatchObject({ code: (body as any).error.code, message: (body as any).error.message, status });
    }
  });

  it("a non-JSON error page (a reverse proxy's) still gives a coded error", async () => {
    const { base } = await serve((_req, res, n) => {
      res.writeHead(n === 1 ? 502 : 401, { 'content-type': 'text/html' });
      res.end('<html><body>Bad Gateway</body></html>');
    });
    const api = new LdfsamApi({ apiBase: base });
    await expect(api.models()).rejects.toMatchObject({ code: 'HTTP_ERROR', status: 502 });
    await expect(api.models()).rejects.toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
  });

  it('a 200 whose body is cut off is NETWORK, one that is not JSON HTTP_ERROR, one cancelled while read CANCELLED', async () => {
    const { base } = await serve((_req, res, n) => {
      res.writeHead(200, { 'content-type': n === 2 ? 'text/html' : 'application/json', 'content-length': '100' });
      if (n === 2) return void res.end('<html>welcome</html>'.padEnd(100));
      res.write('{"models": [');
      if (n === 1) setTimeout(() => res.destroy(), 50); // the connection breaks mid-body
    });
    const api = new LdfsamApi({ apiBase: base });
    const cut = await api.models().catch((e: unknown) => e);
    expect(cut).toBeInstanceOf(ApiError);
    expect(cut).toMatchObject({ code: 'NETWORK' });
    expect((cut as Error).message).toMatch(/cut off/);
    await expect(api.models()).rejects.toMatchObject({ code: 'HTTP_ERROR', status: 200 });
    const abort = new AbortController();
    const asked = api.encode('s1', 4, abort.signal).catch((e: unknown) => e);
    setTimeout(() => abort.abort(), 50); // headers are in, the body is still coming
    const cancelled = await asked;
    expect(cancelled).toBeInstanceOf(ApiError);
    expect(cancelled).toMatchObject({ code: 'CANCELLED' });
  });

  it('a refused connection is NETWORK', async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const api = new LdfsamApi({ apiBase: `http://127.0.0.1:${port}/api` });
    const err = await api.models().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ code: 'NETWORK', status: undefined });
    expect((err as Error).message).toMatch(/cannot be reached/);
  });

  it('an encode asked ahead is cancelled by its signal: the server sees the request closed, the caller CANCELLED', async () => {
    let closed!: () => void;
    const serverSawClose = new Promise<void>((r) => (closed = r));
    // A server that holds the encode (the slice being encoded) until the client goes.
    const server = createServer((req, res) => {
      res.on('close', () => !res.writableEnded && closed());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const api = new LdfsamApi({ apiBase: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api` });
      const abort = new AbortController();
      const asked = api.encode('s1', 4, abort.signal).catch((e: unknown) => e);
      setTimeout(() => abort.abort(), 50);
      expect(await asked).toMatchObject({ code: 'CANCELLED' });
      await serverSawClose;
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});

describe('LdfsamApi.follow', () => {
  it('reconnects after a stream that ends without `final` and after a 5xx, and resolves on `final`', async () => {
    const { base, seen } = await serve(async (_req, res, n) => {
      if (n === 1) {
        // A proxy time-out: progress, then the stream ends without a final state.
        openEvents(res);
        res.write(': connected\n\n');
        res.write(event('progress', job('running', 4)));
        await sleep(20);
        return void res.end();
      }
      if (n === 2) return sendJson(res, 503, { error: { code: 'PACS_UNAVAILABLE', message: 'restarting' } });
      // The server's stream: the current state first, then progress and the final state, split
      // across writes and with CRLF line ends. The connection is left open after `final`.
      openEvents(res);
      const text = event('progress', job('running', 12), '\r\n') + event('final', job('succeeded', 28), '\r\n');
      for (let i = 0; i < text.length; i += 50) {
        res.write(text.slice(i, i + 50));
        await sleep(2);
      }
    });
    let n = 0;
    const api = new LdfsamApi({ apiBase: base, authorization: () => `Bearer renewed-${++n}` });
    const states: string[] = [];
    const started = Date.now();
    const final = await api.follow(JOB_ID, (j) => states.push(`${j.state} ${j.progress?.done}`));
    expect(final).toMatchObject({ id: JOB_ID, state: 'succeeded', progress: { done: 28 } });
    expect(states).toEqual(['running 4', 'running 12', 'succeeded 28']);
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual(Array(3).fill(`GET /api/jobs/${JOB_ID}/events`));
    // Every reconnection carries the Authorization header, looked up again each time.
    expect(seen.map((s) => s.authorization)).toEqual(['Bearer renewed-1', 'Bearer renewed-2', 'Bearer renewed-3']);
    expect(seen.every((s) => s.accept === 'text/event-stream')).toBe(true);
    // Pauses of 250 then 500 ms between the attempts.
    expect(Date.now() - started).toBeGreaterThanOrEqual(700);
  });

  it('gives up at once on a 4xx, with the server code', async () => {
    const { base, seen } = await serve((_req, res) =>
      sendJson(res, 401, { error: { code: 'UNAUTHORIZED', message: 'the token is not valid' } }),
    );
    const api = new LdfsamApi({ apiBase: base, authorization: () => 'Bearer expired' });
    await expect(api.follow(JOB_ID, () => undefined)).rejects.toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.authorization).toBe('Bearer expired');
  });

  it('stops following when aborted, with code ABORTED', async () => {
    const { base } = await serve((_req, res) => {
      openEvents(res);
      res.write(event('progress', job('running', 4)));
      // never ends
    });
    const abort = new AbortController();
    const api = new LdfsamApi({ apiBase: base });
    const done = api.follow(
      JOB_ID,
      () => {
        setTimeout(() => abort.abort(), 10);
      },
      abort.signal,
    );
    await expect(done).rejects.toMatchObject({ name: 'ApiError', code: 'ABORTED' });
  });
});
