/**
 * `ldfsam import-images` on real HC18 ultrasound (PNG) and PH2 dermoscopy (JPEG) files: dciodvfy finds
 * no errors, pydicom reads what the sources hold (PNG values exactly, the JPEG bitstream byte for
 * byte, the ultrasound calibration as index.csv's pixel size), the server plans and decodes the files,
 * and --store puts them into the shared test PACS, where they read back the same. Only instances made
 * here are stored: their patient ids (LDFSAM-IMPORT-TEST-*) give UIDs no other import can have.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSeries, readFileSlices } from '../../server/src/dicom/file-series.js';
import { parseHc18Index } from '../../server/src/cli/commands/import-presets.js';
import { loadSeriesPlan } from '../../server/src/dicom/inspect.js';
import type { SlicePixels } from '../../server/src/dicom/pixels.js';
import { readSeriesSlices } from '../../server/src/dicom/series-reader.js';
import { runCli } from '../setup/cli.js';
import { dciodvfy } from '../setup/dciodvfy.js';
import { SHARED_DATA } from '../setup/data.js';
import { pacsClient, pacsEnv, provided } from '../setup/provided.js';
import { runPython, venvPython } from '../setup/python.js';

const exec = promisify(execFile);
const HC18 = join(SHARED_DATA, 'hc18');
const PH2 = join(SHARED_DATA, 'ph2');
const HC18_FILES = ['000_HC.png', '010_HC.png', '010_2HC.png'].map((f) => join(HC18, 'images', f));
const PH2_FILES = ['IMD002.jpg', 'IMD003.jpg'].map((f) => join(PH2, 'images', f));
const index = parseHc18Index(readFileSync(join(HC18, 'index.csv'), 'utf8'));
const sizeOf = (file: string) => index.get(basename(file))!.pixelSizeMm;

interface Imported {
  source: string;
  path: string;
  modality: string;
  sopClassUID: string;
  studyInstanceUID: string;
  seriesInstanceUID: string;
  sopInstanceUID: string;
  transferSyntaxUID: string;
  patientID: string;
  photometricInterpretation: string;
  pixelSpacingMm: number | null;
}
interface Report {
  images: Imported[];
  skipped: { path: string; reason: string }[];
  failed: { path: string; code: string; message: string }[];
  store?: { stored: { sopInstanceUID: string }[]; failed: unknown[] };
}
interface PydicomCheck {
  dicom: string;
  source: string;
  sopClassUID: string;
  transferSyntaxUID: string;
  photometricInterpretation: string;
  shape: number[];
  sourceShape: number[];
  pixelSpacing: number[] | null;
  usDeltaMm: { x: number; y: number; unitsX: number; unitsY: number; region: number[] } | null;
  maxDiff: number;
  meanDiff: number;
  bitstreamUnchanged: boolean | null;
  patientIdentityRemoved: string;
  pydicomBin: string;
  sourceBin: string;
}

/**
 * dciodvfy's warnings on these files, each explained; anything else fails the test.
 * - Study Date/Time: the data sets carry no dates and an invented one would mislead (Type 2, empty).
 * - Laterality empty: where a lesion is (PH2) or what a generic image shows is not known, and empty
 *   is how Type 2C says "unknown"; HC18 images say Image Laterality U (unpaired) instead.
 */
const EXPLAINED_WARNINGS = [
  /^Warning - Missing attribute or value that would be needed to build DICOMDIR - Study (Date|Time)$/,
  /^Warning - is only permitted to be empty when actually unknown; .* - attribute <Laterality>$/,
];

let work: string;
let reports: { hc18: Report; ph2: Report; ot: Report };
let checks: PydicomCheck[];

async function importCli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; report: Report; stderr: string }> {
  const r = await runCli(['import-images', '--json', ...args], env);
  return { code: r.code, report: JSON.parse(r.stdout) as Report, stderr: r.stderr };
}

function allImages(): Imported[] {
  return [...reports.hc18.images, ...reports.ph2.images, ...reports.ot.images];
}

function bin(path: string): Uint8Array {
  return new Uint8Array(readFileSync(path));
}

function samplesOf(pixels: SlicePixels): ArrayLike<number> {
  return pixels.kind === 'grey' ? pixels.values : pixels.data;
}

function differences(got: ArrayLike<number>, expected: ArrayLike<number>): { max: number; mean: number } {
  expect(got.length).toBe(expected.length);
  let max = 0;
  let total = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i]! - expected[i]!);
    max = Math.max(max, d);
    total += d;
  }
  return { max, mean: total / got.length };
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ldfsam-import-'));
  const out = join(work, 'out');
  const [hc18, ph2, ot] = await Promise.all([
    importCli([...HC18_FILES, '--preset', 'hc18', '--out', out]),
    importCli([...PH2_FILES, '--preset', 'ph2', '--out', out]),
    importCli([
      HC18_FILES[0]!,
      '--modality',
      'OT',
      '--pixel-spacing',
      '0.5',
      '--patient-id',
      'LDFSAM-IMPORT-TEST-OT',
      '--out',
      out,
    ]),
  ]);
  reports = { hc18: hc18.report, ph2: ph2.report, ot: ot.report };
  checks = JSON.parse(
    await runPython('test/tools/check_imported.py', [
      '--out',
      join(work, 'pydicom'),
      ...allImages().map((i) => `${i.path}=${i.source}`),
    ]),
  ) as PydicomCheck[];
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('ldfsam import-images', () => {
  it('writes one study per subject and one series per image, named after the data set', () => {
    for (const r of Object.values(reports)) expect(r.failed).toEqual([]);
    const [h000, h010, h010b] = reports.hc18.images;
    expect(reports.hc18.images.map((i) => [i.patientID, i.modality, i.sopClassUID, i.photometricInterpretation])).toEqual([
      ['HC18-000', 'US', '1.2.840.10008.5.1.4.1.1.6.1', 'MONOCHROME2'],
      ['HC18-010', 'US', '1.2.840.10008.5.1.4.1.1.6.1', 'MONOCHROME2'],
      ['HC18-010', 'US', '1.2.840.10008.5.1.4.1.1.6.1', 'MONOCHROME2'],
    ]);
    expect(h010!.studyInstanceUID).toBe(h010b!.studyInstanceUID); // two images of subject 010: one study
    expect(h010!.seriesInstanceUID).not.toBe(h010b!.seriesInstanceUID); // with their own spacings: two series
    expect(h000!.studyInstanceUID).not.toBe(h010!.studyInstanceUID);
    expect(h010b!.pixelSpacingMm).toBe(sizeOf('010_2HC.png'));
    expect(reports.ph2.images.map((i) => [i.patientID, i.modality, i.transferSyntaxUID, i.photometricInterpretation])).toEqual([
      ['PH2-IMD002', 'XC', '1.2.840.10008.1.2.4.50', 'YBR_FULL_422'],
      ['PH2-IMD003', 'XC', '1.2.840.10008.1.2.4.50', 'YBR_FULL_422'],
    ]);
    expect(reports.ot.images[0]).toMatchObject({ sopClassUID: '1.2.840.10008.5.1.4.1.1.7', pixelSpacingMm: 0.5 });
    expect(new Set(allImages().map((i) => i.sopInstanceUID)).size).toBe(6);
  });

  it('dciodvfy finds no errors, and every warning is an explained one', async () => {
    for (const image of allImages()) {
      const { errors, warnings } = await dciodvfy(image.path);
      expect(errors, `${basename(image.path)}`).toEqual([]);
      const unexplained = warnings.filter((l) => !EXPLAINED_WARNINGS.some((w) => w.test(l)));
      expect(unexplained, `${basename(image.path)}`).toEqual([]);
    }
  });

  it('pydicom reads the PNG values exactly, the JPEG bitstream unchanged and the US calibration as index.csv', () => {
    expect(checks).toHaveLength(6);
    for (const c of checks) {
      expect(c.shape.slice(0, 2)).toEqual(c.sourceShape.slice(0, 2));
      if (c.source.endsWith('.png')) expect(c.maxDiff, c.source).toBe(0);
      else {
        expect(c.bitstreamUnchanged, c.source).toBe(true);
        // pydicom decodes with pylibjpeg (libjpeg), the reference with Pillow (libjpeg-turbo): IDCT and
        // chroma upsampling round differently by a few levels (measured: at most 3, mean 0.23).
        expect(c.maxDiff, c.source).toBeLessThanOrEqual(3);
        expect(c.meanDiff, c.source).toBeLessThan(0.5);
      }
    }
    for (const c of checks.filter((c) => c.dicom.includes('HC18-'))) {
      expect(c.usDeltaMm!.x).toBeCloseTo(sizeOf(c.source), 12);
      expect(c.usDeltaMm!.y).toBeCloseTo(sizeOf(c.source), 12);
      expect(c.usDeltaMm).toMatchObject({ unitsX: 3, unitsY: 3, region: [0, 0, 799, 539] });
      expect(c.pixelSpacing).toBeNull(); // the US Image IOD calibrates through regions only
      expect(c.patientIdentityRemoved).toBe('YES');
    }
    const ot = checks.find((c) => c.dicom.includes('LDFSAM-IMPORT-TEST-OT'))!;
    expect(ot).toMatchObject({ pixelSpacing: [0.5, 0.5], usDeltaMm: null, patientIdentityRemoved: '' });
  });

  it("the server's planner and decoder read the files: index.csv spacing, source pixels", async () => {
    for (const c of checks) {
      const series = await readFileSeries([c.dicom]);
      const plan = series.plan;
      if (c.dicom.includes('HC18-')) {
        expect(plan.pixelSpacingSource).toBe('UltrasoundRegion');
        expect(plan.pixelSpacing![0]).toBeCloseTo(sizeOf(c.source), 12);
        expect(plan.pixelSpacing![1]).toBeCloseTo(sizeOf(c.source), 12);
      } else if (c.dicom.includes('PH2-')) {
        expect(plan.pixelSpacing).toBeNull();
      } else expect(plan.pixelSpacing).toEqual([0.5, 0.5]);
      const slices = [];
      for await (const slice of readFileSlices(series)) slices.push(slice);
      expect(slices).toHaveLength(1);
      const got = samplesOf(slices[0]!.pixels);
      if (c.source.endsWith('.png')) expect(differences(got, bin(c.sourceBin)).max, c.source).toBe(0);
      else {
        // The server's libjpeg-turbo against Pillow's (the same codec family): within 1 level, as the
        // decode tests require of lossy JPEG; against pydicom's libjpeg within its few levels.
        expect(differences(got, bin(c.sourceBin)).max, c.source).toBeLessThanOrEqual(1);
        const vsPydicom = differences(got, bin(c.pydicomBin));
        expect(vsPydicom.max, c.source).toBeLessThanOrEqual(3);
        expect(vsPydicom.mean, c.source).toBeLessThan(0.5);
      }
    }
  });

  it('a re-import writes the same files byte for byte (same UIDs)', async () => {
    const hc18Index = join(HC18, 'index.csv');
    const again = await importCli([
      ...HC18_FILES,
      ...PH2_FILES,
      '--preset',
      'hc18',
      '--index',
      hc18Index,
      '--out',
      join(work, 'again'),
    ]);
    // PH2 files are not in HC18's index: refused one by one, the HC18 ones still written.
    expect(again.code).toBe(1);
    expect(again.report.failed.map((f) => [basename(f.path), f.code])).toEqual([
      ['IMD002.jpg', 'INVALID_INPUT'],
      ['IMD003.jpg', 'INVALID_INPUT'],
    ]);
    expect(again.report.failed[0]!.message).toMatch(/not listed in the HC18 index/);
    const ph2 = await importCli([...PH2_FILES, '--preset', 'ph2', '--out', join(work, 'again')]);
    const first = [...reports.hc18.images, ...reports.ph2.images];
    const second = [...again.report.images, ...ph2.report.images];
    expect(second.map((i) => i.sopInstanceUID)).toEqual(first.map((i) => i.sopInstanceUID));
    for (let i = 0; i < first.length; i++) {
      expect(Buffer.compare(await readFile(second[i]!.path), await readFile(first[i]!.path)), basename(first[i]!.path)).toBe(0);
    }
  });

  it('refuses a progressive JPEG and unlabelled images, and skips what is not an image', async () => {
    const progressive = join(work, 'progressive.jpg');
    await exec(venvPython(), [
      '-c',
      'import sys; from PIL import Image; Image.open(sys.argv[1]).save(sys.argv[2], progressive=True, quality=90)',
      PH2_FILES[0]!,
      progressive,
    ]);
    const r = await importCli([progressive, join(HC18, 'index.csv'), '--modality', 'XC', '--out', join(work, 'refused')]);
    expect(r.code).toBe(1);
    expect(r.report.images).toEqual([]);
    expect(r.report.failed).toEqual([
      { path: progressive, code: 'INVALID_INPUT', message: expect.stringMatching(/^progressive 8-bit JPEG is not supported/) },
    ]);
    expect(r.report.skipped).toEqual([{ path: join(HC18, 'index.csv'), reason: 'not a PNG or JPEG image' }]);
    const unlabelled = await runCli(['import-images', HC18_FILES[0]!, '--out', join(work, 'refused')]);
    expect(unlabelled.code).toBe(1);
    expect(unlabelled.stderr).toMatch(/\[INVALID_INPUT\]: say what the images are: --modality US\|XC\|OT, or --preset hc18\|ph2/);
  });

  it('--store puts its own images into the PACS once; the server reads them there as from the files', async () => {
    const { dicomwebUrl } = provided();
    const client = pacsClient();
    const us = ['--modality', 'US', '--pixel-spacing', String(sizeOf('010_2HC.png')), '--patient-id', 'LDFSAM-IMPORT-TEST-US'];
    const xc = ['--modality', 'XC', '--patient-id', 'LDFSAM-IMPORT-TEST-XC'];
    const runs = [
      [HC18_FILES[2]!, ...us],
      [PH2_FILES[0]!, ...xc],
    ];
    for (const args of runs) {
      const stored = await importCli([...args, '--out', join(work, 'stored'), '--store', '--dicomweb', dicomwebUrl], pacsEnv());
      expect(stored.code, stored.stderr).toBe(0);
      const [image] = stored.report.images;
      expect(stored.report.store!.stored.map((s) => s.sopInstanceUID)).toEqual([image!.sopInstanceUID]);

      const plan = await loadSeriesPlan(client, image!);
      expect(plan).toMatchObject({ modality: image!.modality, rows: image!.modality === 'US' ? 540 : 572 });
      if (image!.modality === 'US') {
        expect(plan.pixelSpacingSource).toBe('UltrasoundRegion');
        expect(plan.pixelSpacing![0]).toBeCloseTo(sizeOf('010_2HC.png'), 12);
      } else expect(plan.pixelSpacing).toBeNull();
      const fromPacs = [];
      for await (const slice of readSeriesSlices(client, plan)) fromPacs.push(slice);
      const fromFile = [];
      for await (const slice of readFileSlices(await readFileSeries([image!.path]))) fromFile.push(slice);
      expect(fromPacs).toHaveLength(1);
      expect(fromPacs[0]!.transferSyntaxUID).toBe(image!.transferSyntaxUID); // stored as written, not transcoded
      expect(differences(samplesOf(fromPacs[0]!.pixels), samplesOf(fromFile[0]!.pixels)).max).toBe(0);

      // Importing and storing again sends the same instance: the PACS still holds one.
      const repeat = await importCli(
        [...args, '--out', join(work, 'stored-again'), '--store', '--dicomweb', dicomwebUrl],
        pacsEnv(),
      );
      expect(repeat.code, repeat.stderr).toBe(0);
      expect(repeat.report.images[0]!.sopInstanceUID).toBe(image!.sopInstanceUID);
      const instances = await client.searchForInstances({ studyInstanceUID: image!.studyInstanceUID });
      expect(instances).toHaveLength(1);
    }
  });
});
