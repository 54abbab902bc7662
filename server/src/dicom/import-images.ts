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
 * - UIDs are derived (2.25, util/uid.ts) from the patient, the study key and the file's SHA-256, so
 *   importing the same file again yields the same instance, which a PACS keeps once.
 * - One series per image: images of one subject may have different pixel spacings (HC18), and the
 *   pipeline plans a series with one spacing.
 */
import { createHash } from 'node:crypto';
import type { DicomJson } from '../dicomweb/types.js';
import { LdfsamError } from '../errors.js';
import { uidFrom } from '../util/uid.js';
import { codeItem, dsNumber, element as el, empty, imagePixelModule, sequence as seq, type CodedConcept } from './elements.js';
import { isJpeg, readJpegHeader, sofName, type JpegHeader } from './jpeg-header.js';
import { EXPLICIT_VR_LITTLE_ENDIAN, writePart10 } from './part10-writer.js';
import { decodePng, isPng } from './png-image.js';
import { TAG } from './tags.js';

export type { CodedConcept };

export const SOP_CLASSES = {
  US: '1.2.840.10008.5.1.4.1.1.6.1', // Ultrasound Image Storage
  XC: '1.2.840.10008.5.1.4.1.1.77.1.4', // VL Photographic Image Storage
  OT: '1.2.840.10008.5.1.4.1.1.7', // Secondary Capture Image Storage
} as const;
export type ImportModality = keyof typeof SOP_CLASSES;
export const IMPORT_MODALITIES = Object.keys(SOP_CLASSES) as ImportModality[];

const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';

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
    [TAG.RegionSpatialFormat]: el('US', 1), // 2D
    [TAG.RegionDataType]: el('US', 1), // tissue
    [TAG.RegionFlags]: el('UL', 0), // high priority, not scaling-protected, no scroll
    [TAG.RegionLocationMinX0]: el('UL', 0),
    [TAG.RegionLocationMinY0]: el('UL', 0),
    [TAG.RegionLocationMaxX1]: el('UL', columns - 1),
    [TAG.RegionLocationMaxY1]: el('UL', rows - 1),
    [TAG.PhysicalUnitsXDirection]: el('US', 3), // cm
    [TAG.PhysicalUnitsYDirection]: el('US', 3), // cm
    [TAG.PhysicalDeltaX]: el('FD', cm), // cm per pixel
    [TAG.PhysicalDeltaY]: el('FD', cm),
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
      transferSyntaxUID: EXPLICIT_VR_LITTLE_ENDIAN,
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
  const ds = { ...commonModules(request, px, sopClassUID, uids), ...modalityModules(request, px) };
  const out = writePart10(
    ds,
    { sopClassUID, sopInstanceUID: uids.sopInstanceUID, transferSyntaxUID: px.transferSyntaxUID },
    px.transferSyntaxUID === EXPLICIT_VR_LITTLE_ENDIAN ? { native: px.data } : { encapsulated: px.data },
  );
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

/** SOP Common, Patient, General Study / Series / Equipment / Image, Image Pixel: what every IOD here has. */
function commonModules(
  request: ImportRequest,
  px: PixelPart,
  sopClassUID: string,
  uids: ReturnType<typeof importUids>,
): DicomJson {
  const { identity } = request;
  const ds: DicomJson = {
    // SOP Common
    [TAG.SpecificCharacterSet]: el('CS', 'ISO_IR 192'),
    [TAG.SOPClassUID]: el('UI', sopClassUID),
    [TAG.SOPInstanceUID]: el('UI', uids.sopInstanceUID),
    // Patient (Type 2: present, possibly empty)
    [TAG.PatientName]: el('PN', { Alphabetic: identity.patientName }),
    [TAG.PatientID]: el('LO', identity.patientID),
    [TAG.PatientBirthDate]: empty('DA'),
    [TAG.PatientSex]: empty('CS'),
    // General Study: the data sets carry no dates; an invented date would mislead, so they stay empty (Type 2).
    [TAG.StudyInstanceUID]: el('UI', uids.studyInstanceUID),
    [TAG.StudyDate]: empty('DA'),
    [TAG.StudyTime]: empty('TM'),
    [TAG.ReferringPhysicianName]: empty('PN'),
    [TAG.StudyID]: el('SH', identity.studyID.slice(0, 16)),
    [TAG.AccessionNumber]: empty('SH'),
    [TAG.StudyDescription]: el('LO', identity.studyDescription.slice(0, 64)),
    // General Series
    [TAG.Modality]: el('CS', request.modality),
    [TAG.SeriesInstanceUID]: el('UI', uids.seriesInstanceUID),
    [TAG.SeriesNumber]: el('IS', identity.seriesNumber),
    [TAG.SeriesDescription]: el('LO', identity.seriesDescription.slice(0, 64)),
    // Laterality (2C, required for paired body parts unless Image Laterality is given): unknown, so empty.
    ...(identity.imageLaterality ? {} : { [TAG.Laterality]: empty('CS') }),
    // General Equipment: the original device is unknown (Type 2, empty).
    [TAG.Manufacturer]: empty('LO'),
    // General Image
    [TAG.InstanceNumber]: el('IS', identity.instanceNumber),
    [TAG.PatientOrientation]: empty('CS'), // (2C): no patient geometry is known
    ...(identity.imageLaterality ? { [TAG.ImageLaterality]: el('CS', identity.imageLaterality) } : {}),
    [TAG.ImageType]: el('CS', 'DERIVED', 'PRIMARY', ...(identity.imageTypeExtra ?? [])),
    [TAG.DerivationDescription]: el(
      'ST',
      `Converted from ${request.fileName} by ldfsam import-images: ` +
        (px.sourceFormat === 'jpeg' ? 'JPEG bitstream encapsulated unchanged' : 'PNG pixel values unchanged'),
    ),
    ...imagePixelModule({
      samplesPerPixel: px.samplesPerPixel,
      photometricInterpretation: px.photometric,
      rows: px.rows,
      columns: px.columns,
      bitsAllocated: 8,
    }),
  };
  if (px.samplesPerPixel === 3) ds[TAG.PlanarConfiguration] = el('US', 0); // interleaved, as JPEG requires
  if (identity.deidentificationMethod) {
    ds[TAG.PatientIdentityRemoved] = el('CS', 'YES');
    ds[TAG.DeidentificationMethod] = el('LO', identity.deidentificationMethod.slice(0, 64));
  }
  if (px.lossy) {
    // The source was lossy-compressed before us; wrapping keeps it as it is (no further loss).
    ds[TAG.LossyImageCompression] = el('CS', '01');
    ds[TAG.LossyImageCompressionRatio] = el(
      'DS',
      Number(((px.rows * px.columns * px.samplesPerPixel) / px.data.length).toFixed(2)),
    );
    ds[TAG.LossyImageCompressionMethod] = el('CS', 'ISO_10918_1');
  }
  // PNG: whether the image was ever lossy-compressed before it became a PNG is not known, so
  // Lossy Image Compression is left out where the IOD allows it (US 1C, SC 3) and empty for VL (Type 2).
  return ds;
}

/** The modules of the modality's own IOD: US Region Calibration, VL Photographic, or SC Equipment / SC Image. */
function modalityModules(request: ImportRequest, px: PixelPart): DicomJson {
  const spacing = request.pixelSpacingMm;
  const ds: DicomJson = {};
  if (request.modality === 'US') {
    // US Image IOD: no Image Plane module, so no Pixel Spacing (0028,0030); the calibration is the
    // US Region Calibration module, which is where US readers (and ours) look.
    if (spacing !== undefined) ds[TAG.SequenceOfUltrasoundRegions] = seq(ultrasoundRegion(px.rows, px.columns, spacing));
  } else if (request.modality === 'XC') {
    // VL Photographic: Acquisition Context (Type 2 sequence, nothing known), VL Image (Lossy Image
    // Compression Type 2: empty when unknown). PH2 has no pixel size: no Pixel Spacing then.
    ds[TAG.AcquisitionContextSequence] = empty('SQ');
    if (!px.lossy) ds[TAG.LossyImageCompression] = empty('CS');
    if (request.identity.anatomicRegion) ds[TAG.AnatomicRegionSequence] = seq(codeItem(request.identity.anatomicRegion));
    if (spacing !== undefined) ds[TAG.PixelSpacing] = el('DS', dsNumber(spacing), dsNumber(spacing)); // VL Image, Type 3
  } else {
    // Secondary Capture: SC Equipment; the SC Image module carries Pixel Spacing (Type 3).
    ds[TAG.ConversionType] = el('CS', 'WSD'); // workstation
    ds[TAG.SecondaryCaptureDeviceManufacturer] = el('LO', 'LDFSAM project');
    ds[TAG.SecondaryCaptureDeviceManufacturerModelName] = el('LO', 'ldfsam import-images');
    if (request.softwareVersion) ds[TAG.SecondaryCaptureDeviceSoftwareVersions] = el('LO', request.softwareVersion);
    if (spacing !== undefined) ds[TAG.PixelSpacing] = el('DS', dsNumber(spacing), dsNumber(spacing));
  }
  return ds;
}
