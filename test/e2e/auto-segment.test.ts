/**
 * The user's first sentence, end to end in a real browser: open the study list, launch the LDFSAM
 * mode on an ultrasound study, click Auto-segment, watch the progress reach 100%, see the SEG in
 * the study browser and drawn over the image, and find it in the PACS. Then the same for Cancel
 * and for a server-side failure. Real Orthanc, real server, real OHIF (the pinned @ohif/app dist),
 * Debian's Chromium.
 */
import { mkdirSync } from 'node:fs';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectPath } from '../../server/src/util/paths.js';
import { launchBrowser, type Browser } from './browser.js';
import { startStack, type Stack } from './stack.js';

/** OHIF messages that are not ours and not failures (see test/e2e/README.md). */
const KNOWN_NOISE: RegExp[] = [];

let stack: Stack;
let browser: Browser;
let page: Page;
const ARTIFACTS = projectPath('test', 'e2e', 'artifacts');

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  stack = await startStack();
  browser = await launchBrowser();
  page = browser.page;
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

interface PanelRun {
  state: string;
  done: number;
  total: number;
  stage?: string;
  jobId?: string;
  segSeriesInstanceUID?: string;
  error?: { code: string; message: string };
}

/** The panel's state for the active series (the controller outlives panel unmounts). */
async function activeRun(): Promise<PanelRun | undefined> {
  return page.evaluate(() => {
    const c = (globalThis as any).ldfsamPanel;
    const s = c?.store.get();
    if (!s?.active) return undefined;
    return s.runs[`${s.active.studyInstanceUID}|${s.active.seriesInstanceUID}`];
  });
}

async function waitForRun(predicate: (r: PanelRun) => boolean, what: string, timeoutMs = 90_000): Promise<PanelRun> {
  const deadline = Date.now() + timeoutMs;
  let last: PanelRun | undefined;
  while (Date.now() < deadline) {
    last = await activeRun();
    if (last && predicate(last)) return last;
    await page.waitForTimeout(200);
  }
  throw new Error(`timed out waiting for ${what}; last panel state: ${JSON.stringify(last)}`);
}

/** Opens our panel (its tab button) unless it is showing. */
async function openPanel(): Promise<void> {
  if (await page.locator('[data-cy="ldfsam-panel"]').isVisible()) return;
  await page.locator('[data-cy="ldfsamAutoSegment-btn"]').click();
  await page.locator('[data-cy="ldfsam-panel"]').waitFor({ state: 'visible' });
}

/** Pixels of the viewport that carry the overlay's colour (orange: red well above blue). */
async function overlayPixels(): Promise<number> {
  const shot = await page.locator('.cornerstone-viewport-element, [data-viewportid]').first().screenshot();
  const { PNG } = await import('pngjs');
  const png = PNG.sync.read(shot);
  let n = 0;
  for (let i = 0; i < png.data.length; i += 4) {
    const r = png.data[i]!;
    const b = png.data[i + 2]!;
    if (r - b > 60) n++;
  }
  return n;
}

async function segSeries(study: string) {
  return stack.pacs.searchForSeries({ studyInstanceUID: study, queryParams: { Modality: 'SEG' } });
}

describe('LDFSAM auto-segment in OHIF', () => {
  it('launches the LDFSAM mode from the study list on an ultrasound study', async () => {
    await page.goto(`${stack.url}/`);
    const row = page.getByRole('row').filter({ hasText: 'HC18' }).filter({ hasText: '006' }).first();
    await row.waitFor({ timeout: 60_000 });
    await row.hover();
    await row.getByRole('button', { name: 'Action Menu' }).click();
    await page.getByRole('menuitem', { name: 'LDFSAM auto-segment' }).click();
    await page.waitForURL(/\/ldfsam\?/);
    expect(page.url()).toContain(stack.usStudy);
    await openPanel();
    await expect.poll(() => page.locator('[data-cy="ldfsam-series"]').innerText(), { timeout: 60_000 }).toContain('US');
    const info = await page.locator('[data-cy="ldfsam-model-info"]').innerText();
    expect(info).toMatch(/Fetal head/);
    expect(await page.locator('[data-cy="ldfsam-model"]').inputValue()).toBe('ldfsam-hc18');
  });

  it('auto-segments: progress to 100%, the SEG in the study browser and over the image, and in the PACS', async () => {
    await page.waitForTimeout(2000); // let the image render before measuring
    const before = await overlayPixels();
    await page.locator('[data-cy="ldfsam-segment"]').click();
    const final = await waitForRun((r) => ['succeeded', 'failed', 'cancelled'].includes(r.state), 'the job to end');
    expect(final).toMatchObject({ state: 'succeeded', done: 1, total: 1 });
    expect(final.segSeriesInstanceUID).toMatch(/^2\.25\./);

    // The study browser shows the new SEG series.
    const thumbnail = page.locator('[data-cy="study-browser-thumbnail-no-image"]').filter({ hasText: 'SEG' });
    await thumbnail.first().waitFor({ timeout: 60_000 });
    // The segmentation is loaded and drawn in the viewport.
    await expect
      .poll(() => page.evaluate(() => (globalThis as any).services.segmentationService.getSegmentations().length), {
        timeout: 60_000,
      })
      .toBe(1);
    const segments = await page.evaluate(() => {
      const s = (globalThis as any).services;
      const [seg] = s.segmentationService.getSegmentations();
      const viewportId = s.viewportGridService.getActiveViewportId();
      return {
        labels: Object.values(seg.segments ?? {}).map((x: any) => x?.label),
        representations: s.segmentationService.getSegmentationRepresentations(viewportId).length,
      };
    });
    expect(segments.labels).toContain('Fetal head');
    expect(segments.representations).toBe(1);
    await page.waitForTimeout(1500);
    const after = await overlayPixels();
    // HC18 006's head covers a large part of the image: thousands of pixels turn orange.
    expect(after - before).toBeGreaterThan(5000);

    // In the PACS: one SEG series, the one the job reported.
    const stored = await segSeries(stack.usStudy);
    expect(stored.map((s) => s['0020000E']?.Value?.[0])).toEqual([final.segSeriesInstanceUID]);

    // Our panel again (OHIF switched to its segmentation panel): 100%, and the screenshot for the README.
    await openPanel();
    const progress = page.locator('[data-cy="ldfsam-progress"]');
    await expect.poll(() => progress.getAttribute('data-percent')).toBe('100');
    expect(await progress.innerText()).toMatch(/Found on 1 of 1 slice/);
    await page.screenshot({ path: `${ARTIFACTS}/panel-after-run.png` });
  });

  it('a second click on the same series says a result exists and offers to re-run', async () => {
    await page.locator('[data-cy="ldfsam-segment"]').click();
    const dialog = page.locator('[data-cy="ldfsam-rerun"]');
    await dialog.waitFor();
    expect(await dialog.innerText()).toMatch(/already has a ldfsam-hc18 result/);
    await dialog.getByRole('button', { name: 'Close' }).click();
    expect(await segSeries(stack.usStudy)).toHaveLength(1);
  });

  it('Cancel stops a running job: the panel says so and nothing is stored', async () => {
    await page.goto(`${stack.url}/ldfsam?StudyInstanceUIDs=${stack.cineStudy}`);
    await openPanel();
    await expect.poll(() => page.locator('[data-cy="ldfsam-series"]').innerText(), { timeout: 60_000 }).toContain('300 slices');
    await page.locator('[data-cy="ldfsam-segment"]').click();
    await waitForRun((r) => r.state === 'running' && r.done > 0, 'slices to be segmented');
    // Keyboard: Tab to the Cancel button and press Enter, as a keyboard user would.
    await page.locator('[data-cy="ldfsam-cancel"]').focus();
    await page.keyboard.press('Enter');
    const final = await waitForRun((r) => ['succeeded', 'failed', 'cancelled'].includes(r.state), 'the cancel');
    expect(final.state).toBe('cancelled');
    expect(final.done).toBeLessThan(300);
    await expect.poll(() => page.locator('[data-cy="ldfsam-stage"]').innerText()).toMatch(/Cancelled; nothing stored/);
    expect(await segSeries(stack.cineStudy)).toHaveLength(0);
  });

  it('a server-side failure is shown in the panel and as a notification, with its code', async () => {
    await page.locator('[data-cy="ldfsam-model"]').selectOption('fails-on-batches');
    await page.locator('[data-cy="ldfsam-segment"]').click();
    const final = await waitForRun((r) => ['succeeded', 'failed', 'cancelled'].includes(r.state), 'the failure');
    expect(final.state).toBe('failed');
    expect(final.error?.code).toBe('INFERENCE_FAILED');
    const panelError = page.locator('[data-cy="ldfsam-error"]');
    await panelError.waitFor();
    expect(await panelError.innerText()).toMatch(
      /failed on this series\. Nothing was stored\.[\s\S]*error code INFERENCE_FAILED/,
    );
    const toast = page.locator('[data-sonner-toast][data-type="error"]');
    await toast.first().waitFor();
    expect(await toast.first().innerText()).toContain('INFERENCE_FAILED');
    expect(await segSeries(stack.cineStudy)).toHaveLength(0);
  });

  it('a series without the structure: the panel says nothing was found, and nothing is stored or drawn', async () => {
    await page.goto(`${stack.url}/ldfsam?StudyInstanceUIDs=${stack.negativeStudy}`);
    await openPanel();
    await expect.poll(() => page.locator('[data-cy="ldfsam-series"]').innerText(), { timeout: 60_000 }).toContain('3 slices');
    await page.locator('[data-cy="ldfsam-model"]').selectOption('presence-fixture');
    await page.locator('[data-cy="ldfsam-segment"]').click();
    const final = await waitForRun((r) => ['succeeded', 'failed', 'cancelled'].includes(r.state), 'the job to end');
    expect(final).toMatchObject({ state: 'succeeded', done: 3, total: 3 });
    expect(final.segSeriesInstanceUID).toBeUndefined();
    const progress = page.locator('[data-cy="ldfsam-progress"]');
    await expect.poll(() => progress.getAttribute('data-outcome')).toBe('nothing-found');
    expect(await page.locator('[data-cy="ldfsam-stage"]').innerText()).toBe('Nothing found; nothing was stored');
    expect(await page.locator('[data-cy="ldfsam-outcome"]').innerText()).toMatch(
      /^No tissue found: none of the 3 slices reached the presence threshold 0\.50 \(highest score 0\.0\d\); nothing was stored\.$/,
    );
    const toast = page.locator('[data-sonner-toast]').filter({ hasText: 'nothing found' });
    await toast.first().waitFor();
    expect(await toast.first().innerText()).toMatch(/No tissue found/);
    expect(await page.evaluate(() => (globalThis as any).services.segmentationService.getSegmentations().length)).toBe(0);
    expect(await segSeries(stack.negativeStudy)).toHaveLength(0);
    await page.screenshot({ path: `${ARTIFACTS}/panel-nothing-found.png` });
  });

  it('segments every series of a study, each with its own progress', async () => {
    await page.goto(`${stack.url}/ldfsam?StudyInstanceUIDs=${stack.twoSeriesStudy}`);
    await openPanel();
    const button = page.locator('[data-cy="ldfsam-segment-study"]');
    await button.waitFor({ timeout: 60_000 });
    await button.click();
    const blocks = page.locator('[data-cy="ldfsam-batch"] [data-cy="ldfsam-progress"]');
    await expect.poll(() => blocks.count(), { timeout: 60_000 }).toBe(2);
    await expect
      .poll(async () => (await blocks.evaluateAll((els) => els.map((e) => e.getAttribute('data-state')))).join(','), {
        timeout: 90_000,
      })
      .toBe('succeeded,succeeded');
    expect(await blocks.evaluateAll((els) => els.map((e) => e.getAttribute('data-percent')))).toEqual(['100', '100']);
    // The shipped HC18 model's presence gate may find no head on a series (it scores 022_2HC's small
    // head 0.0005, models/README "Presence gate"): such a job succeeds as nothing found, stores
    // nothing, and the batch view counts it apart from the segmented ones and the failures.
    const counts = await page.locator('[data-cy="ldfsam-batch-counts"]').innerText();
    const m = /^(\d+) segmented · (\d+) nothing found · 0 failed$/.exec(counts);
    expect(m, counts).not.toBeNull();
    const [segmented, nothing] = [Number(m![1]), Number(m![2])];
    expect(segmented + nothing).toBe(2);
    expect(segmented).toBeGreaterThanOrEqual(1);
    expect(await segSeries(stack.twoSeriesStudy)).toHaveLength(segmented);
  });

  it('printed no errors in the browser console', () => {
    const ours = browser.errors.filter((e) => !KNOWN_NOISE.some((re) => re.test(e)));
    expect(ours).toEqual([]);
  });
});
