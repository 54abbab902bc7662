/**
 * DICOM Segmentation (BINARY, SOP class 1.2.840.10008.5.1.4.1.1.66.4) written with dcmjs' encoder
 * from a data set we build ourselves, following highdicom's rules: the input validated before
 * anything is built, every provenance field present, segments numbered 1..N with SNOMED CT category
 * and type, AUTOMATIC algorithm with its identification, every frame referencing its exact source
 * instance (and frame), Plane Position per frame and Plane Orientation / Pixel Measures shared when
 * the source has patient geometry, a dimension organisation, the Referenced Series Sequence OHIF
 * needs, and empty frames left out. dcmjs' own derivations/Segmentation writes no algorithm
 * identification and is untested upstream, hence our own builder.
 */
import { createHash } from 'node:crypto';
import type { DicomJson, DicomJsonElement } from '../dicomweb/types.js';
import {
  codeItem,
  creationDateTime,
  dsNumber,
  element as el,
  empty,
  imagePixelModule,
  patientAndStudy,
  sequence as seq,
} from '../dicom/elements.js';
import type { Vec3 } from '../dicom/geometry.js';
import { EXPLICIT_VR_LITTLE_ENDIAN, writePart10 } from '../dicom/part10-writer.js';
import type { SeriesPlan, SlicePlan } from '../dicom/series-plan.js';
import { str, TAG, tagNumber } from '../dicom/tags.js';
import { LdfsamError } from '../errors.js';
import type { ModelManifest } from '../models/manifest.js';
import { concatFrames, isEmpty } from './bits.js';
import { segInstanceUid, segSeriesUid } from './uids.js';

export const SEG_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.66.4';

export interface SegFrame {
  /** Index into plan.slices. */
  sliceIndex: number;
  /** 1-based segment number (manifest order). */
  segmentNumber: number;
  /** rows x columns bits, LSB first (packBits): exactly ceil(rows x columns / 8) bytes. */
  bits: Uint8Array;
  /** The model's presence score of the slice (models with postprocessing.presence): kept in Frame Comments. */
  score?: number;
}

/** A segment as the SEG describes it: a manifest's, or one named by the user (interactive; any coding scheme, e.g. a local 99… one). */
export interface SegmentDescription {
  number: number;
  label: string;
  category: { scheme: string; code: string; meaning: string };
  type: { scheme: string; code: string; meaning: string };
  anatomicRegion?: { scheme: string; code: string; meaning: string };
  color: { cielab: [number, number, number] };
}

export interface SegInput {
  plan: SeriesPlan;
  /** Metadata of one source instance: patient and study attributes are copied from it. */
  sourceInstance: DicomJson;
  frames: SegFrame[];
  model: Pick<ModelManifest, 'name' | 'version'> & { segments: SegmentDescription[] };
  /**
   * AUTOMATIC (default: the auto path) or SEMIAUTOMATIC (interactive: the model's masks from the
   * user's prompts). Either way the model is named in the Segmentation Algorithm Identification.
   */
  algorithmType?: 'AUTOMATIC' | 'SEMIAUTOMATIC';
  /** Default: derived from (source series, model name, model version), as the auto path stores. */
  seriesInstanceUID?: string;
  seriesDescription?: string;
  contentDescription?: string;
  instanceNumber?: number;
  /** Hashed into the SOP Instance UID with the pixels: tells apart instances with equal masks (two labels). */
  contentKey?: string;
  /** Software version of the writer (package version). */
  softwareVersion: string;
  /** The presence threshold the frames' scores passed (written beside each score). */
  presenceThreshold?: number;
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

/** A validated frame with its source slice; `position` is set exactly when the series has patient geometry. */
interface PlacedFrame extends SegFrame {
  slice: SlicePlan;
  position: Vec3 | undefined;
}

/**
 * Builds the SEG of `frames` over the series `plan`. Its input is validated first, as highdicom's
 * Segmentation constructor does, so that no malformed object is ever encoded.
 *
 * @throws LdfsamError SEG_INVALID when
 * - `frames` is empty;
 * - the model's segments are not numbered 1..N in order;
 * - a frame names a segment the model lacks, or a slice the series lacks;
 * - two frames have the same segment and slice;
 * - a frame's bits are not exactly ceil(rows x columns / 8) bytes (neither too few nor too many);
 * - the series has patient geometry but its orientation is not 6 finite numbers, or a framed slice
 *   has no Image Position (Patient);
 * - the source instance has no Study Instance UID, or another one than the series plan.
 */
export function buildSegmentation(input: SegInput): SegOutput {
  const { plan, model } = input;
  const { frames, orientation } = validated(input);
  const pixelData = concatFrames(
    frames.map((f) => f.bits),
    plan.rows * plan.columns,
  );
  const contentHash = createHash('sha256')
    .update(pixelData)
    .update(JSON.stringify(frames.map((f) => [f.segmentNumber, f.sliceIndex])))
    .update(input.contentKey ?? '')
    .digest('hex');
  const seriesInstanceUID = input.seriesInstanceUID ?? segSeriesUid(plan.seriesInstanceUID, model.name, model.version);
  const sopInstanceUID = segInstanceUid(seriesInstanceUID, contentHash);
  const geometry = orientation !== null;
  const ds: DicomJson = {
    ...header(input, { seriesInstanceUID, sopInstanceUID, frames: frames.length, geometry }),
    [TAG.SegmentSequence]: segmentSequence(model, input.algorithmType ?? 'AUTOMATIC', {
      frames,
      slices: plan.slices.length,
      threshold: input.presenceThreshold,
    }),
    ...dimensionOrganization(seriesInstanceUID, geometry),
    [TAG.SharedFunctionalGroupsSequence]: seq(sharedFunctionalGroups(plan, orientation)),
    [TAG.PerFrameFunctionalGroupsSequence]: seq(...frames.map((f) => perFrameFunctionalGroups(f, input.presenceThreshold))),
    [TAG.ReferencedSeriesSequence]: referencedSeries(plan),
  };
  const bytes = writePart10(
    ds,
    { sopClassUID: SEG_SOP_CLASS, sopInstanceUID, transferSyntaxUID: EXPLICIT_VR_LITTLE_ENDIAN },
    { native: pixelData },
  );
  return { bytes, seriesInstanceUID, sopInstanceUID, framesWritten: frames.length };
}

/** The checks listed on buildSegmentation; frames come back ordered by segment, then slice (the dimension organisation). */
function validated(input: SegInput): { frames: PlacedFrame[]; orientation: number[] | null } {
  const { plan, model } = input;
  const invalid = (message: string) => new LdfsamError('SEG_INVALID', message);
  if (input.frames.length === 0) throw invalid('a segmentation needs at least one frame');
  const numbers = model.segments.map((s) => s.number);
  if (numbers.some((n, i) => n !== i + 1))
    throw invalid(`segment numbers must be 1..${numbers.length} in order; the model has ${numbers.join(', ')}`);
  const study = str(input.sourceInstance, TAG.StudyInstanceUID);
  if (study !== plan.studyInstanceUID)
    throw invalid(
      `the source instance's Study Instance UID ${study ?? '(none)'} is not the series' study ${plan.studyInstanceUID}`,
    );
  const orientation = plan.orientation;
  if (orientation !== null && !(orientation.length === 6 && orientation.every(Number.isFinite)))
    throw invalid(`the series' Image Orientation (Patient) is not 6 numbers: ${orientation.join('\\')}`);
  const bytesPerFrame = Math.ceil((plan.rows * plan.columns) / 8);
  const seen = new Set<string>();
  const frames = input.frames.map((f): PlacedFrame => {
    const slice = Number.isInteger(f.sliceIndex) ? plan.slices[f.sliceIndex] : undefined;
    if (!slice) throw invalid(`frame refers to slice ${f.sliceIndex}, which the series lacks`);
    if (!model.segments.some((s) => s.number === f.segmentNumber))
      throw invalid(`frame refers to segment ${f.segmentNumber}, which the model lacks`);
    const key = `${f.segmentNumber}/${f.sliceIndex}`;
    if (seen.has(key)) throw invalid(`two frames of segment ${f.segmentNumber} on slice ${f.sliceIndex}`);
    seen.add(key);
    if (f.bits.length !== bytesPerFrame) {
      throw invalid(
        `frame of segment ${f.segmentNumber} on slice ${f.sliceIndex} holds ${f.bits.length} bytes; ` +
          `a ${plan.rows} x ${plan.columns} frame is ${bytesPerFrame}`,
      );
    }
    if (orientation !== null && !slice.position)
      throw invalid(`slice ${f.sliceIndex} (${slice.sopInstanceUID}) has no Image Position (Patient) in a series with geometry`);
    return { ...f, slice, position: orientation !== null ? (slice.position ?? undefined) : undefined };
  });
  frames.sort((a, b) => a.segmentNumber - b.segmentNumber || a.sliceIndex - b.sliceIndex);
  return { frames, orientation };
}

/** Patient and study (copied), SOP Common, series, equipment, image, Segmentation Image and Frame of Reference modules. */
function header(
  input: SegInput,
  ids: { seriesInstanceUID: string; sopInstanceUID: string; frames: number; geometry: boolean },
): DicomJson {
  const { plan, model } = input;
  const { date, time, zone } = creationDateTime(input.sourceInstance, input.now ?? new Date());
  const ds: DicomJson = patientAndStudy(input.sourceInstance);
  Object.assign(ds, {
    ...zone,
    [TAG.SpecificCharacterSet]: el('CS', 'ISO_IR 192'),
    [TAG.ImageType]: el('CS', 'DERIVED', 'PRIMARY'),
    [TAG.InstanceCreationDate]: el('DA', date),
    [TAG.InstanceCreationTime]: el('TM', time),
    [TAG.SOPClassUID]: el('UI', SEG_SOP_CLASS),
    [TAG.SOPInstanceUID]: el('UI', ids.sopInstanceUID),
    [TAG.ContentDate]: el('DA', date),
    [TAG.ContentTime]: el('TM', time),
    [TAG.Modality]: el('CS', 'SEG'),
    [TAG.Manufacturer]: el('LO', 'LDFSAM project'),
    [TAG.SeriesDescription]: el('LO', (input.seriesDescription ?? `LDFSAM ${model.name} ${model.version}`).slice(0, 64)),
    [TAG.ManufacturerModelName]: el('LO', 'ldfsam'),
    [TAG.DeviceSerialNumber]: el('LO', 'none'),
    [TAG.SoftwareVersions]: el('LO', input.softwareVersion),
    [TAG.SeriesInstanceUID]: el('UI', ids.seriesInstanceUID),
    [TAG.SeriesNumber]: el('IS', input.seriesNumber ?? 9001),
    [TAG.InstanceNumber]: el('IS', input.instanceNumber ?? 1),
    ...imagePixelModule({
      samplesPerPixel: 1,
      photometricInterpretation: 'MONOCHROME2',
      rows: plan.rows,
      columns: plan.columns,
      bitsAllocated: 1,
    }),
    [TAG.NumberOfFrames]: el('IS', ids.frames),
    ...lossyCompression(input.sourceInstance),
    [TAG.ContentLabel]: el('CS', 'LDFSAM'),
    [TAG.ContentDescription]: el(
      'LO',
      (input.contentDescription ?? `Automatic segmentation by ${model.name} ${model.version}`).slice(0, 64),
    ),
    [TAG.ContentCreatorName]: empty('PN'), // Type 2
    [TAG.SegmentationType]: el('CS', 'BINARY'),
  });
  if (!ids.geometry) {
    // General Image: Patient Orientation is required (type 2C) when the image has no patient geometry.
    const source = input.sourceInstance[TAG.PatientOrientation];
    ds[TAG.PatientOrientation] = source?.Value?.length ? { vr: 'CS', Value: source.Value } : empty('CS');
  }
  if (plan.frameOfReferenceUID) {
    ds[TAG.FrameOfReferenceUID] = el('UI', plan.frameOfReferenceUID);
    ds[TAG.PositionReferenceIndicator] = empty('LO'); // Type 2
  }
  return ds;
}

/**
 * Lossy Image Compression: "01" once any ancestor was lossy compressed (PS3.3 C.7.6.1.1.5: never
 * reset), with the source's ratio and method, as highdicom derives it; else "00".
 */
function lossyCompression(source: DicomJson): DicomJson {
  if (source[TAG.LossyImageCompression]?.Value?.[0] !== '01') return { [TAG.LossyImageCompression]: el('CS', '00') };
  const out: DicomJson = { [TAG.LossyImageCompression]: el('CS', '01') };
  for (const tag of [TAG.LossyImageCompressionRatio, TAG.LossyImageCompressionMethod]) {
    const e = source[tag];
    if (e?.Value?.length) out[tag] = { vr: e.vr, Value: e.Value };
  }
  return out;
}

/**
 * One item per segment: SNOMED CT (or local) category and type, colour, the algorithm type with its
 * identification, and for a gated model a Segment Description of its presence scores.
 */
function segmentSequence(
  model: SegInput['model'],
  algorithmType: 'AUTOMATIC' | 'SEMIAUTOMATIC',
  presence: { frames: SegFrame[]; slices: number; threshold: number | undefined },
): DicomJsonElement {
  return seq(
    ...model.segments.map((s) => ({
      [TAG.SegmentNumber]: el('US', s.number),
      [TAG.SegmentLabel]: el('LO', s.label),
      [TAG.SegmentedPropertyCategoryCodeSequence]: seq(codeItem(s.category)),
      [TAG.SegmentedPropertyTypeCodeSequence]: seq(codeItem(s.type)),
      [TAG.SegmentAlgorithmType]: el('CS', algorithmType),
      [TAG.SegmentAlgorithmName]: el('LO', 'LDFSAM'),
      [TAG.SegmentationAlgorithmIdentificationSequence]: seq({
        [TAG.AlgorithmFamilyCodeSequence]: seq(codeItem({ code: '123110', scheme: 'DCM', meaning: 'Artificial Intelligence' })),
        [TAG.AlgorithmName]: el('LO', 'LDFSAM'),
        [TAG.AlgorithmVersion]: el('LO', `${model.name} ${model.version}`.slice(0, 64)),
      }),
      [TAG.RecommendedDisplayCIELabValue]: el('US', ...s.color.cielab),
      ...presenceDescription(presence.frames, s.number, presence.slices, presence.threshold),
      ...(s.anatomicRegion ? { [TAG.AnatomicRegionSequence]: seq(codeItem(s.anatomicRegion)) } : {}),
    })),
  );
}

/**
 * Frames are indexed by (segment, position) with patient geometry, else by (segment, source image):
 * a 2D image without geometry has no position, so its frames say which image of the stack they are.
 */
function dimensionOrganization(seriesInstanceUID: string, geometry: boolean): DicomJson {
  const uid = `${seriesInstanceUID}.1`.length <= 64 ? `${seriesInstanceUID}.1` : seriesInstanceUID;
  const index = (pointer: string, group: string, label: string): DicomJson => ({
    [TAG.DimensionOrganizationUID]: el('UI', uid),
    [TAG.DimensionIndexPointer]: el('AT', tagNumber(pointer)),
    [TAG.FunctionalGroupPointer]: el('AT', tagNumber(group)),
    [TAG.DimensionDescriptionLabel]: el('LO', label),
  });
  return {
    [TAG.DimensionOrganizationSequence]: seq({ [TAG.DimensionOrganizationUID]: el('UI', uid) }),
    [TAG.DimensionIndexSequence]: seq(
      index(TAG.ReferencedSegmentNumber, TAG.SegmentIdentificationSequence, 'Segment'),
      geometry
        ? index(TAG.ImagePositionPatient, TAG.PlanePositionSequence, 'Position')
        : index(TAG.InStackPositionNumber, TAG.FrameContentSequence, 'Source image'),
    ),
  };
}

/** Plane Orientation, and Pixel Measures when the series has patient geometry and a pixel spacing. */
function sharedFunctionalGroups(plan: SeriesPlan, orientation: number[] | null): DicomJson {
  const shared: DicomJson = {};
  // Pixel Measures only with patient geometry: a 2D image's calibration (e.g. ultrasound regions) is
  // not a patient-space measure, and readers (highdicom) require a slice thickness with it.
  if (orientation !== null && plan.pixelSpacing) {
    const measures: DicomJson = { [TAG.PixelSpacing]: el('DS', ...plan.pixelSpacing.map(dsNumber)) };
    const even =
      plan.spacing.meanSpacing !== undefined && plan.spacing.evenlySpaced ? Math.abs(plan.spacing.meanSpacing) : undefined;
    // Slice Thickness is Type 1C here (readers such as highdicom require it): a source that gives none
    // gets its nominal value from the geometry: the spacing, or for uneven slices the smallest gap.
    // (Gaps share one sign along the planned order; the smallest in size is the one nearest 0.)
    const { minSpacing, maxSpacing } = plan.spacing;
    const smallestGap =
      minSpacing !== undefined && maxSpacing !== undefined ? Math.min(Math.abs(minSpacing), Math.abs(maxSpacing)) : undefined;
    const thickness = plan.sliceThickness ?? even ?? smallestGap;
    if (thickness) measures[TAG.SliceThickness] = el('DS', dsNumber(thickness));
    if (even) measures[TAG.SpacingBetweenSlices] = el('DS', dsNumber(even));
    shared[TAG.PixelMeasuresSequence] = seq(measures);
  }
  // Without geometry (ultrasound, photograph) the SEG has no Plane Position (and a Frame of Reference
  // only when the source has one), so this orientation places nothing in patient space; it says only
  // that the mask's rows and columns are the image's.
  // It is written because OHIF (cornerstone's SEG adapter, checkOrientation) refuses to load a SEG
  // without a Plane Orientation; dciodvfy accepts it.
  const cosines = orientation ?? [1, 0, 0, 0, 1, 0];
  shared[TAG.PlaneOrientationSequence] = seq({ [TAG.ImageOrientationPatient]: el('DS', ...cosines.map(dsNumber)) });
  return shared;
}

/** Derivation Image -> Source Image (instance and, for multi-frame sources, frame), Frame Content, Segment Identification, Plane Position. */
function perFrameFunctionalGroups(f: PlacedFrame, threshold: number | undefined): DicomJson {
  const source: DicomJson = {
    [TAG.ReferencedSOPClassUID]: el('UI', f.slice.sopClassUID),
    [TAG.ReferencedSOPInstanceUID]: el('UI', f.slice.sopInstanceUID),
    [TAG.PurposeOfReferenceCodeSequence]: seq(
      codeItem({ code: '121322', scheme: 'DCM', meaning: 'Source image for image processing operation' }),
    ),
  };
  if (f.slice.numberOfFrames > 1) source[TAG.ReferencedFrameNumber] = el('IS', f.slice.frameNumber);
  const item: DicomJson = {
    [TAG.DerivationImageSequence]: seq({
      [TAG.SourceImageSequence]: seq(source),
      [TAG.DerivationCodeSequence]: seq(codeItem({ code: '113076', scheme: 'DCM', meaning: 'Segmentation' })),
    }),
    [TAG.FrameContentSequence]: seq({
      [TAG.DimensionIndexValues]: el('UL', f.segmentNumber, f.sliceIndex + 1),
      ...(f.position ? {} : { [TAG.StackID]: el('SH', '1'), [TAG.InStackPositionNumber]: el('UL', f.sliceIndex + 1) }),
      ...(f.score !== undefined ? { [TAG.FrameComments]: el('LT', frameComment(f.score, threshold)) } : {}),
    }),
    [TAG.SegmentIdentificationSequence]: seq({ [TAG.ReferencedSegmentNumber]: el('US', f.segmentNumber) }),
  };
  if (f.position) item[TAG.PlanePositionSequence] = seq({ [TAG.ImagePositionPatient]: el('DS', ...f.position.map(dsNumber)) });
  return item;
}

/** Frame Comments (0020,9158) of a frame of a gated model: how sure it was that the structure is there. */
function frameComment(score: number, threshold: number | undefined): string {
  return `LDFSAM presence score ${score.toFixed(4)}${threshold !== undefined ? ` (threshold ${threshold.toFixed(4)})` : ''}`;
}

/** Segment Description (0062,0006, ST) of a gated model's segment: on how many slices, how sure. */
function presenceDescription(frames: SegFrame[], segment: number, slices: number, threshold: number | undefined): DicomJson {
  if (!frames.some((f) => f.score !== undefined)) return {};
  const scores = frames
    .filter((f) => f.segmentNumber === segment && f.score !== undefined && !isEmpty(f.bits))
    .map((f) => f.score!);
  const of = threshold !== undefined ? ` (threshold ${threshold.toFixed(2)})` : '';
  if (scores.length === 0)
    return { [TAG.SegmentDescription]: el('ST', `LDFSAM presence: not found on any of ${slices} slices${of}`) };
  const lo = scores.reduce((a, b) => Math.min(a, b), 1).toFixed(2);
  const hi = scores.reduce((a, b) => Math.max(a, b), 0).toFixed(2);
  const range = lo === hi ? lo : `${lo}-${hi}`;
  return {
    [TAG.SegmentDescription]: el('ST', `LDFSAM presence: found on ${scores.length} of ${slices} slices, score ${range}${of}`),
  };
}

/** Common Instance Reference: every source instance of the series (OHIF matches on it). */
function referencedSeries(plan: SeriesPlan): DicomJsonElement {
  const referenced = [...new Map(plan.slices.map((s) => [s.sopInstanceUID, s.sopClassUID])).entries()];
  return seq({
    [TAG.SeriesInstanceUID]: el('UI', plan.seriesInstanceUID),
    [TAG.ReferencedInstanceSequence]: seq(
      ...referenced.map(([uid, cls]) => ({
        [TAG.ReferencedSOPClassUID]: el('UI', cls),
        [TAG.ReferencedSOPInstanceUID]: el('UI', uid),
      })),
    ),
  });
}
