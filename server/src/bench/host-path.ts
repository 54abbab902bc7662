/**
 * The host path of `ldfsam bench`: what the pipeline costs the machine besides the model. A series
 * in the PACS goes through the whole pipeline (plan, fetch, multipart, decoding, preprocessing,
 * postprocessing and clean-ups, SEG encoding, store, read-back) with the model replaced by a replay
 * of logits it gave earlier, so the figure is the node process's CPU time per slice (all its
 * threads: main, decoder, GC) with no inference in it. The PACS's own CPU time is read apart.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import type { DicomWebClient } from '../dicomweb/client.js';
import type { InferenceWorker, Outputs } from '../inference/inference-worker.js';
import { modalityValues } from '../dicom/pixels.js';
import type { PixelFormat } from '../dicom/series-plan.js';
import type { ModelManifest } from '../models/manifest.js';
import { ModelRegistry, type RegisteredModel } from '../inference/registry.js';
import { logitsToBits } from '../pipeline/postprocess.js';
import { preprocessSlice } from '../pipeline/preprocess.js';
import { segmentSeries } from '../pipeline/segment.js';
import { median } from './median.js';

/**
 * Per-slice model outputs recorded from real runs, replayed in a cycle: every output the model gave
 * (the logits, and e.g. the presence features a manifest's postprocessing.presence reads).
 */
export class LogitsReplay {
  private readonly slices: Record<string, Float32Array>[] = [];
  private readonly sliceDims: Record<string, number[]> = {};
  private next = 0;

  record(outputs: Outputs): void {
    const batch = Object.values(outputs)[0]?.dims[0] ?? 0;
    for (let b = 0; b < batch; b++) {
      const slice: Record<string, Float32Array> = {};
      for (const [name, o] of Object.entries(outputs)) {
        const per = o.data.length / o.dims[0]!;
        slice[name] = o.data.slice(b * per, (b + 1) * per);
        this.sliceDims[name] = o.dims.slice(1);
      }
      this.slices.push(slice);
    }
  }

  get recorded(): number {
    return this.slices.length;
  }

  /** A batch of `n` slices' outputs, as the inference worker would hand them over. */
  batch(n: number): Outputs {
    const picked = Array.from({ length: n }, () => this.slices[this.next++ % this.slices.length]!);
    const out: Outputs = {};
    for (const [name, dims] of Object.entries(this.sliceDims)) {
      const per = picked[0]![name]!.length;
      const data = new Float32Array(n * per);
      picked.forEach((slice, b) => data.set(slice[name]!, b * per));
      out[name] = { data, dims: [n, ...dims] };
    }
    return out;
  }
}

/** Records what a real worker returns (the warm-up run of the end-to-end figure). */
export function recordInto(worker: InferenceWorker, replay: LogitsReplay): () => void {
  const run = worker.run.bind(worker);
  worker.run = async (input, dims) => {
    const outputs = await run(input, dims);
    replay.record(outputs);
    return outputs;
  };
  return () => void (worker.run = run);
}

/** A registry whose models "run" by replaying recorded logits: the pipeline without inference. */
class ReplayRegistry extends ModelRegistry {
  constructor(private readonly replay: LogitsReplay) {
    super({ executionProvider: 'cpu' });
  }

  override worker(): Promise<InferenceWorker> {
    const replay = this.replay;
    // As the worker: the outputs, and the input handed back once the batch is done.
    const spare: Float32Array[] = [];
    const stub = {
      run: async (input: Float32Array, dims: number[]) => {
        const outputs = replay.batch(dims[0]!);
        await Promise.resolve();
        if (spare.length < 2) spare.push(new Float32Array(input.buffer));
        return outputs;
      },
      takeInput: (length: number) => {
        const i = spare.findIndex((b) => b.length === length);
        return i < 0 ? undefined : spare.splice(i, 1)[0];
      },
      close: async () => undefined,
    };
    return Promise.resolve(stub as unknown as InferenceWorker);
  }
}

/** utime + stime of a process in ms (Linux /proc), or null when it cannot be read. */
export function processCpuMs(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // clock ticks (USER_HZ 100)
  } catch {
    return null;
  }
}

/** CPU ms of this process's main thread and of its other threads together (V8's concurrent GC and compilers, libuv, inference), Linux /proc. */
export function threadCpuMs(): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      try {
        const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
        const name = Number(tid) === process.pid ? 'main' : 'other threads';
        const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
        out[name] = (out[name] ?? 0) + ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
      } catch {
        // the thread ended meanwhile
      }
    }
  } catch {
    // no /proc
  }
  return out;
}

export interface HostPathFigure {
  slices: number;
  /** Node process CPU (all threads) per slice, the whole host path; median of the runs. */
  cpuMsPerSlice: number;
  /** Wall time per slice of the same runs (the PACS's work included). */
  wallMsPerSlice: number;
  /** The PACS's CPU per slice during the runs (Orthanc, a process of its own), when readable. */
  pacsCpuMsPerSlice: number | null;
  runs: number;
  /** Node CPU per slice of each run, in order. */
  cpuRunsMsPerSlice: number[];
  /** Garbage collection pauses of the main thread per slice (its share of cpuMsPerSlice), and the major (mark-compact) collections per run, medians. */
  gcMsPerSlice: number;
  majorGcsPerRun: number;
  /** Node CPU per slice of the main thread and of the other threads (V8's concurrent GC and compilers, ...), the runs together; where /proc is readable. */
  threadCpuMsPerSlice: Record<string, number>;
  /** Kernel time per slice of the node process (in cpuMsPerSlice), median. */
  systemMsPerSlice: number;
}

/** The main thread's GC pauses while `run` runs: total ms and the number of major collections. */
async function withGcPauses(run: () => Promise<unknown>): Promise<{ ms: number; major: number }> {
  const entries: PerformanceEntry[] = [];
  const observer = new PerformanceObserver((list) => entries.push(...list.getEntries()));
  observer.observe({ entryTypes: ['gc'] });
  await run();
  await new Promise((resolve) => setImmediate(resolve)); // the observer is called asynchronously
  observer.disconnect();
  const kind = (e: PerformanceEntry) => (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
  return {
    ms: entries.reduce((sum, e) => sum + e.duration, 0),
    major: entries.filter((e) => kind(e) === constants.NODE_PERFORMANCE_GC_MAJOR).length,
  };
}

/** The whole pipeline over a stored series with replayed logits; `runs` measured after one warm-up. */
export async function measureHostPath(
  client: DicomWebClient,
  model: RegisteredModel,
  replay: LogitsReplay,
  series: { studyInstanceUID: string; seriesInstanceUID: string },
  opts: { runs: number; batchSize: number; pacsPid?: number },
): Promise<HostPathFigure> {
  const registry = new ReplayRegistry(replay);
  await registry.add(model.folder);
  const request = { ...series, model: model.manifest.name };
  const first = await segmentSeries(client, registry, request, { batchSize: opts.batchSize }); // warm-up (JIT)
  const cpu: number[] = [];
  const wall: number[] = [];
  const pacs: number[] = [];
  const gc: number[] = [];
  const major: number[] = [];
  const system: number[] = [];
  const threads0 = threadCpuMs();
  for (let i = 0; i < opts.runs; i++) {
    const p0 = processCpuMs(opts.pacsPid);
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const pauses = await withGcPauses(() => segmentSeries(client, registry, request, { batchSize: opts.batchSize }));
    wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
    system.push(c.system / 1000);
    gc.push(pauses.ms);
    major.push(pauses.major);
    const p1 = processCpuMs(opts.pacsPid);
    if (p0 !== null && p1 !== null) pacs.push(p1 - p0);
  }
  const threads1 = threadCpuMs();
  const n = first.slices;
  const threadCpuMsPerSlice = Object.fromEntries(
    Object.entries(threads1)
      .map(([name, ms]) => [name, (ms - (threads0[name] ?? 0)) / (n * opts.runs)] as const)
      .filter(([, ms]) => ms > 0),
  );
  return {
    slices: n,
    cpuMsPerSlice: median(cpu) / n,
    wallMsPerSlice: median(wall) / n,
    pacsCpuMsPerSlice: pacs.length ? median(pacs) / n : null,
    runs: opts.runs,
    cpuRunsMsPerSlice: cpu.map((c) => c / n),
    gcMsPerSlice: median(gc) / n,
    majorGcsPerRun: median(major),
    threadCpuMsPerSlice,
    systemMsPerSlice: median(system) / n,
  };
}

/**
 * The pipeline's pixel work on one synthetic slice of `rows` x `rows` 16-bit pixels, outside the
 * model and the network: modality values, intensity + resize into the model input, logits back to
 * packed mask bits. Median ms over `n` slices (the older, narrower figure: `hostMsPerSlice`).
 */
export function pixelWork(rows: number, size: number, n: number): number {
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
