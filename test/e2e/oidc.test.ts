/**
 * The viewer signed in with OpenID Connect (authorization code + PKCE against a test provider):
 * OHIF signs the user in, its DICOMweb requests through the server's proxy and our panel's API
 * calls carry the user's access token, and the server's JWT check accepts it. Without a token the
 * proxy and the API refuse.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, type Browser } from './browser.js';
import { startTestIdp, type TestIdp } from './oidc-provider.js';
import { expectOneSegmentation, startStack, type Stack } from './stack.js';

let idp: TestIdp;
let stack: Stack;
let browser: Browser;
const bearer = new Map<string, string>(); // request URL path -> Authorization sent

beforeAll(async () => {
  idp = await startTestIdp({ audience: 'ldfsam', clientId: 'ldfsam-viewer', user: 'radiologist' });
  stack = await startStack({ oidc: { issuer: idp.issuer, audience: 'ldfsam', jwksUrl: idp.jwksUrl, clientId: 'ldfsam-viewer' } });
  browser = await launchBrowser();
  browser.page.on('request', (r) => {
    const auth = r.headers()['authorization'];
    const path = new URL(r.url()).pathname;
    if (auth && (path.startsWith('/api/') || path.startsWith('/dicom-web/'))) bearer.set(path, auth);
  });
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  await idp?.close();
});

describe('viewer with OIDC sign-in', () => {
  it('refuses the proxy and the API without a token', async () => {
    expect((await fetch(`${stack.url}/dicom-web/studies`)).status).toBe(401);
    expect((await fetch(`${stack.url}/api/models`)).status).toBe(401);
  });

  it('signs the user in, lists studies and auto-segments with the user token', async () => {
    const page = browser.page;
    await page.goto(`${stack.url}/ldfsam?StudyInstanceUIDs=${stack.usStudy}`);
    // OHIF redirects to the provider, which signs in at once and sends the browser back.
    const button = page.locator('[data-cy="ldfsam-segment"]');
    await button.waitFor({ timeout: 90_000 });
    expect(idp.issued.length).toBeGreaterThan(0);
    await button.click();
    await expectOneSegmentation(page, stack);
    // Both OHIF's DICOMweb requests and our panel's API calls carried the provider's access token.
    const tokens = new Set([...bearer.values()]);
    expect([...bearer.keys()].some((p) => p.startsWith('/dicom-web/'))).toBe(true);
    expect([...bearer.keys()].some((p) => p.startsWith('/api/jobs'))).toBe(true);
    expect([...tokens].every((t) => idp.issued.includes(t.replace(/^Bearer /, '')))).toBe(true);
  });

  it('printed no console errors', () => {
    expect(browser.errors).toEqual([]);
  });
});
