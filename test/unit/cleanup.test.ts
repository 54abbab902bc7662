/** The run-based clean-ups (cleanup.ts) equal the pixel-by-pixel references bit for bit, and return the same counts. */
import { describe, expect, it } from 'vitest';
import * as fast from '../../server/src/pipeline/cleanup.js';
import { countBits, fillBits, forEachRun, nextBit } from '../../server/src/pipeline/mask-runs.js';
import { packBits } from '../../server/src/seg/bits.js';
import * as reference from './reference/cleanup-reference.js';

/** A deterministic pseudo-random generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Masks of several kinds: noise of a density, ellipses with holes and specks, stripes, full, empty. */
function mask(kind: number, rows: number, columns: number, random: () => number): Uint8Array {
  const m = new Uint8Array(rows * columns);
  const density = [0.02, 0.3, 0.5, 0.9][kind % 4]!;
  const cx = random() * columns;
  const cy = random() * rows;
  const ax = 2 + random() * columns * 0.6;
  const ay = 2 + random() * rows * 0.6;
  const t = random() * Math.PI;
  for (let y = 0; y < rows; y++)
    for (let x = 0; x < columns; x++) {
      const dx = x - cx;
      const dy = y - cy;
      const u = (dx * Math.cos(t) + dy * Math.sin(t)) / ax;
      const v = (-dx * Math.sin(t) + dy * Math.cos(t)) / ay;
      const r = u * u + v * v;
      let on: boolean;
      if (kind < 4) on = random() < density;
      else if (kind === 4)
        on = r <= 1 && !(r < 0.1 && random() < 0.5); // an ellipse with a noisy hole
      else if (kind === 5)
        on = (r <= 1 && r > 0.3) || random() < 0.003; // a ring with specks
      else if (kind === 6)
        on = ((x >> 2) + (y >> 3)) % 3 === 0; // stripes
      else if (kind === 7) on = true;
      else on = false;
      m[y * columns + x] = on ? 1 : 0;
    }
  return m;
}

const SIZES: [number, number][] = [
  [1, 1],
  [3, 5],
  [7, 9],
  [29, 37],
  [64, 64],
  [57, 100],
  [131, 83],
];

function volumes(seed: number): { rows: number; columns: number; slices: Uint8Array[] }[] {
  const random = rng(seed);
  const out = [];
  for (const [rows, columns] of SIZES)
    for (let kind = 0; kind < 9; kind++) {
      const depth = 1 + Math.floor(random() * 4);
      out.push({
        rows,
        columns,
        slices: Array.from({ length: depth }, (_, z) => packBits(mask((kind + z) % 9, rows, columns, random))),
      });
    }
  return out;
}

const copy = (slices: Uint8Array[]) => slices.map((s) => s.slice());

describe('run-based clean-ups equal the pixel-by-pixel references', () => {
  it('fillHoles', () => {
    for (const v of volumes(1)) {
      const a = copy(v.slices);
      const b = copy(v.slices);
      expect(fast.fillHoles(a, v.rows, v.columns), `${v.rows}x${v.columns}`).toBe(reference.fillHoles(b, v.rows, v.columns));
      expect(a).toEqual(b);
    }
  }, 120_000);

  it('fitEllipse', () => {
    for (const v of volumes(2)) {
      const a = copy(v.slices);
      const b = copy(v.slices);
      expect(fast.fitEllipse(a, v.rows, v.columns), `${v.rows}x${v.columns}`).toBe(reference.fitEllipse(b, v.rows, v.columns));
      expect(a).toEqual(b);
    }
  }, 120_000);

  it('keepLargestComponent and dropSmallComponents (3D, across slices)', () => {
    for (const v of volumes(3)) {
      let a = copy(v.slices);
      let b = copy(v.slices);
      expect(fast.keepLargestComponent(a, v.rows, v.columns)).toBe(reference.keepLargestComponent(b, v.rows, v.columns));
      expect(a).toEqual(b);
      for (const min of [2, 5, 40]) {
        a = copy(v.slices);
        b = copy(v.slices);
        expect(fast.dropSmallComponents(a, v.rows, v.columns, min)).toBe(
          reference.dropSmallComponents(b, v.rows, v.columns, min),
        );
        expect(a).toEqual(b);
      }
    }
  }, 120_000);

  it('the manifest order on a large slice (820 x 820: rows not byte-aligned)', () => {
    const random = rng(4);
    for (const kind of [1, 4, 5]) {
      const slices = [packBits(mask(kind, 820, 820, random)), packBits(mask(4, 820, 820, random))];
      const a = copy(slices);
      const b = copy(slices);
      expect(fast.keepLargestComponent(a, 820, 820)).toBe(reference.keepLargestComponent(b, 820, 820));
      expect(fast.fillHoles(a, 820, 820)).toBe(reference.fillHoles(b, 820, 820));
      expect(fast.fitEllipse(a, 820, 820)).toBe(reference.fitEllipse(b, 820, 820));
      expect(a).toEqual(b);
    }
  }, 120_000);
});

describe('runs of bits', () => {
  it('finds the runs, counts and fills bit ranges like a bit-by-bit loop', () => {
    const random = rng(5);
    for (const [rows, columns] of SIZES) {
      const m = mask(1, rows, columns, random);
      const bits = packBits(m);
      for (let y = 0; y < rows; y++) {
        const runs: [number, number][] = [];
        forEachRun(bits, y, columns, 1, (x0, x1) => runs.push([x0, x1]));
        const expected: [number, number][] = [];
        for (let x = 0; x < columns; x++)
          if (m[y * columns + x] && (x === 0 || !m[y * columns + x - 1])) {
            let e = x;
            while (e + 1 < columns && m[y * columns + e + 1]) e++;
            expected.push([x, e]);
          }
        expect(runs).toEqual(expected);
      }
      const n = rows * columns;
      const from = Math.floor(random() * n);
      const to = from + Math.floor(random() * (n - from));
      expect(countBits(bits, from, to)).toBe(m.subarray(from, to).reduce((s, v) => s + v, 0));
      expect(nextBit(bits, from, to, 1)).toBe(
        Math.min(to, from + Math.max(0, m.subarray(from, to).indexOf(1)) + (m.subarray(from, to).includes(1) ? 0 : to - from)),
      );
      const filled = bits.slice();
      fillBits(filled, from, to, 1);
      const manual = m.slice();
      manual.fill(1, from, to);
      expect(filled).toEqual(packBits(manual));
      fillBits(filled, from, to, 0);
      manual.fill(0, from, to);
      expect(filled).toEqual(packBits(manual));
    }
  }, 120_000);
});
