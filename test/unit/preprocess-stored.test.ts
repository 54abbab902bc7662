/** Preprocessing straight from the frame's stored words equals preprocessing its modality values, bit for bit. */
import { describe, expect, it } from 'vitest';
import { modalityValues, toSlicePixels } from '../../server/src/dicom/pixels.js';
import type { PixelFormat } from '../../server/src/dicom/series-plan.js';
import type { ModelManifest } from '../../server/src/models/manifest.js';
import { preprocessSlice } from '../../server/src/pipeline/preprocess.js';

const manifest = (intensity: object, fit: 'stretch' | 'longest-side-pad', inputSize = 16): ModelManifest =>
  ({
    preprocessing: {
      inputSize,
      resize: 'bilinear',
      channels: 'rgb',
      valueRange: [0, 1],
      inGraph: [],
      intensity: { default: intensity },
      fit,
    },
  }) as unknown as ModelManifest;

function format(
  rows: number,
  columns: number,
  bitsAllocated: 8 | 16,
  bitsStored: number,
  signed: boolean,
  photometric = 'MONOCHROME2',
): PixelFormat {
  return {
    rows,
    columns,
    samplesPerPixel: 1,
    bitsAllocated,
    bitsStored,
    highBit: bitsStored - 1,
    pixelRepresentation: signed ? 1 : 0,
    photometricInterpretation: photometric,
    planarConfiguration: 0,
  };
}

describe('grey pixels read in place', () => {
  it('every intensity policy: the same model input as from the values; values on demand equal modalityValues', () => {
    let seed = 1;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (const [rows, columns] of [
      [7, 5],
      [40, 64],
    ] as const)
      for (const [bits, stored, signed] of [
        [16, 16, false],
        [16, 12, true],
        [16, 12, false],
        [8, 8, false],
        [8, 7, true],
      ] as const)
        for (const odd of [false, true])
          for (const photometric of ['MONOCHROME2', 'MONOCHROME1']) {
            const f = format(rows, columns, bits, stored, signed, photometric);
            const length = rows * columns * (bits / 8);
            const buffer = new Uint8Array(length + 1);
            for (let i = 0; i < buffer.length; i++) buffer[i] = Math.floor(random() * 256);
            const bytes = odd ? buffer.subarray(1) : buffer.subarray(0, length);
            // A negative slope reverses the order of the values; a zero slope makes them all equal.
            for (const rescale of [
              { slope: 1.5, intercept: -1024.25 },
              { slope: -0.37, intercept: 12.5 },
              { slope: 0, intercept: 7 },
            ]) {
              const frame = { bytes, planar: false, photometric };
              const pixels = toSlicePixels(frame, f, rescale);
              if (pixels.kind !== 'grey') throw new Error('grey expected');
              expect(pixels.stored, `${bits}/${stored}`).toBeDefined();
              const values = modalityValues(frame, f, rescale);
              for (const policy of [
                { kind: 'window', center: 40, width: 400 },
                { kind: 'fixed', max: 255 },
                { kind: 'minmax' },
                { kind: 'percentile', low: 0.5, high: 99.5 },
                { kind: 'percentile', low: 10, high: 90 },
              ])
                for (const fit of ['stretch', 'longest-side-pad'] as const) {
                  const m = manifest(policy, fit);
                  const direct = preprocessSlice(pixels, rows, columns, m, 'CT');
                  const reference = preprocessSlice(
                    { kind: 'grey', values, invert: photometric === 'MONOCHROME1' },
                    rows,
                    columns,
                    m,
                    'CT',
                  );
                  expect(
                    direct,
                    `${rows}x${columns} ${bits}/${stored} ${signed} odd ${odd} ${JSON.stringify(policy)} ${fit} slope ${rescale.slope}`,
                  ).toEqual(reference);
                }
              expect(pixels.values).toEqual(values);
            }
          }
  }, 60_000);

  it('min-max from the extremes of the stored values: narrow word ranges, overlay bits, one reused table, odd rescales', () => {
    // Slices of one series in turn (the table and counts buffers are reused from slice to slice):
    // narrow and wide word ranges, words with bits above Bits Stored, signed values around zero,
    // and rescales that reverse the order, make every value equal, or give infinities and NaN.
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const [rows, columns] = [23, 37];
    const policy = { kind: 'minmax' };
    for (const [bits, stored, signed] of [
      [16, 12, false],
      [16, 12, true],
      [16, 16, true],
      [16, 16, false],
      [8, 6, true],
      [8, 8, false],
    ] as const)
      for (const photometric of ['MONOCHROME2', 'MONOCHROME1'])
        for (const [base, spread, overlay] of [
          [1000, 200, 0],
          [40, 3, 0],
          [0, 1, 0],
          [2047, 4, 0],
          [4090, 6, 1 << 13],
          [0, 65536, 0],
          [65500, 30, 0],
          [65530, 7, 0], // signed: -6..0 (with an infinite slope, NaN at the top)
          [4090, 7, 0], // 12 bits signed: the same
        ] as const) {
          const f = format(rows, columns, bits, stored, signed, photometric);
          const max = bits === 8 ? 256 : 65536;
          const words = bits === 8 ? new Uint8Array(rows * columns) : new Uint16Array(rows * columns);
          for (let i = 0; i < words.length; i++) {
            const w = (base + Math.floor(random() * spread)) % max;
            words[i] = random() < 0.1 ? (w | overlay) % max : w;
          }
          // The frame's words at a 4-byte boundary and 2 bytes past one (an answer's pixels lie anywhere
          // even): the extremes are read two words at a time, with one word first when unaligned.
          const shifted = new Uint8Array(words.byteLength + 2);
          shifted.set(new Uint8Array(words.buffer), 2);
          for (const bytes of [new Uint8Array(words.buffer), shifted.subarray(2)])
            for (const rescale of [
              { slope: 1, intercept: -1024 },
              { slope: -2.5, intercept: 3 },
              { slope: 1e-30, intercept: 0 },
              { slope: 0, intercept: -0 },
              { slope: 1e38, intercept: 1e38 },
              { slope: Infinity, intercept: 0 },
            ])
              for (const fit of ['stretch', 'longest-side-pad'] as const) {
                const frame = { bytes, planar: false, photometric };
                const m = manifest(policy, fit, 16);
                const direct = preprocessSlice(toSlicePixels(frame, f, rescale), rows, columns, m, 'CT');
                const reference = preprocessSlice(
                  { kind: 'grey', values: modalityValues(frame, f, rescale), invert: photometric === 'MONOCHROME1' },
                  rows,
                  columns,
                  m,
                  'CT',
                );
                expect(
                  direct,
                  `${bits}/${stored} ${signed} ${base}+${spread} ${photometric} ${JSON.stringify(rescale)} ${fit}`,
                ).toEqual(reference);
              }
        }
  }, 60_000);

  it("min-max: an extreme in the first or the last word counts, whatever the words' alignment and count", () => {
    // The extremes are read two words per load, with one word apart at either end: a unique
    // smallest or largest word there must still set the range.
    for (const [rows, columns] of [
      [5, 7],
      [4, 6],
    ] as const)
      for (const offset of [0, 2])
        for (const [at, word] of [
          ['first', 10],
          ['first', 900],
          ['last', 10],
          ['last', 900],
        ] as const) {
          const words = new Uint16Array(rows * columns).fill(500);
          for (let i = 1; i < words.length - 1; i++) words[i] = 400 + (i % 7) * 30;
          words[at === 'first' ? 0 : words.length - 1] = word;
          const buffer = new Uint8Array(words.byteLength + offset);
          buffer.set(new Uint8Array(words.buffer), offset);
          const frame = { bytes: buffer.subarray(offset), planar: false, photometric: 'MONOCHROME2' };
          const f = format(rows, columns, 16, 16, false);
          const rescale = { slope: 1, intercept: 0 };
          const m = manifest({ kind: 'minmax' }, 'stretch', 8);
          const direct = preprocessSlice(toSlicePixels(frame, f, rescale), rows, columns, m, 'CT');
          const reference = preprocessSlice(
            { kind: 'grey', values: modalityValues(frame, f, rescale), invert: false },
            rows,
            columns,
            m,
            'CT',
          );
          expect(direct, `${rows}x${columns} offset ${offset} ${at} ${word}`).toEqual(reference);
        }
  });

  it('does not make the values for any policy', () => {
    const f = format(4, 4, 16, 16, false);
    const pixels = toSlicePixels({ bytes: new Uint8Array(32), planar: false, photometric: 'MONOCHROME2' }, f, {
      slope: 1,
      intercept: 0,
    });
    let read = 0;
    const lazy = Object.getOwnPropertyDescriptor(pixels, 'values')!;
    Object.defineProperty(pixels, 'values', { get: (): unknown => (read++, lazy.get!.call(pixels)) });
    preprocessSlice(pixels, 4, 4, manifest({ kind: 'window', center: 0, width: 10 }, 'stretch', 4), 'CT');
    expect(read).toBe(0);
    preprocessSlice(pixels, 4, 4, manifest({ kind: 'minmax' }, 'stretch', 4), 'CT');
    preprocessSlice(pixels, 4, 4, manifest({ kind: 'percentile', low: 1, high: 99 }, 'stretch', 4), 'CT');
    expect(read).toBe(0);
  });

  it('8-bit frames come as 16-bit words (one array type for the loops), their word range kept', () => {
    const bytes = Uint8Array.from([0, 1, 127, 128, 200, 255]);
    const pixels = toSlicePixels({ bytes, planar: false, photometric: 'MONOCHROME2' }, format(2, 3, 8, 8, false), {
      slope: 1,
      intercept: 0,
    });
    const stored = pixels.kind === 'grey' ? pixels.stored : undefined;
    expect(stored?.words).toBeInstanceOf(Uint16Array);
    expect(Array.from(stored!.words)).toEqual(Array.from(bytes));
    expect(stored!.wordBits).toBe(8);
    const sixteen = toSlicePixels(
      { bytes: new Uint8Array(12), planar: false, photometric: 'MONOCHROME2' },
      format(2, 3, 16, 12, false),
      {
        slope: 1,
        intercept: 0,
      },
    );
    expect(sixteen.kind === 'grey' && sixteen.stored?.wordBits).toBe(16);
  });
});
