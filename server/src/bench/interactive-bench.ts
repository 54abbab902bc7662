/**
 * `ldfsam bench-interactive`: the interactive API's speed against its targets, on the shared 28-slice
 * CT in a real Orthanc, with a promptable model (default: the first registered one for CT, trained
 * before catch-all), through a real `ldfsam serve` process over HTTP:
 * - the encoder's own time per slice (onnxruntime-node in this process, the server idle), measured
 *   before and after the API figures and averaged (these machines drift by ~30% in minutes);
 * - the first prompt on a slice (fetch, preprocess, encode, decode): target <= encoder + 60 ms; each
 *   first prompt also follows the encoder alone on the same slice, run in this process just before
 *   it, so that their difference (`overEncoderP50`) is free of the machine's drift;
 * - prompts on cached slices (decoder only), server time p50 / p95: target p95 <= 60 ms; with the
 *   part inside the inference worker (decoderRun) and the client's round trip;
 * - a propagation over the whole series from its first slice: target <= 1.15 x 28 x encoder.
 * With `quality`, also how propagation segments the phantom's central insert (bench/tools/
 * propagation_ct.py: a thresholded reference) with and without the previous mask as mask input,
 * and the predicted IoU on slices with and without it: what LDFSAM_INTERACTIVE_MIN_IOU and
 * LDFSAM_INTERACTIVE_PROPAGATION_MASK_INPUT default to was chosen from these figures.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { DicomWebClient } from '../dicomweb/client.js';
import { loadSeries } from '../dicom/inspect.js';
import { readSeriesSlices } from '../dicom/series-reader.js';
import { LdfsamError } from '../errors.js';
import { ModelRegistry, type RegisteredModel } from '../inference/registry.js';
import { sessionOptions } from '../models/session.js';
import { loadFiles } from '../pacs/load.js';
import { preprocessSlice } from '../pipeline/preprocess.js';
import { projectPath } from '../util/paths.js';
import { api, startBenchPacs, startServeOn } from './serve-child.js';

export interface InteractiveBenchOptions {
  /** A registered model name or a model folder; default: the first promptable model for CT. */
  model?: string;
  modelDirs: string[];
  /** Prompts on cached slices. */
  prompts: number;
  /** Also measure propagation quality on the CT's insert (mask input on and off). */
  quality: boolean;
  orthancBin: string;
  orthancPluginsDir: string;
  log: (line: string) => void;
}

export interface InteractiveBenchResult {
  date: string;
  model: string;
  /** The encoder alone, batch 1, ms per slice (mean of the runs before and after). */
  encoderMs: number;
  encoderMsRuns: [number, number];
  firstPrompt: {
    p50: number;
    max: number;
    count: number;
    target: number;
    /** The encoder alone on the same slice just before each first prompt (this process, the server idle): p50. */
    encoderBesideP50: number;
    /** Each first prompt less the encoder alone just before it, on its slice: p50 (target <= 60 ms). */
    overEncoderP50: number;
    /** Each first prompt: its slice, the server's time, and the encoder alone on that slice just before it (ms). */
    pairs: { slice: number; server: number; encoderAlone: number }[];
    /** Where a first prompt's server time goes (p50 of each part): the slice's fetch from the PACS, its preprocessing, the encoder (the worker round trip), the decoder (round trip, feeds included; of which the run inside the worker), the mask from the logits. */
    parts: { fetch: number; preprocess: number; encode: number; decode: number; decoderRun: number; postprocess: number };
  };
  cachedPrompt: {
    p50: number;
    p95: number;
    count: number;
    clientP50: number;
    clientP95: number;
    /** The part inside the inference worker (tensors + session.run); the rest is transport, feeds, postprocessing. */
    decoderRunP50: number;
    decoderRunP95: number;
    target: number;
  };
  propagation: {
    slices: number;
    ms: number;
    msPerSlice: number;
    ratioToEncoder: number;
    target: number;
    stoppedBecause: string[];
  };
  quality?: Record<
    string,
    { meanDicePresent: number | null; minIouPresent: number | null; maxIouAbsent: number | null; slices: unknown[] }
  >;
}

/** The slices the first prompts go to (and the cached prompts after them). */
const FIRST_SLICES = [4, 8, 12, 16, 20, 24];

const CT = () => projectPath('..', 'shared', 'data', 'dicom', 'ct-head-phantom-philips');

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** The model's encoder in this process, warmed up; `time` runs it on one preprocessed slice (ms). */
async function standaloneEncoder(
  model: RegisteredModel,
  warmUp: Float32Array,
): Promise<{ time: (input: Float32Array) => Promise<number>; release: () => Promise<void> }> {
  const spec = model.manifest.promptable!.encoder;
  const session = await ort.InferenceSession.create(join(model.folder, spec.file), sessionOptions({}));
  const size = model.manifest.preprocessing.inputSize;
  const time = async (input: Float32Array) => {
    const t0 = performance.now();
    await session.run({ [spec.inputs[0]!.name]: new ort.Tensor('float32', input, [1, 3, size, size]) });
    return performance.now() - t0;
  };
  await time(warmUp);
  return { time, release: () => session.release() };
}

/** The encoder on preprocessed slices of the series, batch 1: median ms per slice. */
async function encoderTime(model: RegisteredModel, inputs: Float32Array[]): Promise<number> {
  const encoder = await standaloneEncoder(model, inputs[0]!);
  const times: number[] = [];
  try {
    for (const input of inputs) times.push(await encoder.time(input));
  } finally {
    await encoder.release();
  }
  return percentile(times, 50);
}

/** Reads a propagation's event stream to its end; returns the slices done, their masks and the stop reasons. */
async function propagateAll(
  url: string,
  session: string,
  body: unknown,
): Promise<{ slices: number; stopped: string[]; masks: { slice: number; iou: number; bits: string }[] }> {
  const res = await fetch(`${url}/api/interactive/${session}/propagate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  const events = text.split('\n\n').filter(Boolean);
  const named = (n: string) => events.filter((e) => e.startsWith(`event: ${n}\n`));
  const data = (e: string) => JSON.parse(e.split('\ndata: ')[1]!) as Record<string, any>;
  if (named('error').length > 0) throw new LdfsamError('INTERNAL', `propagation failed: ${named('error')[0]}`);
  const masks = named('slice')
    .map(data)
    .map((d) => ({ slice: d.slice, iou: d.iou, bits: d.mask.bits }));
  return { slices: masks.length, stopped: named('stopped').map((e) => data(e).reason as string), masks };
}

/** Propagation from the insert's slice 4 both ways, IoU floor off, mask input off and on, scored against the reference. */
async function propagationQuality(
  url: string,
  ct: { studyInstanceUID: string; seriesInstanceUID: string },
  model: string,
  work: string,
): Promise<NonNullable<InteractiveBenchResult['quality']>> {
  const python = projectPath('models', '.venv', 'bin', 'python');
  const tool = projectPath('bench', 'tools', 'propagation_ct.py');
  const run = promisify(execFile);
  const box = JSON.parse((await run(python, [tool, 'box', '--ct', CT(), '--slice', '4'])).stdout) as number[];
  const runs: Record<string, { slice: number; iou: number; bits: string }[]> = {};
  for (const useMask of [false, true]) {
    const s = (await api(url, '/interactive', { ...ct, model })) as { sessionId: string };
    const seed = await api(url, `/interactive/${s.sessionId}/prompt`, { slice: 4, box });
    const propagated = await propagateAll(url, s.sessionId, { fromSlice: 4, direction: 'both', minIou: 0, useMask });
    runs[useMask ? 'maskInput' : 'boxOnly'] = [{ slice: 4, iou: seed.iou, bits: seed.mask.bits }, ...propagated.masks];
  }
  const file = join(work, 'masks.json');
  await writeFile(file, JSON.stringify({ runs }));
  const { stdout } = await run(python, [tool, 'score', '--ct', CT(), '--masks', file], { maxBuffer: 64 << 20 });
  return (JSON.parse(stdout) as { runs: NonNullable<InteractiveBenchResult['quality']> }).runs;
}

export async function runInteractiveBench(options: InteractiveBenchOptions): Promise<InteractiveBenchResult> {
  const log = options.log;
  const registry = await ModelRegistry.load(options.modelDirs, {});
  const model = options.model ? await registry.resolve(options.model) : registry.promptableFor('CT')[0];
  if (!model?.manifest.promptable)
    throw new LdfsamError('NOT_FOUND', `no promptable model ${options.model ?? 'for CT'} is registered`);
  const work = await mkdtemp(join(tmpdir(), 'ldfsam-bench-interactive-'));
  const orthanc = await startBenchPacs(work, options);
  let serve: ChildProcess | undefined;
  try {
    const client = new DicomWebClient({ url: orthanc.dicomwebUrl, headers: { authorization: orthanc.authorization } });
    const stored = (await loadFiles(client, [CT()])).series[0];
    if (!stored) throw new LdfsamError('NOT_FOUND', 'the shared CT is missing (../shared/data/dicom/ct-head-phantom-philips)');
    const ct = { studyInstanceUID: stored.studyInstanceUID, seriesInstanceUID: stored.seriesInstanceUID };
    const { plan } = await loadSeries(client, ct);
    const inputs: Float32Array[] = [];
    for await (const slice of readSeriesSlices(client, plan))
      inputs.push(preprocessSlice(slice.pixels, plan.rows, plan.columns, model.manifest, plan.modality));
    log(`${model.manifest.name}: the encoder alone (batch 1, 8 CT slices)...`);
    const before = await encoderTime(model, inputs.slice(0, 8));

    log('ldfsam serve with the model; first prompts on uncached slices...');
    const served = await startServeOn(orthanc, work, [model.folder, ...options.modelDirs]);
    serve = served.child;
    const url = served.url;
    const open = async () =>
      (await api(url, '/interactive', { ...ct, model: model.manifest.name })) as { sessionId: string; slices: unknown[] };
    // Propagation first, while no slice is cached: a box around the phantom's holder, on every slice; IoU floor off.
    log('propagation over the whole series from its first slice...');
    const p = await open();
    const tp = performance.now();
    await api(url, `/interactive/${p.sessionId}/prompt`, { slice: 0, box: [20, 120, 491, 505] });
    const run = await propagateAll(url, p.sessionId, { fromSlice: 0, direction: 'up', minIou: 0 });
    const propagationMs = performance.now() - tp;
    const propagated = run.slices + 1;

    // The propagation encoded every slice: a fresh server (an empty cache) for the first prompts.
    served.child.kill();
    await new Promise((r) => served.child.once('exit', r));
    const again = await startServeOn(orthanc, work, [model.folder, ...options.modelDirs]);
    serve = again.child;
    const s = (await api(again.url, '/interactive', { ...ct, model: model.manifest.name })) as { sessionId: string };
    const first: number[] = [];
    const beside: number[] = [];
    const parts = {
      fetch: [] as number[],
      preprocess: [] as number[],
      encode: [] as number[],
      decode: [] as number[],
      decoderRun: [] as number[],
      postprocess: [] as number[],
    };
    const alone = await standaloneEncoder(model, inputs[0]!);
    try {
      for (const slice of FIRST_SLICES) {
        beside.push(await alone.time(inputs[slice]!));
        const r = await api(again.url, `/interactive/${s.sessionId}/prompt`, { slice, box: [180, 190, 330, 350] });
        first.push(r.timingsMs.server as number);
        for (const [part, values] of Object.entries(parts)) values.push(r.timingsMs[part] as number);
      }
    } finally {
      await alone.release();
    }
    log(`${options.prompts} prompts on cached slices...`);
    const cached: number[] = [];
    const client2: number[] = [];
    const decoderRun: number[] = [];
    for (let i = 0; i < options.prompts; i++) {
      const slice = [4, 8, 12, 16, 20, 24][i % 6]!;
      const t0 = performance.now();
      const r = await api(again.url, `/interactive/${s.sessionId}/prompt`, {
        slice,
        box: [180, 190, 330, 350],
        points: [{ x: 200 + (i % 40), y: 260, positive: i % 2 === 0 }],
      });
      client2.push(performance.now() - t0);
      if (!r.cached) throw new LdfsamError('INTERNAL', `slice ${slice} was not cached`);
      cached.push(r.timingsMs.server as number);
      decoderRun.push(r.timingsMs.decoderRun as number);
    }
    let quality: InteractiveBenchResult['quality'];
    if (options.quality) {
      log('propagation quality on the CT insert, mask input off and on...');
      quality = await propagationQuality(again.url, ct, model.manifest.name, work);
    }
    serve.kill();
    await new Promise((r) => serve!.once('exit', r));
    serve = undefined;
    log('the encoder alone again...');
    const after = await encoderTime(model, inputs);
    const encoderMs = (before + after) / 2;
    return {
      date: new Date().toISOString(),
      model: `${model.manifest.name} ${model.manifest.version}`,
      encoderMs,
      encoderMsRuns: [before, after],
      firstPrompt: {
        p50: percentile(first, 50),
        max: Math.max(...first),
        count: first.length,
        target: encoderMs + 60,
        encoderBesideP50: percentile(beside, 50),
        overEncoderP50: percentile(
          first.map((ms, i) => ms - beside[i]!),
          50,
        ),
        pairs: first.map((server, i) => ({ slice: FIRST_SLICES[i]!, server, encoderAlone: beside[i]! })),
        parts: {
          fetch: percentile(parts.fetch, 50),
          preprocess: percentile(parts.preprocess, 50),
          encode: percentile(parts.encode, 50),
          decode: percentile(parts.decode, 50),
          decoderRun: percentile(parts.decoderRun, 50),
          postprocess: percentile(parts.postprocess, 50),
        },
      },
      cachedPrompt: {
        p50: percentile(cached, 50),
        p95: percentile(cached, 95),
        count: cached.length,
        clientP50: percentile(client2, 50),
        clientP95: percentile(client2, 95),
        decoderRunP50: percentile(decoderRun, 50),
        decoderRunP95: percentile(decoderRun, 95),
        target: 60,
      },
      propagation: {
        slices: propagated,
        ms: propagationMs,
        msPerSlice: propagationMs / propagated,
        ratioToEncoder: propagationMs / (propagated * encoderMs),
        target: 1.15,
        stoppedBecause: run.stopped,
      },
      ...(quality ? { quality } : {}),
    };
  } finally {
    serve?.kill();
    orthanc.child?.kill('SIGTERM');
    await registry.close();
    await rm(work, { recursive: true, force: true });
  }
}
