/**
 * Plain images (PNG, baseline JPEG) wrapped as DICOM Part 10 so that a PACS stores them and the
 * pipeline segments them. Pure: bytes in, Part 10 bytes out.
 *
 * - IOD by modality: US -> US Image Storage, XC -> VL Photographic Image Storage, OT -> Secondary
 *   Capture Image Storage. Every Type 1 and 2 attribute of their modules is written (checked with
 *   dciodvfy in test/integration/import-images.test.ts).
 * - PNG: 8-bit grey (MONOCHROME2) or RGB, native, explicit VR little endian; values unchanged.
 * - JPEG: the baseline bitstream is encapsulated as it is (JPEG Baseline transfer syntax), never
 *   decoded and re-encoded, so no second generation loss; rows, columns and colour come from its header.
 * - UIDs are derived (2.25, seg/uids.ts) from the patient, the study key and the file's SHA-256, so
 *   importing the same file again yields the same instance, which a PACS keeps once.
 * - One series per image: images of one subject may have different pixel spacings (HC18), and the
 *   pipeline plans a series with one spacing.
 */
import { createHash } from 'node:crypto';
import dcmjs from 'dcmjs';
import type { DicomJson, DicomJsonElement } from '../dicomweb/types.js';
import { LdfsamError } from '../errors.js';
import { uidFrom } from '../seg/uids.js';
import { isJpeg, readJpegHeader, sofName, type JpegHeader } from './jpeg-header.js';
import { decodePng, isPng } from './png-image.js';

export const SOP_CLASSES = {
  US: '1.2.840.10008.5.1.4.1.1.6.1', // Ultrasound Image Storage
  XC: '1.2.840.10008.5.1.4.1.1.77.1.4', // VL Photographic Image Storage
  OT: '1.2.840.10008.5.1.4.1.1.7', // Secondary Capture Image Storage
} as const;
export type ImportModality = keyof typeof SOP_CLASSES;
export const IMPORT_MODALITIES = Object.keys(SOP_CLASSES) as ImportModality[];

const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
/** The same implementation identity as the SEG writer (seg/writer.ts): one implementation, ldfsam. */
const IMPLEMENTATION_CLASS_UID = '2.25.182947165207716355290880317744591306493';
const IMPLEMENTATION_VERSION = 'LDFSAM_0_1';

export interface CodedConcept {
  code: string;
  scheme: string;
  meaning: string;
}

/** Who and what an image is: the part of the data set that does not come from its pixels. */
export interface ImportIdentity {
  patientID: string;
  /** DICOM PN, e.g. "HC18^010". */
  patientName: string;
  /** Images with the same patient and study key share a study. */
  studyKey: string;
  studyID: string;
  studyDescription: string;
  seriesDescription: string;
  seriesNumber: number;
  instanceNumber: number;
  /** Set for anonymous public data sets: Patient Identity Removed YES with this method (LO, 64 chars). */
  deidentificationMethod?: string;
  /** Image Type values after DERIVED\PRIMARY (US: value 3 exam type, value 4 mode bitmap). */
  imageTypeExtra?: string[];
  anatomicRegion?: CodedConcept;
  /** Image Laterality (R, L, U unpaired, B) when known; else Laterality is written empty (unknown). */
  imageLaterality?: 'R' | 'L' | 'U' | 'B';
}

export interface ImportRequest {
  bytes: Uint8Array;
  /** The source file's name, recorded in Derivation Description. */
  fileName: string;
  modality: ImportModality;
  /** Square pixel size in mm, when known. */
  pixelSpacingMm?: number;
  identity: ImportIdentity;
  /** ldfsam's version, written as the Secondary Capture device's software version. */
  softwareVersion?: string;
}

export interface ImportedImage {
  /** The DICOM Part 10 file. */
  bytes: Uint8Array;
  sourceFormat: 'png' | 'jpeg';
  sourceSha256: string;
  modality: ImportModality;
  sopClassUID: string;
  studyInstanceUID: string;
  seriesInstanceUID: string;
  sopInstanceUID: string;
  transferSyntaxUID: string;
  patientID: string;
  rows: number;
  columns: number;
  samplesPerPixel: 1 | 3;
  photometricInterpretation: string;
  pixelSpacingMm: number | null;
}

const el = (vr: string, ...values: unknown[]): DicomJsonElement => ({ vr, Value: values });
const empty = (vr: string): DicomJsonElement => ({ vr, Value: [] });
const seq = (...items: DicomJson[]): DicomJsonElement => ({ vr: 'SQ', Value: items });
const code = (c: CodedConcept): DicomJson => ({
  '00080100': el('SH', c.code),
  '00080102': el('SH', c.scheme),
  '00080104': el('LO', c.meaning),
});

/** Deterministic UIDs of an import: same patient + study key -> same study; same file + settings -> same instance. */
export function importUids(input: {
  patientID: string;
  studyKey: string;
  sourceSha256: string;
  modality: string;
  pixelSpacingMm?: number;
}): { studyInstanceUID: string; seriesInstanceUID: string; sopInstanceUID: string } {
  const studyInstanceUID = uidFrom('ldfsam-import-study', input.patientID, input.studyKey);
  // The settings are part of the series: the same file imported as another modality or with another
  // spacing is another object, and must not overwrite (or be dropped as a duplicate of) the first.
  const seriesInstanceUID = uidFrom(
    'ldfsam-import-series',
    studyInstanceUID,
    input.sourceSha256,
    input.modality,
    input.pixelSpacingMm === undefined ? '' : String(input.pixelSpacingMm),
  );
  return { studyInstanceUID, seriesInstanceUID, sopInstanceUID: uidFrom('ldfsam-import-instance', seriesInstanceUID) };
}

/**
 * The Sequence of Ultrasound Regions item that calibrates the whole image: one 2D tissue region,
 * physical units cm (3) in both directions, so PhysicalDelta = mm / 10 (PS3.3 C.8.5.5).
 */
export function ultrasoundRegion(rows: number, columns: number, pixelSpacingMm: number): DicomJson {
  // 12 significant digits: the decimal a reader expects (0.0079927246, not 0.007992724599999999).
  const cm = Number((pixelSpacingMm / 10).toPrecision(12));
  return {
    '00186012': el('US', 1), // RegionSpatialFormat: 2D
    '00186014': el('US', 1), // RegionDataType: tissue
    '00186016': el('UL', 0), // RegionFlags: high priority, not scaling-protected, no scroll
    '00186018': el('UL', 0), // RegionLocationMinX0
    '0018601A': el('UL', 0), // RegionLocationMinY0
    '0018601C': el('UL', columns - 1), // RegionLocationMaxX1
    '0018601E': el('UL', rows - 1), // RegionLocationMaxY1
    '00186024': el('US', 3), // PhysicalUnitsXDirection: cm
    '00186026': el('US', 3), // PhysicalUnitsYDirection: cm
    '0018602C': el('FD', cm), // PhysicalDeltaX, cm per pixel
    '0018602E': el('FD', cm), // PhysicalDeltaY
  };
}

interface PixelPart {
  sourceFormat: 'png' | 'jpeg';
  rows: number;
  columns: number;
  samplesPerPixel: 1 | 3;
  photometric: string;
  transferSyntaxUID: string;
  /** Native pixel bytes, or the one encapsulated frame. */
  data: Uint8Array;
  lossy: boolean;
}

function pixelsOf(bytes: Uint8Array, modality: ImportModality): PixelPart {
  if (isPng(bytes)) {
    const png = decodePng(bytes);
    return {
      sourceFormat: 'png',
      rows: png.rows,
      columns: png.columns,
      samplesPerPixel: png.samplesPerPixel,
      photometric: png.samplesPerPixel === 1 ? 'MONOCHROME2' : 'RGB',
      transferSyntaxUID: EXPLICIT_LE,
      data: png.pixels,
      lossy: false,
    };
  }
  if (isJpeg(bytes)) {
    const header = readJpegHeader(bytes);
    return {
      sourceFormat: 'jpeg',
      rows: header.rows,
      columns: header.columns,
      samplesPerPixel: header.components.length === 1 ? 1 : 3,
      photometric: jpegPhotometric(header, modality),
      transferSyntaxUID: JPEG_BASELINE,
      data: bytes,
      lossy: true,
    };
  }
  throw new LdfsamError('INVALID_INPUT', 'not a PNG or JPEG image (neither signature found)');
}

/**
 * Photometric Interpretation of a baseline JPEG wrapped as it is (PS3.5 8.2.1): YCbCr with
 * subsampled chroma is YBR_FULL_422 (DICOM has no YBR_FULL_420: 4:2:0 is YBR_FULL_422 too), YCbCr
 * at full resolution YBR_FULL, untransformed RGB components RGB, one component MONOCHROME2.
 */
export function jpegPhotometric(header: JpegHeader, modality: ImportModality): string {
  if (header.sof !== 0xc0 || header.precision !== 8) {
    throw new LdfsamError(
      'INVALID_INPUT',
      `${sofName(header.sof)} ${header.precision}-bit JPEG is not supported: only baseline (SOF0, 8-bit) JPEG can be ` +
        'wrapped unchanged in the JPEG Baseline transfer syntax; re-encode it as baseline JPEG or PNG',
    );
  }
  if (header.rows === 0)
    throw new LdfsamError('INVALID_INPUT', 'JPEG without a height in its frame header (DNL) is not supported');
  if (header.colour === 'cmyk' || (header.components.length !== 1 && header.components.length !== 3)) {
    throw new LdfsamError(
      'INVALID_INPUT',
      `JPEG with ${header.components.length} components (${header.colour}) is not supported`,
    );
  }
  if (header.colour === 'grey') return 'MONOCHROME2';
  if (header.colour === 'rgb') return 'RGB';
  if (header.chromaSubsampled) return 'YBR_FULL_422';
  // The VL Image module (PS3.3 C.8.12.1.1.2) does not list YBR_FULL; writing YBR_FULL_422 for
  // full-resolution chroma would misdescribe the bitstream, so such a file is refused for XC.
  if (modality === 'XC') {
    throw new LdfsamError(
      'INVALID_INPUT',
      'JPEG with full-resolution (4:4:4) YCbCr is YBR_FULL, which VL Photographic images (XC) do not allow: ' +
        'import it as --modality OT or US, or re-encode it with 4:2:0/4:2:2 chroma subsampling',
    );
  }
  return 'YBR_FULL';
}

/** Converts one PNG or baseline JPEG into a DICOM Part 10 file of the modality's IOD. */
export function importImage(request: ImportRequest): ImportedImage {
  const { bytes, modality, identity } = request;
  if (!SOP_CLASSES[modality])
    throw new LdfsamError('INVALID_INPUT', `modality ${modality} is not one of ${IMPORT_MODALITIES.join(', ')}`);
  const spacing = request.pixelSpacingMm;
  if (spacing !== undefined && !(Number.isFinite(spacing) && spacing > 0)) {
    throw new LdfsamError('INVALID_INPUT', `pixel spacing ${spacing} mm is not a positive number`);
  }
  const px = pixelsOf(bytes, modality);
  const sourceSha256 = createHash('sha256').update(bytes).digest('hex');
  const sopClassUID = SOP_CLASSES[modality];
  const uids = importUids({
    patientID: identity.patientID,
    studyKey: identity.studyKey,
    sourceSha256,
    modality,
    pixelSpacingMm: spacing,
  });

  const ds: DicomJson = {
    // SOP Common
    '00080005': el('CS', 'ISO_IR 192'),
    '00080016': el('UI', sopClassUID),
    '00080018': el('UI', uids.sopInstanceUID),
    // Patient (Type 2: present, possibly empty)
    '00100010': el('PN', { Alphabetic: identity.patientName }),
    '00100020': el('LO', identity.patientID),
    '00100030': empty('DA'),
    '00100040': empty('CS'),
    // General Study: the data sets carry no dates; an invented date would mislead, so they stay empty (Type 2).
    '0020000D': el('UI', uids.studyInstanceUID),
    '00080020': empty('DA'),
    '00080030': empty('TM'),
    '00080090': empty('PN'),
    '00200010': el('SH', identity.studyID.slice(0, 16)),
    '00080050': empty('SH'),
    '00081030': el('LO', identity.studyDescription.slice(0, 64)),
    // General Series
    '00080060': el('CS', modality),
    '0020000E': el('UI', uids.seriesInstanceUID),
    '00200011': el('IS', identity.seriesNumber),
    '0008103E': el('LO', identity.seriesDescription.slice(0, 64)),
    // Laterality (2C, required for paired body parts unless Image Laterality is given): unknown, so empty.
    ...(identity.imageLaterality ? {} : { '00200060': empty('CS') }),
    // General Equipment: the original device is unknown (Type 2, empty).
    '00080070': empty('LO'),
    // General Image
    '00200013': el('IS', identity.instanceNumber),
    '00200020': empty('CS'), // Patient Orientation (2C): no patient geometry is known
    ...(identity.imageLaterality ? { '00200062': el('CS', identity.imageLaterality) } : {}),
    '00080008': el('CS', 'DERIVED', 'PRIMARY', ...(identity.imageTypeExtra ?? [])),
    '00082111': el(
      'ST',
      `Converted from ${request.fileName} by ldfsam import-images: ` +
        (px.sourceFormat === 'jpeg' ? 'JPEG bitstream encapsulated unchanged' : 'PNG pixel values unchanged'),
    ),
    // Image Pixel
    '00280002': el('US', px.samplesPerPixel),
    '00280004': el('CS', px.photometric),
    '00280010': el('US', px.rows),
    '00280011': el('US', px.columns),
    '00280100': el('US', 8),
    '00280101': el('US', 8),
    '00280102': el('US', 7),
    '00280103': el('US', 0),
  };
  if (px.samplesPerPixel === 3) ds['00280006'] = el('US', 0); // interleaved, as JPEG requires
  if (identity.deidentificationMethod) {
    ds['00120062'] = el('CS', 'YES');
    ds['00120063'] = el('LO', identity.deidentificationMethod.slice(0, 64));
  }
  if (px.lossy) {
    // The source was lossy-compressed before us; wrapping keeps it as it is (no further loss).
    ds['00282110'] = el('CS', '01');
    ds['00282112'] = el('DS', Number(((px.rows * px.columns * px.samplesPerPixel) / px.data.length).toFixed(2)));
    ds['00282114'] = el('CS', 'ISO_10918_1');
  }
  // PNG: whether the image was ever lossy-compressed before it became a PNG is not known, so
  // Lossy Image Compression is left out where the IOD allows it (US 1C, SC 3) and empty for VL (Type 2).

  if (modality === 'US') {
    // US Image IOD: no Image Plane module, so no Pixel Spacing (0028,0030); the calibration is the
    // US Region Calibration module, which is where US readers (and ours) look.
    if (spacing !== undefined) ds['00186011'] = seq(ultrasoundRegion(px.rows, px.columns, spacing));
  } else if (modality === 'XC') {
    // VL Photographic: Acquisition Context (Type 2 sequence, nothing known), VL Image (Lossy Image
    // Compression Type 2: empty when unknown). PH2 has no pixel size: no Pixel Spacing then.
    ds['00400555'] = empty('SQ');
    if (!px.lossy) ds['00282110'] = empty('CS');
    if (identity.anatomicRegion) ds['00082218'] = seq(code(identity.anatomicRegion));
    if (spacing !== undefined) ds['00280030'] = el('DS', dsNumber(spacing), dsNumber(spacing)); // VL Image, Type 3
  } else {
    // Secondary Capture: SC Equipment; the SC Image module carries Pixel Spacing (Type 3).
    ds['00080064'] = el('CS', 'WSD'); // Conversion Type: workstation
    ds['00181016'] = el('LO', 'LDFSAM project'); // Secondary Capture Device Manufacturer
    ds['00181018'] = el('LO', 'ldfsam import-images');
    if (request.softwareVersion) ds['00181019'] = el('LO', request.softwareVersion);
    if (spacing !== undefined) ds['00280030'] = el('DS', dsNumber(spacing), dsNumber(spacing));
  }

  const pixelData = px.transferSyntaxUID === EXPLICIT_LE ? evenLength(px.data) : px.data; // dcmjs pads encapsulated fragments itself
  const meta: DicomJson = {
    '00020001': { vr: 'OB', Value: [new Uint8Array([0, 1]).buffer] } as DicomJsonElement,
    '00020002': el('UI', sopClassUID),
    '00020003': el('UI', uids.sopInstanceUID),
    '00020010': el('UI', px.transferSyntaxUID),
    '00020012': el('UI', IMPLEMENTATION_CLASS_UID),
    '00020013': el('SH', IMPLEMENTATION_VERSION),
  };
  const dict = new dcmjs.data.DicomDict(meta);
  dict.dict = {
    ...Object.fromEntries(Object.entries(ds).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
    '7FE00010': { vr: 'OB', Value: [toArrayBuffer(pixelData)] },
  };
  // One fragment per frame: the JPEG bitstream stays in one piece (dcmjs otherwise cuts 20 kB fragments).
  const write = dict.write as unknown as (options: { allowInvalidVRLength: boolean; fragmentMultiframe: boolean }) => ArrayBuffer;
  const out = new Uint8Array(write.call(dict, { allowInvalidVRLength: false, fragmentMultiframe: false }));

  return {
    bytes: out,
    sourceFormat: px.sourceFormat,
    sourceSha256,
    modality,
    sopClassUID,
    ...uids,
    transferSyntaxUID: px.transferSyntaxUID,
    patientID: identity.patientID,
    rows: px.rows,
    columns: px.columns,
    samplesPerPixel: px.samplesPerPixel,
    photometricInterpretation: px.photometric,
    pixelSpacingMm: spacing ?? null,
  };
}

function evenLength(data: Uint8Array): Uint8Array {
  if (data.length % 2 === 0) return data;
  const padded = new Uint8Array(data.length + 1);
  padded.set(data);
  return padded;
}

function toArrayBuffer(data: Uint8Array): ArrayBuffer {
  return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
}

/** DS values hold at most 16 characters. */
function dsNumber(v: number): number {
  return Number(v.toPrecision(10));
}

// ---------------------------------------------------------------------------------------------
// The shared data sets: who each image belongs to, and what is known about it.

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
