/**
 * A same-origin proxy from the viewer to the PACS's DICOMweb root. Requests stream both ways (a
 * series of CT frames is never buffered here). The target is fixed by the server's config: the
 * browser chooses only a path below the DICOMweb root, never a host, so no request can be steered
 * to another server. The PACS gets its own name as Host (so a PACS behind name-based virtual
 * hosting works) and the name the browser used, already checked by the host guard, in
 * `Forwarded` / `X-Forwarded-Host` / `X-Forwarded-Proto`: Orthanc's DICOMweb plugin builds the
 * BulkDataURIs of its metadata from `Forwarded`, so they point back at this proxy. The browser's
 * Authorization (our API token), cookies, Origin and any forwarding headers of its own are
 * dropped; the PACS credentials are added here and stay server-side.
 */
import http from 'node:http';
import https from 'node:https';
import type { NextFunction, Request, Response } from 'express';
import { LdfsamError } from '../errors.js';

export interface ProxyOptions {
  /** The PACS's DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web. */
  dicomwebUrl: string;
  /** Authorization header for the PACS (LDFSAM_DICOMWEB_AUTHORIZATION). */
  authorization?: string;
  timeoutMs: number;
}

const METHODS = new Set(['GET', 'HEAD', 'POST']);
// Hop-by-hop headers (RFC 9110 7.6.1) and what must not reach the PACS.
const DROP_REQUEST = new Set([
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'upgrade',
  'authorization',
  'cookie',
  // The PACS is talked to by this server, not by the page: its Origin and Referer stay here.
  'origin',
  'referer',
  // Set below from the checked request; never taken from the browser.
  'host',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-real-ip',
]);
const DROP_RESPONSE = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'trailer',
  'upgrade',
  'set-cookie',
  'www-authenticate',
]);

/**
 * The path below the DICOMweb root a request asks for, or an INVALID_INPUT error. `rawUrl` is the
 * request URL relative to the proxy's mount point (path + query).
 */
export function proxiedPath(rawUrl: string): string {
  const q = rawUrl.indexOf('?');
  const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const query = q < 0 ? '' : rawUrl.slice(q);
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    throw new LdfsamError('INVALID_INPUT', 'malformed DICOMweb path');
  }
  if (!path.startsWith('/') || path.startsWith('//') || /(^|\/)\.\.?(\/|$)/.test(decoded) || /[\\\0\r\n]/.test(decoded)) {
    throw new LdfsamError('INVALID_INPUT', 'invalid DICOMweb path');
  }
  if (/[\r\n\0]/.test(query)) throw new LdfsamError('INVALID_INPUT', 'invalid DICOMweb query');
  return path + query;
}

export function dicomwebProxy(options: ProxyOptions) {
  const root = new URL(options.dicomwebUrl.replace(/\/+$/, ''));
  const transport = root.protocol === 'https:' ? https : http;
  return (req: Request, res: Response, next: NextFunction) => {
    if (!METHODS.has(req.method))
      return next(new LdfsamError('INVALID_INPUT', `method ${req.method} is not proxied to the PACS`));
    let path: string;
    try {
      path = proxiedPath(req.url);
    } catch (err) {
      return next(err);
    }
    const headers: http.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (!DROP_REQUEST.has(name) && value !== undefined) headers[name] = value;
    }
    if (options.authorization) headers.authorization = options.authorization;
    // req.headers.host passed the host guard: a name this server answers to, [a-z0-9.-] or [v6], and a port.
    const publicHost = req.headers.host!;
    headers.host = root.host;
    // Unquoted: Orthanc 1.10 / DICOMweb 1.7 does not strip quotes (it built "http://\" from host="[::1]:5080").
    headers.forwarded = `host=${publicHost};proto=${req.protocol}`;
    headers['x-forwarded-host'] = publicHost;
    headers['x-forwarded-proto'] = req.protocol;
    const upstream = transport.request(
      {
        protocol: root.protocol,
        hostname: root.hostname,
        port: root.port,
        method: req.method,
        path: root.pathname + path,
        headers,
        timeout: options.timeoutMs,
      },
      (answer) => {
        const out: Record<string, string | string[]> = {};
        for (const [name, value] of Object.entries(answer.headers)) {
          if (!DROP_RESPONSE.has(name) && value !== undefined) out[name] = value;
        }
        res.writeHead(answer.statusCode ?? 502, out);
        answer.pipe(res);
        answer.on('error', () => res.destroy());
      },
    );
    upstream.on('timeout', () => upstream.destroy(new Error(`no answer within ${options.timeoutMs} ms`)));
    upstream.on('error', (err) => {
      if (res.headersSent) return res.destroy();
      next(new LdfsamError('PACS_UNAVAILABLE', `PACS unreachable: ${err.message}`));
    });
    // The client went away: stop the PACS transfer too.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  };
}
