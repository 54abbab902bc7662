/**
 * The model `ldfsam bench` measures: a configuration with seeded random weights (exported by
 * bench/tools/bench_models.py, which also times PyTorch eager and makes the int8 twin), or a shipped
 * model (`--model <name|folder>`), whose PyTorch weights are not shipped.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { LdfsamError } from '../errors.js';
import { hasAutoMode, type ModelManifest } from '../models/manifest.js';
import { ModelRegistry } from '../inference/registry.js';
import { projectPath } from '../util/paths.js';

const run = promisify(execFile);

export interface ModelUnderTest {
  /** What the figures are of, e.g. "tiny (random weights)" or "ldfsam-hc18 1.2.0". */
  label: string;
  /** The folder the bench runs (for a shipped model: a copy that accepts every modality, see below). */
  folder: string;
  manifest: ModelManifest;
  int8Folder: string | null;
  torchMsPerSlice: number | null;
  gflopsPerSlice: number | null;
  notes: string[];
}

export async function python(script: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await run(projectPath('models', '.venv', 'bin', 'python'), [projectPath(script), ...args], {
    env: { ...process.env, ...env },
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout;
}

/**
 * OpenBLAS's faster SkylakeX kernel for PyTorch where the CPU has AVX-512 (shared/docs/environment-facts.md
 * measured it); on a CPU without it that kernel dies of SIGILL, so OpenBLAS picks its own there.
 */
export function openblasCoreType(cpuinfo = readCpuinfo()): Record<string, string> {
  return /^flags\s*:.*\bavx512f\b/m.test(cpuinfo) ? { OPENBLAS_CORETYPE: 'SkylakeX' } : {};
}

function readCpuinfo(): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}

/** A random-weight configuration, exported (once, cached) with PyTorch's time and the int8 twin. */
export async function randomModel(config: 'tiny' | 'full', slices: number): Promise<ModelUnderTest> {
  const cache = projectPath('bench', '.cache', config);
  const out = await python(
    'bench/tools/bench_models.py',
    ['--config', config, '--out', cache, '--slices', String(Math.max(3, Math.min(slices, 16)))],
    { ...openblasCoreType(), OMP_WAIT_POLICY: 'PASSIVE' },
  );
  const torch = JSON.parse(out.trim().split('\n').at(-1)!) as { torchMsPerSlice: number; gflopsPerSlice: number };
  const manifest = JSON.parse(await readFile(join(cache, 'model.json'), 'utf8')) as ModelManifest;
  return {
    label: `${config} (random weights, seed 0)`,
    folder: cache,
    manifest,
    int8Folder: join(cache, 'int8'),
    torchMsPerSlice: torch.torchMsPerSlice,
    gflopsPerSlice: torch.gflopsPerSlice,
    notes: [],
  };
}

/**
 * A shipped model by name or folder. The bench runs it on the shared CT and a series generated from
 * it, whatever modalities the model is made for (timing only: a fetal-head model on CT segments
 * nothing useful, but costs the same), so it runs a copy of the folder (the ONNX files linked, the
 * hashes unchanged) whose manifest accepts every modality.
 */
export async function shippedModel(nameOrFolder: string, work: string): Promise<ModelUnderTest> {
  const registry = await ModelRegistry.load([], {});
  const model = await registry.resolve(nameOrFolder);
  await registry.close();
  const m = model.manifest;
  if (!hasAutoMode(m))
    throw new LdfsamError(
      'INVALID_INPUT',
      `${m.name} ${m.version} is promptable only (no automatic graph): ldfsam bench measures the automatic pipeline, which never runs it; ldfsam bench-interactive measures it`,
    );
  const folder = join(work, `model-${m.name}`);
  await mkdir(folder, { recursive: true });
  for (const f of m.files) await symlink(resolve(model.folder, f.path), join(folder, f.path));
  // No presence gate either: it would find no dermoscopy lesion (say) in the CT and skip encoding and storing.
  const timing: ModelManifest = { ...m, modalities: ['*'], postprocessing: { ...m.postprocessing, presence: undefined } };
  await writeFile(join(folder, 'model.json'), JSON.stringify(timing, null, 2));
  const gflops = (m.export as { gflopsPerSlice?: unknown }).gflopsPerSlice;
  const notes = [
    `${m.name} runs on CT here for timing only (its manifest accepts ${m.modalities.join(', ')}; a copy accepting every modality is measured)`,
    'PyTorch and int8 figures: not measured for a shipped model (its PyTorch weights are not shipped, and its int8 twin would be a different model)',
  ];
  if (typeof gflops !== 'number')
    notes.push(
      `gflopsPerSlice: null, because ${m.name} ${m.version}'s model.json has no export.gflopsPerSlice (exported before the exporter recorded it); so no compute floor either`,
    );
  return {
    label: `${m.name} ${m.version} (${m.configuration.name})`,
    folder,
    manifest: timing,
    int8Folder: null,
    torchMsPerSlice: null,
    gflopsPerSlice: typeof gflops === 'number' ? gflops : null,
    notes,
  };
}
