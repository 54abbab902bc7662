/**
 * The DNS-rebinding guard, in front of every route and the PACS proxy. A page on attacker.example
 * whose name is re-pointed at 127.0.0.1 reaches this server with `Host: attacker.example:<port>`,
 * and the browser treats the answers as that page's own; so only the names this server is known by
 * are served: localhost, 127.0.0.1 and [::1] on the port the request came in on, the address it is
 * bound to, and LDFSAM_ALLOWED_HOSTS. A state-changing request whose Origin is none of those (a page
 * elsewhere posting here) is refused too. Cross-site HTML forms are already harmless: only JSON
 * bodies are parsed.
 */
import type { NextFunction, Request, Response } from 'express';
import { LdfsamError } from '../errors.js';

export interface HostPolicy {
  /** LDFSAM_ALLOWED_HOSTS: `name` (any port) or `name:port`, lower case. */
  allowedHosts: string[];
  /** The address the server listens on (LDFSAM_HOST); a specific one is its own name like loopback. */
  boundHost?: string;
}

interface HostName {
  name: string;
  port: number | undefined;
}

const LOOPBACK = ['localhost', '127.0.0.1', '[::1]'];
const ANY_ADDRESS = new Set(['0.0.0.0', '::', '[::]']);
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** "name", "name:port", "[v6]" or "[v6]:port", lower case; undefined for anything else. */
export function parseHost(value: string): HostName | undefined {
  // '_' is not in RFC 1123 names but in container and Windows host names, and browsers send it.
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?)(?::(\d{1,5}))?$/i.exec(value);
  if (!m) return undefined;
  return { name: m[1]!.toLowerCase(), port: m[2] === undefined ? undefined : Number(m[2]) };
}

/** Whether `host` (name + port, the port defaulted) is one this server answers to on `localPort`. */
export function isAllowedHost(host: HostName & { port: number }, localPort: number, policy: HostPolicy): boolean {
  const bound = policy.boundHost?.toLowerCase();
  const own = [...LOOPBACK];
  if (bound && !ANY_ADDRESS.has(bound)) own.push(bound.includes(':') && !bound.startsWith('[') ? `[${bound}]` : bound);
  if (own.includes(host.name) && host.port === localPort) return true;
  return policy.allowedHosts.some((entry) => {
    const e = parseHost(entry);
    return e !== undefined && e.name === host.name && (e.port === undefined || e.port === host.port);
  });
}

export function hostGuard(policy: HostPolicy) {
  return (req: Request, _res: Response, next: NextFunction) => {
    const localPort = req.socket.localPort ?? 0;
    const raw = req.headers.host ?? '';
    const host = parseHost(raw);
    if (!host || !isAllowedHost({ name: host.name, port: host.port ?? 80 }, localPort, policy)) {
      return next(
        new LdfsamError(
          'HOST_NOT_ALLOWED',
          // The configured names are not listed: a rebinding page can read this answer.
          `this server does not answer to Host ${JSON.stringify(raw.slice(0, 100))}: use localhost, 127.0.0.1 or [::1] ` +
            `(port ${localPort}) or a name in its LDFSAM_ALLOWED_HOSTS; add the name there if it is this server's`,
        ),
      );
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !SAFE_METHODS.has(req.method) && !isOwnOrigin(origin, localPort, policy)) {
      return next(
        new LdfsamError(
          'ORIGIN_NOT_ALLOWED',
          `${req.method} from a page of another origin (${JSON.stringify(origin.slice(0, 100))}) is refused`,
        ),
      );
    }
    next();
  };
}

function isOwnOrigin(origin: string, localPort: number, policy: HostPolicy): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false; // "null" (sandboxed frames, file: pages) and anything malformed
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
  return isAllowedHost({ name: url.hostname.toLowerCase(), port }, localPort, policy);
}
