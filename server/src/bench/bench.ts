/**
 * `ldfsam bench`: every figure measured side by side in one run, reported as ratios (these machines
 * drift by ~30% in minutes). Model-only throughput through onnxruntime-node against the machine's
 * fp32 matrix-product rate (the compute floor per slice) and against PyTorch eager on the same
 * weights, fp32 and its int8 twin; the host work per slice outside the model; the pipeline end to end on the real shared CT in a real Orthanc; and the peak resident
 * memory of `ldfsam segment` on a long generated series.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import { DicomWebClient } from '../dicomweb/client.js';
import { LdfsamError } from '../errors.js';
import { modalityValues } from '../dicom/pixels.js';
import type { PixelFormat } from '../dicom/series-plan.js';
import type { ModelManifest } from '../models/manifest.js';
import { loadModel, sessionOptions } from '../models/session.js';
import { logitsToBits } from '../pipeline/postprocess.js';
import { preprocessSlice } from '../pipeline/preprocess.js';
import { ModelRegistry } from '../inference/registry.js';
import { loadFiles } from '../pacs/load.js';
import { startOrthanc } from '../pacs/orthanc.js';
import { segmentSeries } from '../pipeline/segment.js';
import { projectPath } from '../util/paths.js';
import { freePorts } from '../util/ports.js';

const run = promisify(execFile);

export interface BenchOptions {
  config: 'tiny' | 'full';
  /** Slices for the model-only timings. */
  slices: number;
  /** Slices of the long series for the memory figure (0 = skip). */
  longSlices: number;
  longSize: number;
  batchSize: number;
  orthancBin: string;
  orthancPluginsDir: string;
  log: (line: string) => void;
}

export interface BenchResult {
  date: string;
  config: string;
  matmulGflops: number;
  gflopsPerSlice: number;
  floorMsPerSlice: number;
  ortMsPerSlice: number;
  ortByBatch: Record<string, number>;
  /** The same model with int8 MatMul weights (publish --compress int8), same inputs. */
  ortInt8MsPerSlice: number;
  ortInt8ByBatch: Record<string, number>;
  /** fp32 ort time / int8 ort time (best batch each). */
  int8Speedup: number;
  /** torch fp32 time / int8 ort time, batch 1. */
  int8VsTorch: number;
  /** Host work per slice of the long series' size outside the model: modality values, preprocess, logits to bits. */
  hostMsPerSlice: number;
  torchMsPerSlice: number;
  ortVsTorch: number;
  fractionOfFloor: number;
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
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

async function python(script: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await run(projectPath('models', '.venv', 'bin', 'python'), [projectPath(script), ...args], {
    env: { ...process.env, ...env },
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout;
}

/**
 * The machine's fp32 matrix-product rate: a 2048x2048 MatMul through onnxruntime-node, the best of 10
 * runs (a peak rate: the median of a few 1024x1024 runs swung from 92 to 158 GFLOP/s between runs
 * on this machine, which made the floor, and the fraction of it, swing as much).
 */
async function matmulRate(folder: string, n = 2048): Promise<number> {
  const session = await ort.InferenceSession.create(join(folder, 'matmul.onnx'), sessionOptions());
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

async function modelOnly(folder: string, batches: number[], slices: number): Promise<Record<string, number>> {
  const { session, manifest } = await loadModel(folder);
  const s = manifest.preprocessing.inputSize;
  const out: Record<string, number> = {};
  for (const b of batches) {
    const input = new ort.Tensor(
      'float32',
      Float32Array.from({ length: b * 3 * s * s }, (_, i) => (i % 255) / 255),
      [b, 3, s, s],
    );
    await session.run({ image: input });
    const times: number[] = [];
    for (let i = 0; i < Math.max(3, Math.ceil(slices / b)); i++) {
      const t = performance.now();
      await session.run({ image: input });
      times.push((performance.now() - t) / b);
    }
    out[String(b)] = median(times);
  }
  await session.release();
  return out;
}

/**
 * The pipeline's own work on one slice of `rows` x `rows` 16-bit pixels, outside the model and the
 * network: modality values from the frame bytes, intensity + resize into the model input, logits back
 * to packed mask bits. Median ms over `n` slices.
 */
function hostWork(rows: number, size: number, n: number): number {
  const format: PixelFormat = {
    rows,
    columns: rows,
    samplesPerPixel: 1,
    bitsAllocated: 16,
    bitsStored: 16,
    highBit: 15,
    pixelRepresentation: 0,
    photometricInterpretation: 'MONOCHROME2',
    planarConfiguration: 0,
  };
  const bytes = Uint8Array.from({ length: rows * rows * 2 }, (_, i) => (i * 7) & 0xff);
  const manifest = {
    preprocessing: { inputSize: size, intensity: { default: { kind: 'window', center: 40, width: 400 } } },
  } as unknown as ModelManifest;
  const logits = Float32Array.from({ length: size * size }, (_, i) => Math.sin(i / 500));
  const input = new Float32Array(3 * size * size);
  const times: number[] = [];
  for (let i = 0; i <= n; i++) {
    const t = performance.now();
    const values = modalityValues({ bytes, planar: false, photometric: 'MONOCHROME2' }, format, { slope: 1, intercept: -1024 });
    preprocessSlice({ kind: 'grey', values, invert: false }, rows, rows, manifest, 'CT', input);
    logitsToBits(logits, size, rows, rows, 0);
    if (i > 0) times.push(performance.now() - t); // the first is warm-up
  }
  return median(times);
}

export async function runBench(options: BenchOptions): Promise<BenchResult> {
  const log = options.log;
  const cache = projectPath('bench', '.cache', options.config);
  log(`PyTorch eager and the model export (${options.config}, random weights, seed 0)...`);
  // The faster OpenBLAS kernel for PyTorch, as shared/docs/environment-facts.md measured (bench only).
  const torch = JSON.parse(
    (
      await python(
        'bench/tools/bench_models.py',
        ['--config', options.config, '--out', cache, '--slices', String(Math.max(3, Math.min(options.slices, 16)))],
        {
          OPENBLAS_CORETYPE: 'SkylakeX',
          OMP_WAIT_POLICY: 'PASSIVE',
        },
      )
    )
      .trim()
      .split('\n')
      .at(-1)!,
  ) as { torchMsPerSlice: number; gflopsPerSlice: number };
  log('matrix-product rate and model-only throughput (onnxruntime-node)...');
  const matmulGflops = await matmulRate(cache);
  const ortByBatch = await modelOnly(cache, [1, 4, 8], options.slices);
  const ortMsPerSlice = Math.min(...Object.values(ortByBatch));
  log('the int8 twin (MatMul weights int8) and the host work per slice...');
  const ortInt8ByBatch = await modelOnly(join(cache, 'int8'), [1, 4, 8], options.slices);
  const ortInt8MsPerSlice = Math.min(...Object.values(ortInt8ByBatch));
  const hostMsPerSlice = hostWork(options.longSize, 256, Math.max(5, Math.min(options.slices, 20)));
  const floorMsPerSlice = (torch.gflopsPerSlice / matmulGflops) * 1000;

  log('end to end on the shared CT in a real Orthanc...');
  const work = await mkdtemp(join(tmpdir(), 'ldfsam-bench-'));
  const [pacsHttpPort, pacsDicomPort] = await freePorts(2);
  const orthanc = await startOrthanc(
    {
      orthancBin: options.orthancBin,
      orthancPluginsDir: options.orthancPluginsDir,
      dataDir: join(work, 'pacs'),
      pacsHttpPort: pacsHttpPort!,
      pacsDicomPort: pacsDicomPort!,
    },
    { detached: false },
  );
  const registry = new ModelRegistry({});
  try {
    const client = new DicomWebClient({ url: orthanc.dicomwebUrl });
    const ct = (await loadFiles(client, [projectPath('..', 'shared', 'data', 'dicom', 'ct-head-phantom-philips')])).series[0];
    if (!ct) throw new LdfsamError('NOT_FOUND', 'the shared CT is missing (../shared/data/dicom/ct-head-phantom-philips)');
    const model = await registry.add(cache);
    await registry.worker(model);
    await segmentSeries(client, registry, { ...ct, model: model.manifest.name }, { batchSize: options.batchSize }); // warm-up
    const t = performance.now();
    const e2e = await segmentSeries(client, registry, { ...ct, model: model.manifest.name }, { batchSize: options.batchSize });
    const endToEndMsPerSlice = (performance.now() - t) / e2e.slices;
    const reference = ortByBatch[String(options.batchSize)] ?? ortMsPerSlice;

    let peakRssMb: number | null = null;
    let longSeries: BenchResult['longSeries'] = null;
    if (options.longSlices > 0) {
      log(`generating and storing a ${options.longSlices}-slice ${options.longSize}x${options.longSize} series...`);
      const dir = join(work, 'long');
      const ids = JSON.parse(
        await python('bench/tools/long_series.py', [
          '--ct',
          projectPath('..', 'shared', 'data', 'dicom', 'ct-head-phantom-philips'),
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
      log('segmenting it in a separate process (ldfsam segment) for its peak memory...');
      const t0 = performance.now();
      const { stdout } = await run(
        process.execPath,
        [
          projectPath('dist', 'server', 'src', 'cli', 'main.js'),
          'segment',
          '--json',
          '--model',
          cache,
          '--study',
          ids.studyInstanceUID,
          '--series',
          ids.seriesInstanceUID,
          '--batch-size',
          String(options.batchSize),
        ],
        {
          env: { ...process.env, LDFSAM_DICOMWEB_URL: orthanc.dicomwebUrl },
          maxBuffer: 16 * 1024 * 1024,
        },
      );
      const result = JSON.parse(stdout) as {
        peakRssMb: number;
        slices: number;
        elapsedMs: number;
        timingsMs: Record<string, number>;
      };
      peakRssMb = result.peakRssMb;
      const wallMs = performance.now() - t0;
      // The series itself (plan to verify) against the model alone; the rest of the process's wall
      // time is start-up (node, model load), reported apart.
      const pipelineMs = result.elapsedMs;
      longSeries = {
        slices: result.slices,
        size: options.longSize,
        msPerSlice: wallMs / result.slices,
        pipelineMsPerSlice: pipelineMs / result.slices,
        overhead: pipelineMs / result.slices / reference - 1,
        startupMs: wallMs - pipelineMs,
        inferShare: result.timingsMs.infer! / pipelineMs,
        stageMs: result.timingsMs,
      };
    }
    return {
      date: new Date().toISOString(),
      config: options.config,
      matmulGflops,
      gflopsPerSlice: torch.gflopsPerSlice,
      floorMsPerSlice,
      ortMsPerSlice,
      ortByBatch,
      ortInt8MsPerSlice,
      ortInt8ByBatch,
      int8Speedup: ortMsPerSlice / ortInt8MsPerSlice,
      int8VsTorch: torch.torchMsPerSlice / ortInt8ByBatch['1']!,
      hostMsPerSlice,
      torchMsPerSlice: torch.torchMsPerSlice,
      ortVsTorch: torch.torchMsPerSlice / ortByBatch['1']!,
      fractionOfFloor: floorMsPerSlice / ortMsPerSlice,
      endToEndMsPerSlice,
      endToEndSlices: e2e.slices,
      stageMs: Object.fromEntries(Object.entries(e2e.timingsMs).map(([k, v]) => [k, Math.round(v * 10) / 10])),
      pipelineOverhead: endToEndMsPerSlice / reference - 1,
      endToEndInferShare: e2e.timingsMs.infer! / (endToEndMsPerSlice * e2e.slices),
      peakRssMb,
      longSeries,
    };
  } finally {
    await registry.close();
    orthanc.child?.kill('SIGKILL');
    await rm(work, { recursive: true, force: true });
  }
}
