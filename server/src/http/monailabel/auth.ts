/**
 * MONAI Label's login, mapped onto the server's own authentication. GET /auth/ says whether it is
 * on (as MONAI Label answers). POST /auth/token (form: username, password) answers a bearer token:
 * - the password is an API token (LDFSAM_API_TOKENS, LDFSAM_VIEWER_TOKEN) or an OIDC access token of
 *   the issuer: it is checked and handed back (the user pastes a token as the password);
 * - else, with OIDC and LDFSAM_OIDC_CLIENT_ID, the username and password go to the issuer's token
 *   endpoint (the password grant, as MONAI Label does with Keycloak), and its token is handed back.
 */
import express from 'express';
import { LdfsamError } from '../../errors.js';
import { authEnabled, tokenVerifier, type AuthConfig } from '../auth.js';

const ISSUER_TIMEOUT_MS = 15_000;

export function loginRoutes(auth: AuthConfig, oidcClientId?: string): express.Router {
  const router = express.Router();
  const verify = tokenVerifier(auth);
  router.get('/auth', (_req, res) => {
    res.json({ enabled: authEnabled(auth), client_id: oidcClientId ?? null, realm: auth.oidcIssuer ?? null });
  });
  router.post('/auth/token', express.urlencoded({ extended: false, limit: '16kb' }), async (req, res) => {
    if (!authEnabled(auth)) return void res.json({ access_token: null, token_type: null });
    const { username, password } = (req.body ?? {}) as { username?: unknown; password?: unknown };
    if (typeof password !== 'string' || password === '')
      throw new LdfsamError('INVALID_INPUT', 'send the form fields username and password (an API token as the password)');
    if (await verify(password)) return void res.json({ access_token: password, token_type: 'Bearer' });
    if (auth.oidcIssuer && oidcClientId && typeof username === 'string' && username) {
      const token = await passwordGrant(auth.oidcIssuer, oidcClientId, username, password);
      if (token && (await verify(token))) return void res.json({ access_token: token, token_type: 'Bearer' });
    }
    throw new LdfsamError(
      'UNAUTHORIZED',
      'the password is not a valid token, and the identity provider did not accept the login',
    );
  });
  return router;
}

/** The OAuth 2 password grant at the issuer's token endpoint; undefined when it refuses. */
async function passwordGrant(issuer: string, clientId: string, username: string, password: string): Promise<string | undefined> {
  const signal = AbortSignal.timeout(ISSUER_TIMEOUT_MS);
  try {
    const discovery = (await (
      await fetch(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`, { signal })
    ).json()) as {
      token_endpoint?: string;
    };
    if (!discovery.token_endpoint) return undefined;
    const answer = await fetch(discovery.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'password', client_id: clientId, username, password, scope: 'openid' }),
      signal,
    });
    if (!answer.ok) return undefined;
    const token = ((await answer.json()) as { access_token?: unknown }).access_token;
    return typeof token === 'string' ? token : undefined;
  } catch {
    return undefined;
  }
}
