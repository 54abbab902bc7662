/**
 * NIfTI-1 and NIfTI-2 volumes (.nii, .nii.gz; not .hdr/.img pairs) to a Volume in LPS. The header is
 * read by nifti-reader-js; which transform places the voxels is decided here, as ITK 5.4 (and so
 * 3D Slicer, and SimpleITK in our tests) decides it, measured case by case
 * (test/integration/volume-geometry.test.ts):
 * - with a qform (qform_code > 0): the sform only when sform_code is 1 (scanner) and the sform is not
 *   sheared; else the qform (quaternion, qfac);
 * - without a qform: the sform (refused when sheared);
 * - with neither: NIfTI's method 1 (axes along RAS, origin 0);
 * - spacings always from pixdim.
 * NIfTI is RAS: x and y change sign on the way to LPS. The data type is kept (the slope and
 * intercept become the volume's scale); a 4-D volume with more than one time point is refused.
 */
import * as nifti from 'nifti-reader-js';
import { LdfsamError } from '../errors.js';
import { copy, gridFromColumns, type Axis, type Vec3, type Volume, type VoxelArray } from './grid.js';

type Header = nifti.NIFTI1 | nifti.NIFTI2;

/** NIfTI datatype codes we read, with their typed arrays. */
const TYPES: Record<number, { name: string; bytes: number; array: new (b: ArrayBuffer) => VoxelArray }> = {
  2: { name: 'uint8', bytes: 1, array: Uint8Array },
  4: { name: 'int16', bytes: 2, array: Int16Array },
  8: { name: 'int32', bytes: 4, array: Int32Array },
  16: { name: 'float32', bytes: 4, array: Float32Array },
  64: { name: 'float64', bytes: 8, array: Float64Array },
  256: { name: 'int8', bytes: 1, array: Int8Array },
  512: { name: 'uint16', bytes: 2, array: Uint16Array },
  768: { name: 'uint32', bytes: 4, array: Uint32Array },
};

export function isNifti(bytes: Uint8Array): boolean {
  return nifti.isNIFTI(copy(bytes, 0, 544).buffer as ArrayBuffer);
}

/** Reads an uncompressed NIfTI file (the caller has gunzipped a .nii.gz). */
export function readNifti(bytes: Uint8Array, what = 'the NIfTI file'): Volume {
  let header: Header;
  try {
    // The header and its extensions, not the voxels (read below from `bytes` without a copy of the file).
    header = nifti.readHeader(copy(bytes, 0, HEADER_READ_LIMIT).buffer as ArrayBuffer);
  } catch (err) {
    throw new LdfsamError('INVALID_INPUT', `${what}: unreadable NIfTI header (${(err as Error).message})`);
  }
  const size = dimensions(header, what);
  const type = TYPES[header.datatypeCode];
  if (!type) {
    throw new LdfsamError(
      'INVALID_INPUT',
      `${what}: NIfTI data type ${header.getDatatypeCodeString(header.datatypeCode)} (${header.datatypeCode}) is not supported; ` +
        `use a scalar type (uint8, int8, int16, uint16, int32, uint32, float32, float64)`,
    );
  }
  const count = size[0] * size[1] * size[2];
  const offset = Number(header.vox_offset);
  const needed = count * type.bytes;
  if (!(offset >= 0) || offset + needed > bytes.length) {
    throw new LdfsamError(
      'INVALID_INPUT',
      `${what} is truncated: it holds ${Math.max(0, bytes.length - offset)} bytes of voxel data, the header says ${needed}`,
    );
  }
  // A copy: aligned for the typed array, and byte-swapped when the file is big-endian.
  const raw = copy(bytes, offset, offset + needed);
  if (!header.littleEndian && type.bytes > 1) swapBytes(raw, type.bytes);
  const data = new type.array(raw.buffer as ArrayBuffer);
  const slope = header.scl_slope;
  const scale =
    Number.isFinite(slope) && slope !== 0 ? { slope, intercept: Number(header.scl_inter) || 0 } : { slope: 1, intercept: 0 };
  const { columns, origin } = placement(header, what);
  const sliceDim = (header.dim_info >> 4) & 3;
  return {
    ...gridFromColumns(size, columns, origin, what),
    data,
    scale,
    ...(sliceDim >= 1 && sliceDim <= 3 && size[sliceDim - 1]! > 1 ? { sliceAxisHint: (sliceDim - 1) as Axis } : {}),
  };
}

function dimensions(header: Header, what: string): [number, number, number] {
  const dims = header.dims.map(Number);
  const n = dims[0]!;
  if (!(n >= 1 && n <= 7)) throw new LdfsamError('INVALID_INPUT', `${what}: NIfTI dim[0] = ${n} is not 1..7`);
  const size = [1, 2, 3].map((a) => (a <= n ? dims[a]! : 1));
  if (size.some((s) => !Number.isInteger(s) || s < 1))
    throw new LdfsamError('INVALID_INPUT', `${what}: NIfTI dimensions ${dims.slice(1, n + 1).join(' x ')} are not positive`);
  const extra = dims.slice(4, n + 1);
  if (extra.some((s) => s > 1)) {
    throw new LdfsamError(
      'INVALID_INPUT',
      `${what} is ${n}-D (${dims.slice(1, n + 1).join(' x ')}): only 3-D scalar volumes are supported; send one time point or channel`,
    );
  }
  return size as [number, number, number];
}

/**
 * The voxel-to-LPS columns and origin, by ITK 5.4's rule (measured with SimpleITK, see the module
 * doc): the sform when there is no qform, or when its code is SCANNER_ANAT (1) and it is not
 * sheared; else the qform. Directions and origin come from that transform, spacings always from
 * pixdim (as ITK takes them; a scaled sform only warns there).
 */
function placement(header: Header, what: string): { columns: [Vec3, Vec3, Vec3]; origin: Vec3 } {
  const pix = header.pixDims.map(Number);
  const spacing = [1, 2, 3].map((a) => (Math.abs(pix[a]!) > 0 ? Math.abs(pix[a]!) : 1));
  const withSpacing = (directions: Vec3[]) => directions.map((d, a) => d.map((v) => v * spacing[a]!)) as [Vec3, Vec3, Vec3];
  if (header.sform_code > 0) {
    const ras = header.affine.map((row) => row.map(Number));
    const columns = [0, 1, 2].map((c) => [ras[0]![c]!, ras[1]![c]!, ras[2]![c]!]) as Vec3[];
    const usable = isRotationWithSpacing(columns);
    if (!(header.qform_code > 0) && !usable)
      throw new LdfsamError(
        'INVALID_INPUT',
        `${what}: the sform is sheared (not a rotation with spacings) and there is no qform; resample it first`,
      );
    if (usable && (!(header.qform_code > 0) || header.sform_code === 1))
      return toLps(withSpacing(columns.map(unit)), [ras[0]![3]!, ras[1]![3]!, ras[2]![3]!]);
  }
  if (header.qform_code > 0) {
    const qfac = pix[0]! < 0 ? -1 : 1;
    const m = header.convertNiftiQFormToNiftiSForm(
      header.quatern_b,
      header.quatern_c,
      header.quatern_d,
      header.qoffset_x,
      header.qoffset_y,
      header.qoffset_z,
      1,
      1,
      1,
      qfac,
    );
    const directions = [0, 1, 2].map((c) => [m[0]![c]!, m[1]![c]!, m[2]![c]!]) as Vec3[];
    return toLps(withSpacing(directions.map(unit)), [m[0]![3]!, m[1]![3]!, m[2]![3]!]);
  }
  // Method 1 (ANALYZE heritage): spacing along the axes, no rotation, origin 0.
  return toLps(
    withSpacing([
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
    ]),
    [0, 0, 0],
  );
}

function unit(v: Vec3): Vec3 {
  const l = Math.hypot(...v);
  return [v[0] / l, v[1] / l, v[2] / l];
}

function toLps(columns: [Vec3, Vec3, Vec3], origin: Vec3): { columns: [Vec3, Vec3, Vec3]; origin: Vec3 } {
  const flip = (v: Vec3): Vec3 => [-v[0], -v[1], v[2]];
  return { columns: columns.map(flip) as [Vec3, Vec3, Vec3], origin: flip(origin) };
}

/** Orthogonal columns (a rotation times positive spacings), within ITK's tolerance of about 1e-4. */
function isRotationWithSpacing(columns: Vec3[]): boolean {
  const lengths = columns.map((c) => Math.hypot(...c));
  if (lengths.some((l) => !(l > 0))) return false;
  for (let a = 0; a < 3; a++) {
    for (let b = a + 1; b < 3; b++) {
      const cos = columns[a]!.reduce((s, v, i) => s + v * columns[b]![i]!, 0) / (lengths[a]! * lengths[b]!);
      if (Math.abs(cos) > 1e-4) return false;
    }
  }
  return true;
}

/** Bytes handed to the header parser: the header and its extensions fit in them. */
const HEADER_READ_LIMIT = 1 << 20;

function swapBytes(bytes: Uint8Array, width: number): void {
  for (let i = 0; i + width <= bytes.length; i += width) bytes.subarray(i, i + width).reverse();
}
