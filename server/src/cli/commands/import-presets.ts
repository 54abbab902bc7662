/**
 * The presets of `ldfsam import-images`: who each image of a known public data set belongs to, and
 * what is known about it (HC18: subject and pixel size from index.csv; PH2: one patient per image),
 * and the identity of any other image. They build the requests that dicom/import-images.ts turns
 * into DICOM.
 */
import { createHash } from 'node:crypto';
import type { ImportModality, ImportRequest } from '../../dicom/import-images.js';
import { LdfsamError } from '../../errors.js';

export const PRESETS = ['hc18', 'ph2'] as const;
export type Preset = (typeof PRESETS)[number];

export interface Hc18Entry {
  file: string;
  subject: string;
  pixelSizeMm: number;
}

/** HC18's index.csv (columns file, subject, pixel_size_mm, head_circumference_mm; any order). */
export function parseHc18Index(text: string): Map<string, Hc18Entry> {
  const lines = text
    .replace(/^\uFEFF/, '')
    .split(/\r?\n/)
    .filter((l) => l.trim() !== '');
  const header = (lines.shift() ?? '').split(',').map((h) => h.trim());
  const col = (name: string) => {
    const i = header.indexOf(name);
    if (i < 0) throw new LdfsamError('INVALID_INPUT', `HC18 index has no "${name}" column (columns: ${header.join(', ')})`);
    return i;
  };
  const [fileCol, subjectCol, sizeCol] = [col('file'), col('subject'), col('pixel_size_mm')];
  const out = new Map<string, Hc18Entry>();
  for (const line of lines) {
    const cells = line.split(',').map((c) => c.trim());
    const pixelSizeMm = Number(cells[sizeCol]);
    const file = cells[fileCol] ?? '';
    if (!file || !(pixelSizeMm > 0))
      throw new LdfsamError('INVALID_INPUT', `HC18 index line "${line}" has no file or pixel size`);
    out.set(file, { file, subject: cells[subjectCol] ?? '', pixelSizeMm });
  }
  return out;
}

/** HC18: study per subject, series per image (NNN_HC.png is image 1, NNN_2HC.png image 2, ...). */
export function hc18Request(bytes: Uint8Array, entry: Hc18Entry): ImportRequest {
  const index = Number(/^\d+_(\d*)HC\.png$/i.exec(entry.file)?.[1] || '1');
  return {
    bytes,
    fileName: entry.file,
    modality: 'US',
    pixelSpacingMm: entry.pixelSizeMm,
    identity: {
      patientID: `HC18-${entry.subject}`,
      patientName: `HC18^${entry.subject}`,
      studyKey: 'hc18',
      studyID: `HC18-${entry.subject}`,
      studyDescription: 'HC18 fetal head ultrasound (public data set)',
      seriesDescription: `HC18 ${entry.file}`,
      seriesNumber: index,
      instanceNumber: index,
      deidentificationMethod: 'HC18 public anonymous data set (Zenodo 1327317, CC BY 4.0)',
      imageTypeExtra: ['OBSTETRICAL', '0001'], // US Image Type values 3 (exam) and 4 (0001: 2D imaging)
      imageLaterality: 'U', // the fetal head (and the uterus it is imaged through) is not a paired structure
    },
  };
}

/** PH2 publishes no patient link between images: every image is its own patient and study. */
export function ph2Request(bytes: Uint8Array, fileName: string): ImportRequest {
  const id = /^(IMD\d+)\./i.exec(fileName)?.[1]?.toUpperCase();
  if (!id) throw new LdfsamError('INVALID_INPUT', `${fileName} is not a PH2 image name (IMDnnn.jpg)`);
  return {
    bytes,
    fileName,
    modality: 'XC',
    identity: {
      patientID: `PH2-${id}`,
      patientName: `PH2^${id}`,
      studyKey: 'ph2',
      studyID: `PH2-${id}`,
      studyDescription: 'PH2 dermoscopy (public data set)',
      seriesDescription: `PH2 ${id} dermoscopy`,
      seriesNumber: 1,
      instanceNumber: 1,
      deidentificationMethod: 'PH2 public anonymous data set',
      anatomicRegion: { code: '39937001', scheme: 'SCT', meaning: 'Skin structure' },
    },
  };
}

/**
 * Any image: the patient is `patientID` when given (all such images in one study), else the file
 * name's stem (each file its own study, keyed by its content).
 */
export function genericRequest(
  bytes: Uint8Array,
  fileName: string,
  options: { modality: ImportModality; pixelSpacingMm?: number; patientID?: string },
): ImportRequest {
  const stem = fileName.replace(/\.[^.]*$/, '');
  const patientID = sanitize(options.patientID ?? stem) || 'IMPORTED';
  const studyKey = options.patientID ? 'generic' : `generic:${createHash('sha256').update(bytes).digest('hex')}`;
  return {
    bytes,
    fileName,
    modality: options.modality,
    pixelSpacingMm: options.pixelSpacingMm,
    identity: {
      patientID,
      patientName: `${patientID}^`, // family name only; a PN without "^" reads as the retired single-string form
      studyKey,
      studyID: patientID.slice(0, 16),
      studyDescription: 'Imported images',
      seriesDescription: fileName,
      seriesNumber: 1,
      instanceNumber: 1,
    },
  };
}

/** Characters allowed in LO/PN/SH values and file names: no backslash, caret, control characters. */
function sanitize(s: string): string {
  return s
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^_+|_+$/g, '')
    .slice(0, 64);
}
