/**
 * `ldfsam segment` against the real Orthanc with the threshold fixture model: the SEG stored in the
 * PACS passes dciodvfy, highdicom reads it, every frame references and sits on its source slice
 * unflipped and untransposed, re-runs do not pile up, and bad input fails cleanly with nothing stored.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSegmentation } from '../../server/src/seg/reader.js';
import { projectPath } from '../../server/src/util/paths.js';
import { runCli } from '../setup/cli.js';
import { dciodvfy } from '../setup/dciodvfy.js';
import { CT_DIR, SINGLE_DIR } from '../setup/data.js';
import { freePorts } from '../setup/ports.js';
import { pacsClient, pacsEnv, provided } from '../setup/provided.js';
import { runPython } from '../setup/python.js';

const { dicomwebUrl, derivedDir } = provided();
const client = pacsClient();
const FIXTURE = projectPath('test', 'fixtures', 'model-threshold');
let work: string;

interface Result {
  status: string;
  segSeriesInstanceUID: string | null;
  segSopInstanceUID: string | null;
  sourceSeriesInstanceUID: string;
  sourceStudyInstanceUID: string;
  model: { name: string; version: string };
  frames: number;
  slices: number;
  segments: { number: number; label: string; frames: number }[];
  timingsMs: Record<string, number>;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ldfsam-seg-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function idsOf(paths: string[]): Promise<{ studyInstanceUID: string; seriesInstanceUID: string }> {
  const r = await runCli(['pacs', 'load', '--json', '--dicomweb', dicomwebUrl, ...paths], pacsEnv());
  const { series } = JSON.parse(r.stdout) as { series: { studyInstanceUID: string; seriesInstanceUID: string }[] };
  return series[0]!;
}

async function segment(ids: { studyInstanceUID: string; seriesInstanceUID?: string }, extra: string[] = []) {
  const args = ['segment', '--json', '--dicomweb', dicomwebUrl, '--model', FIXTURE, '--study', ids.studyInstanceUID];
  if (ids.seriesInstanceUID) args.push('--series', ids.seriesInstanceUID);
  return runCli([...args, ...extra], pacsEnv());
}

/** The SEG as stored in the PACS, written to a file for the independent tools. */
async function fetchSeg(r: Result): Promise<string> {
  const bytes = await client.retrieveInstance({
    studyInstanceUID: r.sourceStudyInstanceUID,
    seriesInstanceUID: r.segSeriesInstanceUID!,
    sopInstanceUID: r.segSopInstanceUID!,
  });
  const file = join(work, `${r.segSopInstanceUID}.dcm`);
  await writeFile(file, bytes);
  return file;
}

async function dciodvfyErrors(file: string): Promise<string[]> {
  return (await dciodvfy(file)).errors;
}

interface Check {
  highdicom: string;
  frames: {
    found: boolean;
    positionMatches: boolean;
    dice: number;
    diceFlippedRows: number;
    diceFlippedColumns: number;
    diceTransposed: number;
    sourceFrame: number;
  }[];
}

async function independentCheck(seg: string, sources: string[]): Promise<Check> {
  return JSON.parse(await runPython('test/tools/check_seg.py', [seg, ...sources])) as Check;
}

function expectOnItsSlices(check: Check, minDice = 0.95): void {
  expect(check.highdicom).toBe('ok');
  expect(check.frames.length).toBeGreaterThan(0);
  for (const f of check.frames) {
    expect(f.found).toBe(true);
    expect(f.positionMatches).toBe(true);
    expect(f.dice).toBeGreaterThan(minDice);
    // A flipped or transposed mask would fit much worse: these would catch such a bug.
    expect(Math.max(f.diceFlippedRows, f.diceFlippedColumns, f.diceTransposed)).toBeLessThan(f.dice - 0.2);
  }
}

describe('ldfsam segment (PACS)', () => {
  let ct: Result;

  it('segments the shared CT and stores a SEG that dciodvfy, highdicom and pydicom accept', async () => {
    const ids = await idsOf([CT_DIR]);
    const r = await segment(ids);
    // LDFSAM_PROVIDER=auto without a GPU: one line saying why not CUDA, then the CPU.
    expect(r.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^inference on the CPU: .*CUDA provider library is not installed/),
    ]);
    expect(r.code).toBe(0);
    ct = JSON.parse(r.stdout) as Result;
    expect(ct).toMatchObject({
      provider: 'cpu',
      status: 'stored',
      sourceSeriesInstanceUID: ids.seriesInstanceUID,
      slices: 28,
      frames: 28,
      model: { name: 'threshold-fixture' },
    });
    expect(ct.segments).toEqual([{ number: 1, label: 'Tissue', frames: 28 }]);
    for (const stage of ['plan', 'fetch', 'preprocess', 'infer', 'postprocess', 'encode', 'store', 'verify'])
      expect(ct.timingsMs[stage]).toBeGreaterThanOrEqual(0);
    const file = await fetchSeg(ct);
    expect(await dciodvfyErrors(file)).toEqual([]);
    expectOnItsSlices(await independentCheck(file, [CT_DIR]));
    const seg = readSegmentation(await readFile(file));
    expect(seg.referencedSeriesInstanceUIDs).toEqual([ids.seriesInstanceUID]);
    expect(seg.segments[0]).toMatchObject({
      number: 1,
      algorithmType: 'AUTOMATIC',
      category: { scheme: 'SCT', code: '85756007' },
    });
  });

  it('writes the same SEG from files (--input) as through the PACS, and a re-run leaves one SEG', async () => {
    const out = join(work, 'ct-from-files.dcm');
    const r = await runCli(['segment', '--json', '--model', FIXTURE, '--input', CT_DIR, '--output', out]);
    expect(r.code).toBe(0);
    const local = JSON.parse(r.stdout) as Result;
    // The instance UID is derived from the content: equal UIDs mean voxel-for-voxel equal masks.
    expect(local.segSopInstanceUID).toBe(ct.segSopInstanceUID);
    expect(local.segSeriesInstanceUID).toBe(ct.segSeriesInstanceUID);
    const again = JSON.parse(
      (await segment({ studyInstanceUID: ct.sourceStudyInstanceUID, seriesInstanceUID: ct.sourceSeriesInstanceUID })).stdout,
    ) as Result;
    expect(again.segSopInstanceUID).toBe(ct.segSopInstanceUID);
    const segSeries = await client.searchForSeries({
      studyInstanceUID: ct.sourceStudyInstanceUID,
      queryParams: { Modality: 'SEG' },
    });
    expect(segSeries).toHaveLength(1);
    const instances = await client.searchForInstances({
      studyInstanceUID: ct.sourceStudyInstanceUID,
      seriesInstanceUID: ct.segSeriesInstanceUID!,
    });
    expect(instances).toHaveLength(1);
  });

  it('places frames of a multi-frame (enhanced) source by instance and frame number', async () => {
    const ids = await idsOf([join(derivedDir, 'enhanced-ct')]);
    const r = JSON.parse((await segment(ids)).stdout) as Result;
    expect(r).toMatchObject({ status: 'stored', frames: 28 });
    const check = await independentCheck(await fetchSeg(r), [join(derivedDir, 'enhanced-ct')]);
    expectOnItsSlices(check);
    expect(new Set(check.frames.map((f) => f.sourceFrame)).size).toBe(28);
  });

  it.each([
    ['RGB ultrasound (plain and JPEG 2000 in one series)', ['US1_UNCR.dcm', 'US1_J2KR.dcm']],
    ['palette ultrasound', ['OBXXXX1A.dcm']],
  ])('segments a 2D %s; the SEG follows the image geometry', async (_name, files) => {
    const paths = files.map((f) => join(SINGLE_DIR, f));
    const ids = await idsOf(paths);
    const r = JSON.parse((await segment(ids)).stdout) as Result;
    expect(r.status).toBe('stored');
    const seg = await fetchSeg(r);
    expect(await dciodvfyErrors(seg)).toEqual([]);
    // Speckle is partly lost in the round trip through the 256x256 model input: a lower bar, same flip margin.
    expectOnItsSlices(await independentCheck(seg, paths), 0.7);
  });

  it('segments every accepted series of a study when no series is named', async () => {
    const ids = await idsOf([join(SINGLE_DIR, 'US1_UNCR.dcm'), join(SINGLE_DIR, 'US1_J2KR.dcm')]);
    const r = await segment({ studyInstanceUID: ids.studyInstanceUID });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as Result | { results: Result[] };
    const results = 'results' in out ? out.results : [out];
    expect(results.map((x) => x.status)).toEqual(['stored']);
    expect(results[0]!.slices).toBe(2);
  });

  it('says so, and stores nothing, when every frame is empty', async () => {
    const ids = await idsOf([join(derivedDir, 'blank')]);
    const r = await runCli(
      ['segment', '--dicomweb', dicomwebUrl, '--model', FIXTURE, '--study', ids.studyInstanceUID],
      pacsEnv(),
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/0 frame\(s\); nothing segmented: every frame is empty, no SEG stored/);
    expect(
      await client.searchForSeries({ studyInstanceUID: ids.studyInstanceUID, queryParams: { Modality: 'SEG' } }),
    ).toHaveLength(0);
    const stored = JSON.parse((await segment(ids, ['--store-empty'])).stdout) as Result;
    expect(stored).toMatchObject({ status: 'stored', frames: 1 });
  });
});

describe('ldfsam segment: bad input', () => {
  it('an unknown model', async () => {
    const r = await runCli(
      ['segment', '--dicomweb', dicomwebUrl, '--model', 'no-such-model', '--study', '1.2.3', '--series', '1.2.3.4'],
      pacsEnv(),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[NOT_FOUND\]: unknown model "no-such-model"/);
  });

  it('a modality the model does not accept, and nothing stored', async () => {
    const mrOnly = join(work, 'mr-only');
    await mkdir(mrOnly, { recursive: true });
    await copyFile(join(FIXTURE, 'model.onnx'), join(mrOnly, 'model.onnx'));
    const manifest = JSON.parse(await readFile(join(FIXTURE, 'model.json'), 'utf8')) as { modalities: string[]; name: string };
    await writeFile(join(mrOnly, 'model.json'), JSON.stringify({ ...manifest, name: 'mr-only', modalities: ['MR'] }));
    const ids = await idsOf([CT_DIR]);
    const r = await runCli(
      [
        'segment',
        '--dicomweb',
        dicomwebUrl,
        '--model',
        mrOnly,
        '--study',
        ids.studyInstanceUID,
        '--series',
        ids.seriesInstanceUID,
      ],
      pacsEnv(),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[INVALID_INPUT\]: model mr-only does not accept modality CT \(it accepts MR\)/);
  });

  it('a series the foundation refuses, with nothing stored', async () => {
    const ids = await idsOf([join(derivedDir, 'mixed-sizes')]);
    const r = await runCli(
      [
        'segment',
        '--dicomweb',
        dicomwebUrl,
        '--model',
        FIXTURE,
        '--study',
        ids.studyInstanceUID,
        '--series',
        ids.seriesInstanceUID,
      ],
      pacsEnv(),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[UNSUPPORTED_DICOM\]: series .* mixes image sizes/);
    expect(
      await client.searchForSeries({ studyInstanceUID: ids.studyInstanceUID, queryParams: { Modality: 'SEG' } }),
    ).toHaveLength(0);
  });

  it('a PACS that is down', async () => {
    const [port] = await freePorts(1);
    const r = await runCli(['segment', '--model', FIXTURE, '--study', '1.2.3', '--series', '1.2.3.4'], {
      LDFSAM_DICOMWEB_URL: `http://127.0.0.1:${port}/dicom-web`,
      LDFSAM_PACS_RETRIES: '0',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[PACS_UNAVAILABLE\]: cannot reach the PACS/);
  });
});
