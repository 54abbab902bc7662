/**
 * A minimal OpenID Connect provider for the browser test of the viewer's sign-in: discovery, an
 * authorization endpoint that signs in one test user at once (no login page), a token endpoint
 * for the authorization code flow with PKCE (S256, checked), JWKS and userinfo. Access tokens are
 * RS256 JWTs with the audience the server expects. CORS is open, as a real IdP's is for its SPA
 * clients. For tests only: no client authentication, one user, codes kept in memory.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

export interface TestIdp {
  issuer: string;
  jwksUrl: string;
  /** Access tokens issued so far (the test checks the server saw them). */
  issued: string[];
  close(): Promise<void>;
}

export async function startTestIdp(options: { audience: string; clientId: string; user: string }): Promise<TestIdp> {
  const { publicKey, privateKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'test-key', alg: 'RS256', use: 'sig' };
  const codes = new Map<string, { challenge: string; redirectUri: string; nonce?: string }>();
  const issued: string[] = [];
  let issuer = '';

  const sign = (claims: Record<string, unknown>, audience: string) =>
    new SignJWT({ sub: options.user, preferred_username: options.user, ...claims })
      .setProtectedHeader({ alg: 'RS256', kid: 'test-key' })
      .setIssuer(issuer)
      .setAudience(audience)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(privateKey);

  const server: Server = createServer((req, res) => {
    res.setHeader('access-control-allow-origin', '*');
    res.setHeader('access-control-allow-headers', '*');
    res.setHeader('access-control-allow-methods', 'GET, POST, OPTIONS');
    if (req.method === 'OPTIONS') return void res.writeHead(204).end();
    const url = new URL(req.url ?? '/', issuer);
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    const path = url.pathname.slice(new URL(issuer).pathname.length);
    if (path === '/.well-known/openid-configuration') {
      return json(200, {
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
        userinfo_endpoint: `${issuer}/userinfo`,
        end_session_endpoint: `${issuer}/logout`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
        code_challenge_methods_supported: ['S256'],
        grant_types_supported: ['authorization_code', 'refresh_token'],
      });
    }
    if (path === '/jwks') return json(200, { keys: [jwk] });
    if (path === '/userinfo') return json(200, { sub: options.user, preferred_username: options.user });
    if (path === '/authorize') {
      const q = url.searchParams;
      if (q.get('client_id') !== options.clientId || q.get('code_challenge_method') !== 'S256' || !q.get('redirect_uri'))
        return json(400, { error: 'invalid_request' });
      const code = randomBytes(16).toString('hex');
      codes.set(code, {
        challenge: q.get('code_challenge')!,
        redirectUri: q.get('redirect_uri')!,
        nonce: q.get('nonce') ?? undefined,
      });
      const back = new URL(q.get('redirect_uri')!);
      back.searchParams.set('code', code);
      if (q.get('state')) back.searchParams.set('state', q.get('state')!);
      res.writeHead(302, { location: back.toString() });
      return void res.end();
    }
    if (path === '/token' && req.method === 'POST') {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        void (async () => {
          const form = new URLSearchParams(body);
          const grant = codes.get(form.get('code') ?? '');
          const verifier = form.get('code_verifier') ?? '';
          const challenge = createHash('sha256').update(verifier).digest('base64url');
          if (!grant || grant.challenge !== challenge || grant.redirectUri !== form.get('redirect_uri'))
            return json(400, { error: 'invalid_grant' });
          codes.delete(form.get('code')!);
          const accessToken = await sign({ scope: 'openid profile email' }, options.audience);
          issued.push(accessToken);
          json(200, {
            access_token: accessToken,
            id_token: await sign(grant.nonce ? { nonce: grant.nonce } : {}, options.clientId),
            token_type: 'Bearer',
            expires_in: 600,
            scope: 'openid profile email',
          });
        })();
      });
      return;
    }
    json(404, { error: 'not_found' });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}/realms/ldfsam`;
  return {
    issuer,
    jwksUrl: `${issuer}/jwks`,
    issued,
    close: () => new Promise((r) => server.close(() => r())),
  };
}
