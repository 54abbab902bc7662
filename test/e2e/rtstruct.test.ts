/**
 * OHIF shows the RTSTRUCT the server stored: the shared CT in a real Orthanc, the server with the
 * threshold fixture model, Debian's Chromium on the LDFSAM mode; the panel's result format set to
 * RTSTRUCT, Auto-segment, and the structure set appears in the study browser, is loaded by OHIF as a
 * segmentation with the fixture's ROI, and its contours are drawn over the CT in the ROI's colour.
 */
import { mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/src/config.js';
import { DicomWebClient } from '../../server/src/dicomweb/client.js';
import { startServer, type RunningServer } from '../../server/src/http/server.js';
import { silentLogger } from '../../server/src/log.js';
import { loadFiles } from '../../server/src/pacs/load.js';
import type { OrthancHandle } from '../../server/src/pacs/orthanc.js';
import { projectPath } from '../../server/src/util/paths.js';
import { CT_DIR } from '../setup/data.js';
import { startTestOrthanc } from '../setup/orthanc.js';
import { launchBrowser, type Browser } from './browser.js';

let work: string;
let orthanc: OrthancHandle;
let server: RunningServer;
let browser: Browser;
let page: Page;
let pacs: DicomWebClient;
let study: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ldfsam-e2e-rt-'));
  orthanc = await startTestOrthanc(join(work, 'pacs'));
  pacs = new DicomWebClient({ url: orthanc.dicomwebUrl, headers: { authorization: orthanc.authorization } });
  const loaded = await loadFiles(pacs, [CT_DIR]);
  study = loaded.series[0]!.studyInstanceUID;
  const config = loadConfig({
    env: {},
    flags: {
      dicomwebUrl: orthanc.dicomwebUrl,
      dicomwebAuthorization: orthanc.authorization,
      dataDir: join(work, 'data'),
      port: 0,
      modelDirs: [projectPath('test', 'fixtures', 'model-threshold')],
      batchSize: 4,
    },
  });
  server = await startServer({ ...config, port: 0 }, silentLogger);
  mkdirSync(projectPath('test', 'e2e', 'artifacts'), { recursive: true });
  browser = await launchBrowser();
  page = browser.page;
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  orthanc?.child?.kill('SIGTERM');
  await rm(work, { recursive: true, force: true });
});

/** Viewport pixels in the fixture ROI's orange (230, 159, 0): red well above blue (the CT is grey). */
async function overlayPixels(): Promise<number> {
  const shot = await page.locator('.cornerstone-viewport-element, [data-viewportid]').first().screenshot();
  const { PNG } = await import('pngjs');
  const png = PNG.sync.read(shot);
  let n = 0;
  for (let i = 0; i < png.data.length; i += 4) if (png.data[i]! - png.data[i + 2]! > 60) n++;
  return n;
}

/** Where a slow run is: one line per step (the machine may be shared and loaded). */
const t0 = Date.now();
const step = (what: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${what}`);

describe('RTSTRUCT in OHIF', () => {
  it('the panel set to RTSTRUCT stores one; OHIF lists it, loads it and draws its contours over the CT', async () => {
    await page.goto(`${server.url}/ldfsam?StudyInstanceUIDs=${study}`, { timeout: 120_000 });
    if (
      !(await page
        .locator('[data-cy="ldfsam-panel"]')
        .isVisible({ timeout: 60_000 })
        .catch(() => false))
    ) {
      await page.locator('[data-cy="ldfsamAutoSegment-btn"]').click({ timeout: 60_000 });
    }
    step('viewer open');
    await expect.poll(() => page.locator('[data-cy="ldfsam-series"]').innerText(), { timeout: 90_000 }).toContain('CT');
    step('panel shows the CT');
    expect(await page.locator('[data-cy="ldfsam-model"]').inputValue()).toBe('threshold-fixture');
    expect(await page.locator('[data-cy="ldfsam-outputs"]').inputValue()).toBe('seg');
    await page.locator('[data-cy="ldfsam-outputs"]').selectOption('rtstruct');
    expect(await page.evaluate(() => (globalThis as any).localStorage.getItem('ldfsam.outputs'))).toBe('rtstruct');
    await page.waitForTimeout(2000); // let the image render before measuring
    const before = await overlayPixels();
    await page.locator('[data-cy="ldfsam-segment"]').click();
    step('Auto-segment clicked');

    const run = await expect
      .poll(
        () =>
          page.evaluate(() => {
            const s = (globalThis as any).ldfsamPanel?.store.get();
            return s?.runs[`${s.active.studyInstanceUID}|${s.active.seriesInstanceUID}`];
          }),
        { timeout: 120_000, interval: 500 },
      )
      .toMatchObject({ state: 'succeeded' })
      .then(() =>
        page.evaluate(() => {
          const s = (globalThis as any).ldfsamPanel.store.get();
          return s.runs[`${s.active.studyInstanceUID}|${s.active.seriesInstanceUID}`];
        }),
      );
    step('job succeeded');
    expect(run.rtstructSeriesInstanceUID).toMatch(/^2\.25\./);
    expect(run.segSeriesInstanceUID).toBeUndefined();

    // The study browser lists the RTSTRUCT series.
    await page
      .locator('[data-cy="study-browser-thumbnail-no-image"]')
      .filter({ hasText: 'RTSTRUCT' })
      .first()
      .waitFor({ timeout: 60_000 });
    step('RTSTRUCT thumbnail shown');
    // OHIF loaded it as a segmentation with the fixture's ROI, shown as contours in the viewport.
    await expect
      .poll(() => page.evaluate(() => (globalThis as any).services.segmentationService.getSegmentations().length), {
        timeout: 90_000,
      })
      .toBe(1);
    step('segmentation loaded');
    const shown = await page.evaluate(() => {
      const s = (globalThis as any).services;
      const [seg] = s.segmentationService.getSegmentations();
      const viewportId = s.viewportGridService.getActiveViewportId();
      return {
        labels: Object.values(seg.segments ?? {}).map((x: any) => x?.label),
        types: s.segmentationService.getSegmentationRepresentations(viewportId).map((r: any) => r.type),
      };
    });
    expect(shown.labels).toContain('Tissue');
    expect(shown.types).toEqual(['Contour']);
    await page.waitForTimeout(2000);
    const after = await overlayPixels();
    // The phantom's outline and inner boundaries: hundreds of pixels turn the ROI's colour.
    expect(after - before).toBeGreaterThan(300);
    await page.screenshot({ path: projectPath('test', 'e2e', 'artifacts', 'rtstruct-contours.png') });

    // In the PACS: one RTSTRUCT series, the one the job reported, and no SEG.
    const rt = await pacs.searchForSeries({ studyInstanceUID: study, queryParams: { Modality: 'RTSTRUCT' } });
    expect(rt.map((s) => s['0020000E']?.Value?.[0])).toEqual([run.rtstructSeriesInstanceUID]);
    expect(await pacs.searchForSeries({ studyInstanceUID: study, queryParams: { Modality: 'SEG' } })).toEqual([]);
  }, 400_000);

  it('printed no errors in the browser console', () => {
    expect(browser.errors).toEqual([]);
  });
});
