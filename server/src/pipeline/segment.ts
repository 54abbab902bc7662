/**
 * One segmentation job, end to end: plan the series, check the model accepts it (and, for an
 * RTSTRUCT, that the series has patient coordinates), run the slice pipeline, optional 3D clean-up,
 * write the SEG (empty frames left out) and/or the RTSTRUCT, store them where the configuration
 * says (store-results.ts), and report per-stage times. Nothing is stored when a step before storing
 * fails.
 */
import type { DicomWebClient } from '../dicomweb/client.js';
import type { DicomJson } from '../dicomweb/types.js';
import { loadSeries } from '../dicom/inspect.js';
import { readSeriesSlices, type Slice } from '../dicom/series-reader.js';
import type { SeriesPlan } from '../dicom/series-plan.js';
import { LdfsamError } from '../errors.js';
import { DEFAULT_BATCH_SIZE } from '../inference/providers.js';
import { autoRefusal, type ModelRegistry, type RegisteredModel } from '../inference/registry.js';
import type { ModelManifest } from '../models/manifest.js';
import { isEmpty } from '../seg/bits.js';
import { buildRtStruct, rtstructUnsupported } from '../seg/rtstruct.js';
import { buildSegmentation, type SegFrame } from '../seg/writer.js';
import { packageVersion } from '../util/paths.js';
import { dropSmallComponents, fillHoles, fitEllipse, keepLargestComponent } from './cleanup.js';
import { outcomeMessage, roundScore } from './presence.js';
import { segmentSlices, type Progress } from './segment-series.js';
import { storeResults, type ResultObject, type StoreTargets } from './store-results.js';

/** Which results a run writes: DICOM SEG (the default), RT Structure Set, or both. */
export type OutputFormat = 'seg' | 'rtstruct' | 'both';
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['seg', 'rtstruct', 'both'];

export interface SegmentResult {
  /**
   * stored / written: a SEG was stored (PACS) or made (files); empty: the model segmented nothing
   * (a model without a presence gate); not-found: no slice passed the model's presence gate. Both
   * store nothing; with storeEmpty one empty frame is stored (status stored / written, slicesFound 0).
   */
  status: 'stored' | 'empty' | 'not-found' | 'written';
  sourceStudyInstanceUID: string;
  sourceSeriesInstanceUID: string;
  modality: string;
  model: { name: string; version: string };
  slices: number;
  /** Non-empty frames written (0 when every frame was empty and nothing was stored). */
  frames: number;
  /** Slices with at least one frame in the SEG (for a gated model: slices that passed and kept a mask). */
  slicesFound: number;
  /** Per slice (processing order) the presence score, 4 decimals; null for a model without presence. */
  scores: number[] | null;
  presenceThreshold: number | null;
  /** Mean presence score of the slices found; null when none was found or the model has no presence. */
  confidence: number | null;
  /** Slices that scored 0 for lying beyond the presence gate's featureMax: unlike every image the model was trained on. */
  slicesUnlikeTraining: number;
  /** The outcome in words ("Fetal head found on 1 of 1 slice (...)", "No fetal head found: ..."). */
  message: string;
  segments: { number: number; label: string; frames: number }[];
  segSeriesInstanceUID?: string;
  segSopInstanceUID?: string;
  rtstructSeriesInstanceUID?: string;
  rtstructSopInstanceUID?: string;
  /** Contours per ROI of the RTSTRUCT. */
  rtstructRois?: { number: number; label: string; contours: number; points: number }[];
  outputs: OutputFormat;
  /** Where the results were stored ('stow', 'dimse:AET@host:port'). */
  storedIn?: string[];
  /** What the user should know about the result (e.g. why no RTSTRUCT was written). */
  notes: string[];
  removedVoxels: number;
  /** Per stage; stages overlap (inference runs while the next slices are fetched), so they do not add up. */
  timingsMs: Record<string, number>;
  /** Wall time of the whole series, plan to verify (PACS mode). */
  elapsedMs?: number;
  segBytes?: Uint8Array;
  /** masks[segment - 1][sliceIndex] after the clean-ups (rows x columns bits), with `keepMasks` only. */
  masks?: Uint8Array[][];
  rtstructBytes?: Uint8Array;
}

export interface SegmentOptions {
  /** Slices per inference call; default: the provider's (inference/providers.ts). */
  batchSize?: number;
  minComponentVoxels?: number;
  /** Store (or write) a SEG even when every frame is empty (one empty frame); an RTSTRUCT then has ROIs without contours. */
  storeEmpty?: boolean;
  /** Default seg. */
  outputs?: OutputFormat;
  /** RTSTRUCT contour simplification, pixels (below 0.5; 0 = pixel edges, exact). */
  rtstructTolerance?: number;
  /** Where segmentSeries stores; default STOW-RS to the PACS it read from. */
  store?: StoreTargets;
  signal?: AbortSignal;
  /** Return the masks in the result (the MONAI Label API turns them into a label volume). */
  keepMasks?: boolean;
  onProgress?: (p: Progress | { stage: 'plan' | 'encode' | 'store' | 'verify'; done: number; total: number }) => void;
}

/** Runs the model over prepared slices and builds the SEG; shared by the PACS and the file paths. */
export async function segmentPlan(
  plan: SeriesPlan,
  sourceInstance: DicomJson,
  slices: AsyncIterable<Slice>,
  registry: ModelRegistry,
  model: RegisteredModel,
  options: SegmentOptions,
): Promise<SegmentResult> {
  const { manifest } = model;
  const refusal = autoRefusal(manifest, plan.modality);
  if (refusal) throw new LdfsamError('INVALID_INPUT', refusal);
  const outputs = options.outputs ?? 'seg';
  const notes: string[] = [];
  const noRtstruct = outputs === 'seg' ? undefined : rtstructUnsupported(plan);
  // Before any inference: an RTSTRUCT alone is impossible without patient coordinates.
  if (noRtstruct && outputs === 'rtstruct') throw new LdfsamError('INVALID_INPUT', noRtstruct);
  if (noRtstruct) notes.push(`no RTSTRUCT: ${noRtstruct}`);
  const worker = await registry.worker(model);
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE[registry.provider];
  const { masks, scores, unlikeTraining, timingsMs } = await segmentSlices(slices, plan, manifest, worker, {
    ...options,
    batchSize,
  });
  const timings: Record<string, number> = { ...timingsMs };
  const t0 = performance.now();
  const removedVoxels = cleanUp(masks, scores, plan, manifest, options.minComponentVoxels);
  timings.cleanup = performance.now() - t0;

  const frames: SegFrame[] = [];
  masks.forEach((perSlice, s) =>
    perSlice.forEach((bits, sliceIndex) => {
      if (!isEmpty(bits)) frames.push({ sliceIndex, segmentNumber: s + 1, bits, score: scores?.[sliceIndex] });
    }),
  );
  const found = [...new Set(frames.map((f) => f.sliceIndex))];
  const threshold = manifest.postprocessing.presence?.threshold ?? null;
  const foundScores = scores ? found.map((i) => scores[i]!) : [];
  const storedEmpty = frames.length === 0 && options.storeEmpty === true;
  const result: SegmentResult = {
    status: scores ? 'not-found' : 'empty', // until a SEG is built
    sourceStudyInstanceUID: plan.studyInstanceUID,
    sourceSeriesInstanceUID: plan.seriesInstanceUID,
    modality: plan.modality,
    model: { name: manifest.name, version: manifest.version },
    slices: plan.slices.length,
    frames: frames.length,
    slicesFound: found.length,
    scores: scores ? scores.map(roundScore) : null,
    presenceThreshold: threshold,
    confidence: foundScores.length > 0 ? roundScore(foundScores.reduce((a, b) => a + b, 0) / foundScores.length) : null,
    slicesUnlikeTraining: unlikeTraining,
    message: outcomeMessage(manifest, {
      slices: plan.slices.length,
      slicesFound: found.length,
      scores,
      threshold,
      foundScores,
      storedEmpty,
      unlikeTraining,
    }),
    segments: manifest.segments.map((s) => ({
      number: s.number,
      label: s.label,
      frames: frames.filter((f) => f.segmentNumber === s.number).length,
    })),
    outputs,
    notes,
    removedVoxels,
    timingsMs: timings,
    ...(options.keepMasks ? { masks } : {}),
  };
  if (frames.length === 0 && !options.storeEmpty) return result;
  const t1 = performance.now();
  options.onProgress?.({ stage: 'encode', done: 0, total: 1 });
  Object.assign(
    result,
    encodeResults(plan, sourceInstance, masks, frames, manifest, {
      outputs,
      rtstruct: !noRtstruct,
      tolerance: options.rtstructTolerance,
      scores,
      presenceThreshold: threshold,
    }),
  );
  timings.encode = performance.now() - t1;
  return { ...result, status: 'written' };
}

/** The SEG (empty frames left out; one empty frame when there are none) and/or the RTSTRUCT of the masks. */
function encodeResults(
  plan: SeriesPlan,
  sourceInstance: DicomJson,
  masks: Uint8Array[][],
  frames: SegFrame[],
  manifest: RegisteredModel['manifest'],
  what: {
    outputs: OutputFormat;
    rtstruct: boolean;
    tolerance?: number;
    scores: number[] | null;
    presenceThreshold: number | null;
  },
): Partial<SegmentResult> {
  const { outputs } = what;
  const out: Partial<SegmentResult> = {};
  if (outputs !== 'rtstruct') {
    const segFrames =
      frames.length > 0 ? frames : [{ sliceIndex: 0, segmentNumber: 1, bits: masks[0]![0]!, score: what.scores?.[0] }];
    const seg = buildSegmentation({
      plan,
      sourceInstance,
      frames: segFrames,
      model: manifest,
      softwareVersion: packageVersion(),
      presenceThreshold: what.presenceThreshold ?? undefined,
    });
    Object.assign(out, {
      frames: segFrames.length,
      segSeriesInstanceUID: seg.seriesInstanceUID,
      segSopInstanceUID: seg.sopInstanceUID,
      segBytes: seg.bytes,
    });
  }
  if (outputs !== 'seg' && what.rtstruct) {
    const nonEmpty = masks.map((perSlice) => perSlice.map((bits) => (isEmpty(bits) ? undefined : bits)));
    const rt = buildRtStruct({
      plan,
      sourceInstance,
      masks: nonEmpty,
      model: manifest,
      softwareVersion: packageVersion(),
      tolerance: what.tolerance,
    });
    Object.assign(out, {
      rtstructSeriesInstanceUID: rt.seriesInstanceUID,
      rtstructSopInstanceUID: rt.sopInstanceUID,
      rtstructRois: rt.rois,
      rtstructBytes: rt.bytes,
    });
  }
  return out;
}

/**
 * The manifest's clean-ups, in its order: component clean-up first (a stray blob must not win
 * "largest"), then holes, then the ellipse (its moments must not see blobs or holes). With a presence
 * gate the per-slice ones run only on the slices that passed (the 3D ones see gated slices empty), so
 * no clean-up can put a mask on a slice the gate emptied. Returns the voxels the component steps removed.
 */
function cleanUp(
  masks: Uint8Array[][],
  scores: number[] | null,
  plan: SeriesPlan,
  manifest: ModelManifest,
  minComponentVoxels: number | undefined,
): number {
  const post = manifest.postprocessing;
  const minVoxels = minComponentVoxels ?? post.minComponentVoxels ?? 0;
  const threshold = post.presence?.threshold ?? 0;
  let removed = 0;
  for (const seg of masks) {
    if (minVoxels > 1) removed += dropSmallComponents(seg, plan.rows, plan.columns, minVoxels);
    if (post.largestComponentOnly) removed += keepLargestComponent(seg, plan.rows, plan.columns);
    const passed = scores ? seg.filter((_, i) => scores[i]! >= threshold) : seg;
    if (post.fillHoles) fillHoles(passed, plan.rows, plan.columns);
    if (post.fitEllipse) fitEllipse(passed, plan.rows, plan.columns);
  }
  return removed;
}

/** Segments one series of the PACS and stores the results (SEG, RTSTRUCT) where `options.store` says. */
export async function segmentSeries(
  client: DicomWebClient,
  registry: ModelRegistry,
  request: { studyInstanceUID: string; seriesInstanceUID: string; model?: string },
  options: SegmentOptions = {},
): Promise<SegmentResult> {
  const t0 = performance.now();
  options.onProgress?.({ stage: 'plan', done: 0, total: 1 });
  const named = request.model ? await registry.resolve(request.model) : undefined; // fail fast on an unknown model
  const { plan, metadata } = await loadSeries(client, request, options.signal);
  const model = named ?? registry.forModality(plan.modality);
  if (!model) throw new LdfsamError('NOT_FOUND', `no registered model accepts modality ${plan.modality}; name one with --model`);
  const sourceInstance = metadata.find((m) => m['00080018']?.Value?.[0] === plan.slices[0]!.sopInstanceUID) ?? metadata[0]!;
  const planMs = performance.now() - t0;
  const result = await segmentPlan(
    plan,
    sourceInstance,
    readSeriesSlices(client, plan, { signal: options.signal }),
    registry,
    model,
    options,
  );
  result.timingsMs = { plan: planMs, ...result.timingsMs };
  if (result.status !== 'written') return result;
  if (options.signal?.aborted) throw new LdfsamError('CANCELLED', 'segmentation cancelled before the results were stored');

  const objects: ResultObject[] = [];
  if (result.segBytes)
    objects.push({
      kind: 'SEG',
      bytes: result.segBytes,
      seriesInstanceUID: result.segSeriesInstanceUID!,
      sopInstanceUID: result.segSopInstanceUID!,
      frames: result.frames,
    });
  if (result.rtstructBytes)
    objects.push({
      kind: 'RTSTRUCT',
      bytes: result.rtstructBytes,
      seriesInstanceUID: result.rtstructSeriesInstanceUID!,
      sopInstanceUID: result.rtstructSopInstanceUID!,
    });
  const { storedIn, timingsMs } = await storeResults(client, plan.studyInstanceUID, objects, options.store ?? { stow: true }, {
    signal: options.signal,
    onStage: (stage) => options.onProgress?.({ stage, done: 0, total: 1 }),
  });
  Object.assign(result.timingsMs, timingsMs);
  return {
    ...result,
    status: 'stored',
    storedIn,
    segBytes: undefined,
    rtstructBytes: undefined,
    elapsedMs: performance.now() - t0,
  };
}

/**
 * Stores a SEG through STOW-RS, then reads its series' metadata back and requires the instance with
 * the SEG SOP class and its frame count (store-results.ts): what the PACS holds is ours, whole.
 * Interactive accepts use it. Returns the time of each step.
 */
export async function storeSegmentation(
  client: DicomWebClient,
  studyInstanceUID: string,
  seg: { bytes: Uint8Array; seriesInstanceUID: string; sopInstanceUID: string; frames: number },
  options: { signal?: AbortSignal; onStage?: (stage: 'store' | 'verify') => void } = {},
): Promise<{ store: number; verify: number }> {
  const { timingsMs } = await storeResults(client, studyInstanceUID, [{ kind: 'SEG', ...seg }], { stow: true }, options);
  return { store: timingsMs.store ?? 0, verify: timingsMs.verify ?? 0 };
}
