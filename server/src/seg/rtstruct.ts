/**
 * RT Structure Set (SOP class 1.2.840.10008.5.1.4.1.1.481.3, PS3.3 A.19) of a segmentation, for the
 * PACS and planning systems that do not take DICOM SEG: one ROI per model segment (name, SNOMED CT
 * code in the RT ROI Identification Code Sequence, display colour, ROI Generation Algorithm
 * AUTOMATIC), and per slice closed planar contours in patient coordinates (LPS, mm) along the mask's
 * pixel edges (contours.ts): one CLOSED_PLANAR contour per outer boundary, its holes joined in by
 * zero-width cuts (the "keyhole" of PS3.3 C.8.8.6.3), so that receivers that combine an ROI's
 * contours by union and those that use even-odd read the same mask. Each contour references its source
 * image (and frame); the structure set references the frame of reference, study and series.
 * Approval Status is UNAPPROVED: these are automatic contours that a person has to review.
 *
 * A series without a patient coordinate system (ultrasound, photographs) has no place for contours
 * in patient space: rtstructUnsupported says why, and no structure set is written for it.
 */
import { createHash } from 'node:crypto';
import type { DicomJson } from '../dicomweb/types.js';
import { codeItem, creationDateTime, element as el, empty, patientAndStudy, sequence as seq } from '../dicom/elements.js';
import { IMPLICIT_VR_LITTLE_ENDIAN, writePart10 } from '../dicom/part10-writer.js';
import type { SeriesPlan, SlicePlan } from '../dicom/series-plan.js';
import { TAG } from '../dicom/tags.js';
import { LdfsamError } from '../errors.js';
import type { ModelManifest } from '../models/manifest.js';
import { keyholes, simplifyRing, traceRings } from './contours.js';
import { rtstructInstanceUid, rtstructSeriesUid } from './uids.js';

export const RTSTRUCT_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.481.3';
/** What RT Referenced Study Sequence items name as their SOP class by convention (Detached Study Management). */
const STUDY_REFERENCE_SOP_CLASS = '1.2.840.10008.3.1.2.3.1';
/** SNOMED CT "Anatomical Structure": such segments are ORGANs; other categories get no interpreted type. */
const ANATOMICAL_STRUCTURE = '91723000';

export interface RtStructInput {
  plan: SeriesPlan;
  /** Metadata of one source instance: patient and study attributes are copied from it. */
  sourceInstance: DicomJson;
  /** masks[segment number - 1][slice index]: rows x columns bits (LSB first), or undefined when empty. */
  masks: readonly (readonly (Uint8Array | undefined)[])[];
  model: Pick<ModelManifest, 'name' | 'version' | 'segments'>;
  softwareVersion: string;
  /** Douglas-Peucker tolerance in pixels, 0 <= t < 0.5; 0 (default) keeps the pixel edges exactly. */
  tolerance?: number;
  seriesNumber?: number;
  now?: Date;
}

export interface RtStructOutput {
  bytes: Uint8Array;
  seriesInstanceUID: string;
  sopInstanceUID: string;
  /** Contours per ROI (ROI number = segment number). */
  rois: { number: number; label: string; contours: number; points: number }[];
}

/** Why this series cannot have an RT Structure Set, or undefined when it can. */
export function rtstructUnsupported(plan: SeriesPlan): string | undefined {
  const why = !plan.orientation
    ? 'its images have no Image Orientation/Position (Patient)'
    : plan.slices.some((s) => !s.position)
      ? 'some of its images have no Image Position (Patient)'
      : plan.pixelSpacingSource !== 'PixelSpacing' || !plan.pixelSpacing
        ? 'its images have no Pixel Spacing'
        : !plan.frameOfReferenceUID
          ? 'it has no Frame of Reference UID'
          : undefined;
  return why
    ? `series ${plan.seriesInstanceUID} (${plan.modality}) has no patient coordinate system (${why}); ` +
        'an RT Structure Set places contours in patient coordinates, so none is written for it: use the SEG output'
    : undefined;
}

export function buildRtStruct(input: RtStructInput): RtStructOutput {
  const { plan, model } = input;
  const unsupported = rtstructUnsupported(plan);
  if (unsupported) throw new LdfsamError('INVALID_INPUT', unsupported);
  const tolerance = input.tolerance ?? 0;
  if (!(tolerance >= 0 && tolerance < 0.5))
    throw new LdfsamError('INVALID_INPUT', `the contour tolerance must be at least 0 and below 0.5 pixel, not ${tolerance}`);
  if (input.masks.length !== model.segments.length)
    throw new LdfsamError('SEG_INVALID', `${input.masks.length} mask(s) for ${model.segments.length} segment(s)`);

  const roiContours = model.segments.map((s, k) => contoursOf(plan, input.masks[k]!, tolerance, s.number));
  const hash = createHash('sha256');
  for (const contours of roiContours) for (const c of contours) hash.update(`${c.slice.index}:${c.data.join('\\')};`);
  const seriesInstanceUID = rtstructSeriesUid(plan.seriesInstanceUID, model.name, model.version);
  const sopInstanceUID = rtstructInstanceUid(seriesInstanceUID, hash.digest('hex'));
  const { date, time, zone } = creationDateTime(input.sourceInstance, input.now ?? new Date());

  const ds: DicomJson = {
    ...patientAndStudy(input.sourceInstance),
    ...zone,
    [TAG.SpecificCharacterSet]: el('CS', 'ISO_IR 192'),
    [TAG.InstanceCreationDate]: el('DA', date),
    [TAG.InstanceCreationTime]: el('TM', time),
    [TAG.SOPClassUID]: el('UI', RTSTRUCT_SOP_CLASS),
    [TAG.SOPInstanceUID]: el('UI', sopInstanceUID),
    [TAG.Modality]: el('CS', 'RTSTRUCT'),
    [TAG.Manufacturer]: el('LO', 'LDFSAM project'),
    [TAG.SeriesDescription]: el('LO', `LDFSAM ${model.name} ${model.version} RTSTRUCT`.slice(0, 64)),
    [TAG.OperatorsName]: empty('PN'), // Type 2
    [TAG.ManufacturerModelName]: el('LO', 'ldfsam'),
    [TAG.SoftwareVersions]: el('LO', input.softwareVersion),
    [TAG.SeriesInstanceUID]: el('UI', seriesInstanceUID),
    [TAG.SeriesNumber]: el('IS', input.seriesNumber ?? 9002),
    [TAG.InstanceNumber]: el('IS', 1),
    // Frame of Reference module (the IOD includes it since the 2019 editions; dciodvfy requires it).
    [TAG.FrameOfReferenceUID]: el('UI', plan.frameOfReferenceUID!),
    [TAG.PositionReferenceIndicator]: empty('LO'), // Type 2
    [TAG.StructureSetLabel]: el('SH', 'LDFSAM'),
    [TAG.StructureSetName]: el('LO', `Automatic contours by ${model.name} ${model.version}`.slice(0, 64)),
    [TAG.StructureSetDate]: el('DA', date),
    [TAG.StructureSetTime]: el('TM', time),
    [TAG.ApprovalStatus]: el('CS', 'UNAPPROVED'), // automatic contours a person has to review
    [TAG.ReferencedFrameOfReferenceSequence]: seq(referencedFrameOfReference(plan)),
    ...roiModules(plan, model, roiContours),
  };
  // Implicit VR: a long contour's Contour Data (DS) passes explicit VR's 64 kB value limit, where it
  // would have to be written as UN (about 2,600 points), which receivers need not map back to DS.
  const bytes = writePart10(ds, {
    sopClassUID: RTSTRUCT_SOP_CLASS,
    sopInstanceUID,
    transferSyntaxUID: IMPLICIT_VR_LITTLE_ENDIAN,
  });
  return {
    bytes,
    seriesInstanceUID,
    sopInstanceUID,
    rois: model.segments.map((s, k) => ({
      number: s.number,
      label: s.label,
      contours: roiContours[k]!.length,
      points: roiContours[k]!.reduce((n, c) => n + c.data.length / 3, 0),
    })),
  };
}

/** Structure Set ROI, ROI Contour and RT ROI Observations: one ROI per segment, numbered as the segments. */
function roiModules(plan: SeriesPlan, model: RtStructInput['model'], roiContours: Contour[][]): DicomJson {
  return {
    [TAG.StructureSetROISequence]: seq(
      ...model.segments.map((s) => ({
        [TAG.ROINumber]: el('IS', s.number),
        [TAG.ReferencedFrameOfReferenceUID]: el('UI', plan.frameOfReferenceUID!),
        [TAG.ROIName]: el('LO', s.label.slice(0, 64)),
        [TAG.ROIGenerationAlgorithm]: el('CS', 'AUTOMATIC'),
        [TAG.ROIGenerationDescription]: el('LO', `LDFSAM ${model.name} ${model.version}`.slice(0, 64)),
      })),
    ),
    [TAG.ROIContourSequence]: seq(
      ...model.segments.map((s, k) => {
        const item: DicomJson = {
          [TAG.ROIDisplayColor]: el('IS', ...s.color.rgb),
          [TAG.ReferencedROINumber]: el('IS', s.number),
        };
        const contours = roiContours[k]!;
        if (contours.length > 0) item[TAG.ContourSequence] = seq(...contours.map((c, i) => contourItem(c, i + 1)));
        return item;
      }),
    ),
    [TAG.RTROIObservationsSequence]: seq(
      ...model.segments.map((s) => ({
        [TAG.ObservationNumber]: el('IS', s.number),
        [TAG.ReferencedROINumber]: el('IS', s.number),
        [TAG.RTROIIdentificationCodeSequence]: seq(codeItem(s.type)),
        [TAG.RTROIInterpretedType]: s.category.code === ANATOMICAL_STRUCTURE ? el('CS', 'ORGAN') : empty('CS'), // Type 2
        [TAG.ROIInterpreter]: empty('PN'), // Type 2
      })),
    ),
  };
}

interface Contour {
  slice: SlicePlan;
  /** x, y, z triplets in mm (LPS). */
  data: number[];
}

/** The contours of one segment over the series: rings per slice mapped into patient space. */
function contoursOf(plan: SeriesPlan, masks: readonly (Uint8Array | undefined)[], tolerance: number, segment: number): Contour[] {
  const [rowSpacing, columnSpacing] = plan.pixelSpacing!;
  const o = plan.orientation!;
  const out: Contour[] = [];
  masks.forEach((bits, index) => {
    if (!bits) return;
    const slice = plan.slices[index];
    if (!slice) throw new LdfsamError('SEG_INVALID', `segment ${segment} has a mask for slice ${index}, which the series lacks`);
    const p = slice.position!;
    for (const polygon of keyholes(traceRings(bits, plan.rows, plan.columns))) {
      const pts = simplifyRing(polygon.points, tolerance, polygon.anchors);
      const data: number[] = [];
      for (let i = 0; i < pts.length; i += 2) {
        // Corner (x, y) lies half a pixel before pixel centre (x, y); Image Position is pixel (0, 0)'s centre.
        const dx = (pts[i]! - 0.5) * columnSpacing;
        const dy = (pts[i + 1]! - 0.5) * rowSpacing;
        data.push(mm(p[0] + o[0]! * dx + o[3]! * dy), mm(p[1] + o[1]! * dx + o[4]! * dy), mm(p[2] + o[2]! * dx + o[5]! * dy));
      }
      out.push({ slice, data });
    }
  });
  return out;
}

function contourItem(c: Contour, number: number): DicomJson {
  return {
    [TAG.ContourImageSequence]: seq(imageReference(c.slice)),
    [TAG.ContourGeometricType]: el('CS', 'CLOSED_PLANAR'),
    [TAG.NumberOfContourPoints]: el('IS', c.data.length / 3),
    [TAG.ContourNumber]: el('IS', number),
    [TAG.ContourData]: el('DS', ...c.data),
  };
}

function imageReference(slice: SlicePlan): DicomJson {
  const ref: DicomJson = {
    [TAG.ReferencedSOPClassUID]: el('UI', slice.sopClassUID),
    [TAG.ReferencedSOPInstanceUID]: el('UI', slice.sopInstanceUID),
  };
  if (slice.numberOfFrames > 1) ref[TAG.ReferencedFrameNumber] = el('IS', slice.frameNumber);
  return ref;
}

/** Frame of reference -> study -> series -> every image of the series (each instance once, every frame of multi-frame ones). */
function referencedFrameOfReference(plan: SeriesPlan): DicomJson {
  const images = new Map<string, SlicePlan[]>();
  for (const s of plan.slices) images.set(s.sopInstanceUID, [...(images.get(s.sopInstanceUID) ?? []), s]);
  const contourImages = [...images.values()].map((slices) => {
    const ref = imageReference(slices[0]!);
    if (slices[0]!.numberOfFrames > 1) ref[TAG.ReferencedFrameNumber] = el('IS', ...slices.map((s) => s.frameNumber));
    return ref;
  });
  return {
    [TAG.FrameOfReferenceUID]: el('UI', plan.frameOfReferenceUID!),
    [TAG.RTReferencedStudySequence]: seq({
      [TAG.ReferencedSOPClassUID]: el('UI', STUDY_REFERENCE_SOP_CLASS),
      [TAG.ReferencedSOPInstanceUID]: el('UI', plan.studyInstanceUID),
      [TAG.RTReferencedSeriesSequence]: seq({
        [TAG.SeriesInstanceUID]: el('UI', plan.seriesInstanceUID),
        [TAG.ContourImageSequence]: seq(...contourImages),
      }),
    }),
  };
}

/** Millimetres to a micrometre, which also keeps every DS value within its 16 characters. */
function mm(v: number): number {
  const r = Math.round(v * 1000) / 1000;
  return r === 0 ? 0 : r;
}
