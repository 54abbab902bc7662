/**
 * HTTP for the DICOMweb client: node:http(s) with keep-alive connections, the whole answer read
 * into one Buffer. Measured on the 820x820 series: Node's fetch (undici) spent 4-8 ms of CPU per
 * frame answer (1.3 MB) passing it through WHATWG streams and copying it chunk by chunk; this path
 * spends 2-3 ms, most of it the kernel's copy.
 */
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';

export interface HttpAnswer {
  status: number;
  statusText: string;
  contentType: string;
  body: Buffer;
}

export interface HttpRequest {
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: Buffer;
  signal: AbortSignal;
}

export type Transport = (url: string, request: HttpRequest) => Promise<HttpAnswer>;

/**
 * Node drops an idle connection at once when the server announces "Keep-Alive: timeout=1" (Orthanc's
 * default): it keeps one only for the announced time less 1 s. Such a connection is kept here for
 * 500 ms, half the announced time, so a series' requests share connections instead of opening one
 * each. Idle connections do not keep the process alive.
 */
function keepShortLived(socket: Socket, kept: boolean): boolean {
  if (kept) return true;
  socket.setTimeout(500);
  return true;
}

class HttpAgent extends http.Agent {
  override keepSocketAlive(socket: Socket): boolean {
    return keepShortLived(socket, (super.keepSocketAlive(socket) as unknown as boolean) !== false); // typed void, returns boolean
  }
}

class HttpsAgent extends https.Agent {
  override keepSocketAlive(socket: Socket): boolean {
    return keepShortLived(socket, (super.keepSocketAlive(socket) as unknown as boolean) !== false); // typed void, returns boolean
  }
}

/** The reason an aborted signal gives, as an Error (AbortSignal's own reasons are DOMExceptions, Errors). */
function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error(String(reason));
}

/** Larger announced answers are gathered chunk by chunk: a lying header cannot make the server reserve gigabytes. */
const PREALLOCATED_MAX = 64 << 20;

/**
 * An answer's body gathered into one Buffer. With a Content-Length (every frame answer of Orthanc)
 * the chunks are copied into a Buffer of that size as they come, so each socket chunk can be
 * collected at once and no second whole-answer copy is made at the end (a 1.3 MB frame answer was
 * held twice: its chunks, then their concatenation). `end` returns the body, or why it is wrong.
 */
function answerBody(contentLength: number): { add(chunk: Buffer): void; end(): Buffer | string } {
  const announced = Number.isSafeInteger(contentLength) && contentLength >= 0;
  const into = announced && contentLength <= PREALLOCATED_MAX ? Buffer.allocUnsafeSlow(contentLength) : undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  return {
    add(chunk) {
      if (into && size + chunk.length <= into.length) into.set(chunk, size);
      else chunks.push(chunk);
      size += chunk.length;
    },
    end() {
      if (announced && size !== contentLength) return `answer of ${size} bytes, Content-Length ${contentLength}`;
      if (into) return into;
      return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
    },
  };
}

const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };

/**
 * One request. Connection failures reject with an Error whose `cause` is the socket error (its
 * `code`, e.g. ECONNREFUSED), as fetch does; an aborted signal rejects with the signal's reason.
 */
export const nodeTransport: Transport = (url, request) =>
  new Promise((resolve, reject) => {
    const secure = url.startsWith('https:');
    const req = (secure ? https : http).request(url, {
      method: request.method,
      headers: request.body ? { ...request.headers, 'content-length': String(request.body.length) } : request.headers,
      agent: secure ? agents.https : agents.http,
      signal: request.signal,
    });
    // An aborted signal's reason (a DOMException, an Error) wins over the socket error it caused.
    const fail = (error: Error) => reject(request.signal.aborted ? abortReason(request.signal) : error);
    req.on('error', (err) => fail(Object.assign(new Error('request failed'), { cause: err })));
    req.on('response', (res) => {
      const body = answerBody(Number(res.headers['content-length']));
      res.on('data', (chunk: Buffer) => body.add(chunk));
      res.on('error', (err) => fail(Object.assign(new Error('answer broken off'), { cause: err })));
      res.on('close', () => {
        if (!res.complete) fail(Object.assign(new Error('answer broken off'), { cause: { code: 'ECONNRESET' } }));
      });
      res.on('end', () => {
        if (!res.complete) return reject(Object.assign(new Error('answer broken off'), { cause: { code: 'ECONNRESET' } }));
        const whole = body.end();
        if (typeof whole === 'string') return reject(Object.assign(new Error(whole), { cause: { code: 'ECONNRESET' } }));
        resolve({
          status: res.statusCode ?? 0,
          statusText: res.statusMessage ?? '',
          contentType: String(res.headers['content-type'] ?? ''),
          body: whole,
        });
      });
    });
    req.end(request.body);
  });

/** The same over a fetch implementation (tests, or a caller that wants its own). */
export function fetchTransport(fetchImpl: typeof fetch): Transport {
  return async (url, request) => {
    const res = await fetchImpl(url, {
      method: request.method,
      headers: request.headers,
      body: request.body,
      signal: request.signal,
    });
    return {
      status: res.status,
      statusText: res.statusText,
      contentType: res.headers.get('content-type') ?? '',
      body: Buffer.from(await res.arrayBuffer()),
    };
  };
}
