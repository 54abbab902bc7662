/**
 * The clean-ups as they were written pixel by pixel (server/src/pipeline/postprocess.ts before the
 * run-based versions in cleanup.ts): the reference the faster versions must equal bit for bit.
 */
interface Run {
  z: number;
  y: number;
  x0: number;
  x1: number;
  id: number;
}

/**
 * 6-connected 3D components of bit-packed slices (in processing order, so neighbours in the list
 * are neighbours in space), as runs of set bits with a component id and each component's size.
 * Works on runs, so memory follows the mask's outline, not the volume.
 */
function components(
  slices: Uint8Array[],
  rows: number,
  columns: number,
): { runs: Run[]; root: (r: Run) => number; size: Map<number, number> } {
  const parent: number[] = [];
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
  const bit = (bits: Uint8Array, i: number) => (bits[i >> 3]! >> (i & 7)) & 1;
  const runsBySlice: Run[][][] = [];
  const all: Run[] = [];
  for (let z = 0; z < slices.length; z++) {
    const bits = slices[z]!;
    const rowsRuns: Run[][] = [];
    for (let y = 0; y < rows; y++) {
      const runs: Run[] = [];
      let x = 0;
      while (x < columns) {
        if (bit(bits, y * columns + x)) {
          const x0 = x;
          while (x < columns && bit(bits, y * columns + x)) x++;
          const run = { z, y, x0, x1: x - 1, id: all.length };
          parent.push(run.id);
          all.push(run);
          runs.push(run);
          for (const other of [...(rowsRuns[y - 1] ?? []), ...(runsBySlice[z - 1]?.[y] ?? [])]) {
            if (other.x0 <= run.x1 && run.x0 <= other.x1) union(run.id, other.id);
          }
        } else x++;
      }
      rowsRuns.push(runs);
    }
    runsBySlice.push(rowsRuns);
  }
  const size = new Map<number, number>();
  for (const r of all) size.set(find(r.id), (size.get(find(r.id)) ?? 0) + r.x1 - r.x0 + 1);
  return { runs: all, root: (r) => find(r.id), size };
}

function clearRun(slices: Uint8Array[], columns: number, r: Run): number {
  const bits = slices[r.z]!;
  for (let x = r.x0; x <= r.x1; x++) {
    const i = r.y * columns + x;
    bits[i >> 3]! &= ~(1 << (i & 7));
  }
  return r.x1 - r.x0 + 1;
}

/** Removes 6-connected 3D components of fewer than `minVoxels` voxels. Returns the voxels removed. */
export function dropSmallComponents(slices: Uint8Array[], rows: number, columns: number, minVoxels: number): number {
  if (minVoxels <= 1 || slices.length === 0) return 0;
  const { runs, root, size } = components(slices, rows, columns);
  let removed = 0;
  for (const r of runs) if (size.get(root(r))! < minVoxels) removed += clearRun(slices, columns, r);
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
  for (const [id, n] of size) if (n > bestSize || (n === bestSize && id < best)) [best, bestSize] = [id, n];
  let removed = 0;
  for (const r of runs) if (root(r) !== best) removed += clearRun(slices, columns, r);
  return removed;
}

/**
 * Fills the holes of each slice: background not 4-connected to the slice's border becomes
 * foreground (a filled structure such as a head or a lesion has no holes). In place on the packed
 * bits; one byte per pixel of scratch for the slice being filled. Returns the voxels added.
 */
export function fillHoles(slices: Uint8Array[], rows: number, columns: number): number {
  let added = 0;
  const outside = new Uint8Array(rows * columns);
  const stack = new Int32Array(rows * columns);
  for (const bits of slices) {
    outside.fill(0);
    const set = (i: number) => (bits[i >> 3]! >> (i & 7)) & 1;
    let top = 0;
    const seed = (i: number) => {
      if (!outside[i] && !set(i)) {
        outside[i] = 1;
        stack[top++] = i;
      }
    };
    for (let x = 0; x < columns; x++) {
      seed(x);
      seed((rows - 1) * columns + x);
    }
    for (let y = 0; y < rows; y++) {
      seed(y * columns);
      seed(y * columns + columns - 1);
    }
    while (top > 0) {
      const i = stack[--top]!;
      const x = i % columns;
      if (x > 0) seed(i - 1);
      if (x < columns - 1) seed(i + 1);
      if (i >= columns) seed(i - columns);
      if (i + columns < rows * columns) seed(i + columns);
    }
    for (let i = 0; i < rows * columns; i++) {
      if (!outside[i] && !set(i)) {
        bits[i >> 3]! |= 1 << (i & 7);
        added++;
      }
    }
  }
  return added;
}

/**
 * Replaces each slice's mask by its moment ellipse: the pixels (x, y) with d^T C^-1 d <= 4, where
 * d = (x - cx, y - cy) and C is the covariance of the mask's pixel centres plus 1/12 on the diagonal
 * (a pixel's own spread). A filled ellipse is its own moment ellipse, so for a structure that is one
 * (a fetal head, whose biometry is an ellipse) this removes boundary noise. Sums are exact integers and
 * the arithmetic follows models/ldfsam_models/postprocess.py `fit_ellipse` step for step, so the
 * evaluation measures the pixels users get. Empty slices stay empty. Returns the voxels changed.
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
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < columns; x++) {
        const i = y * columns + x;
        if ((bits[i >> 3]! >> (i & 7)) & 1) {
          n++;
          sx += x;
          sy += y;
          sxx += x * x;
          syy += y * y;
          sxy += x * y;
        }
      }
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
    for (let y = 0; y < rows; y++) {
      const gy = y - cy;
      for (let x = 0; x < columns; x++) {
        const gx = x - cx;
        const inside = a * gx * gx + 2 * b * gx * gy + c * gy * gy <= 4 ? 1 : 0;
        const i = y * columns + x;
        const was = (bits[i >> 3]! >> (i & 7)) & 1;
        if (inside !== was) {
          bits[i >> 3]! ^= 1 << (i & 7);
          changed++;
        }
      }
    }
  }
  return changed;
}
