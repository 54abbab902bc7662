/**
 * `ldfsam bench`: every figure measured side by side in one run, reported as ratios (these machines
 * drift by ~30% in minutes). Model-only throughput through onnxruntime-node on the chosen execution
 * provider, against the machine's matrix-product rate (the compute floor per slice) and, for a
 * random-weight configuration, against PyTorch eager on the same weights and its int8 twin; the
 * host path per slice (the whole pipeline but the model, process CPU time) on 512x512 and 820x820
 * series; the pipeline end to end on the real shared CT in a real Orthanc; and the peak resident
 * memory and overhead of `ldfsam segment` on a long generated series.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import { DicomWebClient } from '../dicomweb/client.js';
import { LdfsamError } from '../errors.js';
import { matmulModel } from '../inference/onnx-graph.js';
import { DEFAULT_BATCH_SIZE, resolveProvider, type Provider, type ProviderWish } from '../inference/providers.js';
import { loadModel, sessionOptions, type SessionSettings } from '../models/session.js';
import { ModelRegistry } from '../inference/registry.js';
import { loadFiles } from '../pacs/load.js';
import { segmentSeries } from '../pipeline/segment.js';
import { projectPath } from '../util/paths.js';
import { startBenchPacs } from './serve-child.js';
import { LogitsReplay, measureHostPath, pixelWork, recordInto, type HostPathFigure } from './host-path.js';
import { python, randomModel, shippedModel, type ModelUnderTest } from './model-under-test.js';
import { median } from './median.js';

const run = promisify(execFile);

export interface BenchOptions {
  config: 'tiny' | 'full';
  /** A shipped model (name or folder) instead of a random-weight configuration. */
  model?: string;
  provider: ProviderWish;
  /** Slices for the model-only timings. */
  slices: number;
  /** Slices of the long series (0 = skip). */
  longSlices: number;
  longSize: number;
  /** Slices per inference call in the pipeline; default: the provider's. */
  batchSize?: number;
  orthancBin: string;
  orthancPluginsDir: string;
  log: (line: string) => void;
}

export interface BenchResult {
  date: string;
  /** The configuration, or the shipped model's name and version. */
  config: string;
  provider: Provider;
  batchSize: number;
  matmulGflops: number;
  /** Inference GFLOP per slice: from the exporter's count (random configurations) or the manifest's export.gflopsPerSlice. */
  gflopsPerSlice: number | null;
  floorMsPerSlice: number | null;
  ortMsPerSlice: number;
  ortByBatch: Record<string, number>;
  /** The same model with int8 MatMul weights (publish --compress int8), same inputs; CPU and random configurations only. */
  ortInt8MsPerSlice: number | null;
  ortInt8ByBatch: Record<string, number> | null;
  /** fp32 ort time / int8 ort time (best batch each). */
  int8Speedup: number | null;
  /** torch fp32 time / int8 ort time, batch 1. */
  int8VsTorch: number | null;
  /** Pixel work per synthetic slice of the long series' size: modality values, preprocess, logits to bits (the older, narrower figure). */
  hostMsPerSlice: number;
  /** The whole host path per 512x512 slice (the shared CT): node CPU for plan, fetch, multipart, decoding, pre/postprocessing, clean-ups, SEG encoding, store. */
  hostMsPerSlice512: number;
  /** The same per 820x820 slice (the long series); null without one. */
  hostMsPerSlice820: number | null;
  hostPath: { '512': HostPathFigure; '820': HostPathFigure | null };
  torchMsPerSlice: number | null;
  ortVsTorch: number | null;
  fractionOfFloor: number | null;
  endToEndMsPerSlice: number;
  endToEndSlices: number;
  stageMs: Record<string, number>;
  pipelineOverhead: number;
  /** Share of the CT's end-to-end wall time spent in inference (same run, so free of drift). */
  endToEndInferShare: number;
  peakRssMb: number | null;
  /** The long series through `ldfsam segment`: whole process per slice, its pipeline stages per slice,
   * their overhead over model-only, and the process start-up (node, model load) apart. */
  longSeries: {
    slices: number;
    size: number;
    msPerSlice: number;
    pipelineMsPerSlice: number;
    overhead: number;
    startupMs: number;
    /** Share of the series' wall time spent in inference. */
    inferShare: number;
    stageMs: Record<string, number>;
  } | null;
  /** What a null means, and what the figures are of. */
  notes: string[];
}

/**
 * The machine's fp32 matrix-product rate on the provider: a 2048x2048 MatMul, the best of 10 runs (a
 * peak rate: the median of a few 1024x1024 runs swung from 92 to 158 GFLOP/s between runs on this
 * machine, which made the floor, and the fraction of it, swing as much).
 */
async function matmulRate(settings: SessionSettings, n = 2048): Promise<number> {
  const session = await ort.InferenceSession.create(matmulModel(n), sessionOptions(settings));
  const a = new ort.Tensor(
    'float32',
    Float32Array.from({ length: n * n }, (_, i) => (i % 7) / 7),
    [n, n],
  );
  await session.run({ a, b: a });
  let best = Infinity;
  for (let i = 0; i < 10; i++) {
    const t = performance.now();
    await session.run({ a, b: a });
    best = Math.min(best, performance.now() - t);
  }
  await session.release();
  return (2 * n ** 3) / (best / 1000) / 1e9;
}

async function modelOnly(
  folder: string,
  batches: number[],
  slices: number,
  settings: SessionSettings,
): Promise<Record<string, number>> {
  const { session, manifest } = await loadModel(folder, settings);
  const s = manifest.preprocessing.inputSize;
  const name = manifest.inputs![0]!.name; // loadModel refuses a model without an automatic graph
  const out: Record<string, number> = {};
  for (const b of batches) {
    const input = new ort.Tensor(
      'float32',
      Float32Array.from({ length: b * 3 * s * s }, (_, i) => (i % 255) / 255),
      [b, 3, s, s],
    );
    await session.run({ [name]: input });
    const times: number[] = [];
    for (let i = 0; i < Math.max(3, Math.ceil(slices / b)); i++) {
      const t = performance.now();
      await session.run({ [name]: input });
      times.push((performance.now() - t) / b);
    }
    out[String(b)] = median(times);
  }
  await session.release();
  return out;
}

export async function runBench(options: BenchOptions): Promise<BenchResult> {
  const log = options.log;
  const choice = await resolveProvider(options.provider, { log });
  const settings: SessionSettings = { executionProvider: choice.provider };
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE[choice.provider];
  const batches = choice.provider === 'cuda' ? [1, 4, 8, 16, 32, 64] : [1, 4, 8];
  if (!batches.includes(batchSize)) batches.push(batchSize);
  const work = await mkdtemp(join(tmpdir(), 'ldfsam-bench-'));
  try {
    log(
      options.model
        ? `the shipped model ${options.model}...`
        : `PyTorch eager and the model export (${options.config}, random weights, seed 0)...`,
    );
    const model = options.model ? await shippedModel(options.model, work) : await randomModel(options.config, options.slices);
    const notes = [
      ...model.notes,
      `onnxruntime-node on ${choice.provider.toUpperCase()}${choice.fallbackReason ? ` (${choice.fallbackReason})` : ''}`,
    ];
    log(`matrix-product rate and model-only throughput (onnxruntime-node, ${choice.provider})...`);
    const matmulGflops = await matmulRate(settings);
    const ortByBatch = await modelOnly(model.folder, batches, options.slices, settings);
    const ortMsPerSlice = Math.min(...Object.values(ortByBatch));
    let ortInt8ByBatch: Record<string, number> | null = null;
    if (model.int8Folder && choice.provider === 'cpu') {
      log('the int8 twin (MatMul weights int8)...');
      ortInt8ByBatch = await modelOnly(model.int8Folder, [1, 4, 8], options.slices, settings);
    } else if (model.int8Folder) notes.push('int8: measured on the CPU only (its dynamic-quantised MatMuls are CPU kernels)');
    const ortInt8MsPerSlice = ortInt8ByBatch ? Math.min(...Object.values(ortInt8ByBatch)) : null;
    const hostMsPerSlice = pixelWork(options.longSize, 256, Math.max(5, Math.min(options.slices, 20)));
    const floorMsPerSlice = model.gflopsPerSlice === null ? null : (model.gflopsPerSlice / matmulGflops) * 1000;
    const reference = ortByBatch[String(batchSize)]!;
    const pipeline = await pipelineFigures(options, model, settings, batchSize, reference, work);
    return {
      date: new Date().toISOString(),
      config: options.model ? model.label : options.config,
      provider: choice.provider,
      batchSize,
      matmulGflops,
      gflopsPerSlice: model.gflopsPerSlice,
      floorMsPerSlice,
      ortMsPerSlice,
      ortByBatch,
      ortInt8MsPerSlice,
      ortInt8ByBatch,
      int8Speedup: ortInt8MsPerSlice === null ? null : ortMsPerSlice / ortInt8MsPerSlice,
      int8VsTorch: ortInt8ByBatch && model.torchMsPerSlice !== null ? model.torchMsPerSlice / ortInt8ByBatch['1']! : null,
      hostMsPerSlice,
      torchMsPerSlice: model.torchMsPerSlice,
      ortVsTorch: model.torchMsPerSlice === null ? null : model.torchMsPerSlice / ortByBatch['1']!,
      fractionOfFloor: floorMsPerSlice === null ? null : floorMsPerSlice / ortMsPerSlice,
      ...pipeline,
      notes,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

type PipelineFigures = Pick<
  BenchResult,
  | 'endToEndMsPerSlice'
  | 'endToEndSlices'
  | 'stageMs'
  | 'pipelineOverhead'
  | 'endToEndInferShare'
  | 'peakRssMb'
  | 'longSeries'
  | 'hostMsPerSlice512'
  | 'hostMsPerSlice820'
  | 'hostPath'
>;

/** Everything that needs the PACS: end to end on the CT, the host path, the long series. */
async function pipelineFigures(
  options: BenchOptions,
  model: ModelUnderTest,
  settings: SessionSettings,
  batchSize: number,
  reference: number,
  work: string,
): Promise<PipelineFigures> {
  const log = options.log;
  log('end to end on the shared CT in a real Orthanc...');
  const orthanc = await startBenchPacs(work, options);
  const registry = new ModelRegistry(settings);
  try {
    const client = new DicomWebClient({ url: orthanc.dicomwebUrl, headers: { authorization: orthanc.authorization } });
    const ctDir = projectPath('..', 'shared', 'data', 'dicom', 'ct-head-phantom-philips');
    const ct = (await loadFiles(client, [ctDir])).series[0];
    if (!ct) throw new LdfsamError('NOT_FOUND', 'the shared CT is missing (../shared/data/dicom/ct-head-phantom-philips)');
    const registered = await registry.add(model.folder);
    const worker = await registry.worker(registered);
    const m = registered.manifest;
    const replay = new LogitsReplay();
    const stopRecording = recordInto(worker, replay);
    const request = { ...ct, model: m.name };
    await segmentSeries(client, registry, request, { batchSize }); // warm-up, and the logits the host path replays
    stopRecording();
    const t = performance.now();
    const e2e = await segmentSeries(client, registry, request, { batchSize });
    const endToEndMsPerSlice = (performance.now() - t) / e2e.slices;

    log('the host path (the pipeline with the model replaced by its recorded logits) on the CT...');
    const host512 = await measureHostPath(client, registered, replay, ct, { runs: 3, batchSize, pacsPid: orthanc.child?.pid });

    let peakRssMb: number | null = null;
    let longSeries: BenchResult['longSeries'] = null;
    let host820: HostPathFigure | null = null;
    if (options.longSlices > 0) {
      log(`generating and storing a ${options.longSlices}-slice ${options.longSize}x${options.longSize} series...`);
      const dir = join(work, 'long');
      const ids = JSON.parse(
        await python('bench/tools/long_series.py', [
          '--ct',
          ctDir,
          '--out',
          dir,
          '--slices',
          String(options.longSlices),
          '--size',
          String(options.longSize),
        ]),
      ) as { studyInstanceUID: string; seriesInstanceUID: string };
      await loadFiles(client, [dir]);
      await rm(dir, { recursive: true, force: true });
      log(`the host path on the ${options.longSize}x${options.longSize} series...`);
      host820 = await measureHostPath(client, registered, replay, ids, { runs: 1, batchSize, pacsPid: orthanc.child?.pid });
      log('segmenting it in a separate process (ldfsam segment) for its peak memory...');
      ({ peakRssMb, longSeries } = await segmentProcess(options, model, settings, batchSize, reference, ids, orthanc));
    }
    return {
      endToEndMsPerSlice,
      endToEndSlices: e2e.slices,
      stageMs: Object.fromEntries(Object.entries(e2e.timingsMs).map(([k, v]) => [k, Math.round(v * 10) / 10])),
      pipelineOverhead: endToEndMsPerSlice / reference - 1,
      endToEndInferShare: e2e.timingsMs.infer! / (endToEndMsPerSlice * e2e.slices),
      peakRssMb,
      longSeries,
      hostMsPerSlice512: host512.cpuMsPerSlice,
      hostMsPerSlice820: host820?.cpuMsPerSlice ?? null,
      hostPath: { '512': host512, '820': host820 },
    };
  } finally {
    await registry.close();
    orthanc.child?.kill('SIGKILL');
  }
}

/** `ldfsam segment` on the long series as its own process: peak memory and the series' own wall time. */
async function segmentProcess(
  options: BenchOptions,
  model: ModelUnderTest,
  settings: SessionSettings,
  batchSize: number,
  reference: number,
  ids: { studyInstanceUID: string; seriesInstanceUID: string },
  pacs: { dicomwebUrl: string; authorization: string },
): Promise<Pick<BenchResult, 'peakRssMb' | 'longSeries'>> {
  const t0 = performance.now();
  const { stdout } = await run(
    process.execPath,
    [
      projectPath('dist', 'server', 'src', 'cli', 'main.js'),
      'segment',
      '--json',
      '--model',
      model.folder,
      '--study',
      ids.studyInstanceUID,
      '--series',
      ids.seriesInstanceUID,
      '--batch-size',
      String(batchSize),
      '--provider',
      settings.executionProvider ?? 'cpu',
    ],
    {
      env: { ...process.env, LDFSAM_DICOMWEB_URL: pacs.dicomwebUrl, LDFSAM_DICOMWEB_AUTHORIZATION: pacs.authorization },
      maxBuffer: 16 * 1024 * 1024,
    },
  );
  const result = JSON.parse(stdout) as {
    peakRssMb: number;
    slices: number;
    elapsedMs: number;
    timingsMs: Record<string, number>;
  };
  const wallMs = performance.now() - t0;
  // The series itself (plan to verify) against the model alone; the rest of the process's wall
  // time is start-up (node, model load), reported apart.
  const pipelineMs = result.elapsedMs;
  return {
    peakRssMb: result.peakRssMb,
    longSeries: {
      slices: result.slices,
      size: options.longSize,
      msPerSlice: wallMs / result.slices,
      pipelineMsPerSlice: pipelineMs / result.slices,
      overhead: pipelineMs / result.slices / reference - 1,
      startupMs: wallMs - pipelineMs,
      inferShare: result.timingsMs.infer! / pipelineMs,
      stageMs: result.timingsMs,
    },
  };
}
