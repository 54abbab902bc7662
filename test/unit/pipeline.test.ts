import { describe, expect, it } from 'vitest';
import type { ModelManifest } from '../../server/src/models/manifest.js';
import { dropSmallComponents, fillHoles, fitEllipse, keepLargestComponent } from '../../server/src/pipeline/cleanup.js';
import { logitsToBits, logitsToBitsReference, logitsToMask } from '../../server/src/pipeline/postprocess.js';
import { fittedSize, intensityRange, preprocessSlice, resizeBilinear } from '../../server/src/pipeline/preprocess.js';
import { concatFrames, packBits, unpackBits } from '../../server/src/seg/bits.js';
import { segInstanceUid, segSeriesUid } from '../../server/src/seg/uids.js';
import { uidFrom } from '../../server/src/util/uid.js';

const manifest = (intensity: ModelManifest['preprocessing']['intensity'], inputSize = 4): ModelManifest =>
  ({
    preprocessing: { inputSize, resize: 'bilinear', channels: 'rgb', valueRange: [0, 1], inGraph: [], intensity },
  }) as unknown as ModelManifest;

describe('preprocessing', () => {
  it('maps a CT window to [0, 1] and clamps outside it', () => {
    const m = manifest({ default: { kind: 'minmax' }, CT: { kind: 'window', center: 40, width: 400 } });
    const out = preprocessSlice(
      { kind: 'grey', values: Float32Array.from([-1000, -160, 40, 240, 3000, 40, 40, 40]), invert: false },
      2,
      4,
      m,
      'CT',
    );
    // 2x4 -> 4x4 bilinear; the first row keeps the row's ordering, clamped to [0, 1].
    expect(out.length).toBe(3 * 16);
    expect(out[0]).toBe(0);
    expect(Math.max(...out.subarray(0, 16))).toBe(1);
    expect(out.subarray(0, 16)).toEqual(out.subarray(16, 32)); // grey replicated to 3 channels
  });

  it('inverts MONOCHROME1 so that bright means high', () => {
    const m = manifest({ default: { kind: 'minmax' } }, 2);
    const out = preprocessSlice({ kind: 'grey', values: Float32Array.from([0, 10, 0, 10]), invert: true }, 2, 2, m, 'CR');
    expect(Array.from(out.subarray(0, 4))).toEqual([1, 0, 1, 0]);
  });

  it('percentiles ignore outliers', () => {
    const values = Float32Array.from({ length: 1000 }, (_, i) => (i === 999 ? 1e6 : i));
    const [lo, hi] = intensityRange(values, { kind: 'percentile', low: 0.5, high: 99 });
    expect(lo).toBeLessThan(10);
    expect(hi).toBeLessThan(1000);
  });

  it('scales colour by one range over all channels and keeps the channels apart', () => {
    const m = manifest({ default: { kind: 'fixed', max: 255 } }, 1);
    const out = preprocessSlice({ kind: 'rgb', data: Uint8Array.from([255, 0, 51]), maxValue: 255 }, 1, 1, m, 'XC');
    expect(Array.from(out)).toEqual([1, 0, Math.fround(0.2)]);
  });

  it('resizes with half-pixel centres (no shift of the image)', () => {
    const src = Float32Array.from([0, 1, 2, 3]); // 1 x 4 ramp
    const dst = new Float32Array(8);
    resizeBilinear(src, 1, 4, 1, 0, dst, 8, 1, 8);
    expect(Array.from(dst)).toEqual([0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3]);
  });
});

describe('fit: longest-side-pad (aspect kept, zeros right and bottom)', () => {
  const padded = (inputSize: number) => {
    const m = manifest({ default: { kind: 'fixed', max: 10 } }, inputSize);
    m.preprocessing.fit = 'longest-side-pad';
    return m;
  };

  it('fits the longest side to the input size and rounds the other half up', () => {
    expect(fittedSize(540, 800, padded(256))).toEqual({ rows: 173, columns: 256 }); // 172.8
    expect(fittedSize(800, 540, padded(256))).toEqual({ rows: 256, columns: 173 });
    expect(fittedSize(3, 2, padded(5))).toEqual({ rows: 5, columns: 3 }); // 3.333 -> 3
    expect(fittedSize(4, 3, padded(6))).toEqual({ rows: 6, columns: 5 }); // 4.5 -> 5 (half up)
    expect(fittedSize(540, 800, manifest({ default: { kind: 'minmax' } }, 256))).toEqual({ rows: 256, columns: 256 });
  });

  it('resizes into the top-left fitted part and leaves zeros around it, whatever the buffer held', () => {
    const values = Float32Array.from({ length: 2 * 4 }, (_, i) => i + 1); // 2 x 4, values 1..8 (fixed max 10)
    const out = new Float32Array(3 * 16).fill(7); // a reused buffer with the last slice in it
    preprocessSlice({ kind: 'grey', values, invert: false }, 2, 4, padded(4), 'US', out);
    const scaled = Float32Array.from(values, (v) => Math.fround(v / 10));
    const expected = new Float32Array(2 * 4);
    resizeBilinear(scaled, 2, 4, 1, 0, expected, 4, 2, 4); // 2 x 4 -> 2 x 4: the top half of the 4 x 4 input
    expect(Array.from(out.subarray(0, 8))).toEqual(Array.from(expected));
    expect(Array.from(out.subarray(8, 16))).toEqual(new Array(8).fill(0));
    expect(out.subarray(16, 32)).toEqual(out.subarray(0, 16));
  });

  it('crops the logits to the fitted part before resizing them back (a mark in the padding never shows)', () => {
    const size = 8;
    const logits = new Float32Array(size * size).fill(-1);
    for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) logits[y * size + x] = 1; // left half of the fitted top
    for (let y = 5; y < 8; y++) logits[y * size + 2] = 5; // in the padding below the fitted rows
    const fitted = { rows: 4, columns: 8 }; // a 2 x 4 slice fitted into 8 x 8
    const bits = logitsToBits(logits, size, 2, 4, 0, fitted);
    expect(Array.from(unpackBits(bits, 0, 8))).toEqual([1, 1, 0, 0, 1, 1, 0, 0]);
    expect(bits).toEqual(packBits(logitsToMask(logits, size, 2, 4, 0, fitted)));
  });
});

describe('fused, copy-free passes equal the step-by-step reference, bit for bit', () => {
  // A seeded generator: the same "random" slices on every run.
  const random = (seed: number) => () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;

  it('preprocessSlice (scaling inside the resize) equals scale-then-resizeBilinear, grey, inverted and colour', () => {
    const next = random(7);
    const [rows, columns, size] = [37, 53, 16];
    const values = Float32Array.from({ length: rows * columns }, () => next() * 3000 - 1000);
    const m = manifest({ default: { kind: 'window', center: 40, width: 400 } }, size);
    for (const invert of [false, true]) {
      const got = preprocessSlice({ kind: 'grey', values, invert }, rows, columns, m, 'CT');
      const scaled = Float32Array.from(values, (v) => {
        const s = Math.min(1, Math.max(0, (v - (40 - 200)) / 400));
        return invert ? 1 - s : s;
      });
      const plane = new Float32Array(size * size);
      resizeBilinear(scaled, rows, columns, 1, 0, plane, size);
      expect(got.subarray(0, size * size)).toEqual(plane);
      expect(got.subarray(2 * size * size)).toEqual(plane);
    }
    const rgb = Uint8Array.from({ length: rows * columns * 3 }, () => Math.floor(next() * 256));
    const colour = preprocessSlice(
      { kind: 'rgb', data: rgb, maxValue: 255 },
      rows,
      columns,
      manifest({ default: { kind: 'fixed', max: 255 } }, size),
      'XC',
    );
    const scaled = Float32Array.from(rgb, (v) => v / 255);
    for (let c = 0; c < 3; c++) {
      const plane = new Float32Array(size * size);
      resizeBilinear(scaled, rows, columns, 3, c, plane, size);
      expect(colour.subarray(c * size * size, (c + 1) * size * size)).toEqual(plane);
    }
  });

  it('logitsToBits equals logitsToMask + packBits, on grids up- and down-sampled', () => {
    const next = random(11);
    for (const [size, rows, columns] of [
      [16, 37, 53],
      [16, 9, 7],
      [8, 8, 8],
    ] as const) {
      const logits = Float32Array.from({ length: size * size }, () => next() * 2 - 1);
      expect(logitsToBits(logits, size, rows, columns, 0.1)).toEqual(packBits(logitsToMask(logits, size, rows, columns, 0.1)));
    }
  });
});

describe('fused, copy-free passes on the longest-side-pad fit equal the step-by-step reference, bit for bit', () => {
  const random = (seed: number) => () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  /** The first index where a and b differ (Object.is: -0 is not 0), -1 when they are equal; fast on large arrays. */
  const firstDifference = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
    for (let i = 0; i < Math.max(a.length, b.length); i++) if (!Object.is(a[i], b[i])) return i;
    return -1;
  };
  const padded = (intensity: ModelManifest['preprocessing']['intensity'], size: number) => {
    const m = manifest(intensity, size);
    m.preprocessing.fit = 'longest-side-pad';
    return m;
  };
  /** The reference: each value scaled to [0, 1] into a Float32Array, resized into the fitted part, zeros elsewhere. */
  function reference(
    src: ArrayLike<number>,
    rows: number,
    columns: number,
    channels: number,
    channel: number,
    scale: (v: number) => number,
    m: ModelManifest,
  ): Float32Array {
    const size = m.preprocessing.inputSize;
    const fitted = fittedSize(rows, columns, m);
    const scaled = Float32Array.from(src, scale);
    const part = new Float32Array(fitted.rows * fitted.columns);
    resizeBilinear(scaled, rows, columns, channels, channel, part, size, fitted.rows, fitted.columns);
    const plane = new Float32Array(size * size);
    for (let y = 0; y < fitted.rows; y++) plane.set(part.subarray(y * fitted.columns, (y + 1) * fitted.columns), y * size);
    return plane;
  }
  // Landscape, portrait, an odd input size and a slice smaller than the input (up-sampled).
  const shapes = [
    [54, 82, 32],
    [82, 54, 32],
    [41, 29, 25],
    [9, 13, 16],
  ] as const;

  it('preprocessSlice: grey under window (plain and MONOCHROME1), minmax and percentile, and colour, into a reused buffer', () => {
    const next = random(3);
    for (const [rows, columns, size] of shapes) {
      const plane = size * size;
      const out = new Float32Array(3 * plane).fill(9); // the last slice's input is still in it
      const values = Float32Array.from({ length: rows * columns }, () => next() * 3000 - 1000);
      const policies = [
        { kind: 'window', center: 40, width: 400 },
        { kind: 'minmax' },
        { kind: 'percentile', low: 1, high: 99 },
      ] as const;
      for (const policy of policies)
        for (const invert of [false, true]) {
          const m = padded({ default: policy }, size);
          const got = preprocessSlice({ kind: 'grey', values, invert }, rows, columns, m, 'CT', out);
          const [lo, hi] = intensityRange(values, policy);
          const scale = (v: number) => {
            const s = Math.min(1, Math.max(0, (v - lo) / (hi - lo)));
            return invert ? 1 - s : s;
          };
          const expected = reference(values, rows, columns, 1, 0, scale, m);
          const what = `${rows}x${columns} into ${size}, ${policy.kind}, invert ${invert}`;
          for (let c = 0; c < 3; c++) expect(firstDifference(got.subarray(c * plane, (c + 1) * plane), expected), what).toBe(-1);
        }
      const rgb = Uint8Array.from({ length: rows * columns * 3 }, () => Math.floor(next() * 256));
      const m = padded({ default: { kind: 'fixed', max: 255 } }, size);
      const colour = preprocessSlice({ kind: 'rgb', data: rgb, maxValue: 255 }, rows, columns, m, 'XC', out.fill(9));
      for (let c = 0; c < 3; c++) {
        const expected = reference(rgb, rows, columns, 3, c, (v) => v / 255, m);
        expect(firstDifference(colour.subarray(c * plane, (c + 1) * plane), expected), `colour ${rows}x${columns} ${c}`).toBe(-1);
      }
    }
  }, 60_000);

  it('logitsToBits: the fitted part of the logits, cropped and resized back, as the loop and logitsToMask + packBits do', () => {
    const next = random(5);
    for (const [rows, columns, size] of [...shapes, [540, 820, 256], [820, 540, 256]] as const) {
      const fitted = fittedSize(rows, columns, padded({ default: { kind: 'minmax' } }, size));
      expect(Math.max(fitted.rows, fitted.columns)).toBe(size);
      // A blob in the fitted part, noise and large values in the padding (which must never show).
      const cx = fitted.columns * (0.3 + 0.4 * next());
      const cy = fitted.rows * (0.3 + 0.4 * next());
      const logits = Float32Array.from({ length: size * size }, (_, i) => {
        const [y, x] = [Math.floor(i / size), i % size];
        if (y >= fitted.rows || x >= fitted.columns) return next() * 100 - 20;
        return (size / 4 - Math.hypot(x - cx, y - cy)) / 3 + (next() - 0.5) * 0.01;
      });
      for (const threshold of [0, 0.5]) {
        const what = `${rows}x${columns} from ${fitted.rows}x${fitted.columns} of ${size}, t ${threshold}`;
        const fast = logitsToBits(logits, size, rows, columns, threshold, fitted);
        expect(firstDifference(fast, logitsToBitsReference(logits, size, rows, columns, threshold, fitted)), what).toBe(-1);
        expect(firstDifference(fast, packBits(logitsToMask(logits, size, rows, columns, threshold, fitted))), what).toBe(-1);
        expect(
          fast.some((b) => b !== 0),
          what,
        ).toBe(true); // the blob shows
      }
    }
  }, 60_000);
});

describe('postprocessing', () => {
  it('resizes logits back to a non-square slice and thresholds them, unflipped', () => {
    const logits = Float32Array.from([1, -1, 1, -1]); // 2x2: left column positive
    const mask = logitsToMask(logits, 2, 2, 4, 0);
    expect(Array.from(mask)).toEqual([1, 1, 0, 0, 1, 1, 0, 0]);
  });

  it('drops 3D components smaller than the limit and keeps the rest', () => {
    const rows = 4;
    const columns = 4;
    const slice = (on: number[]) => packBits(Uint8Array.from({ length: 16 }, (_, i) => (on.includes(i) ? 1 : 0)));
    // A 2x2x2 block (8 voxels) across slices 0-1, and a lone voxel on slice 2.
    const slices = [slice([0, 1, 4, 5]), slice([0, 1, 4, 5]), slice([15])];
    expect(dropSmallComponents(slices, rows, columns, 2)).toBe(1);
    expect(Array.from(unpackBits(slices[2]!, 0, 16)).every((v) => v === 0)).toBe(true);
    expect(Array.from(unpackBits(slices[0]!, 0, 16)).filter(Boolean)).toHaveLength(4);
    expect(dropSmallComponents(slices, rows, columns, 9)).toBe(8);
  });

  const grid = (rows: number, columns: number, picture: string[]) =>
    packBits(Uint8Array.from(picture.join('').split(''), (c) => (c === '#' ? 1 : 0)).subarray(0, rows * columns));
  const draw = (bits: Uint8Array, rows: number, columns: number) =>
    Array.from({ length: rows }, (_, y) => Array.from(unpackBits(bits, y * columns, columns), (v) => (v ? '#' : '.')).join(''));

  it('fills holes inside a slice but not background that reaches the border', () => {
    const picture = ['......', '.####.', '.#..#.', '.####.', '.#....', '.#....'];
    const slices = [grid(6, 6, picture)];
    expect(fillHoles(slices, 6, 6)).toBe(2);
    expect(draw(slices[0]!, 6, 6)).toEqual(['......', '.####.', '.####.', '.####.', '.#....', '.#....']);
    // A hole touching the border through a 4-connected gap is not a hole.
    const open = [grid(5, 5, ['#####', '#...#', '#...#', '#.###', '#.#..'])];
    expect(fillHoles(open, 5, 5)).toBe(0);
  });

  it('replaces each slice by its moment ellipse, pixel for pixel as models/ldfsam_models/postprocess.py', () => {
    // The same picture and answer as models/tests/test_postprocess.py.
    const blob = grid(7, 9, ['.........', '..####...', '.######..', '.#######.', '.######..', '..###....', '.........']);
    const empty = grid(7, 9, Array(7).fill('.........'));
    const one = grid(3, 3, ['...', '.#.', '...']);
    expect(fitEllipse([blob, empty], 7, 9)).toBe(2);
    expect(draw(empty, 7, 9)).toEqual(Array(7).fill('.........'));
    expect(draw(blob, 7, 9)).toEqual(['.........', '..####...', '.######..', '.######..', '.######..', '..####...', '.........']);
    expect(fitEllipse([one], 3, 3)).toBe(0);
    expect(draw(one, 3, 3)).toEqual(['...', '.#.', '...']);
  });

  it('keeps only the largest 3D component, across slices', () => {
    const a = grid(4, 4, ['##..', '##..', '....', '...#']);
    const b = grid(4, 4, ['##..', '....', '....', '...#']);
    // Component 1: 4 + 2 voxels over two slices; component 2: 1 + 1 voxels in the corner.
    expect(keepLargestComponent([a, b], 4, 4)).toBe(2);
    expect(draw(a, 4, 4)).toEqual(['##..', '##..', '....', '....']);
    expect(draw(b, 4, 4)).toEqual(['##..', '....', '....', '....']);
    expect(keepLargestComponent([grid(2, 2, ['..', '..'])], 2, 2)).toBe(0);
  });
});

describe('SEG bits and UIDs', () => {
  it('packs frames contiguously when a frame is not a whole number of bytes', () => {
    const a = packBits(Uint8Array.from([1, 0, 1])); // 3 pixels
    const b = packBits(Uint8Array.from([0, 1, 1]));
    const all = concatFrames([a, b], 3);
    expect(all.length % 2).toBe(0);
    expect(Array.from(unpackBits(all, 0, 6))).toEqual([1, 0, 1, 0, 1, 1]);
  });

  it('derives stable, valid UIDs that change with their inputs', () => {
    const series = segSeriesUid('1.2.3', 'ldfsam-hc18', '1.0.0');
    expect(series).toBe(segSeriesUid('1.2.3', 'ldfsam-hc18', '1.0.0'));
    expect(series).not.toBe(segSeriesUid('1.2.3', 'ldfsam-hc18', '1.0.1'));
    expect(segInstanceUid(series, 'a')).not.toBe(segInstanceUid(series, 'b'));
    for (const uid of [series, uidFrom('x')]) expect(uid).toMatch(/^2\.25\.[1-9][0-9]{0,38}$/);
  });
});
