/**
 * Reads DICOM Segmentation objects (ours, dcmqi's, highdicom's) and places every frame on its source
 * slice: by the frame's Derivation Image -> Source Image reference (SOP instance and frame), else by
 * its Plane Position projected on the source's slice normal. Used by tests and the evaluation.
 */
import type { DicomJson } from '../dicomweb/types.js';
import { dot, type Vec3 } from '../dicom/geometry.js';
import type { SeriesPlan } from '../dicom/series-plan.js';
import { readDicomFile } from '../dicom/part10.js';
import { functionalGroup, num, nums, seq, str, TAG } from '../dicom/tags.js';
import { LdfsamError } from '../errors.js';
import { concatFrames, unpackBits } from './bits.js';
import { decodeRle } from '../dicom/codecs/rle.js';
import { NATIVE_SYNTAXES, TS } from '../dicom/codecs/index.js';

export interface SegSegment {
  number: number;
  label: string;
  category: { code: string; scheme: string; meaning: string } | undefined;
  type: { code: string; scheme: string; meaning: string } | undefined;
  algorithmType: string | undefined;
}

export interface SegFrameRead {
  /** 1-based frame number in the SEG. */
  frameNumber: number;
  segmentNumber: number;
  referencedSOPInstanceUID: string | undefined;
  referencedFrameNumber: number | undefined;
  position: Vec3 | undefined;
  /** rows x columns, 0/1 (FRACTIONAL thresholded at half of its maximum). */
  mask: Uint8Array;
}

export interface SegRead {
  sopInstanceUID: string;
  seriesInstanceUID: string;
  segmentationType: string;
  rows: number;
  columns: number;
  segments: SegSegment[];
  frames: SegFrameRead[];
  referencedSeriesInstanceUIDs: string[];
}

const codeOf = (item: DicomJson | undefined) =>
  item
    ? { code: str(item, '00080100') ?? '', scheme: str(item, '00080102') ?? '', meaning: str(item, '00080104') ?? '' }
    : undefined;

export function readSegmentation(bytes: Uint8Array): SegRead {
  let ds: DicomJson;
  let transferSyntaxUID: string | undefined;
  try {
    const file = readDicomFile(bytes);
    ds = file.dict as DicomJson;
    transferSyntaxUID = str(file.meta as DicomJson, TAG.TransferSyntaxUID);
  } catch (err) {
    throw new LdfsamError('SEG_INVALID', `not a readable DICOM file: ${(err as Error).message}`);
  }
  if (str(ds, TAG.SOPClassUID) !== '1.2.840.10008.5.1.4.1.1.66.4') {
    throw new LdfsamError('SEG_INVALID', `not a Segmentation (SOP class ${str(ds, TAG.SOPClassUID) ?? 'none'})`);
  }
  const rows = num(ds, TAG.Rows) ?? 0;
  const columns = num(ds, TAG.Columns) ?? 0;
  const count = num(ds, TAG.NumberOfFrames) ?? 1;
  const type = str(ds, '00620001') ?? 'BINARY';
  const bitsAllocated = num(ds, TAG.BitsAllocated) ?? 1;
  const pixels = rows * columns;
  const data = segPixelData(ds, transferSyntaxUID, count, pixels, bitsAllocated);
  if ((bitsAllocated === 1 ? Math.ceil((pixels * count) / 8) : pixels * count) > data.length) {
    throw new LdfsamError(
      'SEG_INVALID',
      `pixel data holds ${data.length} bytes, too few for ${count} frames of ${rows}x${columns}`,
    );
  }
  const maxFractional = num(ds, '00620010') ?? 255;
  const shared = seq(ds, TAG.SharedFunctionalGroupsSequence)[0];
  const perFrame = seq(ds, TAG.PerFrameFunctionalGroupsSequence);
  const frames: SegFrameRead[] = [];
  for (let f = 0; f < count; f++) {
    let mask: Uint8Array;
    if (bitsAllocated === 1) mask = unpackBits(data, f * pixels, pixels);
    else {
      const half = type === 'FRACTIONAL' ? maxFractional / 2 : 0;
      mask = new Uint8Array(pixels);
      for (let i = 0; i < pixels; i++) mask[i] = data[f * pixels + i]! > half ? 1 : 0;
    }
    const groups = perFrame[f];
    const source = seq(functionalGroup(groups, shared, '00089124'), '00082112')[0]; // Derivation Image -> Source Image
    const segmentItem = functionalGroup(groups, shared, '0062000A');
    const position = nums(functionalGroup(groups, shared, TAG.PlanePositionSequence), TAG.ImagePositionPatient);
    frames.push({
      frameNumber: f + 1,
      segmentNumber: num(segmentItem, '0062000B') ?? 1,
      referencedSOPInstanceUID: str(source, '00081155'),
      referencedFrameNumber: num(source, '00081160'),
      position: position?.length === 3 ? (position as Vec3) : undefined,
      mask,
    });
  }
  return {
    sopInstanceUID: str(ds, TAG.SOPInstanceUID) ?? '',
    seriesInstanceUID: str(ds, TAG.SeriesInstanceUID) ?? '',
    segmentationType: type,
    rows,
    columns,
    segments: seq(ds, '00620002').map((s) => ({
      number: num(s, '00620004') ?? 0,
      label: str(s, '00620005') ?? '',
      category: codeOf(seq(s, '00620003')[0]),
      type: codeOf(seq(s, '0062000F')[0]),
      algorithmType: str(s, '00620008'),
    })),
    frames,
    referencedSeriesInstanceUIDs: seq(ds, '00081115').map((r) => str(r, TAG.SeriesInstanceUID) ?? ''),
  };
}

/**
 * All frames as one native buffer (bit stream for BINARY). RLE frames are decoded one by one; each
 * encapsulated 1-bit frame starts on a byte boundary, so they are re-packed into one stream.
 */
function segPixelData(
  ds: DicomJson,
  transferSyntaxUID: string | undefined,
  count: number,
  pixels: number,
  bitsAllocated: number,
): Uint8Array {
  const values = ds[TAG.PixelData]?.Value;
  if (!values || values.length === 0) throw new LdfsamError('SEG_INVALID', 'the SEG has no pixel data');
  if (!transferSyntaxUID || NATIVE_SYNTAXES.has(transferSyntaxUID)) return new Uint8Array(values[0] as ArrayBuffer);
  if (transferSyntaxUID !== TS.Rle || values.length !== count) {
    throw new LdfsamError(
      'SEG_INVALID',
      `SEG pixel data in ${transferSyntaxUID} with ${values.length} fragment(s) for ${count} frame(s) is not supported`,
    );
  }
  const frameBytes = bitsAllocated === 1 ? Math.ceil(pixels / 8) : pixels;
  const frames = values.map((v) => decodeRle(new Uint8Array(v as ArrayBuffer), 1, frameBytes, 1, 1));
  return bitsAllocated === 1 ? concatFrames(frames, pixels) : Buffer.concat(frames);
}

/**
 * The source slice (index into plan.slices) of every SEG frame: by reference when the frame names
 * its source, else by position along the source's normal (within 0.01 mm); undefined when neither.
 */
export function placeFrames(seg: SegRead, plan: SeriesPlan): (number | undefined)[] {
  const byRef = new Map(plan.slices.map((s) => [`${s.sopInstanceUID}#${s.numberOfFrames > 1 ? s.frameNumber : 1}`, s.index]));
  return seg.frames.map((f) => {
    if (f.referencedSOPInstanceUID) {
      const hit = byRef.get(`${f.referencedSOPInstanceUID}#${f.referencedFrameNumber ?? 1}`);
      if (hit !== undefined) return hit;
    }
    if (f.position && plan.normal) {
      const d = dot(f.position, plan.normal);
      const slice = plan.slices.find((s) => s.position && Math.abs(dot(s.position, plan.normal!) - d) < 0.01);
      return slice?.index;
    }
    return undefined;
  });
}
