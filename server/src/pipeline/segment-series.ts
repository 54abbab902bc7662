/**
 * The slice pipeline: slices stream in (fetched and decoded ahead by the reader), are preprocessed
 * into a batch, inferred in the worker thread while the next slices are fetched and decoded, and
 * post-processed to bit-packed masks on the source grid. Memory: the reader's lookahead, one batch,
 * and the bit-packed masks (1 bit per voxel per segment).
 */
import type { Slice } from '../dicom/series-reader.js';
import type { SeriesPlan } from '../dicom/series-plan.js';
import { LdfsamError } from '../errors.js';
import type { InferenceWorker } from '../inference/inference-worker.js';
import type { ModelManifest } from '../models/manifest.js';
import { logitsToBits } from './postprocess.js';
import { fittedSize, preprocessSlice } from './preprocess.js';
import { beyondTraining, presenceScores } from './presence.js';

export type Stage = 'fetch' | 'preprocess' | 'infer' | 'postprocess';

export interface Progress {
  stage: Stage;
  done: number;
  total: number;
}

export interface SeriesMasks {
  /** masks[segment - 1][sliceIndex]: rows x columns bits. */
  masks: Uint8Array[][];
  /** scores[sliceIndex]: the presence score, when the manifest has postprocessing.presence; else null. */
  scores: number[] | null;
  /** Slices that scored 0 for lying beyond a presence featureMax (unlike every training image). */
  unlikeTraining: number;
  timingsMs: Record<Stage, number>;
}

/** What the slice pipeline needs of a series: a DICOM plan, or a volume seen slice by slice. */
export type SliceSource = Pick<SeriesPlan, 'rows' | 'columns' | 'modality'> & { slices: { length: number } };
export type SourceSlice = Pick<Slice, 'pixels'> & { plan: { index: number } };

export async function segmentSlices(
  slices: AsyncIterable<SourceSlice>,
  plan: SliceSource,
  manifest: ModelManifest,
  worker: InferenceWorker,
  options: { batchSize?: number; signal?: AbortSignal; onProgress?: (p: Progress) => void } = {},
): Promise<SeriesMasks> {
  const size = manifest.preprocessing.inputSize;
  const plane = 3 * size * size;
  const batchSize = Math.max(1, options.batchSize ?? 1);
  const output = manifest.postprocessing.output;
  const segments = manifest.segments.length;
  const fitted = fittedSize(plan.rows, plan.columns, manifest);
  const masks: Uint8Array[][] = manifest.segments.map(() => new Array<Uint8Array>(plan.slices.length));
  const presence = manifest.postprocessing.presence;
  const scores: number[] | null = presence ? new Array<number>(plan.slices.length) : null;
  const sliceBytes = Math.ceil((plan.rows * plan.columns) / 8);
  const timingsMs: Record<Stage, number> = { fetch: 0, preprocess: 0, infer: 0, postprocess: 0 };
  const total = plan.slices.length;
  let done = 0;
  let unlikeTraining = 0;
  let inflight: Promise<void> | undefined;

  const runBatch = async (batch: SourceSlice['plan'][], input: Float32Array) => {
    const t0 = performance.now();
    const outputs = await worker.run(input, [batch.length, 3, size, size]);
    timingsMs.infer += performance.now() - t0;
    const logits = outputs[output];
    if (!logits) throw new LdfsamError('INFERENCE_FAILED', `the model gave no output named ${output}`);
    const channels = logits.dims[1] ?? 1;
    if (channels !== segments)
      throw new LdfsamError('INFERENCE_FAILED', `the model gave ${channels} channel(s) for ${segments} segment(s)`);
    const t1 = performance.now();
    let passed: boolean[] | undefined;
    if (presence) {
      const features = outputs[presence.output];
      if (!features) throw new LdfsamError('INFERENCE_FAILED', `the model gave no output named ${presence.output}`);
      const beyond = beyondTraining(presence, features, batch.length);
      const batchScores = presenceScores(presence, features, batch.length, beyond);
      batchScores.forEach((score, b) => (scores![batch[b]!.index] = score));
      passed = batchScores.map((score) => score >= presence.threshold);
      unlikeTraining += beyond.filter(Boolean).length;
    }
    for (let b = 0; b < batch.length; b++) {
      const slice = batch[b]!;
      for (let s = 0; s < segments; s++) {
        if (passed && !passed[b]) {
          // Below the presence threshold: no mask, whatever the logits say.
          masks[s]![slice.index] = new Uint8Array(sliceBytes);
          continue;
        }
        const offset = (b * channels + s) * size * size;
        masks[s]![slice.index] = logitsToBits(
          logits.data.subarray(offset, offset + size * size),
          size,
          plan.rows,
          plan.columns,
          manifest.postprocessing.threshold,
          fitted,
        );
      }
    }
    timingsMs.postprocess += performance.now() - t1;
    done += batch.length;
    options.onProgress?.({ stage: 'infer', done, total });
  };

  // The batch keeps the slices' plans only: a frame's pixels (1.3 MB at 820x820, a Buffer) are let go
  // once preprocessed, not held until the batch's inference ends. Frames held that long outlived two
  // young-generation collections and were promoted, and old-generation Buffers cost major collections.
  let batch: SourceSlice['plan'][] = [];
  // A finished batch's input comes back from the worker and is refilled (preprocessSlice writes every
  // value of a slice's part, padding included), so after two batches none is allocated.
  const newInput = () => worker.takeInput?.(batchSize * plane) ?? new Float32Array(batchSize * plane);
  let input = newInput();
  const iterator = slices[Symbol.asyncIterator]();
  for (;;) {
    if (options.signal?.aborted) throw new LdfsamError('CANCELLED', 'segmentation cancelled');
    const t0 = performance.now();
    const next = await iterator.next();
    timingsMs.fetch += performance.now() - t0;
    if (!next.done) {
      const slice = next.value;
      const t1 = performance.now();
      preprocessSlice(
        slice.pixels,
        plan.rows,
        plan.columns,
        manifest,
        plan.modality,
        input.subarray(batch.length * plane, (batch.length + 1) * plane),
      );
      timingsMs.preprocess += performance.now() - t1;
      batch.push(slice.plan);
    }
    if (batch.length === batchSize || (next.done && batch.length > 0)) {
      // One batch in the worker at a time; the loop goes back to fetching the next ones meanwhile.
      await inflight;
      const full = batch;
      // A short last batch is a view of the same buffer (transferred whole to the worker, not copied).
      const data = batch.length === batchSize ? input : input.subarray(0, batch.length * plane);
      inflight = runBatch(full, data);
      inflight.catch(() => undefined);
      batch = [];
      input = newInput();
    }
    if (next.done) break;
  }
  await inflight;
  return { masks, scores, unlikeTraining, timingsMs };
}
