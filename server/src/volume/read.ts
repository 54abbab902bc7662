/**
 * An uploaded volume file to a Volume: NIfTI (.nii, .nii.gz) or NRRD (.nrrd with attached data),
 * recognised by content, not by name. Anything else, damaged, truncated, 4-D or too large is refused
 * with a message that says which.
 */
import { LdfsamError } from '../errors.js';
import type { Volume } from './grid.js';
import { gunzipBounded, isGzip } from './gzip.js';
import { isNifti, readNifti } from './nifti.js';
import { isNrrd, readNrrd } from './nrrd.js';

export type VolumeFormat = 'nifti' | 'nrrd';

/** Bytes of a NIfTI header and extensions allowed beyond the voxel data limit. */
const HEADER_SLACK = 1 << 20;

export function volumeFormat(bytes: Uint8Array): { format: VolumeFormat; extension: string } | undefined {
  if (isNrrd(bytes)) return { format: 'nrrd', extension: '.nrrd' };
  if (isGzip(bytes)) return { format: 'nifti', extension: '.nii.gz' }; // a gzipped NIfTI is checked when read
  if (isNifti(bytes)) return { format: 'nifti', extension: '.nii' };
  return undefined;
}

export function readVolume(bytes: Uint8Array, maxDataBytes: number, what = 'the volume'): Volume {
  const found = volumeFormat(bytes);
  if (!found) throw new LdfsamError('INVALID_INPUT', `${what} is neither NIfTI (.nii, .nii.gz) nor NRRD (.nrrd)`);
  if (found.format === 'nrrd') return readNrrd(bytes, maxDataBytes, what);
  const plain = isGzip(bytes) ? gunzipBounded(bytes, maxDataBytes + HEADER_SLACK, what) : bytes;
  if (!isNifti(plain)) throw new LdfsamError('INVALID_INPUT', `${what} is gzip but not a gzipped NIfTI (.nii.gz)`);
  const volume = readNifti(plain, what);
  if (volume.data.byteLength > maxDataBytes)
    throw new LdfsamError(
      'PAYLOAD_TOO_LARGE',
      `${what}: ${volume.data.byteLength} bytes of voxels exceed the limit of ${maxDataBytes}`,
    );
  return volume;
}
