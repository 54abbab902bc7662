/**
 * A planned DICOM series as a voxel grid: i = column, j = row, k = slice in the plan's order
 * (ascending along the slice normal), in LPS as DICOM is. The grid is what 3D Slicer builds when it
 * loads the same series, so a label on it overlays the series there. Series that no regular grid
 * holds (gantry tilt, uneven spacing) are refused rather than placed approximately.
 */
import type { SlicePixels } from '../dicom/pixels.js';
import type { SeriesPlan } from '../dicom/series-plan.js';
import type { Slice } from '../dicom/series-reader.js';
import { cross, dot } from '../dicom/geometry.js';
import { LdfsamError } from '../errors.js';
import { voxelCount, type Grid, type Vec3, type VoxelArray } from './grid.js';

/** Largest distance (mm) of a slice's position from the line through the first along the normal. */
const MAX_OFF_AXIS_MM = 0.01;

export function seriesGrid(plan: SeriesPlan): Grid {
  const n = plan.slices.length;
  const size: [number, number, number] = [plan.columns, plan.rows, n];
  const where = `series ${plan.seriesInstanceUID}`;
  if (plan.orientation === null) {
    // 2D images without patient geometry (ultrasound, photographs): the pixel grid as it is.
    const [rowSpacing, columnSpacing] = plan.pixelSpacing ?? [1, 1];
    return {
      size,
      spacing: [columnSpacing, rowSpacing, 1],
      origin: [0, 0, 0],
      directions: [
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
      ],
    };
  }
  const o = plan.orientation;
  const row: Vec3 = [o[0]!, o[1]!, o[2]!];
  const column: Vec3 = [o[3]!, o[4]!, o[5]!];
  const normal = cross(row, column);
  const first = plan.slices[0]!.position!;
  const [rowSpacing, columnSpacing] = plan.pixelSpacing ?? [1, 1];
  let sliceSpacing = plan.spacing.meanSpacing ?? plan.sliceThickness ?? 1;
  if (n > 1) {
    if (!plan.spacing.evenlySpaced)
      throw new LdfsamError('UNSUPPORTED_DICOM', `${where}: its slices are unevenly spaced; no regular voxel grid holds it`);
    for (const s of plan.slices) {
      const d = s.position!.map((v, c) => v - first[c]!) as Vec3;
      const along = dot(d, normal);
      const off = Math.hypot(d[0] - along * normal[0], d[1] - along * normal[1], d[2] - along * normal[2]);
      if (off > MAX_OFF_AXIS_MM)
        throw new LdfsamError(
          'UNSUPPORTED_DICOM',
          `${where}: its slices are not stacked along their normal (gantry tilt); no regular voxel grid holds it`,
        );
    }
  } else if (!(sliceSpacing > 0)) sliceSpacing = 1;
  return { size, spacing: [columnSpacing, rowSpacing, sliceSpacing], origin: [...first], directions: [row, column, normal] };
}

/**
 * The series' voxels on its grid: grey modality values (int16 when every value is an integer in its
 * range, as CT is; else float32), or interleaved RGB (uint8, or uint16 for deeper samples).
 */
export async function seriesVoxels(
  plan: SeriesPlan,
  slices: AsyncIterable<Slice>,
  maxBytes: number,
): Promise<{ data: VoxelArray; rgb: boolean }> {
  const plane = plan.rows * plan.columns;
  const count = voxelCount([plan.columns, plan.rows, plan.slices.length]);
  const rgb = plan.samplesPerPixel === 3;
  const bytes = count * (rgb ? 3 : 4);
  if (bytes > maxBytes)
    throw new LdfsamError(
      'PAYLOAD_TOO_LARGE',
      `series ${plan.seriesInstanceUID}: ${bytes} bytes of voxels exceed the limit of ${maxBytes}`,
    );
  if (rgb) {
    let data: Uint8Array | Uint16Array | undefined;
    for await (const slice of slices) {
      const px = slice.pixels as Extract<SlicePixels, { kind: 'rgb' }>;
      data ??= px.maxValue > 255 ? new Uint16Array(count * 3) : new Uint8Array(count * 3);
      data.set(px.data, slice.plan.index * plane * 3);
    }
    return { data: data!, rgb: true };
  }
  const values = new Float32Array(count);
  for await (const slice of slices) {
    const px = slice.pixels as Extract<SlicePixels, { kind: 'grey' }>;
    values.set(px.values, slice.plan.index * plane);
  }
  const fitsInt16 = values.every((v) => Number.isInteger(v) && v >= -32768 && v <= 32767);
  return { data: fitsInt16 ? Int16Array.from(values) : values, rgb: false };
}
