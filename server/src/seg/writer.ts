/**
 * DICOM Segmentation (BINARY, SOP class 1.2.840.10008.5.1.4.1.1.66.4) written with dcmjs' encoder
 * from a data set we build ourselves, following highdicom's rules: every provenance field present,
 * segments numbered 1..N with SNOMED CT category and type, AUTOMATIC algorithm with its
 * identification, every frame referencing its exact source instance (and frame), Plane Position per
 * frame and Plane Orientation / Pixel Measures shared when the source has patient geometry, a
 * dimension organisation, the Referenced Series Sequence OHIF needs, and empty frames left out.
 * dcmjs' own derivations/Segmentation writes no algorithm identification and is untested upstream,
 * hence our own builder.
 */
import { createHash } from 'node:crypto';
import dcmjs from 'dcmjs';
import type { DicomJson, DicomJsonElement } from '../dicomweb/types.js';
import type { SeriesPlan } from '../dicom/series-plan.js';
import { TAG } from '../dicom/tags.js';
import { LdfsamError } from '../errors.js';
import type { ModelManifest } from '../models/manifest.js';
import { concatFrames } from './bits.js';
import { segInstanceUid, segSeriesUid } from './uids.js';

export const SEG_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.66.4';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';
/** Our implementation class UID (2.25 UUID-derived root) and version name, as PS3.7 D.3.3 asks. */
const IMPLEMENTATION_CLASS_UID = '2.25.182947165207716355290880317744591306493';
const IMPLEMENTATION_VERSION = 'LDFSAM_0_1';

export interface SegFrame {
  /** Index into plan.slices. */
  sliceIndex: number;
  /** 1-based segment number (manifest order). */
  segmentNumber: number;
  /** rows x columns bits, LSB first (packBits). */
  bits: Uint8Array;
}

export interface SegInput {
  plan: SeriesPlan;
  /** Metadata of one source instance: patient and study attributes are copied from it. */
  sourceInstance: DicomJson;
  frames: SegFrame[];
  model: Pick<ModelManifest, 'name' | 'version' | 'segments'>;
  /** Software version of the writer (package version). */
  softwareVersion: string;
  seriesNumber?: number;
  /** Fixed creation time (tests); default now. */
  now?: Date;
}

export interface SegOutput {
  bytes: Uint8Array;
  seriesInstanceUID: string;
  sopInstanceUID: string;
  framesWritten: number;
}

const el = (vr: string, ...values: unknown[]): DicomJsonElement => ({ vr, Value: values });
const code = (value: string, scheme: string, meaning: string): DicomJson => ({
  '00080100': el('SH', value),
  '00080102': el('SH', scheme),
  '00080104': el('LO', meaning),
});
const seq = (...items: DicomJson[]): DicomJsonElement => ({ vr: 'SQ', Value: items });

/** Attributes copied as they are from the source (Patient, General Study). */
const COPIED = [
  '00100010', // PatientName
  '00100020', // PatientID
  '00100030', // PatientBirthDate
  '00100040', // PatientSex
  '0020000D', // StudyInstanceUID
  '00080020', // StudyDate
  '00080030', // StudyTime
  '00080090', // ReferringPhysicianName
  '00200010', // StudyID
  '00080050', // AccessionNumber
];
/** Type 2 attributes among them: present, possibly empty. */
const TYPE2 = new Set([
  '00100010',
  '00100020',
  '00100030',
  '00100040',
  '00080020',
  '00080030',
  '00080090',
  '00200010',
  '00080050',
]);

function dicomDateTime(now: Date): { date: string; time: string } {
  const iso = now.toISOString();
  return { date: iso.slice(0, 10).replace(/-/g, ''), time: iso.slice(11, 19).replace(/:/g, '') };
}

export function buildSegmentation(input: SegInput): SegOutput {
  const { plan, frames, model } = input;
  if (frames.length === 0) throw new LdfsamError('SEG_INVALID', 'a segmentation needs at least one frame');
  const pixels = plan.rows * plan.columns;
  for (const f of frames) {
    if (f.bits.length < Math.ceil(pixels / 8))
      throw new LdfsamError('SEG_INVALID', `frame of slice ${f.sliceIndex} holds too few bits`);
    if (!plan.slices[f.sliceIndex])
      throw new LdfsamError('SEG_INVALID', `frame refers to slice ${f.sliceIndex}, which the series lacks`);
    if (!model.segments.some((s) => s.number === f.segmentNumber)) {
      throw new LdfsamError('SEG_INVALID', `frame refers to segment ${f.segmentNumber}, which the model lacks`);
    }
  }
  // Frames ordered by segment, then by slice position: the dimension organisation below.
  const ordered = [...frames].sort((a, b) => a.segmentNumber - b.segmentNumber || a.sliceIndex - b.sliceIndex);
  const pixelData = concatFrames(
    ordered.map((f) => f.bits),
    pixels,
  );
  const contentHash = createHash('sha256')
    .update(pixelData)
    .update(JSON.stringify(ordered.map((f) => [f.segmentNumber, f.sliceIndex])))
    .digest('hex');
  const seriesInstanceUID = segSeriesUid(plan.seriesInstanceUID, model.name, model.version);
  const sopInstanceUID = segInstanceUid(seriesInstanceUID, contentHash);
  const { date, time } = dicomDateTime(input.now ?? new Date());
  const geometry = plan.orientation !== null;

  const ds: DicomJson = {};
  for (const tag of COPIED) {
    const source = input.sourceInstance[tag];
    if (source?.Value && source.Value.length > 0) ds[tag] = { vr: source.vr, Value: source.Value };
    else if (TYPE2.has(tag)) ds[tag] = { vr: source?.vr ?? vrOf(tag), Value: [] };
  }
  Object.assign(ds, {
    '00080005': el('CS', 'ISO_IR 192'),
    '00080008': el('CS', 'DERIVED', 'PRIMARY'),
    '00080012': el('DA', date),
    '00080013': el('TM', time),
    '00080016': el('UI', SEG_SOP_CLASS),
    '00080018': el('UI', sopInstanceUID),
    '00080023': el('DA', date),
    '00080033': el('TM', time),
    '00080060': el('CS', 'SEG'),
    '00080070': el('LO', 'LDFSAM project'),
    '0008103E': el('LO', `LDFSAM ${model.name} ${model.version}`.slice(0, 64)),
    '00081090': el('LO', 'ldfsam'),
    '00181000': el('LO', 'none'),
    '00181020': el('LO', input.softwareVersion),
    '0020000E': el('UI', seriesInstanceUID),
    '00200011': el('IS', input.seriesNumber ?? 9001),
    '00200013': el('IS', 1),
    '00280002': el('US', 1),
    '00280004': el('CS', 'MONOCHROME2'),
    '00280008': el('IS', ordered.length),
    '00280010': el('US', plan.rows),
    '00280011': el('US', plan.columns),
    '00280100': el('US', 1),
    '00280101': el('US', 1),
    '00280102': el('US', 0),
    '00280103': el('US', 0),
    '00282110': el('CS', '00'),
    '00700080': el('CS', 'LDFSAM'), // ContentLabel
    '00700081': el('LO', `Automatic segmentation by ${model.name} ${model.version}`.slice(0, 64)),
    '00700084': { vr: 'PN', Value: [] }, // ContentCreatorName (type 2)
    '00620001': el('CS', 'BINARY'),
  });
  if (!geometry) {
    // General Image: Patient Orientation is required (type 2C) when the image has no patient geometry.
    const source = input.sourceInstance['00200020'];
    ds['00200020'] = source?.Value?.length ? { vr: 'CS', Value: source.Value } : { vr: 'CS', Value: [] };
  }
  if (plan.frameOfReferenceUID) {
    ds['00200052'] = el('UI', plan.frameOfReferenceUID);
    ds['00201040'] = { vr: 'LO', Value: [] }; // PositionReferenceIndicator (type 2)
  }

  ds['00620002'] = seq(
    ...model.segments.map((s) => ({
      '00620004': el('US', s.number),
      '00620005': el('LO', s.label),
      '00620003': seq(code(s.category.code, s.category.scheme, s.category.meaning)),
      '0062000F': seq(code(s.type.code, s.type.scheme, s.type.meaning)),
      '00620008': el('CS', 'AUTOMATIC'),
      '00620009': el('LO', 'LDFSAM'),
      '00620007': seq({
        '0066002F': seq(code('123110', 'DCM', 'Artificial Intelligence')), // AlgorithmFamilyCodeSequence
        '00660036': el('LO', 'LDFSAM'), // AlgorithmName
        '00660031': el('LO', `${model.name} ${model.version}`.slice(0, 64)), // AlgorithmVersion
      }),
      '0062000D': el('US', ...s.color.cielab),
      ...(s.anatomicRegion
        ? { '00082218': seq(code(s.anatomicRegion.code, s.anatomicRegion.scheme, s.anatomicRegion.meaning)) }
        : {}),
    })),
  );

  const dimensionOrganizationUID = `${seriesInstanceUID}.1`.length <= 64 ? `${seriesInstanceUID}.1` : seriesInstanceUID;
  ds['00209221'] = seq({ '00209164': el('UI', dimensionOrganizationUID) });
  ds['00209222'] = seq(
    {
      '00209164': el('UI', dimensionOrganizationUID),
      '00209165': el('AT', 0x0062000b), // ReferencedSegmentNumber
      '00209167': el('AT', 0x0062000a), // in SegmentIdentificationSequence
      '00209421': el('LO', 'Segment'),
    },
    geometry
      ? {
          '00209164': el('UI', dimensionOrganizationUID),
          '00209165': el('AT', 0x00200032), // ImagePositionPatient
          '00209167': el('AT', 0x00209113), // in PlanePositionSequence
          '00209421': el('LO', 'Position'),
        }
      : {
          '00209164': el('UI', dimensionOrganizationUID),
          '00209165': el('AT', 0x00209057), // InStackPositionNumber
          '00209167': el('AT', 0x00209111), // in FrameContentSequence
          '00209421': el('LO', 'Source image'),
        },
  );

  const shared: DicomJson = {};
  // Pixel Measures only with patient geometry: a 2D image's calibration (e.g. ultrasound regions) is
  // not a patient-space measure, and readers (highdicom) require a slice thickness with it.
  if (geometry && plan.pixelSpacing) {
    const measures: DicomJson = { '00280030': el('DS', ...plan.pixelSpacing.map(dsNumber)) };
    const even =
      plan.spacing.meanSpacing !== undefined && plan.spacing.evenlySpaced ? Math.abs(plan.spacing.meanSpacing) : undefined;
    const thickness = plan.sliceThickness ?? even;
    if (thickness) measures[TAG.SliceThickness] = el('DS', dsNumber(thickness));
    if (even) measures[TAG.SpacingBetweenSlices] = el('DS', dsNumber(even));
    shared[TAG.PixelMeasuresSequence] = seq(measures);
  }
  if (geometry)
    shared[TAG.PlaneOrientationSequence] = seq({ [TAG.ImageOrientationPatient]: el('DS', ...plan.orientation!.map(dsNumber)) });
  else {
    // A 2D image without patient geometry (ultrasound, photograph): the SEG has no Frame of
    // Reference, so this orientation places nothing in patient space; it says only that the mask's
    // rows and columns are the image's. It is written because OHIF (cornerstone's SEG adapter,
    // checkOrientation) refuses to load a SEG without a Plane Orientation; dciodvfy accepts it.
    shared[TAG.PlaneOrientationSequence] = seq({ [TAG.ImageOrientationPatient]: el('DS', 1, 0, 0, 0, 1, 0) });
  }
  ds[TAG.SharedFunctionalGroupsSequence] = seq(shared);

  ds[TAG.PerFrameFunctionalGroupsSequence] = seq(
    ...ordered.map((f) => {
      const slice = plan.slices[f.sliceIndex]!;
      const source: DicomJson = {
        '00081150': el('UI', slice.sopClassUID),
        '00081155': el('UI', slice.sopInstanceUID),
        '0040A170': seq(code('121322', 'DCM', 'Source image for image processing operation')),
      };
      if (slice.numberOfFrames > 1) source['00081160'] = el('IS', slice.frameNumber);
      const item: DicomJson = {
        '00089124': seq({ '00082112': seq(source), '00089215': seq(code('113076', 'DCM', 'Segmentation')) }),
        [TAG.FrameContentSequence]: seq({
          '00209157': el('UL', f.segmentNumber, f.sliceIndex + 1), // DimensionIndexValues
          ...(geometry ? {} : { '00209056': el('SH', '1'), '00209057': el('UL', f.sliceIndex + 1) }),
        }),
        '0062000A': seq({ '0062000B': el('US', f.segmentNumber) }),
      };
      if (geometry)
        item[TAG.PlanePositionSequence] = seq({ [TAG.ImagePositionPatient]: el('DS', ...slice.position!.map(dsNumber)) });
      return item;
    }),
  );

  // Common Instance Reference: every source instance of the series (OHIF matches on it).
  const referenced = [...new Map(plan.slices.map((s) => [s.sopInstanceUID, s.sopClassUID])).entries()];
  ds['00081115'] = seq({
    '0020000E': el('UI', plan.seriesInstanceUID),
    '0008114A': seq(...referenced.map(([uid, cls]) => ({ '00081150': el('UI', cls), '00081155': el('UI', uid) }))),
  });

  const meta: DicomJson = {
    '00020001': { vr: 'OB', Value: [new Uint8Array([0, 1]).buffer] } as DicomJsonElement,
    '00020002': el('UI', SEG_SOP_CLASS),
    '00020003': el('UI', sopInstanceUID),
    '00020010': el('UI', EXPLICIT_LE),
    '00020012': el('UI', IMPLEMENTATION_CLASS_UID),
    '00020013': el('SH', IMPLEMENTATION_VERSION),
  };
  const dict = new dcmjs.data.DicomDict(meta);
  dict.dict = sortTags(ds);
  return { bytes: withPixelData(new Uint8Array(dict.write()), pixelData), seriesInstanceUID, sopInstanceUID, framesWritten: ordered.length };
}

/**
 * Appends Pixel Data (7FE0,0010), the last top-level element, to the file dcmjs wrote without it:
 * one allocation of the final size and one copy of the bits. Handing the bits to dcmjs copied them
 * three times (a detached copy, its growing write stream, the returned buffer): about 4x the frames'
 * size in flight while the model's memory is still held, the peak of a long series.
 */
function withPixelData(head: Uint8Array, pixelData: Uint8Array): Uint8Array {
  const out = new Uint8Array(head.length + 12 + pixelData.length);
  out.set(head);
  const view = new DataView(out.buffer, head.length, 12);
  view.setUint16(0, 0x7fe0, true);
  view.setUint16(2, 0x0010, true);
  out[head.length + 4] = 0x4f; // 'O'
  out[head.length + 5] = 0x42; // 'B'
  view.setUint32(8, pixelData.length, true); // explicit VR little endian OB: 2 reserved bytes, 32-bit length
  out.set(pixelData, head.length + 12);
  return out;
}

function sortTags(ds: DicomJson): DicomJson {
  return Object.fromEntries(Object.entries(ds).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** DS values hold at most 16 characters: 10 significant digits fit with sign, point and exponent. */
function dsNumber(v: number): number {
  return Number(v.toPrecision(10));
}

function vrOf(tag: string): string {
  return (
    {
      '00100010': 'PN',
      '00100020': 'LO',
      '00100030': 'DA',
      '00100040': 'CS',
      '00080020': 'DA',
      '00080030': 'TM',
      '00080090': 'PN',
      '00200010': 'SH',
      '00080050': 'SH',
    }[tag] ?? 'UN'
  );
}
