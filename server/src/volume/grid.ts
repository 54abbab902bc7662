/**
 * Voxel grids in patient space. One convention everywhere: DICOM's LPS (x to the patient's left, y
 * to posterior, z to superior), voxel i fastest in memory, `origin` the centre of voxel (0, 0, 0),
 * `directions[a]` the unit vector of voxel axis a. NIfTI (RAS) and NRRD (any space) are converted to
 * it when read; NRRD is written in it. Pure functions over typed arrays.
 */
import { dot, norm, type Vec3 } from '../dicom/geometry.js';
import { LdfsamError } from '../errors.js';

export type { Vec3 };
export type Axis = 0 | 1 | 2;

export interface Grid {
  /** Voxels along i, j, k. */
  size: [number, number, number];
  /** mm between voxel centres along i, j, k. */
  spacing: Vec3;
  /** LPS position (mm) of the centre of voxel (0, 0, 0). */
  origin: Vec3;
  /** LPS unit vectors of the i, j and k axes. */
  directions: [Vec3, Vec3, Vec3];
}

export type VoxelArray =
  Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | Float32Array | Float64Array;

/** A scalar volume: stored values and the linear map to real values (NIfTI scl_slope / scl_inter). */
export interface Volume extends Grid {
  data: VoxelArray;
  scale: { slope: number; intercept: number };
  /** The slice axis the file names (NIfTI dim_info), when it does. */
  sliceAxisHint?: Axis;
}

/** A copy of bytes[start, end) in an ArrayBuffer of its own (Node's Buffer.slice would be a view). */
export function copy(bytes: Uint8Array, start: number, end: number): Uint8Array {
  return new Uint8Array(bytes.subarray(start, end));
}

export function voxelCount(size: readonly number[]): number {
  return size[0]! * size[1]! * size[2]!;
}

/** LPS position of voxel (i, j, k). */
export function voxelToLps(grid: Grid, ijk: readonly number[]): Vec3 {
  const at = (c: number) =>
    grid.origin[c]! + [0, 1, 2].reduce((s, a) => s + grid.directions[a]![c]! * grid.spacing[a]! * ijk[a]!, 0);
  return [at(0), at(1), at(2)];
}

/**
 * A grid from the columns of a voxel-to-LPS matrix (each column = direction x spacing) and an
 * origin. Refuses what a grid cannot hold: a zero column, or axes that are not orthogonal (shear).
 */
export function gridFromColumns(size: [number, number, number], columns: [Vec3, Vec3, Vec3], origin: Vec3, what: string): Grid {
  const spacing = columns.map((c) => norm(c)) as Vec3;
  if (spacing.some((s) => !(s > 0) || !Number.isFinite(s)))
    throw new LdfsamError('INVALID_INPUT', `${what}: a voxel axis has no length (spacing ${spacing.join(', ')})`);
  if (origin.some((v) => !Number.isFinite(v))) throw new LdfsamError('INVALID_INPUT', `${what}: the origin is not a number`);
  const directions = columns.map((c, a) => c.map((v) => v / spacing[a]!)) as [Vec3, Vec3, Vec3];
  for (const [a, b] of [
    [0, 1],
    [0, 2],
    [1, 2],
  ] as const) {
    if (Math.abs(dot(directions[a], directions[b])) > 1e-3) {
      throw new LdfsamError(
        'INVALID_INPUT',
        `${what}: voxel axes ${a} and ${b} are not orthogonal (sheared grid); resample it to an orthogonal grid first`,
      );
    }
  }
  return { size, spacing, origin, directions };
}

/** Whether two grids are the same within a tolerance (sizes exactly; mm and cosines within 1e-4). */
export function sameGrid(a: Grid, b: Grid, tolerance = 1e-4): boolean {
  const close = (x: readonly number[], y: readonly number[], t: number) => x.every((v, i) => Math.abs(v - y[i]!) <= t);
  return (
    a.size.every((v, i) => v === b.size[i]) &&
    close(a.spacing, b.spacing, tolerance * Math.max(1, ...a.spacing)) &&
    close(a.origin, b.origin, tolerance * Math.max(1, ...a.origin.map(Math.abs))) &&
    a.directions.every((d, i) => close(d, b.directions[i]!, tolerance))
  );
}

/**
 * The axis a slice-by-slice model runs along (the acquisition axis): the one the file names (NIfTI
 * slice_dim); else the one axis of size 1 (a single image); else the axis whose spacing is clearly
 * the largest (thick slices); else k (the axis a DICOM series is stacked along, and that every
 * converter we know keeps as the slice axis).
 */
export function acquisitionAxis(volume: Pick<Volume, 'size' | 'spacing' | 'sliceAxisHint'>): Axis {
  if (volume.sliceAxisHint !== undefined) return volume.sliceAxisHint;
  const ones = ([0, 1, 2] as Axis[]).filter((a) => volume.size[a] === 1);
  if (ones.length > 0) return ones[ones.length - 1]!;
  const s = volume.spacing;
  for (const a of [2, 0, 1] as Axis[]) {
    const others = ([0, 1, 2] as Axis[]).filter((b) => b !== a);
    if (others.every((b) => s[a] > s[b] * 1.01)) return a;
  }
  return 2;
}

/**
 * How a slice across `axis` is shown to a model: as DICOM displays an image. Column x runs along the
 * in-plane axis closest to patient left, else posterior; row y along the other one; x and y run
 * toward left, posterior or inferior. A volume stacked from a DICOM series (i = column, j = row)
 * is shown as it is stored.
 */
export interface SliceView {
  axis: Axis;
  /** The voxel axes along the slice's columns (x) and rows (y). */
  xAxis: Axis;
  yAxis: Axis;
  flipX: boolean;
  flipY: boolean;
  rows: number;
  columns: number;
  slices: number;
}

export function sliceView(grid: Grid, axis: Axis): SliceView {
  const inPlane = ([0, 1, 2] as Axis[]).filter((a) => a !== axis) as [Axis, Axis];
  const dominant = (a: Axis) => {
    const d = grid.directions[a];
    const c = [0, 1, 2].reduce((best, i) => (Math.abs(d[i]!) > Math.abs(d[best]!) + 1e-9 ? i : best), 0);
    return { c, sign: Math.sign(d[c]!) };
  };
  const [u, v] = inPlane.map(dominant) as [{ c: number; sign: number }, { c: number; sign: number }];
  const [xAxis, yAxis] = v.c < u.c ? [inPlane[1], inPlane[0]] : inPlane;
  const wanted = (c: number) => (c === 2 ? -1 : 1); // toward left, posterior; down toward the feet
  const x = dominant(xAxis);
  const y = dominant(yAxis);
  return {
    axis,
    xAxis,
    yAxis,
    flipX: x.sign !== wanted(x.c),
    flipY: y.sign !== wanted(y.c),
    columns: grid.size[xAxis],
    rows: grid.size[yAxis],
    slices: grid.size[axis],
  };
}

/** Voxel (i, j, k) of slice pixel (x, y) of slice s. */
export function viewToVoxel(view: SliceView, x: number, y: number, s: number): [number, number, number] {
  const ijk: [number, number, number] = [0, 0, 0];
  ijk[view.axis] = s;
  ijk[view.xAxis] = view.flipX ? view.columns - 1 - x : x;
  ijk[view.yAxis] = view.flipY ? view.rows - 1 - y : y;
  return ijk;
}

/** Slice s and pixel (x, y) of voxel (i, j, k): the inverse of viewToVoxel. */
export function voxelToView(view: SliceView, ijk: readonly number[]): { x: number; y: number; s: number } {
  const x = ijk[view.xAxis]!;
  const y = ijk[view.yAxis]!;
  return { s: ijk[view.axis]!, x: view.flipX ? view.columns - 1 - x : x, y: view.flipY ? view.rows - 1 - y : y };
}

/** Memory strides of the voxel axes (i fastest). */
function strides(size: readonly number[]): [number, number, number] {
  return [1, size[0]!, size[0]! * size[1]!];
}

/** Walks slice s in row-major view order, calling visit(pixel index, voxel index). */
function forEachPixel(grid: Grid, view: SliceView, s: number, visit: (pixel: number, voxel: number) => void): void {
  const st = strides(grid.size);
  const sx = view.flipX ? -st[view.xAxis] : st[view.xAxis];
  const sy = view.flipY ? -st[view.yAxis] : st[view.yAxis];
  const start =
    s * st[view.axis] +
    (view.flipX ? (view.columns - 1) * st[view.xAxis] : 0) +
    (view.flipY ? (view.rows - 1) * st[view.yAxis] : 0);
  let pixel = 0;
  for (let y = 0; y < view.rows; y++) {
    let voxel = start + y * sy;
    for (let x = 0; x < view.columns; x++, pixel++, voxel += sx) visit(pixel, voxel);
  }
}

/** The real values (scale applied) of slice s, rows x columns in view order. */
export function sliceValues(volume: Volume, view: SliceView, s: number): Float32Array {
  if (s < 0 || s >= view.slices)
    throw new LdfsamError('INVALID_INPUT', `slice ${s} is outside the volume (0..${view.slices - 1})`);
  const out = new Float32Array(view.rows * view.columns);
  const { data } = volume;
  const { slope, intercept } = volume.scale;
  forEachPixel(volume, view, s, (p, v) => (out[p] = data[v]! * slope + intercept));
  return out;
}

/** Writes `value` into `label` (the volume's grid) wherever the slice mask (bit-packed, LSB first) is set. */
export function paintSlice(label: Uint8Array, grid: Grid, view: SliceView, s: number, bits: Uint8Array, value: number): void {
  forEachPixel(grid, view, s, (p, v) => {
    if (bits[p >> 3]! & (1 << (p & 7))) label[v] = value;
  });
}
