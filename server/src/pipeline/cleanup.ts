/**
 * The clean-ups a manifest may ask for, on bit-packed masks (bit i = pixel i of the slice, least
 * significant bit first): drop 3D components smaller than a number of voxels, keep only the largest
 * 3D component, fill each slice's holes, replace each slice's mask by its moment ellipse. They work on
 * runs of set or clear bits (mask-runs.ts), so their cost follows the masks' outlines, not their
 * pixel counts; each gives the pixels of its pixel-by-pixel definition (test/unit/cleanup.test.ts
 * compares them with pixel-by-pixel references on random masks).
 */
import { countBits, fillBits, forEachRun, nextBit } from './mask-runs.js';

/**
 * Runs of set bits of every slice, one entry per run in parallel typed arrays (no object per run:
 * a long series has a million runs, and as objects they all lived until the end of the clean-up,
 * promoted to the old generation and marked again by each of the major collections they caused).
 */
interface Runs {
  count: number;
  z: Int32Array;
  y: Int32Array;
  x0: Int32Array;
  x1: Int32Array;
}

/**
 * 6-connected 3D components of bit-packed slices (in processing order, so neighbours in the list
 * are neighbours in space), as runs of set bits with each run's component (its root: the
 * component's first run) and each root's size. Runs are numbered slice by slice, row by row, left
 * to right.
 */
function components(
  slices: Uint8Array[],
  rows: number,
  columns: number,
): { runs: Runs; root: (i: number) => number; size: Float64Array } {
  let capacity = 4096;
  let z = new Int32Array(capacity);
  let ry = new Int32Array(capacity);
  let rx0 = new Int32Array(capacity);
  let rx1 = new Int32Array(capacity);
  let parent = new Int32Array(capacity);
  const grow = () => {
    capacity *= 2;
    const more = (a: Int32Array) => {
      const b = new Int32Array(capacity);
      b.set(a);
      return b;
    };
    [z, ry, rx0, rx1, parent] = [more(z), more(ry), more(rx0), more(rx1), more(parent)];
  };
  const find = (i: number): number => {
    while (parent[i] !== i) {
      parent[i] = parent[parent[i]!]!;
      i = parent[i]!;
    }
    return i;
  };
  const union = (a: number, b: number) => {
    const ra = find(a);
    const rb = find(b);
    if (ra !== rb) parent[Math.max(ra, rb)] = Math.min(ra, rb);
  };
  let n = 0;
  // First run of each row (and the end of the last) of this slice and of the previous one.
  let rowStart = new Int32Array(rows + 1);
  let previous = new Int32Array(rows + 1); // all zero: no runs
  for (let s = 0; s < slices.length; s++) {
    const bits = slices[s]!;
    for (let y = 0; y < rows; y++) {
      rowStart[y] = n;
      const start = y * columns;
      const end = start + columns;
      let i = nextBit(bits, start, end, 1);
      while (i < end) {
        const stop = nextBit(bits, i, end, 0);
        const x0 = i - start;
        const x1 = stop - 1 - start;
        if (n === capacity) grow();
        z[n] = s;
        ry[n] = y;
        rx0[n] = x0;
        rx1[n] = x1;
        parent[n] = n;
        // The overlapping runs of the row above, then of the same row in the previous slice.
        if (y > 0) for (let k = rowStart[y - 1]!; k < rowStart[y]!; k++) if (rx0[k]! <= x1 && x0 <= rx1[k]!) union(n, k);
        for (let k = previous[y]!; k < previous[y + 1]!; k++) if (rx0[k]! <= x1 && x0 <= rx1[k]!) union(n, k);
        n++;
        i = nextBit(bits, stop, end, 1);
      }
    }
    rowStart[rows] = n;
    [previous, rowStart] = [rowStart, previous];
  }
  const size = new Float64Array(n);
  for (let i = 0; i < n; i++) size[find(i)]! += rx1[i]! - rx0[i]! + 1;
  return { runs: { count: n, z, y: ry, x0: rx0, x1: rx1 }, root: find, size };
}

function clearRun(slices: Uint8Array[], columns: number, runs: Runs, i: number): number {
  const row = runs.y[i]! * columns;
  fillBits(slices[runs.z[i]!]!, row + runs.x0[i]!, row + runs.x1[i]! + 1, 0);
  return runs.x1[i]! - runs.x0[i]! + 1;
}

/** Removes 6-connected 3D components of fewer than `minVoxels` voxels. Returns the voxels removed. */
export function dropSmallComponents(slices: Uint8Array[], rows: number, columns: number, minVoxels: number): number {
  if (minVoxels <= 1 || slices.length === 0) return 0;
  const { runs, root, size } = components(slices, rows, columns);
  let removed = 0;
  for (let i = 0; i < runs.count; i++) if (size[root(i)]! < minVoxels) removed += clearRun(slices, columns, runs, i);
  return removed;
}

/**
 * Keeps only the largest 6-connected 3D component (a structure there is one of, such as a fetal
 * head; ties go to the component met first). Returns the voxels removed.
 */
export function keepLargestComponent(slices: Uint8Array[], rows: number, columns: number): number {
  const { runs, root, size } = components(slices, rows, columns);
  let best = -1;
  let bestSize = 0;
  // Roots in the order their components are met (a root is its component's first run).
  for (let i = 0; i < runs.count; i++) if (root(i) === i && size[i]! > bestSize) [best, bestSize] = [i, size[i]!];
  let removed = 0;
  for (let i = 0; i < runs.count; i++) if (root(i) !== best) removed += clearRun(slices, columns, runs, i);
  return removed;
}

/**
 * Fills the holes of each slice: background not 4-connected to the slice's border becomes
 * foreground (a filled structure such as a head or a lesion has no holes). Background runs of
 * each row are joined with the overlapping background runs of the row above (4-connectivity); the
 * groups that touch the border stay, the others are filled. Returns the voxels added.
 */
export function fillHoles(slices: Uint8Array[], rows: number, columns: number): number {
  let added = 0;
  for (const bits of slices) {
    const parent: number[] = [];
    const border: boolean[] = [];
    const find = (i: number): number => {
      while (parent[i] !== i) {
        parent[i] = parent[parent[i]!]!;
        i = parent[i]!;
      }
      return i;
    };
    const runs: { y: number; x0: number; x1: number; id: number }[] = [];
    let above: { x0: number; x1: number; id: number }[] = [];
    for (let y = 0; y < rows; y++) {
      const row: { y: number; x0: number; x1: number; id: number }[] = [];
      forEachRun(bits, y, columns, 0, (x0, x1) => {
        const id = runs.length;
        const run = { y, x0, x1, id };
        parent.push(id);
        border.push(y === 0 || y === rows - 1 || x0 === 0 || x1 === columns - 1);
        for (const other of above) {
          if (other.x0 <= x1 && x0 <= other.x1) {
            const a = find(id);
            const b = find(other.id);
            if (a !== b) {
              parent[Math.max(a, b)] = Math.min(a, b);
              border[Math.min(a, b)] = border[a]! || border[b]!;
            }
          }
        }
        runs.push(run);
        row.push(run);
      });
      above = row;
    }
    for (const r of runs) {
      if (border[find(r.id)]) continue;
      fillBits(bits, r.y * columns + r.x0, r.y * columns + r.x1 + 1, 1);
      added += r.x1 - r.x0 + 1;
    }
  }
  return added;
}

/**
 * Replaces each slice's mask by its moment ellipse: the pixels (x, y) with d^T C^-1 d <= 4, where
 * d = (x - cx, y - cy) and C is the covariance of the mask's pixel centres plus 1/12 on the diagonal
 * (a pixel's own spread). A filled ellipse is its own moment ellipse, so for a structure that is one
 * (a fetal head, whose biometry is an ellipse) this removes boundary noise. The sums are exact
 * integers (run by run: the same integers as pixel by pixel) and the test arithmetic follows
 * models/ldfsam_models/postprocess.py `fit_ellipse` step for step, so the evaluation measures the
 * pixels users get. The test runs only over each row's span of the ellipse widened by 2 pixels:
 * beyond it the quadratic form exceeds 4 by far more than its rounding. Empty slices stay empty.
 * Returns the voxels changed.
 */
export function fitEllipse(slices: Uint8Array[], rows: number, columns: number): number {
  let changed = 0;
  for (const bits of slices) {
    let n = 0;
    let sx = 0;
    let sy = 0;
    let sxx = 0;
    let syy = 0;
    let sxy = 0;
    const squares = (m: number) => (m * (m + 1) * (2 * m + 1)) / 6; // 0^2 + ... + m^2
    for (let y = 0; y < rows; y++) {
      forEachRun(bits, y, columns, 1, (x0, x1) => {
        const k = x1 - x0 + 1;
        const rx = ((x0 + x1) * k) / 2;
        n += k;
        sx += rx;
        sy += y * k;
        sxx += squares(x1) - squares(x0 - 1);
        syy += y * y * k;
        sxy += y * rx;
      });
    }
    if (n === 0) continue;
    const cx = sx / n;
    const cy = sy / n;
    const vxx = sxx / n - cx * cx + 1 / 12;
    const vyy = syy / n - cy * cy + 1 / 12;
    const vxy = sxy / n - cx * cy;
    const det = vxx * vyy - vxy * vxy;
    const a = vyy / det;
    const b = -vxy / det;
    const c = vxx / det;
    for (let y = 0; y < rows; y++) changed += ellipseRow(bits, y, columns, cx, y - cy, a, b, c);
  }
  return changed;
}

/**
 * Writes row y of the ellipse a gx^2 + 2b gx gy + c gy^2 <= 4; returns the pixels changed. The
 * quadratic form is evaluated pixel by pixel within 2 pixels of the row's two roots; farther out it
 * exceeds 4, and farther in it stays below 4, by at least 4a, far more than its rounding error, so
 * those stretches are cleared or set whole. Without usable roots the whole row is evaluated.
 */
function ellipseRow(
  bits: Uint8Array,
  y: number,
  columns: number,
  cx: number,
  gy: number,
  a: number,
  b: number,
  c: number,
): number {
  const start = y * columns;
  const last = columns - 1;
  const evaluate = (from: number, to: number) => {
    let changed = 0;
    for (let x = from; x <= to; x++) {
      const gx = x - cx;
      const inside = a * gx * gx + 2 * b * gx * gy + c * gy * gy <= 4 ? 1 : 0;
      const i = start + x;
      if (inside !== ((bits[i >> 3]! >> (i & 7)) & 1)) {
        bits[i >> 3]! ^= 1 << (i & 7);
        changed++;
      }
    }
    return changed;
  };
  /** Sets (1) or clears (0) pixels [from, to] of the row; returns how many changed. */
  const fill = (from: number, to: number, value: 0 | 1) => {
    if (from > to) return 0;
    const set = countBits(bits, start + from, start + to + 1);
    fillBits(bits, start + from, start + to + 1, value);
    return value ? to - from + 1 - set : set;
  };
  // The roots of a gx^2 + 2 b gy gx + (c gy^2 - 4) = 0.
  const disc = b * gy * (b * gy) - a * (c * gy * gy - 4);
  if (!(Number.isFinite(disc) && a > 0 && Number.isFinite(cx))) return evaluate(0, last);
  // Clearly no real root (far beyond rounding): the row is outside.
  if (disc < -1e-9 * Math.abs(a * (c * gy * gy + 4))) return fill(0, last, 0);
  const half = Math.sqrt(Math.max(0, disc)) / a;
  const mid = cx - (b * gy) / a;
  const clamp = (x: number) => Math.min(last + 1, Math.max(-1, x));
  const lo0 = clamp(Math.floor(mid - half) - 2);
  const lo1 = clamp(Math.ceil(mid - half) + 2);
  const hi0 = clamp(Math.floor(mid + half) - 2);
  const hi1 = clamp(Math.ceil(mid + half) + 2);
  let changed = fill(0, lo0 - 1, 0) + fill(hi1 + 1, last, 0);
  if (lo1 + 1 >= hi0) return changed + evaluate(Math.max(0, lo0), Math.min(last, hi1));
  changed += evaluate(Math.max(0, lo0), lo1) + evaluate(hi0, Math.min(last, hi1));
  return changed + fill(lo1 + 1, hi0 - 1, 1);
}
