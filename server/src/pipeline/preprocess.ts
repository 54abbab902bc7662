/**
 * Slice pixels to the model's input, as the manifest says: modality values to [0, 1] by the
 * modality's intensity policy (MONOCHROME1 inverted so that bright means high), colour scaled by its
 * maximum, bilinear resize into inputSize x inputSize (both axes stretched, or with `fit`
 * longest-side-pad the aspect kept and zeros right and bottom), grey replicated to 3 planar channels.
 * Pure function over typed arrays; writes into `out` (3 x S x S floats) when given.
 */
import { storedToModality, type SlicePixels, type StoredGrey } from '../dicom/pixels.js';
import type { IntensityPolicy, ModelManifest } from '../models/manifest.js';

export function intensityPolicy(manifest: ModelManifest, modality: string): IntensityPolicy {
  return manifest.preprocessing.intensity[modality] ?? manifest.preprocessing.intensity.default;
}

/** [low, high] of the values that map to 0 and 1. */
export function intensityRange(values: ArrayLike<number>, policy: IntensityPolicy): [number, number] {
  switch (policy.kind) {
    case 'window':
      return [policy.center - policy.width / 2, policy.center + policy.width / 2];
    case 'fixed':
      return [0, policy.max];
    case 'minmax': {
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = 0; i < values.length; i++) {
        const v = values[i]!;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      return [lo, hi];
    }
    case 'percentile':
      return percentiles(values, policy.low, policy.high);
  }
}

/** A 4096-bin histogram between min and max: exact enough for intensity scaling, O(n). */
const PERCENTILE_BINS = 4096;

function percentiles(values: ArrayLike<number>, low: number, high: number): [number, number] {
  const [lo, hi] = intensityRange(values, { kind: 'minmax' });
  if (!(hi > lo)) return [lo, hi];
  const bins = new Uint32Array(PERCENTILE_BINS);
  const scale = (bins.length - 1) / (hi - lo);
  for (let i = 0; i < values.length; i++) bins[Math.floor((values[i]! - lo) * scale)]!++;
  return [binPercentile(bins, lo, hi, scale, values.length, low), binPercentile(bins, lo, hi, scale, values.length, high)];
}

function binPercentile(bins: Uint32Array, lo: number, hi: number, scale: number, n: number, p: number): number {
  const target = (p / 100) * n;
  let sum = 0;
  for (let b = 0; b < bins.length; b++) {
    sum += bins[b]!;
    if (sum >= target) return lo + b / scale;
  }
  return hi;
}

/**
 * How many pixels hold each stored word (256 or 65,536 counts). The ranges and the table below
 * then work per distinct word (a few thousand in a CT slice) instead of per pixel. Reuses one
 * buffer: the counts are read before the next slice is counted.
 */
let countsBuffer: Uint32Array | undefined;
function wordCounts(stored: StoredGrey): Uint32Array {
  const { words } = stored;
  const size = 1 << stored.wordBits;
  const counts = countsBuffer?.length === size ? countsBuffer.fill(0) : (countsBuffer = new Uint32Array(size));
  for (let i = 0; i < words.length; i++) counts[words[i]!]!++;
  return counts;
}

/**
 * intensityRange() of the frame's modality values, computed from its stored words without making the
 * values: the same numbers, bit for bit (test/unit/preprocess-stored.test.ts). Also what tells the
 * table which words to fill: a min-max range needs only the stored extremes, a percentile range every
 * word's count (`wordCounts`); window and fixed ranges need neither.
 */
function storedIntensityRange(
  stored: StoredGrey,
  policy: IntensityPolicy,
): { range: [number, number]; present?: Uint32Array | StoredExtremes } {
  switch (policy.kind) {
    case 'window':
    case 'fixed':
      return { range: intensityRange([], policy) };
    case 'minmax': {
      const extremes = storedExtremes(stored);
      return { range: extremesMinMax(stored, extremes), present: extremes };
    }
    case 'percentile': {
      const counts = wordCounts(stored);
      return { range: countsPercentiles(stored, counts, policy.low, policy.high), present: counts };
    }
  }
}

/**
 * The smallest and largest stored value (masked to Bits Stored, sign-extended) of a frame, and the
 * range of words that holds every word of it: one pass over the pixels with nothing written,
 * cheaper than counting every word (`wordCounts`, a read-modify-write into 256 kB of counts per
 * pixel) where only the range is needed. Words are compared as `word ^ flip` (flip = the sign bit
 * of a signed value): without bits above Bits Stored that is the stored value's order (two's
 * complement read as offset binary), so the stored extremes are those of the words; a frame whose
 * words carry higher bits (overlays) takes a second pass that masks each word.
 */
interface StoredExtremes {
  lo: number;
  hi: number;
  /** Every word w of the frame has wordLo <= (w ^ flip) <= wordHi. */
  wordLo: number;
  wordHi: number;
  flip: number;
}

function storedExtremes(stored: StoredGrey): StoredExtremes {
  const { words, shift } = stored;
  const bits = 32 - shift;
  const flip = stored.signed ? 1 << (bits - 1) : 0;
  const { lo: wordLo, hi: wordHi, any } = flippedWordRange(words, flip);
  if (wordHi < 0) return { lo: Infinity, hi: -Infinity, wordLo, wordHi, flip }; // no pixels
  const value = stored.signed ? (w: number) => (w << shift) >> shift : (w: number) => (w << shift) >>> shift;
  if (any >>> bits === 0) return { lo: value(wordLo ^ flip), hi: value(wordHi ^ flip), wordLo, wordHi, flip };
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < words.length; i++) {
    const v = value(words[i]!);
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return { lo, hi, wordLo, wordHi, flip };
}

/**
 * The smallest and largest `word ^ flip` of the frame, and the OR of them all. Reads two words per
 * 32-bit load, each half with its own running extremes (a frame's words are a view into its answer:
 * aligned to 2 bytes, so one word may come first and one last). The loop alone is ~1.9x faster than a
 * word at a time (820 x 820 CT-like words 1.04-1.25 against 2.16-2.41 ms, 600 x 800 ultrasound 0.87-0.90
 * against 1.71; fastest of 60); a whole 512 x 512 min-max preprocessing 1.08 -> 1.00 ms.
 */
function flippedWordRange(words: Uint16Array, flip: number): { lo: number; hi: number; any: number } {
  const n = words.length;
  const head = words.byteOffset % 4 === 0 ? 0 : Math.min(1, n); // one word before the first aligned pair
  const pairs = new Uint32Array(words.buffer, words.byteOffset + 2 * head, (n - head) >> 1);
  const flip2 = flip | (flip << 16);
  let lo0 = 0x10000;
  let hi0 = -1;
  let lo1 = 0x10000;
  let hi1 = -1;
  let both = 0;
  for (let p = 0; p < pairs.length; p++) {
    const v = pairs[p]! ^ flip2;
    const a = v & 0xffff;
    const b = v >>> 16;
    lo0 = a < lo0 ? a : lo0;
    hi0 = a > hi0 ? a : hi0;
    lo1 = b < lo1 ? b : lo1;
    hi1 = b > hi1 ? b : hi1;
    both |= v;
  }
  const range = { lo: Math.min(lo0, lo1), hi: Math.max(hi0, hi1), any: (both & 0xffff) | (both >>> 16) };
  const take = (i: number) => {
    const u = words[i]! ^ flip;
    range.lo = Math.min(range.lo, u);
    range.hi = Math.max(range.hi, u);
    range.any |= u;
  };
  if (head === 1) take(0);
  if (head + 2 * pairs.length < n) take(n - 1); // the word after the last pair
  return range;
}

/**
 * countsMinMax() from the extremes of the stored values: a modality value, fround(v x slope +
 * intercept), is a monotone function of the stored value v (IEEE multiplication by a constant,
 * addition of a constant and rounding to float32 all keep order; the order reverses for a negative
 * slope), so the smallest and largest values are those of the smallest and largest v. Only the sign
 * of a zero can differ from the count's (-0 and +0 are never "smaller" than each other), and a zero's
 * sign changes neither the span nor any scaled value (test/unit/preprocess-stored.test.ts).
 */
function extremesMinMax(stored: StoredGrey, extremes: StoredExtremes): [number, number] {
  if (extremes.lo > extremes.hi) return [Infinity, -Infinity]; // no pixels
  const f = Math.fround;
  const a = f(extremes.lo * stored.slope + stored.intercept);
  const b = f(extremes.hi * stored.slope + stored.intercept);
  // A NaN here (an infinite slope or intercept) may differ from the count's range, but then every
  // value is infinite or NaN and every scaled value NaN either way (tested).
  return a <= b ? [a, b] : [b, a];
}

/** Min and max of the values of the words present. */
function countsMinMax(stored: StoredGrey, counts: Uint32Array): [number, number] {
  const decode = storedToModality(stored);
  let lo = Infinity;
  let hi = -Infinity;
  for (let w = 0; w < counts.length; w++) {
    if (counts[w] === 0) continue;
    const v = decode(w);
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

/** percentiles() from the counts: every pixel of a word falls in that word's bin. */
function countsPercentiles(stored: StoredGrey, counts: Uint32Array, low: number, high: number): [number, number] {
  const [lo, hi] = countsMinMax(stored, counts);
  if (!(hi > lo)) return [lo, hi];
  const decode = storedToModality(stored);
  const bins = new Uint32Array(PERCENTILE_BINS);
  const scale = (bins.length - 1) / (hi - lo);
  for (let w = 0; w < counts.length; w++) if (counts[w]) bins[Math.floor((decode(w) - lo) * scale)]! += counts[w]!;
  const n = stored.words.length;
  return [binPercentile(bins, lo, hi, scale, n, low), binPercentile(bins, lo, hi, scale, n, high)];
}

/** The rows x columns of the input that a slice fills: the whole input, or its aspect kept (longest side to inputSize). */
export function fittedSize(rows: number, columns: number, manifest: ModelManifest): { rows: number; columns: number } {
  const size = manifest.preprocessing.inputSize;
  if ((manifest.preprocessing.fit ?? 'stretch') === 'stretch') return { rows: size, columns: size };
  // round half up of side * size / longest, as ldfsam_models.inputs.fitted_size computes it
  const longest = Math.max(rows, columns);
  return { rows: Math.floor((rows * size) / longest + 0.5), columns: Math.floor((columns * size) / longest + 0.5) };
}

export function preprocessSlice(
  pixels: SlicePixels,
  rows: number,
  columns: number,
  manifest: ModelManifest,
  modality: string,
  out?: Float32Array,
): Float32Array {
  const size = manifest.preprocessing.inputSize;
  const plane = size * size;
  const result = out ?? new Float32Array(3 * plane);
  const fitted = fittedSize(rows, columns, manifest);
  if (fitted.rows !== size || fitted.columns !== size) result.fill(0); // the padding (a reused buffer holds the last slice)
  const target = { ...fitted, stride: size };
  const policy = intensityPolicy(manifest, modality);
  if (pixels.kind === 'grey') {
    // Frames read in place never make their modality values: the range comes from the stored words
    // and the resize reads its taps' words through a table of their scaled values (for a per-slice
    // range, only the words the frame holds, or that lie between its extremes, get an entry).
    const stored = pixels.stored;
    const { range, present } = stored ? storedIntensityRange(stored, policy) : { range: intensityRange(pixels.values, policy) };
    const [lo, hi] = range;
    const span = hi > lo ? hi - lo : 1;
    const dst = result.subarray(0, plane);
    if (stored) resizeTable(stored.words, rows, columns, scaledTable(stored, lo, span, pixels.invert, present), dst, target);
    else resizeScaled(pixels.values, rows, columns, 1, 0, lo, span, pixels.invert, dst, target);
    result.copyWithin(plane, 0, plane);
    result.copyWithin(2 * plane, 0, plane);
  } else {
    // Colour: one range for all channels keeps the hue; a percentile policy would distort it, so
    // colour under that policy is scaled by its full range (0..maxValue).
    const [lo, hi] = policy.kind === 'percentile' ? [0, pixels.maxValue] : intensityRange(pixels.data, policy);
    const span = hi > lo ? hi - lo : 1;
    for (let c = 0; c < 3; c++)
      resizeScaled(pixels.data, rows, columns, 3, c, lo, span, false, result.subarray(c * plane, (c + 1) * plane), target);
  }
  return result;
}

/** A value to [0, 1]: clamped, inverted for MONOCHROME1, rounded to float32. */
function scaler(lo: number, span: number, invert: boolean): (v: number) => number {
  const f = Math.fround;
  return (v: number) => {
    const s = Math.min(1, Math.max(0, (v - lo) / span));
    return f(invert ? 1 - s : s);
  };
}

let table: { key: string; values: Float64Array } | undefined;

/**
 * The scaled model value of every possible stored word (256 or 65,536): the modality value exactly
 * as the Float32Array of values holds it, then scaler(). Kept for the next slice, which in a series
 * has the same format, rescale and window. With `present` (a min-max or percentile range, which
 * changes from slice to slice), only the words `present` names are computed.
 */
function scaledTable(
  stored: StoredGrey,
  lo: number,
  span: number,
  invert: boolean,
  present?: Uint32Array | StoredExtremes,
): Float64Array {
  if (present) return presentWordsTable(stored, lo, span, invert, present);
  const words = 1 << stored.wordBits;
  const key = [words, stored.shift, stored.signed, stored.slope, stored.intercept, lo, span, invert].join('|');
  if (table?.key === key) return table.values;
  const decode = storedToModality(stored);
  const scale = scaler(lo, span, invert);
  const values = new Float64Array(words);
  for (let w = 0; w < words; w++) values[w] = scale(decode(w));
  table = { key, values };
  return values;
}

let presentBuffer: Float64Array | undefined;

/**
 * The scaled values of the words this frame holds: those counted, or every word between the
 * frame's smallest and largest (the resize reads no others; the rest of the reused table is stale).
 */
function presentWordsTable(
  stored: StoredGrey,
  lo: number,
  span: number,
  invert: boolean,
  present: Uint32Array | StoredExtremes,
): Float64Array {
  const size = 1 << stored.wordBits;
  const values = presentBuffer?.length === size ? presentBuffer : (presentBuffer = new Float64Array(size));
  const decode = storedToModality(stored);
  const scale = scaler(lo, span, invert);
  if (present instanceof Uint32Array) {
    for (let w = 0; w < present.length; w++) if (present[w]) values[w] = scale(decode(w));
  } else
    for (let u = present.wordLo; u <= present.wordHi; u++) {
      const w = u ^ present.flip;
      values[w] = scale(decode(w));
    }
  return values;
}

/** resizeScaled() over stored words through their table: the same taps, the same scaled values, the same sums. */
function resizeTable(
  words: Uint16Array,
  rows: number,
  columns: number,
  scaled: Float64Array,
  dst: Float32Array,
  target: { rows: number; columns: number; stride: number },
): void {
  const ty = bilinearTaps(rows, target.rows);
  const { lo, hi, w } = bilinearTaps(columns, target.columns);
  const width = target.columns;
  for (let y = 0; y < target.rows; y++) {
    const r0 = ty.lo[y]! * columns;
    const r1 = ty.hi[y]! * columns;
    const wy = ty.w[y]!;
    const row = y * target.stride;
    for (let x = 0; x < width; x++) {
      const x0 = lo[x]!;
      const x1 = hi[x]!;
      dst[row + x] = lerp2(
        scaled[words[r0 + x0]!]!,
        scaled[words[r0 + x1]!]!,
        scaled[words[r1 + x0]!]!,
        scaled[words[r1 + x1]!]!,
        w[x]!,
        wy,
      );
    }
  }
}

/**
 * Intensity scaling fused into the bilinear resize: each source pixel the resize reads is scaled to
 * [0, 1] (clamped, inverted for MONOCHROME1, rounded to float32) on the fly, so no scaled copy of the
 * slice is made; the result equals scaling into a Float32Array and then resizeBilinear(), bit for bit
 * (test/unit/pipeline.test.ts). Reads 4 source pixels per output pixel: fewer operations than scaling
 * the whole slice whenever the slice is larger than twice the input size.
 */
function resizeScaled(
  src: ArrayLike<number>,
  rows: number,
  columns: number,
  channels: number,
  channel: number,
  lo: number,
  span: number,
  invert: boolean,
  dst: Float32Array,
  target: { rows: number; columns: number; stride: number },
): void {
  const scale = scaler(lo, span, invert);
  const ty = bilinearTaps(rows, target.rows);
  const tx = bilinearTaps(columns, target.columns);
  for (let y = 0; y < target.rows; y++) {
    const r0 = ty.lo[y]! * columns;
    const r1 = ty.hi[y]! * columns;
    for (let x = 0; x < target.columns; x++) {
      const x0 = tx.lo[x]!;
      const x1 = tx.hi[x]!;
      dst[y * target.stride + x] = lerp2(
        scale(src[(r0 + x0) * channels + channel]!),
        scale(src[(r0 + x1) * channels + channel]!),
        scale(src[(r1 + x0) * channels + channel]!),
        scale(src[(r1 + x1) * channels + channel]!),
        tx.w[x]!,
        ty.w[y]!,
      );
    }
  }
}

/**
 * The two source samples and the weight of the second for each of `dst` output positions along one
 * axis of `src` samples, with half-pixel centres (align_corners = false, as the exporter's
 * interpolate). Shared by every bilinear resize here (and postprocess.ts), so they agree bit for bit.
 */
export function bilinearTaps(src: number, dst: number): { lo: Int32Array; hi: Int32Array; w: Float64Array } {
  const lo = new Int32Array(dst);
  const hi = new Int32Array(dst);
  const w = new Float64Array(dst);
  const step = src / dst;
  for (let i = 0; i < dst; i++) {
    const f = Math.max(0, (i + 0.5) * step - 0.5);
    lo[i] = Math.min(src - 1, Math.floor(f));
    hi[i] = Math.min(src - 1, lo[i]! + 1);
    w[i] = f - lo[i]!;
  }
  return { lo, hi, w };
}

/** Bilinear interpolation of the corners a (top left), b (top right), c, d with weights wx, wy. */
export function lerp2(a: number, b: number, c: number, d: number, wx: number, wy: number): number {
  return (a * (1 - wx) + b * wx) * (1 - wy) + (c * (1 - wx) + d * wx) * wy;
}

/**
 * Bilinear resize of one channel of an interleaved (stride `channels`) rows x columns image to
 * size x size, with half-pixel centres (align_corners = false, as the exporter's interpolate).
 */
export function resizeBilinear(
  src: ArrayLike<number>,
  rows: number,
  columns: number,
  channels: number,
  channel: number,
  dst: Float32Array,
  size: number,
  dstRows = size,
  dstColumns = size,
): void {
  const ty = bilinearTaps(rows, dstRows);
  const tx = bilinearTaps(columns, dstColumns);
  for (let y = 0; y < dstRows; y++) {
    const r0 = ty.lo[y]! * columns;
    const r1 = ty.hi[y]! * columns;
    for (let x = 0; x < dstColumns; x++) {
      const x0 = tx.lo[x]!;
      const x1 = tx.hi[x]!;
      dst[y * dstColumns + x] = lerp2(
        src[(r0 + x0) * channels + channel]!,
        src[(r0 + x1) * channels + channel]!,
        src[(r1 + x0) * channels + channel]!,
        src[(r1 + x1) * channels + channel]!,
        tx.w[x]!,
        ty.w[y]!,
      );
    }
  }
}
