import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { LdfsamError } from '../../server/src/errors.js';
import { slicePrompts } from '../../server/src/pipeline/volume-segment.js';
import {
  acquisitionAxis,
  paintSlice,
  sliceValues,
  sliceView,
  viewToVoxel,
  voxelToView,
  type Grid,
  type Volume,
} from '../../server/src/volume/grid.js';
import { readNrrd, writeNrrd } from '../../server/src/volume/nrrd.js';
import { readVolume } from '../../server/src/volume/read.js';
import { VolumeStore } from '../../server/src/volume/store.js';

const grid: Grid = {
  size: [4, 3, 2],
  spacing: [0.5, 0.75, 2.5],
  origin: [10, -20, 30.5],
  // i toward patient right, j toward posterior, k toward inferior: a view must flip i and keep j.
  directions: [
    [-1, 0, 0],
    [0, 1, 0],
    [0, 0, -1],
  ],
};
const values = Int16Array.from({ length: 24 }, (_, n) => n * 10 - 50);
const volume: Volume = { ...grid, data: values, scale: { slope: 1, intercept: 0 } };

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof LdfsamError ? `${err.code}: ${err.message}` : String(err);
  }
  return undefined;
}

describe('NRRD', () => {
  it('writes and reads back the grid and the voxels, gzipped or raw', () => {
    for (const compress of [true, false]) {
      const back = readNrrd(writeNrrd(grid, values, { compress }), 1 << 20);
      expect(back.size).toEqual(grid.size);
      back.spacing.forEach((s, a) => expect(s).toBeCloseTo(grid.spacing[a]!, 12));
      expect(back.origin).toEqual(grid.origin);
      back.directions.forEach((d, a) => d.forEach((c, r) => expect(c).toBeCloseTo(grid.directions[a]![r]!, 12)));
      expect(Array.from(back.data)).toEqual(Array.from(values));
    }
  });

  it('reads a right-anterior-superior header into LPS', () => {
    const header = [
      'NRRD0004',
      'type: uchar',
      'dimension: 3',
      'space: right-anterior-superior',
      'sizes: 2 1 1',
      'space directions: (2,0,0) (0,3,0) (0,0,4)',
      'encoding: raw',
      'space origin: (1,2,3)',
      '',
      '',
    ].join('\n');
    const v = readNrrd(Buffer.concat([Buffer.from(header), Buffer.from([7, 9])]), 1024);
    expect(v.origin).toEqual([-1, -2, 3]);
    expect(v.directions.map((d) => d.map((c) => c + 0))).toEqual([
      [-1, 0, 0],
      [0, -1, 0],
      [0, 0, 1],
    ]);
    expect(v.spacing).toEqual([2, 3, 4]);
    expect(Array.from(v.data)).toEqual([7, 9]);
  });

  it('refuses what it cannot place or read, saying what', () => {
    const base = (fields: string[], data: Buffer = Buffer.alloc(24)) =>
      Buffer.concat([Buffer.from(['NRRD0004', ...fields, '', ''].join('\n')), data]);
    const ok = ['type: uchar', 'dimension: 3', 'sizes: 2 3 4', 'encoding: raw'];
    expect(code(() => readNrrd(base(ok), 1024))).toBeUndefined();
    expect(code(() => readNrrd(base([...ok, 'data file: x.raw']), 1024))).toMatch(/INVALID_INPUT: .*detached/);
    expect(
      code(() => readNrrd(base(['type: uchar', 'dimension: 4', 'sizes: 2 3 4 2', 'encoding: raw'], Buffer.alloc(48)), 1024)),
    ).toMatch(/4-D/);
    expect(code(() => readNrrd(base([...ok.slice(1), 'type: int64']), 1024))).toMatch(/type "int64" is not supported/);
    expect(code(() => readNrrd(base(ok, Buffer.alloc(10)), 1024))).toMatch(/truncated: it holds 10 bytes .* says 24/);
    expect(
      code(() => readNrrd(base([...ok.slice(0, 3), 'encoding: gzip'], gzipSync(Buffer.alloc(24)).subarray(0, 12)), 1024)),
    ).toMatch(/damaged or truncated/);
    expect(code(() => readNrrd(base([...ok.slice(0, 3), 'encoding: gzip'], gzipSync(Buffer.alloc(4096))), 1024))).toMatch(
      /PAYLOAD_TOO_LARGE/,
    );
    expect(code(() => readNrrd(base([...ok, 'kinds: RGB-color domain domain']), 1024))).toMatch(/only scalar volumes/);
    expect(code(() => readVolume(Buffer.from('hello'), 1024))).toMatch(/neither NIfTI .* nor NRRD/);
  });
});

describe('slice views', () => {
  it('shows a slice as DICOM displays it and maps pixels back to the same voxels', () => {
    const view = sliceView(grid, acquisitionAxis(grid));
    expect(view).toMatchObject({ axis: 2, xAxis: 0, yAxis: 1, flipX: true, flipY: false, rows: 3, columns: 4, slices: 2 });
    for (let s = 0; s < 2; s++)
      for (let y = 0; y < 3; y++)
        for (let x = 0; x < 4; x++) expect(voxelToView(view, viewToVoxel(view, x, y, s))).toEqual({ x, y, s });
    const slice = sliceValues(volume, view, 1);
    // Pixel (x, y) of slice 1 is voxel (3 - x, y, 1).
    expect(slice[0]).toBe(values[3 + 0 * 4 + 12]);
    expect(slice[5]).toBe(values[2 + 1 * 4 + 12]);
    const label = new Uint8Array(24);
    const bits = new Uint8Array([0b00100001, 0]); // pixels 0 and 5
    paintSlice(label, grid, view, 1, bits, 3);
    expect([...label.keys()].filter((i) => label[i])).toEqual([3 + 12, 2 + 4 + 12]);
  });

  it('takes the slice axis from the file, else a single slice, else thick slices, else k', () => {
    const s = (size: number[], spacing: number[], hint?: 0 | 1 | 2) =>
      acquisitionAxis({
        size: size as [number, number, number],
        spacing: spacing as [number, number, number],
        sliceAxisHint: hint,
      });
    expect(s([10, 10, 10], [1, 1, 1], 0)).toBe(0);
    expect(s([10, 1, 10], [1, 1, 1])).toBe(1);
    expect(s([10, 10, 10], [3, 1, 1])).toBe(0);
    expect(s([10, 10, 10], [1, 1, 1])).toBe(2);
  });
});

describe('prompts', () => {
  const view = sliceView(grid, 2);
  it('puts an ROI on every slice it spans, in view pixels, whatever the order of its corners', () => {
    const p = slicePrompts(grid, view, { foreground: [[1, 1, 0]], background: [], roi: [3, 1, 2, 0, 1, 0] });
    expect([...p.keys()]).toEqual([0, 1]);
    // i 1..3 -> x 0..2 (i is flipped); j 0..2 -> y 0..2.
    expect(p.get(0)).toEqual({ box: [0, 0, 2, 2], points: [{ x: 2, y: 1, positive: true }] });
    expect(p.get(1)).toEqual({ box: [0, 0, 2, 2], points: [] });
  });

  it('keeps clicks on their slices, drops slices with background clicks only, refuses voxels outside', () => {
    const p = slicePrompts(grid, view, { foreground: [[0, 0, 1]], background: [[1, 1, 0]] });
    expect([...p.keys()]).toEqual([1]);
    expect(code(() => slicePrompts(grid, view, { foreground: [[4, 0, 0]], background: [] }))).toMatch(/not a voxel/);
    expect(code(() => slicePrompts(grid, view, { foreground: [], background: [], roi: [1, 2, 3] }))).toMatch(/roi must be/);
  });
});

describe('the datastore', () => {
  it('keeps the most recently used within its size, expires unused entries, and survives a restart', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ldfsam-store-'));
    try {
      let now = 1_000_000;
      const store = new VolumeStore(dir, { maxBytes: 250, ttlMs: 60_000 }, () => now);
      store.addImage('a: one', new Uint8Array(100), '.nrrd', {});
      now += 10;
      store.addImage('b', new Uint8Array(100), '.nrrd', {});
      now += 10;
      store.get('a: one'); // a is now the more recently used
      now += 10;
      store.addImage('c', new Uint8Array(100), '.nii.gz', {});
      expect(
        store
          .list()
          .map((e) => e.id)
          .sort(),
      ).toEqual(['a: one', 'c']);
      expect(code(() => store.addImage('d', new Uint8Array(300), '.nrrd', {}))).toMatch(/PAYLOAD_TOO_LARGE/);
      const again = new VolumeStore(dir, { maxBytes: 250, ttlMs: 60_000 }, () => now);
      expect(
        again
          .list()
          .map((e) => e.id)
          .sort(),
      ).toEqual(['a: one', 'c']);
      now += 60_001;
      expect(again.list()).toEqual([]);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
