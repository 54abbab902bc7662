/**
 * Authentication on, with a static token configured server-side for the served viewer
 * (LDFSAM_VIEWER_TOKEN): the viewer reaches the PACS proxy and the API with it (OHIF's data source
 * and our panel both ask OHIF's user authentication service, which our extension fills), the
 * token never appears in a URL, and the same requests without it are refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, type Browser } from './browser.js';
import { expectOneSegmentation, startStack, type Stack } from './stack.js';

const API_TOKEN = 'e2e-api-token-5c1d0f7a9b2e4c68';
const VIEWER_TOKEN = 'e2e-viewer-token-8f3b6a2d1c0e9f47';
let stack: Stack;
let browser: Browser;
const urls: string[] = [];

beforeAll(async () => {
  stack = await startStack({ apiTokens: [API_TOKEN], viewerToken: VIEWER_TOKEN });
  browser = await launchBrowser();
  browser.page.on('request', (r) => urls.push(r.url()));
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

describe('viewer with a server-configured token', () => {
  it('the PACS proxy and the API refuse requests without a token', async () => {
    expect((await fetch(`${stack.url}/dicom-web/studies`)).status).toBe(401);
    expect((await fetch(`${stack.url}/api/models`)).status).toBe(401);
    expect((await fetch(`${stack.url}/`)).status).toBe(200);
  });

  it('lists studies and auto-segments through the authenticated proxy and API', async () => {
    const page = browser.page;
    await page.goto(`${stack.url}/`);
    await page.getByRole('row').filter({ hasText: 'HC18' }).first().waitFor({ timeout: 60_000 });
    await page.goto(`${stack.url}/ldfsam?StudyInstanceUIDs=${stack.usStudy}`);
    const button = page.locator('[data-cy="ldfsam-segment"]');
    await button.waitFor({ timeout: 60_000 });
    await button.click();
    await expectOneSegmentation(page, stack);
  });

  it('never puts a token in a URL and printed no console errors', () => {
    expect(urls.length).toBeGreaterThan(10);
    expect(urls.filter((u) => u.includes(VIEWER_TOKEN) || u.includes(API_TOKEN))).toEqual([]);
    expect(browser.errors).toEqual([]);
  });
});
