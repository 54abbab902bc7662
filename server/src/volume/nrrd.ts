/**
 * NRRD (teem's "nearly raw raster data", the format 3D Slicer saves volumes and labels in): the
 * subset Slicer and ITK write, read and written here. Reading: attached data only (no detached data
 * files), encodings raw and gzip, scalar types int8..float64 in either byte order, 2 or 3 domain
 * axes, space left-posterior-superior, right-anterior-superior or left-anterior-superior (or none: the
 * axes then run along LPS with `spacings`). Writing: a 3-D grid in LPS, raw or gzip, optionally with
 * one leading RGB-color axis. Why not an npm package: see the README ("Volumes").
 */
import { gzipSync } from 'node:zlib';
import { LdfsamError } from '../errors.js';
import { gunzipBounded } from './gzip.js';
import { copy, gridFromColumns, voxelCount, type Grid, type Vec3, type Volume, type VoxelArray } from './grid.js';

const MAGIC = /^NRRD000[1-5]$/;

const TYPES: [string[], { bytes: number; array: new (b: ArrayBuffer) => VoxelArray }][] = [
  [['signed char', 'int8', 'int8_t'], { bytes: 1, array: Int8Array }],
  [['uchar', 'unsigned char', 'uint8', 'uint8_t'], { bytes: 1, array: Uint8Array }],
  [['short', 'short int', 'signed short', 'signed short int', 'int16', 'int16_t'], { bytes: 2, array: Int16Array }],
  [['ushort', 'unsigned short', 'unsigned short int', 'uint16', 'uint16_t'], { bytes: 2, array: Uint16Array }],
  [['int', 'signed int', 'int32', 'int32_t'], { bytes: 4, array: Int32Array }],
  [['uint', 'unsigned int', 'uint32', 'uint32_t'], { bytes: 4, array: Uint32Array }],
  [['float'], { bytes: 4, array: Float32Array }],
  [['double'], { bytes: 8, array: Float64Array }],
];

/** Space name -> sign of x and y relative to LPS. */
const SPACES: Record<string, [number, number]> = {
  'left-posterior-superior': [1, 1],
  lps: [1, 1],
  'right-anterior-superior': [-1, -1],
  ras: [-1, -1],
  'left-anterior-superior': [1, -1],
  las: [1, -1],
};

export function isNrrd(bytes: Uint8Array): boolean {
  return MAGIC.test(Buffer.from(bytes.subarray(0, 8)).toString('latin1'));
}

/** The header fields (lower-cased names) and where the data starts. */
function splitHeader(bytes: Uint8Array, what: string): { fields: Map<string, string>; dataStart: number } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // The header ends at the first empty line; it is text and short, so look in the first 64 kB only.
  const head = buf.subarray(0, 65536).toString('latin1');
  const end = /\r?\n\r?\n/.exec(head);
  if (!end) throw new LdfsamError('INVALID_INPUT', `${what}: the NRRD header has no end (no empty line in its first 64 kB)`);
  const lines = head.slice(0, end.index).split(/\r?\n/);
  if (!MAGIC.test(lines[0]!.trim())) throw new LdfsamError('INVALID_INPUT', `${what} is not an NRRD file`);
  const fields = new Map<string, string>();
  for (const line of lines.slice(1)) {
    if (line.startsWith('#') || line.includes(':=')) continue; // comments and key/value pairs
    const colon = line.indexOf(': ');
    if (colon > 0) fields.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 2).trim());
  }
  return { fields, dataStart: end.index + end[0].length };
}

function vectors(text: string, what: string): (Vec3 | null)[] {
  return text.split(/\s+(?=\(|none)/).map((part) => {
    if (part.trim() === 'none') return null;
    const m = /^\(([^)]*)\)$/.exec(part.trim());
    const v = m ? m[1]!.split(',').map(Number) : [];
    if (v.length !== 3 || v.some((x) => !Number.isFinite(x)))
      throw new LdfsamError('INVALID_INPUT', `${what}: bad NRRD vector ${part}`);
    return v as Vec3;
  });
}

/** Reads an NRRD volume; `maxDataBytes` bounds the (decompressed) voxel data. */
export function readNrrd(bytes: Uint8Array, maxDataBytes: number, what = 'the NRRD file'): Volume {
  const { fields, dataStart } = splitHeader(bytes, what);
  const need = (name: string) => {
    const v = fields.get(name);
    if (v === undefined) throw new LdfsamError('INVALID_INPUT', `${what}: the NRRD header lacks "${name}"`);
    return v;
  };
  if (fields.has('data file') || fields.has('datafile'))
    throw new LdfsamError(
      'INVALID_INPUT',
      `${what}: a detached NRRD (data file) cannot be uploaded; save it with its data attached (.nrrd)`,
    );
  const typeName = need('type').toLowerCase();
  const type = TYPES.find(([names]) => names.includes(typeName))?.[1];
  if (!type)
    throw new LdfsamError(
      'INVALID_INPUT',
      `${what}: NRRD type "${typeName}" is not supported (8-, 16- or 32-bit integers, float, double)`,
    );
  const sizes = need('sizes').split(/\s+/).map(Number);
  const dimension = Number(need('dimension'));
  if (sizes.length !== dimension || sizes.some((s) => !Number.isInteger(s) || s < 1))
    throw new LdfsamError('INVALID_INPUT', `${what}: NRRD sizes "${fields.get('sizes')}" do not fit dimension ${dimension}`);
  const kinds = (fields.get('kinds') ?? '').split(/\s+/).filter(Boolean);
  const nonDomain = kinds.filter((k) => !['domain', 'space', '???', 'none'].includes(k.toLowerCase()));
  if (nonDomain.length > 0)
    throw new LdfsamError(
      'INVALID_INPUT',
      `${what}: NRRD kinds "${kinds.join(' ')}": only scalar volumes are supported, not ${nonDomain.join(', ')} axes`,
    );
  if (dimension > 3 && sizes.slice(3).some((s) => s > 1))
    throw new LdfsamError(
      'INVALID_INPUT',
      `${what} is ${dimension}-D (${sizes.join(' x ')}): only 2-D and 3-D scalar volumes are supported`,
    );
  if (dimension < 2) throw new LdfsamError('INVALID_INPUT', `${what}: a ${dimension}-D NRRD is not an image`);
  const size = [sizes[0]!, sizes[1]!, sizes[2] ?? 1] as [number, number, number];
  for (const skip of ['line skip', 'byte skip', 'lineskip', 'byteskip'])
    if (Number(fields.get(skip) ?? 0) !== 0) throw new LdfsamError('INVALID_INPUT', `${what}: NRRD "${skip}" is not supported`);

  const encoding = need('encoding').toLowerCase();
  const needed = voxelCount(size) * type.bytes;
  if (needed > maxDataBytes)
    throw new LdfsamError('PAYLOAD_TOO_LARGE', `${what}: ${needed} bytes of voxels exceed the limit of ${maxDataBytes}`);
  let data: Uint8Array;
  if (encoding === 'raw') data = bytes.subarray(dataStart);
  else if (encoding === 'gzip' || encoding === 'gz') data = gunzipBounded(bytes.subarray(dataStart), maxDataBytes, what);
  else throw new LdfsamError('INVALID_INPUT', `${what}: NRRD encoding "${encoding}" is not supported (raw or gzip)`);
  if (data.length < needed)
    throw new LdfsamError(
      'INVALID_INPUT',
      `${what} is truncated: it holds ${data.length} bytes of voxel data, the header says ${needed}`,
    );
  const raw = copy(data, 0, needed);
  const endian = (fields.get('endian') ?? 'little').toLowerCase();
  if (type.bytes > 1 && endian === 'big')
    for (let i = 0; i < raw.length; i += type.bytes) raw.subarray(i, i + type.bytes).reverse();
  return {
    ...geometry(fields, size, dimension, what),
    data: new type.array(raw.buffer as ArrayBuffer),
    scale: { slope: 1, intercept: 0 },
  };
}

function geometry(fields: Map<string, string>, size: [number, number, number], dimension: number, what: string): Grid {
  const spaceName = (fields.get('space') ?? '').toLowerCase();
  if (!fields.has('space directions')) {
    // No orientation: axes along LPS with `spacings` (as ITK reads such a file).
    const spacings = (fields.get('spacings') ?? '').split(/\s+/).map(Number);
    const s = [0, 1, 2].map((a) => (Number.isFinite(spacings[a]) && spacings[a]! > 0 ? spacings[a]! : 1));
    return gridFromColumns(
      size,
      [
        [s[0]!, 0, 0],
        [0, s[1]!, 0],
        [0, 0, s[2]!],
      ],
      [0, 0, 0],
      what,
    );
  }
  const sign = SPACES[spaceName];
  if (!sign)
    throw new LdfsamError(
      'INVALID_INPUT',
      `${what}: NRRD space "${fields.get('space') ?? '(none)'}" is not supported (LPS, RAS or LAS)`,
    );
  const dirs = vectors(fields.get('space directions')!, what).filter((v): v is Vec3 => v !== null);
  if (dirs.length < Math.min(dimension, 3) || (dimension === 2 && dirs.length !== 2))
    throw new LdfsamError('INVALID_INPUT', `${what}: NRRD space directions do not give every axis a direction`);
  const toLps = (v: Vec3): Vec3 => [v[0] * sign[0], v[1] * sign[1], v[2]];
  const columns = dirs.slice(0, 3).map(toLps);
  if (columns.length === 2) {
    // A 2-D image in 3-D space: the third axis is the unit normal.
    const [a, b] = columns as [Vec3, Vec3];
    const n: Vec3 = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
    const len = Math.hypot(...n) || 1;
    columns.push([n[0] / len, n[1] / len, n[2] / len]);
  }
  const originText = fields.get('space origin');
  const origin = originText ? toLps(vectors(originText, what)[0] ?? [0, 0, 0]) : ([0, 0, 0] as Vec3);
  return gridFromColumns(size, columns as [Vec3, Vec3, Vec3], origin, what);
}

export interface NrrdWriteOptions {
  /** gzip the data (default) or write it raw (MONAI Label's OHIF plugin asks for raw). */
  compress?: boolean;
  /** The data has a leading axis of 3 samples per voxel (RGB). */
  rgb?: boolean;
}

/** An NRRD file of `data` (uint8, int16, float32 ...) on `grid`, in LPS. */
export function writeNrrd(grid: Grid, data: VoxelArray, options: NrrdWriteOptions = {}): Buffer {
  const type = TYPE_NAMES.get(data.constructor);
  if (!type) throw new LdfsamError('INTERNAL', `no NRRD type for ${data.constructor.name}`);
  const f = (v: number) => (Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(17))));
  const vec = (v: readonly number[]) => `(${v.map(f).join(',')})`;
  const dirs = grid.directions.map((d, a) => vec(d.map((c) => c * grid.spacing[a]!)));
  const lines = [
    'NRRD0004',
    `type: ${type}`,
    `dimension: ${options.rgb ? 4 : 3}`,
    'space: left-posterior-superior',
    `sizes: ${options.rgb ? '3 ' : ''}${grid.size.join(' ')}`,
    `space directions: ${options.rgb ? 'none ' : ''}${dirs.join(' ')}`,
    `kinds: ${options.rgb ? 'RGB-color ' : ''}domain domain domain`,
    'endian: little',
    `encoding: ${options.compress === false ? 'raw' : 'gzip'}`,
    `space origin: ${vec(grid.origin)}`,
  ];
  const raw = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.concat([
    Buffer.from(`${lines.join('\n')}\n\n`, 'latin1'),
    options.compress === false ? raw : gzipSync(raw, { level: 6 }),
  ]);
}

const TYPE_NAMES = new Map<unknown, string>([
  [Int8Array, 'int8'],
  [Uint8Array, 'uint8'],
  [Int16Array, 'int16'],
  [Uint16Array, 'uint16'],
  [Int32Array, 'int32'],
  [Uint32Array, 'uint32'],
  [Float32Array, 'float'],
  [Float64Array, 'double'],
]);
