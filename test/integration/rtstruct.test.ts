/**
 * RT Structure Sets end to end: `ldfsam segment --output-format both` on the shared CT with the
 * threshold fixture stores a SEG and an RTSTRUCT that dciodvfy accepts; an independent reader
 * (pydicom + scikit-image's polygon fill, test/tools/check_rtstruct.py) turns the RTSTRUCT back into
 * masks equal to the SEG's on the same images, unflipped; synthetic masks with holes, islands,
 * one-pixel structures and the image border come back exactly; a simplification tolerance keeps
 * Dice >= 0.98; ultrasound gets no RTSTRUCT, with a clear message; the job API takes `outputs`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/src/config.js';
import { readFileSeries } from '../../server/src/dicom/file-series.js';
import { startServer, type RunningServer } from '../../server/src/http/server.js';
import { silentLogger } from '../../server/src/log.js';
import type { ModelManifest } from '../../server/src/models/manifest.js';
import { packBits } from '../../server/src/seg/bits.js';
import { buildRtStruct } from '../../server/src/seg/rtstruct.js';
import { buildSegmentation } from '../../server/src/seg/writer.js';
import { projectPath } from '../../server/src/util/paths.js';
import { runCli } from '../setup/cli.js';
import { CT_DIR, ctFiles, SINGLE_DIR } from '../setup/data.js';
import { dciodvfy } from '../setup/dciodvfy.js';
import { pacsClient, pacsEnv, provided } from '../setup/provided.js';
import { runPython } from '../setup/python.js';

const { dicomwebUrl } = provided();

/** The CLI with the test PACS's credentials (it runs with authentication, as the embedded PACS does). */
function cliWithPacs(args: string[], env: Record<string, string> = {}) {
  return runCli(args, { ...pacsEnv(), ...env });
}
const client = pacsClient();
const FIXTURE = projectPath('test', 'fixtures', 'model-threshold');
let work: string;

interface Result {
  status: string;
  segSeriesInstanceUID: string | null;
  segSopInstanceUID: string | null;
  rtstructSeriesInstanceUID: string | null;
  rtstructSopInstanceUID: string | null;
  rtstructRois: { number: number; contours: number; points: number }[] | null;
  sourceStudyInstanceUID: string;
  storedIn: string[];
  notes: string[];
  frames: number;
}

interface Check {
  rois: {
    number: number;
    images: number;
    rtstructImages: number;
    segImages: number;
    meanDice: number;
    minDice: number;
    exactImages: number;
    flippedMeanDice: number;
    voxels: number;
  }[];
  maxPlaneDistanceMm: number;
  misplacedContours: number;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ldfsam-rt-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function load(paths: string[]): Promise<{ studyInstanceUID: string; seriesInstanceUID: string }> {
  const r = await cliWithPacs(['pacs', 'load', '--json', '--dicomweb', dicomwebUrl, ...paths]);
  return (JSON.parse(r.stdout) as { series: { studyInstanceUID: string; seriesInstanceUID: string }[] }).series[0]!;
}

async function fetchInstance(study: string, series: string, sop: string): Promise<string> {
  const bytes = await client.retrieveInstance({ studyInstanceUID: study, seriesInstanceUID: series, sopInstanceUID: sop });
  const file = join(work, `${sop}.dcm`);
  await writeFile(file, bytes);
  return file;
}

/** dciodvfy's errors; a missing or failing dciodvfy fails the test (test/setup/dciodvfy.ts). */
async function dciodvfyErrors(file: string): Promise<string[]> {
  return (await dciodvfy(file)).errors;
}

async function check(rtstruct: string, seg: string, sources: string[]): Promise<Check> {
  return JSON.parse(await runPython('test/tools/check_rtstruct.py', ['--rtstruct', rtstruct, '--seg', seg, ...sources])) as Check;
}

function expectExact(c: Check): void {
  expect(c.misplacedContours).toBe(0);
  expect(c.maxPlaneDistanceMm).toBeLessThan(0.001);
  for (const roi of c.rois) {
    expect(roi.rtstructImages).toBe(roi.segImages);
    expect(roi.exactImages, `ROI ${roi.number}`).toBe(roi.images);
    expect(roi.meanDice).toBe(1);
    // The check can fail: the same masks flipped would not match.
    expect(roi.flippedMeanDice).toBeLessThan(0.9);
  }
}

describe('RTSTRUCT beside SEG', () => {
  let ct: Result;

  it('stores a SEG and an RTSTRUCT of the shared CT; dciodvfy accepts the RTSTRUCT; read back, its contours are the SEG exactly, on the same slices', async () => {
    const ids = await load([CT_DIR]);
    const r = await cliWithPacs([
      'segment',
      '--json',
      '--dicomweb',
      dicomwebUrl,
      '--model',
      FIXTURE,
      '--study',
      ids.studyInstanceUID,
      '--series',
      ids.seriesInstanceUID,
      '--output-format',
      'both',
    ]);
    expect(r.code, r.stderr).toBe(0);
    ct = JSON.parse(r.stdout) as Result;
    expect(ct).toMatchObject({ status: 'stored', frames: 28, storedIn: ['stow'], notes: [] });
    expect(ct.rtstructSopInstanceUID).toMatch(/^2\.25\.\d+$/);
    expect(ct.rtstructSeriesInstanceUID).not.toBe(ct.segSeriesInstanceUID);
    const rs = await fetchInstance(ids.studyInstanceUID, ct.rtstructSeriesInstanceUID!, ct.rtstructSopInstanceUID!);
    const seg = await fetchInstance(ids.studyInstanceUID, ct.segSeriesInstanceUID!, ct.segSopInstanceUID!);
    expect(await dciodvfyErrors(rs)).toEqual([]);
    const c = await check(rs, seg, ctFiles());
    expect(c.rois).toHaveLength(1);
    expect(c.rois[0]!.images).toBe(28);
    expectExact(c);
    const rtSeries = await client.searchForSeries({
      studyInstanceUID: ids.studyInstanceUID,
      queryParams: { Modality: 'RTSTRUCT' },
    });
    expect(rtSeries).toHaveLength(1);
  }, 300_000);

  it('with a simplification tolerance of 0.45 pixel keeps mean Dice >= 0.98 with fewer points (files, no PACS)', async () => {
    const out = join(work, 'ct.dcm');
    const r = await cliWithPacs([
      'segment',
      '--json',
      '--model',
      FIXTURE,
      '--input',
      CT_DIR,
      '--output',
      out,
      '--output-format',
      'both',
      '--rtstruct-tolerance',
      '0.45',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const simplified = JSON.parse(r.stdout) as Result;
    expect(simplified.segSopInstanceUID).toBe(ct.segSopInstanceUID);
    expect(simplified.rtstructSopInstanceUID).not.toBe(ct.rtstructSopInstanceUID);
    const c = await check(join(work, 'ct.rtstruct.dcm'), out, ctFiles());
    expect(c.rois[0]!.meanDice).toBeGreaterThanOrEqual(0.98);
    expect(c.rois[0]!.flippedMeanDice).toBeLessThan(0.9);
    const exactPoints = ct.rtstructRois![0]!.points;
    const fewer = simplified.rtstructRois![0]!.points;
    expect(fewer).toBeLessThan(exactPoints);
    console.log(
      `RTSTRUCT of the shared CT: ${exactPoints} points exact, ${fewer} at 0.45 px (${((100 * fewer) / exactPoints).toFixed(1)}%), ` +
        `mean Dice ${c.rois[0]!.meanDice.toFixed(4)}, min ${c.rois[0]!.minDice.toFixed(4)}`,
    );
  }, 300_000);

  it('reproduces synthetic masks exactly: holes with islands in them, many islands, one-pixel structures, diagonal neighbours, the image border', async () => {
    const series = await readFileSeries([CT_DIR]);
    const { plan } = series;
    const { rows, columns } = plan;
    const masks = [0, 1].map(() => plan.slices.map(() => new Uint8Array(rows * columns)));
    const set = (m: Uint8Array, y: number, x: number) => (m[y * columns + x] = 1);
    const a = masks[0]!;
    // Slice 3: a ring (hole) with an island inside, and a second hole beside it.
    for (let y = 100; y < 300; y++)
      for (let x = 100; x < 300; x++) {
        const d = Math.hypot(x - 200, y - 200);
        if ((d < 90 && d > 40) || d < 15) set(a[3]!, y, x);
      }
    for (let y = 250; y < 270; y++) for (let x = 150; x < 170; x++) a[3]![y * columns + x] = 0;
    // Slice 10: 400 islands of 1 to 3 pixels, and a checkerboard (pixels touching only at corners).
    for (let i = 0; i < 400; i++) {
      const y = 20 + Math.floor(i / 20) * 11;
      const x = 20 + (i % 20) * 11;
      for (let k = 0; k <= i % 3; k++) set(a[10]!, y, x + k);
    }
    for (let y = 400; y < 420; y++) for (let x = 400; x < 420; x++) if ((x + y) % 2 === 0) set(a[10]!, y, x);
    // Slice 20: bands along every border, a one-pixel structure in each corner region.
    for (let i = 0; i < rows; i++) for (const x of [0, 1, columns - 1]) set(a[20]!, i, x);
    for (let i = 0; i < columns; i++) for (const y of [0, rows - 1, rows - 2]) set(a[20]!, y, i);
    for (const [y, x] of [
      [5, 5],
      [5, columns - 6],
      [rows - 6, 5],
      [rows - 6, columns - 6],
    ] as const)
      set(a[20]!, y, x);
    // Segment 2: a lone pixel on the last slice; nothing else.
    set(masks[1]![27]!, 256, 256);
    const model = {
      name: 'synthetic',
      version: '1',
      segments: [1, 2].map((number) => ({
        number,
        label: `S${number}`,
        category: { scheme: 'SCT', code: '85756007', meaning: 'Tissue' },
        type: { scheme: 'SCT', code: '85756007', meaning: 'Tissue' },
        color: { rgb: [255, 0, 0], cielab: [1, 2, 3] },
      })),
    } as unknown as Pick<ModelManifest, 'name' | 'version' | 'segments'>;
    const bits = masks.map((perSlice) => perSlice.map((m) => (m.some((v) => v) ? packBits(m) : undefined)));
    const frames = bits.flatMap((perSlice, s) =>
      perSlice.flatMap((b, sliceIndex) => (b ? [{ sliceIndex, segmentNumber: s + 1, bits: b }] : [])),
    );
    const seg = buildSegmentation({ plan, sourceInstance: series.instances[0]!, frames, model, softwareVersion: '0' });
    await writeFile(join(work, 'synthetic-seg.dcm'), seg.bytes);
    for (const tolerance of [0, 0.45]) {
      const rt = buildRtStruct({
        plan,
        sourceInstance: series.instances[0]!,
        masks: bits,
        model,
        softwareVersion: '0',
        tolerance,
      });
      const file = join(work, `synthetic-rt-${tolerance}.dcm`);
      await writeFile(file, rt.bytes);
      expect(await dciodvfyErrors(file)).toEqual([]);
      const c = await check(file, join(work, 'synthetic-seg.dcm'), ctFiles());
      expect(c.rois.map((r) => r.images)).toEqual([3, 1]);
      if (tolerance === 0) {
        expectExact(c);
        expect(rt.rois[0]!.contours).toBeGreaterThan(600);
      } else {
        for (const roi of c.rois) expect(roi.meanDice).toBeGreaterThanOrEqual(0.98);
        console.log(`synthetic masks at 0.45 px: mean Dice ${c.rois.map((r) => r.meanDice.toFixed(4)).join(', ')}`);
      }
    }
  }, 300_000);

  it('writes no RTSTRUCT for ultrasound: alone it is refused before inference, with both the SEG is stored and a note says why', async () => {
    const ids = await load([join(SINGLE_DIR, 'US1_UNCR.dcm')]);
    const base = ['segment', '--json', '--dicomweb', dicomwebUrl, '--model', FIXTURE, '--study', ids.studyInstanceUID];
    const alone = await cliWithPacs([...base, '--output-format', 'rtstruct']);
    expect(alone.code).toBe(1);
    expect(alone.stderr).toMatch(/\[INVALID_INPUT\].*has no patient coordinate system.*use the SEG output/);
    expect(
      await client.searchForSeries({ studyInstanceUID: ids.studyInstanceUID, queryParams: { Modality: 'RTSTRUCT' } }),
    ).toEqual([]);
    const both = await cliWithPacs([...base, '--output-format', 'both']);
    expect(both.code, both.stderr).toBe(0);
    const r = JSON.parse(both.stdout) as Result;
    expect(r.status).toBe('stored');
    expect(r.segSopInstanceUID).toBeTruthy();
    expect(r.rtstructSopInstanceUID).toBeNull();
    expect(r.notes.join(' ')).toMatch(/no RTSTRUCT: .*no patient coordinate system/);
    expect(
      await client.searchForSeries({ studyInstanceUID: ids.studyInstanceUID, queryParams: { Modality: 'RTSTRUCT' } }),
    ).toEqual([]);
  }, 300_000);
});

describe('outputs in the jobs API', () => {
  let server: RunningServer;
  beforeAll(async () => {
    const config = loadConfig({
      env: {},
      flags: {
        dicomwebUrl,
        dicomwebAuthorization: provided().pacsAuthorization,
        dataDir: join(work, 'api'),
        port: 0,
        modelDirs: [FIXTURE],
        batchSize: 4,
      },
    });
    server = await startServer({ ...config, port: 0 }, silentLogger, { retryDelayMs: 100 });
  });
  afterAll(async () => server?.close());

  async function call(path: string, body?: unknown): Promise<{ status: number; body: any }> {
    const res = await fetch(`${server.url}${path}`, {
      method: body ? 'POST' : 'GET',
      headers: body ? { 'content-type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, body: await res.json() };
  }

  it('a job with outputs "rtstruct" stores only the RTSTRUCT; it is a request apart from the SEG one; bad values are refused', async () => {
    const { studyInstanceUID, seriesInstanceUID } = await load([CT_DIR]);
    const request = { studyInstanceUID, seriesInstanceUID, model: 'threshold-fixture' };
    expect((await call('/api/jobs', { ...request, outputs: 'nifti' })).body.error.code).toBe('INVALID_INPUT');
    const accepted = await call('/api/jobs', { ...request, outputs: 'rtstruct' });
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(202);
    let job: any;
    for (let i = 0; i < 600; i++) {
      job = (await call(`/api/jobs/${accepted.body.jobId}`)).body;
      if (['succeeded', 'failed'].includes(job.state)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(job.state, JSON.stringify(job.error)).toBe('succeeded');
    expect(job.request.outputs).toBe('rtstruct');
    expect(job.result).toMatchObject({ status: 'stored', segSeriesInstanceUID: null, storedIn: ['stow'] });
    expect(job.result.rtstructSopInstanceUID).toMatch(/^2\.25\./);
    // The SEG request is another request: not answered with this job.
    const seg = await call('/api/jobs', request);
    expect(seg.body.jobId).not.toBe(accepted.body.jobId);
  }, 300_000);
});
