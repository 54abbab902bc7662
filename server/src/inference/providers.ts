/**
 * Which onnxruntime execution provider runs the models: `LDFSAM_PROVIDER` / `--provider`.
 * - `cpu`: the CPU provider, nothing is probed.
 * - `cuda`: the CUDA provider; when it cannot run (provider library missing, no driver, no GPU) the
 *   command stops with the reason.
 * - `auto`: CUDA when it runs, else the CPU, with one log line saying why not CUDA.
 * "Runs" is tested, not guessed from files: a one-node graph is loaded and run with the CUDA provider
 * (the provider library loads, the CUDA runtime finds a driver and a GPU). Decided once per process.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { LdfsamError } from '../errors.js';
import { addModel } from './onnx-graph.js';

export type ProviderWish = 'auto' | 'cpu' | 'cuda';
export type Provider = 'cpu' | 'cuda';

export interface ProviderChoice {
  provider: Provider;
  /** What was asked for. */
  wanted: ProviderWish;
  /** The GPU index inside CUDA_VISIBLE_DEVICES' numbering (always 0: one worker, one GPU), or null on the CPU. */
  device: number | null;
  /** Why CUDA is not used, when `auto` fell back to the CPU. */
  fallbackReason?: string;
}

/** Slices per inference call when LDFSAM_BATCH_SIZE is not set. */
export const DEFAULT_BATCH_SIZE: Record<Provider, number> = {
  // Measured: 4 is 21% faster per slice than 1 for `tiny` on 2 cores; 8 no better (bench/RESULTS.md).
  cpu: 4,
  // A starting point, not measured here (no GPU): bench/gpu-check.sh reports onnxruntime per batch
  // 1..64 on the card, so a deployment can set LDFSAM_BATCH_SIZE to its best one.
  cuda: 16,
};

/** The file onnxruntime loads for the CUDA provider, beside its own library. */
export const CUDA_PROVIDER_LIBRARY = 'libonnxruntime_providers_cuda.so';

/** onnxruntime-node's native folder for this platform: libonnxruntime.so.1 and the provider libraries. */
export function onnxruntimeBinDir(): string {
  const require = createRequire(import.meta.url);
  const pkg = require.resolve('onnxruntime-node/package.json');
  return join(dirname(pkg), 'bin', 'napi-v6', process.platform, process.arch);
}

export type CudaProbe = () => Promise<void>;

export interface ResolveOptions {
  /** Where onnxruntime looks for its provider libraries (default: onnxruntime-node's bin folder). */
  libraryDir?: string;
  /** Loads and runs a tiny graph on CUDA; throws with the reason when it cannot (injectable for tests). */
  probe?: CudaProbe;
  /** The one line saying why `auto` did not pick CUDA. */
  log?: (line: string) => void;
}

/** Why CUDA cannot run here, or undefined when it can. */
export async function cudaUnavailableReason(options: ResolveOptions = {}): Promise<string | undefined> {
  if (process.platform !== 'linux' || process.arch !== 'x64')
    return `onnxruntime-node has no CUDA provider for ${process.platform}/${process.arch}`;
  const dir = options.libraryDir ?? onnxruntimeBinDir();
  if (!existsSync(join(dir, CUDA_PROVIDER_LIBRARY)))
    return `onnxruntime-node's CUDA provider library is not installed (${join(dir, CUDA_PROVIDER_LIBRARY)} is missing; run npm run setup:gpu)`;
  try {
    await (options.probe ?? probeCuda)();
    return undefined;
  } catch (err) {
    // onnxruntime's own message says only "Failed to load shared library"; ldd names what is missing.
    const missing = await unresolvedLibraries(join(dir, CUDA_PROVIDER_LIBRARY));
    const why = missing.length
      ? ` (not found: ${missing.map((m) => (m === 'libcuda.so.1' ? `${m}, the NVIDIA driver's library` : m)).join(', ')})`
      : '';
    return `the CUDA provider does not run here: ${firstLine((err as Error).message)}${why}`;
  }
}

async function unresolvedLibraries(file: string): Promise<string[]> {
  try {
    const { stdout } = await promisify(execFile)('ldd', [file], { timeout: 30_000 });
    return [...stdout.matchAll(/^\s*(\S+)\s+=>\s+not found/gm)].map((m) => m[1]!);
  } catch {
    return [];
  }
}

let resolved: Promise<ProviderChoice> | undefined;
let resolvedWish: ProviderWish | undefined;

/** The provider for this process; probed once per wish, then remembered. */
export function resolveProvider(wanted: ProviderWish, options: ResolveOptions = {}): Promise<ProviderChoice> {
  if (!resolved || resolvedWish !== wanted || options.probe || options.libraryDir) {
    resolvedWish = wanted;
    resolved = choose(wanted, options);
    resolved.catch(() => (resolved = undefined));
  }
  return resolved;
}

async function choose(wanted: ProviderWish, options: ResolveOptions): Promise<ProviderChoice> {
  if (wanted === 'cpu') return { provider: 'cpu', wanted, device: null };
  const reason = await cudaUnavailableReason(options);
  if (reason === undefined) return { provider: 'cuda', wanted, device: 0 };
  if (wanted === 'cuda')
    throw new LdfsamError('CONFIG_INVALID', `LDFSAM_PROVIDER=cuda (--provider cuda), but CUDA cannot run: ${reason}`);
  options.log?.(`inference on the CPU: ${reason}`);
  return { provider: 'cpu', wanted, device: null, fallbackReason: reason };
}

/** Loads and runs y = x + x on the CUDA provider; throws onnxruntime's error when it cannot. */
async function probeCuda(): Promise<void> {
  const ort = await import('onnxruntime-node');
  const session = await ort.InferenceSession.create(addModel(), {
    executionProviders: [{ name: 'cuda', deviceId: 0 }],
    graphOptimizationLevel: 'disabled',
  });
  try {
    const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from([1.5]), [1]) });
    const y = (out.y?.data as Float32Array | undefined)?.[0];
    if (y !== 3) throw new Error(`the probe graph computed ${y} instead of 3`);
  } finally {
    await session.release();
  }
}

function firstLine(text: string): string {
  return (
    text
      .split('\n')
      .find((l) => l.trim())
      ?.trim() ?? text
  );
}
