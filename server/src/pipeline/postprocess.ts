/**
 * Model output to masks on the source grid: logits resized back to the slice's rows x columns
 * (bilinear, the inverse of the forward resize), thresholded, packed to bits. The clean-ups a
 * manifest may ask for live in cleanup.ts (re-exported here).
 */
import { packBits } from '../seg/bits.js';
import { fillBits } from './mask-runs.js';
import { bilinearTaps, lerp2, resizeBilinear } from './preprocess.js';

export function logitsToMask(
  logits: Float32Array,
  size: number,
  rows: number,
  columns: number,
  threshold: number,
  fitted: { rows: number; columns: number } = { rows: size, columns: size },
): Uint8Array {
  let region = logits;
  if (fitted.rows !== size || fitted.columns !== size) {
    region = new Float32Array(fitted.rows * fitted.columns);
    for (let y = 0; y < fitted.rows; y++) region.set(logits.subarray(y * size, y * size + fitted.columns), y * fitted.columns);
  }
  const native = new Float32Array(rows * columns);
  resizeBilinear(region, fitted.rows, fitted.columns, 1, 0, native, size, rows, columns);
  const mask = new Uint8Array(rows * columns);
  for (let i = 0; i < mask.length; i++) mask[i] = native[i]! > threshold ? 1 : 0;
  return mask;
}

export function maskToBits(mask: Uint8Array): Uint8Array {
  return packBits(mask);
}

/** The float32 neighbours of a threshold: the largest float32 <= t and the smallest float32 > t. */
function float32Bounds(t: number): { below: number; above: number } {
  const f = new Float32Array(1);
  const i = new Int32Array(f.buffer);
  const step = (v: number, up: boolean) => {
    f[0] = v;
    if (v === 0) return up ? 1.401298464324817e-45 : -1.401298464324817e-45;
    i[0]! += v > 0 === up ? 1 : -1;
    return f[0];
  };
  const r = Math.fround(t);
  return { below: r <= t ? r : step(r, false), above: r > t ? r : step(r, true) };
}

/**
 * logitsToMask() then maskToBits() in one pass, without the native-size float and byte copies:
 * each native pixel's logit is interpolated (the same arithmetic as resizeBilinear, rounded to
 * float32 as its Float32Array would) and thresholded straight into the packed bits (bit i of the
 * slice = pixel i, least significant bit first, as packBits). `fitted`: the part of the size x size
 * logits the slice filled (longest-side-pad; top left), which alone is resized back; default all.
 *
 * Bit for bit the same as the pixel-by-pixel loop (logitsToBitsReference), faster: only output
 * pixels whose four logits are neither all safely below the threshold (left 0) nor all safely above
 * it (set whole, a blob's inside) are interpolated, per row the blob's edges, each with lerp2's
 * products in lerp2's order. (Interpolating every logits row once for all its output columns, as
 * this did before, cost more: on a head-sized mask at 820x820 the edges are ~60 pixels a row, the
 * rows 820.) "Safely":
 * by more than the interpolation's rounding (1e-12 of the largest logit) and on the right side of the
 * threshold's float32 neighbours, so the float32-rounded value compares as the loop's would.
 */
export function logitsToBits(
  logits: Float32Array,
  size: number,
  rows: number,
  columns: number,
  threshold: number,
  fitted: { rows: number; columns: number } = { rows: size, columns: size },
): Uint8Array {
  const bits = new Uint8Array(Math.ceil((rows * columns) / 8));
  const ty = bilinearTaps(fitted.rows, rows);
  const tx = bilinearTaps(fitted.columns, columns);
  const fc = fitted.columns;
  let largest = 0;
  for (let r = 0; r < fitted.rows; r++)
    for (let c = 0; c < fc; c++) {
      const v = Math.abs(logits[r * size + c]!);
      if (!(v <= largest)) largest = v; // NaN too
    }
  if (!Number.isFinite(largest)) return logitsToBitsReference(logits, size, rows, columns, threshold, fitted);
  const margin = 1e-12 * largest;
  const { below, above } = float32Bounds(threshold);
  const low = below - margin;
  const high = above + margin;
  // Per logits row: its first and last column not safely below, and whether it is all safely above.
  // Per logits row: its first and last column not safely below, and its columns safely above when
  // they are one stretch (a blob's inside), else none.
  const first = new Int32Array(fitted.rows).fill(fc);
  const last = new Int32Array(fitted.rows).fill(-1);
  const aboveFrom = new Int32Array(fitted.rows).fill(fc);
  const aboveTo = new Int32Array(fitted.rows).fill(-1);
  for (let r = 0; r < fitted.rows; r++) {
    let count = 0;
    for (let c = 0; c < fc; c++) {
      const v = logits[r * size + c]!;
      if (v >= low) {
        if (first[r]! === fc) first[r] = c;
        last[r] = c;
      }
      if (v > high) {
        if (aboveFrom[r]! === fc) aboveFrom[r] = c;
        aboveTo[r] = c;
        count++;
      }
    }
    if (count !== aboveTo[r]! - aboveFrom[r]! + 1) [aboveFrom[r], aboveTo[r]] = [fc, -1];
  }
  // For each logits column c: the first output x whose right tap is >= c, the last whose left tap is
  // <= c (the pixels that read columns up to / from c), the first whose left tap is >= c and the
  // last whose right tap is <= c (the pixels that read only columns from / up to c).
  const firstHi = new Int32Array(fc + 1).fill(columns);
  const firstLo = new Int32Array(fc + 1).fill(columns);
  const lastLo = new Int32Array(fc).fill(-1);
  const lastHi = new Int32Array(fc).fill(-1);
  for (let x = columns - 1; x >= 0; x--) {
    firstHi[tx.hi[x]!] = x;
    firstLo[tx.lo[x]!] = x;
  }
  for (let c = fc - 1; c >= 0; c--) {
    firstHi[c] = Math.min(firstHi[c]!, firstHi[c + 1]!);
    firstLo[c] = Math.min(firstLo[c]!, firstLo[c + 1]!);
  }
  for (let x = 0; x < columns; x++) {
    lastLo[tx.lo[x]!] = x;
    lastHi[tx.hi[x]!] = x;
  }
  for (let c = 1; c < fc; c++) {
    lastLo[c] = Math.max(lastLo[c]!, lastLo[c - 1]!);
    lastHi[c] = Math.max(lastHi[c]!, lastHi[c - 1]!);
  }
  const { lo: txLo, hi: txHi, w: txW } = tx;
  // An edge pixel's value: lerp2's arithmetic, its taps read where they lie.
  const edge = (o0: number, o1: number, x: number, wy: number): number => {
    const l = txLo[x]!;
    const h = txHi[x]!;
    const wx = txW[x]!;
    return (
      (logits[o0 + l]! * (1 - wx) + logits[o0 + h]! * wx) * (1 - wy) + (logits[o1 + l]! * (1 - wx) + logits[o1 + h]! * wx) * wy
    );
  };
  for (let y = 0; y < rows; y++) {
    const r0 = ty.lo[y]!;
    const r1 = ty.hi[y]!;
    const cFirst = Math.min(first[r0]!, first[r1]!);
    const cLast = Math.max(last[r0]!, last[r1]!);
    if (cLast < cFirst) continue; // every logit of both rows safely below: all zeros
    // Pixels [x0, x1] read some logit not safely below; of them, [xa, xb] read only logits safely above.
    const x0 = firstHi[cFirst]!;
    const x1 = lastLo[cLast]!;
    const a = Math.max(aboveFrom[r0]!, aboveFrom[r1]!);
    const b = Math.min(aboveTo[r0]!, aboveTo[r1]!);
    let xa = x1 + 1;
    let xb = x1;
    if (a <= b && firstLo[a]! <= lastHi[b]!) [xa, xb] = [Math.max(x0, firstLo[a]!), Math.min(x1, lastHi[b]!)];
    const o0 = r0 * size;
    const o1 = r1 * size;
    const wy = ty.w[y]!;
    const row = y * columns;
    for (let x = x0; x < xa; x++) {
      if (Math.fround(edge(o0, o1, x, wy)) > threshold) bits[(row + x) >> 3]! |= 1 << ((row + x) & 7);
    }
    if (xa <= xb) fillBits(bits, row + xa, row + xb + 1, 1);
    for (let x = xb + 1; x <= x1; x++) {
      if (Math.fround(edge(o0, o1, x, wy)) > threshold) bits[(row + x) >> 3]! |= 1 << ((row + x) & 7);
    }
  }
  return bits;
}

/** logitsToBits pixel by pixel: the reference it must equal (and the path for non-finite logits). */
export function logitsToBitsReference(
  logits: Float32Array,
  size: number,
  rows: number,
  columns: number,
  threshold: number,
  fitted: { rows: number; columns: number } = { rows: size, columns: size },
): Uint8Array {
  const bits = new Uint8Array(Math.ceil((rows * columns) / 8));
  const ty = bilinearTaps(fitted.rows, rows);
  const tx = bilinearTaps(fitted.columns, columns);
  for (let y = 0; y < rows; y++) {
    const r0 = ty.lo[y]! * size;
    const r1 = ty.hi[y]! * size;
    for (let x = 0; x < columns; x++) {
      const x0 = tx.lo[x]!;
      const x1 = tx.hi[x]!;
      const v = lerp2(logits[r0 + x0]!, logits[r0 + x1]!, logits[r1 + x0]!, logits[r1 + x1]!, tx.w[x]!, ty.w[y]!);
      if (Math.fround(v) > threshold) {
        const i = y * columns + x;
        bits[i >> 3]! |= 1 << (i & 7);
      }
    }
  }
  return bits;
}

export { dropSmallComponents, fillHoles, fitEllipse, keepLargestComponent } from './cleanup.js';
