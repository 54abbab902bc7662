/**
 * Whether the model's structure is on a slice, as the manifest's postprocessing.presence says: a
 * logistic score sigmoid(bias + weights . features) over the per-slice features the graph outputs
 * (e.g. detector score, predicted IoU, mask area, mask confidence, distance from the training
 * images), calibrated on validation data with negatives (models/ldfsam_models/presence.py); a slice
 * with a feature above its `featureMax` scores 0 whatever the sum (an image unlike every training
 * image). A slice scoring below the threshold gets no frame. Pure functions; the words users read
 * about the outcome are made here too.
 */
import { LdfsamError } from '../errors.js';
import type { ModelManifest, PresenceSpec } from '../models/manifest.js';

/**
 * One score per row of a (batch, features) output, in batch order; `beyond`: the rows'
 * beyondTraining(), when the caller has it already.
 */
export function presenceScores(
  spec: PresenceSpec,
  output: { data: Float32Array; dims: readonly number[] },
  batch: number,
  beyond: boolean[] = beyondTraining(spec, output, batch),
): number[] {
  const n = spec.features.length;
  const scores: number[] = [];
  for (let b = 0; b < batch; b++) {
    if (beyond[b]) {
      scores.push(0);
      continue;
    }
    let z = spec.bias;
    for (let f = 0; f < n; f++) z += spec.weights[f]! * output.data[b * n + f]!;
    scores.push(1 / (1 + Math.exp(-z)));
  }
  return scores;
}

/**
 * Per row: whether a feature lies above its `featureMax` (the slice is unlike every image the model
 * was trained on; it scores 0). NaN counts as beyond: a feature that cannot be computed does not let
 * a slice through.
 */
export function beyondTraining(
  spec: PresenceSpec,
  output: { data: Float32Array; dims: readonly number[] },
  batch: number,
): boolean[] {
  const n = spec.features.length;
  if (output.dims.length !== 2 || output.dims[0] !== batch || output.dims[1] !== n) {
    throw new LdfsamError(
      'INFERENCE_FAILED',
      `the model's ${spec.output} is [${output.dims.join(', ')}], expected [${batch}, ${n}] (${spec.features.join(', ')})`,
    );
  }
  const limits = Object.entries(spec.featureMax ?? {}).map(([name, max]) => [spec.features.indexOf(name), max] as const);
  return Array.from({ length: batch }, (_, b) => limits.some(([f, max]) => !(output.data[b * n + f]! <= max)));
}

/** Scores as reported (job result, CLI): 4 decimals. Decisions use the exact score. */
export function roundScore(score: number): number {
  return Math.round(score * 1e4) / 1e4;
}

/** "fetal head", "Skin lesion" -> "skin lesion"; an acronym ("CT", "LV wall") stays as it is. */
function structureName(manifest: Pick<ModelManifest, 'segments'>): string {
  return manifest.segments
    .map((s) => (/^[A-Z]{2}/.test(s.label) ? s.label : s.label.charAt(0).toLowerCase() + s.label.slice(1)))
    .join(' or ');
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** What a run found, in words for people (CLI, API, panel). */
export function outcomeMessage(
  manifest: Pick<ModelManifest, 'segments'>,
  outcome: {
    slices: number;
    slicesFound: number;
    scores: number[] | null;
    threshold: number | null;
    foundScores: number[];
    /** An empty SEG was stored anyway (--store-empty). */
    storedEmpty: boolean;
    /** Slices beyond a featureMax (unlike every training image); 0 or absent for none. */
    unlikeTraining?: number;
  },
): string {
  const name = structureName(manifest);
  const { slices, slicesFound, scores, threshold } = outcome;
  if (slicesFound === 0) {
    const why =
      scores && threshold !== null
        ? `${slices === 1 ? 'the slice did not reach' : `none of the ${slices} slices reached`} the presence threshold ${threshold.toFixed(2)} (highest score ${scores.reduce((a, b) => Math.max(a, b), 0).toFixed(2)}${unlikeWords(slices, outcome.unlikeTraining ?? 0)})`
        : `the model segmented nothing on ${slices === 1 ? 'the slice' : `any of the ${slices} slices`}`;
    const stored = outcome.storedEmpty ? 'an empty segmentation was stored as asked' : 'nothing was stored';
    return `No ${name} found: ${why}; ${stored}.`;
  }
  const Name = name.charAt(0).toUpperCase() + name.slice(1);
  const where = `${Name} found on ${slicesFound} of ${plural(slices, 'slice')}`;
  const found = outcome.foundScores;
  const confidence =
    found.length > 0 && threshold !== null ? ` (presence score ${scoreRange(found)}, threshold ${threshold.toFixed(2)})` : '';
  return `${where}${confidence}.`;
}

/** "; the slice is unlike ...", "; 3 of the 5 slices are unlike ...": why scores are 0, when they are. */
function unlikeWords(slices: number, unlike: number): string {
  if (unlike === 0) return '';
  const which =
    slices === 1 ? 'the slice is' : unlike === slices ? `all ${slices} slices are` : `${unlike} of the ${slices} slices are`;
  return `; ${which} unlike every image the model was trained on`;
}

/** "0.74" or "0.74–0.99": the range of the scores of the slices found. */
export function scoreRange(scores: number[]): string {
  const lo = scores.reduce((a, b) => Math.min(a, b), 1).toFixed(2);
  const hi = scores.reduce((a, b) => Math.max(a, b), 0).toFixed(2);
  return lo === hi ? lo : `${lo}–${hi}`;
}
