/**
 * Accepting a structure: the chosen slices' masks (the session's own, or edited ones the client
 * sends back) become one DICOM SEG instance with one segment - the user's label and codes,
 * SEMIAUTOMATIC, the model's name and version as the algorithm - stored by STOW-RS and read back as
 * the auto path does.
 *
 * Several structures on one series: every accept adds one instance (one segment each) to one SEG
 * series per source series, "LDFSAM interactive" (its UID derived from the source series). Nothing
 * already stored is rewritten: two users accepting at once cannot lose each other's work, and each
 * structure can be shown, hidden or deleted on its own. The same structure accepted twice (same
 * masks, label and codes) is the same instance, which the PACS keeps once.
 */
import { createHash } from 'node:crypto';
import type { DicomWebClient } from '../dicomweb/client.js';
import { LdfsamError } from '../errors.js';
import { storeSegmentation } from '../pipeline/segment.js';
import { isEmpty } from '../seg/bits.js';
import { rgbToDicomLab } from '../seg/colour.js';
import { uidFrom } from '../util/uid.js';
import { buildSegmentation, type SegFrame } from '../seg/writer.js';
import { packageVersion } from '../util/paths.js';
import type { InteractiveSession } from './session.js';

export interface Code {
  scheme: string;
  code: string;
  meaning: string;
}

export interface AcceptRequest {
  label: string;
  /** Default SCT 91723000 "Anatomical Structure". */
  category?: Code;
  /** Default: a local code of the label (scheme 99LDFSAM). */
  type?: Code;
  color?: [number, number, number];
  /** The slices to keep; `bits` (base64, packed as the prompt answers) replaces the session's mask of that slice. */
  slices: { slice: number; bits?: string }[];
}

export interface AcceptResult {
  segSeriesInstanceUID: string;
  segSopInstanceUID: string;
  instanceNumber: number;
  frames: number;
  slices: number[];
  timingsMs: Record<string, number>;
}

export const ANATOMICAL_STRUCTURE: Code = { scheme: 'SCT', code: '91723000', meaning: 'Anatomical Structure' };
export const LOCAL_SCHEME = '99LDFSAM';
const DEFAULT_COLOR: [number, number, number] = [0, 158, 115];
/** Series Number of the interactive SEG series (the auto path writes 9001). */
const SERIES_NUMBER = 9002;

/** A free-text label's local code: the same label (case and spaces aside) always gets the same code. */
export function localCode(label: string): Code {
  const key = label.trim().toLowerCase().replace(/\s+/g, ' ');
  return {
    scheme: LOCAL_SCHEME,
    code: `L${createHash('sha256').update(key).digest('hex').slice(0, 10).toUpperCase()}`,
    meaning: label.trim(),
  };
}

/** The SEG series that holds every structure accepted on a source series. */
export function interactiveSegSeriesUid(sourceSeriesInstanceUID: string): string {
  return uidFrom('ldfsam-interactive-seg-series', sourceSeriesInstanceUID);
}

/** The frames to write: checked slices, edited bits decoded and size-checked, empty masks left out. */
export function acceptedFrames(session: InteractiveSession, slices: AcceptRequest['slices']): SegFrame[] {
  const { rows, columns } = session.plan;
  const bytes = Math.ceil((rows * columns) / 8);
  const seen = new Set<number>();
  const frames: SegFrame[] = [];
  for (const { slice, bits } of slices) {
    session.checkSlice(slice);
    if (seen.has(slice)) throw new LdfsamError('INVALID_INPUT', `slice ${slice} is listed twice`);
    seen.add(slice);
    let mask: Uint8Array;
    if (bits !== undefined) {
      mask = Buffer.from(bits, 'base64');
      if (mask.length !== bytes)
        throw new LdfsamError(
          'INVALID_INPUT',
          `the bits of slice ${slice} are ${mask.length} bytes; a ${columns} x ${rows} mask is ${bytes}`,
        );
    } else {
      const kept = session.masks.get(slice);
      if (!kept)
        throw new LdfsamError('INVALID_INPUT', `slice ${slice} has no mask in this session: prompt it, or send its bits`);
      mask = kept.bits;
    }
    if (!isEmpty(mask)) frames.push({ sliceIndex: slice, segmentNumber: 1, bits: mask });
  }
  if (frames.length === 0) throw new LdfsamError('INVALID_INPUT', 'every mask to accept is empty: nothing to store');
  return frames;
}

export async function acceptStructure(
  client: DicomWebClient,
  session: InteractiveSession,
  request: AcceptRequest,
): Promise<AcceptResult> {
  const t0 = performance.now();
  const frames = acceptedFrames(session, request.slices);
  const label = request.label.trim();
  const type = request.type ?? localCode(label);
  const category = request.category ?? ANATOMICAL_STRUCTURE;
  const { plan, manifest } = { plan: session.plan, manifest: session.manifest };
  const seriesInstanceUID = interactiveSegSeriesUid(plan.seriesInstanceUID);
  const existing = await client.searchForInstances({ studyInstanceUID: plan.studyInstanceUID, seriesInstanceUID });
  const segment = { number: 1, label, category, type, color: { cielab: rgbToDicomLab(request.color ?? DEFAULT_COLOR) } };
  const seg = buildSegmentation({
    plan,
    sourceInstance: session.sourceInstance,
    frames,
    model: { name: manifest.name, version: manifest.version, segments: [segment] },
    softwareVersion: packageVersion(),
    algorithmType: 'SEMIAUTOMATIC',
    seriesInstanceUID,
    seriesNumber: SERIES_NUMBER,
    seriesDescription: 'LDFSAM interactive',
    contentDescription: `${label}: prompted segmentation by ${manifest.name} ${manifest.version}`,
    instanceNumber: existing.length + 1,
    contentKey: JSON.stringify([label, category, type, segment.color]), // a new colour is a new instance, not a repeat
  });
  const t1 = performance.now();
  const stored = await storeSegmentation(client, plan.studyInstanceUID, {
    bytes: seg.bytes,
    seriesInstanceUID,
    sopInstanceUID: seg.sopInstanceUID,
    frames: seg.framesWritten,
  });
  return {
    segSeriesInstanceUID: seriesInstanceUID,
    segSopInstanceUID: seg.sopInstanceUID,
    instanceNumber: existing.length + 1,
    frames: seg.framesWritten,
    slices: frames.map((f) => f.sliceIndex).sort((a, b) => a - b),
    timingsMs: { encode: t1 - t0, ...stored },
  };
}
