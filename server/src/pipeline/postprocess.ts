/**
 * Model output to masks on the source grid: logits resized back to the slice's rows x columns
 * (bilinear, the inverse of the forward resize), thresholded, packed to bits; and an optional 3D
 * clean-up that drops connected components smaller than a number of voxels.
 */
import { packBits } from '../seg/bits.js';
import { resizeBilinear } from './preprocess.js';

export function logitsToMask(logits: Float32Array, size: number, rows: number, columns: number, threshold: number): Uint8Array {
  const native = new Float32Array(rows * columns);
  resizeBilinear(logits, size, size, 1, 0, native, size, rows, columns);
  const mask = new Uint8Array(rows * columns);
  for (let i = 0; i < mask.length; i++) mask[i] = native[i]! > threshold ? 1 : 0;
  return mask;
}

export function maskToBits(mask: Uint8Array): Uint8Array {
  return packBits(mask);
}

/**
 * Removes 6-connected 3D components of fewer than `minVoxels` voxels from bit-packed slices (in
 * processing order, so neighbours in the list are neighbours in space). Works on runs of set bits,
 * so memory follows the mask's outline, not the volume. Returns the voxels removed.
 */
export function dropSmallComponents(slices: Uint8Array[], rows: number, columns: number, minVoxels: number): number {
  if (minVoxels <= 1 || slices.length === 0) return 0;
  type Run = { z: number; y: number; x0: number; x1: number; id: number };
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
  const runsBySlice: Run[][][] = [];
  const all: Run[] = [];
  for (let z = 0; z < slices.length; z++) {
    const bits = slices[z]!;
    const rowsRuns: Run[][] = [];
    for (let y = 0; y < rows; y++) {
      const runs: Run[] = [];
      let x = 0;
      while (x < columns) {
        const i = y * columns + x;
        if ((bits[i >> 3]! >> (i & 7)) & 1) {
          const x0 = x;
          while (x < columns && (bits[(y * columns + x) >> 3]! >> ((y * columns + x) & 7)) & 1) x++;
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
  let removed = 0;
  for (const r of all) {
    if (size.get(find(r.id))! >= minVoxels) continue;
    const bits = slices[r.z]!;
    for (let x = r.x0; x <= r.x1; x++) {
      const i = r.y * columns + x;
      bits[i >> 3]! &= ~(1 << (i & 7));
      removed++;
    }
  }
  return removed;
}
