/**
 * Who may call the API. Bearer tokens are configured as SHA-256 hashes ("sha256:<hex>") or plain
 * (hashed at start, never kept in clear); OIDC access tokens are verified against the issuer's
 * JWKS with jose. With neither configured the API is open, which the server allows only on loopback.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { LdfsamError } from '../errors.js';

export interface AuthConfig {
  apiTokens: string[];
  oidcIssuer?: string;
  oidcAudience?: string;
  oidcJwksUrl?: string;
}

export function tokenHash(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

export function authEnabled(config: AuthConfig): boolean {
  return config.apiTokens.length > 0 || Boolean(config.oidcIssuer);
}

/**
 * Who a request comes from, for per-user limits (interactive sessions): "token:<first 12 hex of
 * its SHA-256>", "oidc:<subject>", or "anonymous" when authentication is off. Set by createAuth.
 */
export function requestUser(res: Response): string {
  return (res.locals as { user?: string }).user ?? 'anonymous';
}

/**
 * Who a bearer token belongs to: "token:<first 12 hex of its SHA-256>" for a configured token,
 * "oidc:<subject>" for an OIDC access token of the issuer, undefined when it is neither.
 */
export function tokenVerifier(config: AuthConfig): (token: string) => Promise<string | undefined> {
  const hashes = config.apiTokens.map((t) => (t.startsWith('sha256:') ? Buffer.from(t.slice(7), 'hex') : tokenHash(t)));
  const jwks = config.oidcIssuer
    ? createRemoteJWKSet(new URL(config.oidcJwksUrl ?? `${config.oidcIssuer.replace(/\/$/, '')}/protocol/openid-connect/certs`))
    : undefined;
  return async (token: string) => {
    const hash = tokenHash(token);
    if (hashes.some((h) => h.length === hash.length && timingSafeEqual(h, hash)))
      return `token:${hash.toString('hex').slice(0, 12)}`;
    if (jwks) {
      try {
        const { payload } = await jwtVerify(token, jwks, {
          issuer: config.oidcIssuer,
          ...(config.oidcAudience ? { audience: config.oidcAudience } : {}),
        });
        return `oidc:${payload.sub ?? hash.toString('hex').slice(0, 12)}`;
      } catch {
        // not a valid JWT either
      }
    }
    return undefined;
  };
}

export function createAuth(config: AuthConfig) {
  const verify = tokenVerifier(config);
  return async (req: Request, res: Response, next: NextFunction) => {
    if (!authEnabled(config)) return next();
    const header = req.get('authorization') ?? '';
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) return next(new LdfsamError('UNAUTHORIZED', 'authentication required: send Authorization: Bearer <token>'));
    const user = await verify(match[1]!);
    if (!user) return next(new LdfsamError('UNAUTHORIZED', 'the token is not valid'));
    res.locals.user = user;
    next();
  };
}
