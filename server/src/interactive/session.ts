/**
 * One interactive session: a planned series, a promptable model, and the latest mask per slice.
 * A slice is fetched from the PACS and encoded (on the model's inference worker thread) the first
 * time it is prompted; its encoder outputs go into the shared embedding cache, so later prompts on it
 * run only the decoder. Masks are kept as packed bits (as DICOM SEG packs them).
 */
import { randomUUID } from 'node:crypto';
import type { DicomWebClient } from '../dicomweb/client.js';
import type { DicomJson } from '../dicomweb/types.js';
import { readSeriesSlices } from '../dicom/series-reader.js';
import type { SeriesPlan } from '../dicom/series-plan.js';
import { LdfsamError } from '../errors.js';
import type { InferenceWorker, Outputs } from '../inference/inference-worker.js';
import type { RegisteredModel } from '../inference/registry.js';
import { logitsToBits } from '../pipeline/postprocess.js';
import { fittedSize, preprocessSlice } from '../pipeline/preprocess.js';
import type { EmbeddingCache } from './embedding-cache.js';
import { decoderFeeds, promptTensors, type Prompt } from './prompts.js';

export interface SliceMask {
  bits: Uint8Array;
  iou: number | null;
}

export interface PromptResult extends SliceMask {
  slice: number;
  /** The slice's encoder outputs were in the cache (only the decoder ran). */
  cached: boolean;
  usedPreviousMask: boolean;
  /** The decoder's logits (input frame): the next step's mask input. */
  logits: Float32Array;
  /**
   * fetch, preprocess, encode (absent when cached), decode (feeds and the worker round trip),
   * decoderRun (the part of decode inside the worker: tensors and session.run), postprocess.
   */
  timingsMs: Record<string, number>;
}

/** Slices whose last logits are kept for `usePreviousMask` (the few a user is working on). */
const KEPT_LOGITS = 4;

export class InteractiveSession {
  readonly id = randomUUID();
  readonly createdAt = Date.now();
  lastUsed = Date.now();
  readonly masks = new Map<number, SliceMask>();
  /** The running propagation, if any (one at a time). */
  propagation: AbortController | undefined;
  private readonly logits = new Map<number, Float32Array>();
  private readonly latestPrompt = new Map<number, number>();
  private promptCount = 0;

  constructor(
    readonly user: string,
    readonly model: RegisteredModel,
    readonly plan: SeriesPlan,
    readonly sourceInstance: DicomJson,
    private readonly deps: {
      client: DicomWebClient;
      worker: InferenceWorker;
      cache: EmbeddingCache;
      /** Told each slice encoding's time (for the metrics). */
      onEncoded?: (ms: number) => void;
    },
  ) {}

  get manifest() {
    return this.model.manifest;
  }

  checkSlice(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.plan.slices.length)
      throw new LdfsamError(
        'INVALID_INPUT',
        `slice ${index} is out of range: the series has slices 0..${this.plan.slices.length - 1}`,
      );
  }

  /** The slice's key in the shared embedding cache: the model and the frame. */
  private cacheKey(index: number): string {
    const slice = this.plan.slices[index]!;
    const { name, version } = this.manifest;
    return `${name}@${version}|${this.plan.seriesInstanceUID}|${slice.sopInstanceUID}|${slice.frameNumber}`;
  }

  /** The slices whose encoder outputs are cached now: a prompt there runs only the decoder. */
  encodedSlices(): number[] {
    return this.plan.slices.map((_, i) => i).filter((i) => this.deps.cache.has(this.cacheKey(i)));
  }

  /** The slice's encoder outputs: from the cache, or fetched, preprocessed and encoded now. */
  async embed(
    index: number,
    signal?: AbortSignal,
    timings: Record<string, number> = {},
  ): Promise<{ outputs: Outputs; hit: boolean }> {
    const slice = this.plan.slices[index]!;
    // The fetch and the encode are shared with whoever asks for the slice meanwhile: the cache's
    // signal (`dropped`) aborts only when every one of them has gone; `signal` ends this caller's wait.
    const compute = async (dropped: AbortSignal) => {
      const t0 = performance.now();
      const one: SeriesPlan = { ...this.plan, slices: [slice] };
      const next = await readSeriesSlices(this.deps.client, one, { prefetch: 1, signal: dropped })[Symbol.asyncIterator]().next();
      if (next.done)
        throw new LdfsamError('NOT_FOUND', `slice ${index} (${slice.sopInstanceUID}) could not be read from the PACS`);
      const t1 = performance.now();
      const size = this.manifest.preprocessing.inputSize;
      const input = preprocessSlice(next.value.pixels, this.plan.rows, this.plan.columns, this.manifest, this.plan.modality);
      const t2 = performance.now();
      const outputs = await this.deps.worker.encode(input, [1, 3, size, size], dropped);
      const t3 = performance.now();
      Object.assign(timings, { fetch: t1 - t0, preprocess: t2 - t1, encode: t3 - t2 });
      this.deps.onEncoded?.(t3 - t2);
      return outputs;
    };
    return this.deps.cache.get(this.cacheKey(index), compute, signal);
  }

  /**
   * Runs the decoder on a slice with a prompt (checked by the caller) and, when given, a previous
   * step's logits as mask input; keeps the mask as the slice's latest unless a newer prompt on the
   * same slice has already answered.
   */
  async prompt(
    index: number,
    prompt: Prompt,
    options: { maskInput?: Float32Array; signal?: AbortSignal } = {},
  ): Promise<PromptResult> {
    this.checkSlice(index);
    this.lastUsed = Date.now();
    const order = ++this.promptCount;
    const before = this.latestPrompt.get(index);
    this.latestPrompt.set(index, order);
    const timings: Record<string, number> = {};
    const { outputs, hit } = await this.embed(index, options.signal, timings).catch((err: unknown) => {
      // Cancelled (its client gone) or failed: an earlier prompt still out on the slice is the latest again.
      if (this.latestPrompt.get(index) === order)
        if (before === undefined) this.latestPrompt.delete(index);
        else this.latestPrompt.set(index, before);
      throw err;
    });
    const manifest = this.manifest;
    const { rows, columns } = this.plan;
    const t0 = performance.now();
    const feeds = decoderFeeds(manifest, outputs, promptTensors(prompt, rows, columns, manifest), options.maskInput);
    const { outputs: answer, runMs } = await this.deps.worker.decode(feeds);
    const t1 = performance.now();
    const logits = answer[manifest.postprocessing.output];
    if (!logits) throw new LdfsamError('INFERENCE_FAILED', `the decoder gave no output named ${manifest.postprocessing.output}`);
    const size = manifest.preprocessing.inputSize;
    const bits = logitsToBits(
      logits.data,
      size,
      rows,
      columns,
      manifest.postprocessing.threshold,
      fittedSize(rows, columns, manifest),
    );
    const iouOut = answer.iou?.data[0];
    const iou = iouOut !== undefined && Number.isFinite(iouOut) ? iouOut : null;
    timings.decode = t1 - t0;
    timings.decoderRun = runMs;
    timings.postprocess = performance.now() - t1;
    this.lastUsed = Date.now();
    if (this.latestPrompt.get(index) === order) {
      this.masks.set(index, { bits, iou });
      this.keepLogits(index, logits.data);
    }
    return {
      slice: index,
      bits,
      iou,
      cached: hit,
      usedPreviousMask: options.maskInput !== undefined,
      logits: logits.data,
      timingsMs: timings,
    };
  }

  /** The last logits of a slice, for `usePreviousMask`. */
  previousLogits(index: number): Float32Array | undefined {
    return this.logits.get(index);
  }

  /** Puts back a slice's mask and logits as they were (none: removed), undoing a prompt's answer. */
  restore(index: number, state: { mask?: SliceMask; logits?: Float32Array }): void {
    if (state.mask) this.masks.set(index, state.mask);
    else this.masks.delete(index);
    if (state.logits) this.keepLogits(index, state.logits);
    else this.logits.delete(index);
  }

  private keepLogits(index: number, data: Float32Array): void {
    this.logits.delete(index);
    this.logits.set(index, data);
    while (this.logits.size > KEPT_LOGITS) this.logits.delete(this.logits.keys().next().value!);
  }
}
