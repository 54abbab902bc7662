/** The benchmark in its quick mode, so that it cannot rot: it runs and reports every figure. */
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { shippedModel } from '../../server/src/bench/model-under-test.js';
import type { ModelManifest } from '../../server/src/models/manifest.js';
import { projectPath } from '../../server/src/util/paths.js';
import { runCli } from '../setup/cli.js';

/** Keys every run reports as numbers (> 0 but the overheads, which may be slightly negative). */
const NUMBERS = [
  'matmulGflops',
  'ortMsPerSlice',
  'endToEndMsPerSlice',
  'pipelineOverhead',
  'peakRssMb',
  'hostMsPerSlice',
  'hostMsPerSlice512',
  'hostMsPerSlice820',
  'endToEndInferShare',
];

function expectPipelineFigures(result: Record<string, unknown>): void {
  for (const key of NUMBERS) {
    expect(typeof result[key], key).toBe('number');
    expect(result[key] as number, key).toBeGreaterThan(key === 'pipelineOverhead' ? -1 : 0);
  }
  expect(result.provider).toBe('cpu'); // no GPU here: auto fell back
  expect(result.batchSize).toBe(4);
  const host = result.hostPath as Record<
    string,
    { slices: number; cpuMsPerSlice: number; wallMsPerSlice: number; pacsCpuMsPerSlice: number | null }
  >;
  expect(host['512']).toMatchObject({ slices: 28, cpuMsPerSlice: result.hostMsPerSlice512 });
  expect(host['820']).toMatchObject({ slices: 10, cpuMsPerSlice: result.hostMsPerSlice820 });
  // The host path is the pipeline without the model: its CPU time is far below the end to end's wall time per slice.
  expect(host['512']!.cpuMsPerSlice).toBeLessThan(result.endToEndMsPerSlice as number);
  expect(host['512']!.pacsCpuMsPerSlice).toBeGreaterThanOrEqual(0);
  const long = result.longSeries as {
    slices: number;
    pipelineMsPerSlice: number;
    overhead: number;
    startupMs: number;
    inferShare: number;
  };
  expect(long.slices).toBe(10);
  expect(long.pipelineMsPerSlice).toBeGreaterThan(0);
  expect(long.overhead).toBeGreaterThan(-1);
  expect(long.startupMs).toBeGreaterThan(0);
  expect(long.inferShare).toBeGreaterThan(0);
  expect(long.inferShare).toBeLessThanOrEqual(1);
}

it('ldfsam bench --quick --json reports every figure', async () => {
  const r = await runCli(['bench', '--quick', '--json'], {}, 600_000);
  expect(r.code, r.stderr).toBe(0);
  const result = JSON.parse(r.stdout) as Record<string, unknown>;
  expectPipelineFigures(result);
  for (const key of [
    'floorMsPerSlice',
    'gflopsPerSlice',
    'torchMsPerSlice',
    'ortVsTorch',
    'fractionOfFloor',
    'ortInt8MsPerSlice',
    'int8Speedup',
    'int8VsTorch',
  ]) {
    expect(typeof result[key], key).toBe('number');
    expect(result[key] as number, key).toBeGreaterThan(0);
  }
  expect(Object.keys(result.ortByBatch as object)).toEqual(['1', '4', '8']);
  expect(Object.keys(result.ortInt8ByBatch as object)).toEqual(['1', '4', '8']);
}, 600_000);

it('ldfsam bench --model ldfsam-ph2 --quick --json measures the shipped model: its FLOPs from model.json, no PyTorch or int8', async () => {
  const shipped = JSON.parse(readFileSync(projectPath('models', 'ldfsam-ph2', 'model.json'), 'utf8')) as ModelManifest;
  const r = await runCli(['bench', '--model', 'ldfsam-ph2', '--quick', '--json'], {}, 600_000);
  expect(r.code, r.stderr).toBe(0);
  const result = JSON.parse(r.stdout) as Record<string, unknown>;
  expectPipelineFigures(result);
  expect(result.config).toBe(`ldfsam-ph2 ${shipped.version} (${shipped.configuration.name})`);
  expect(Object.keys(result.ortByBatch as object)).toEqual(['1', '4', '8']);
  // The manifest records export.gflopsPerSlice, so the compute floor follows from it.
  expect(result.gflopsPerSlice).toBe(shipped.export.gflopsPerSlice);
  for (const key of ['floorMsPerSlice', 'fractionOfFloor']) expect(result[key] as number, key).toBeGreaterThan(0);
  // No PyTorch weights ship, and an int8 twin would be another model: no PyTorch or int8 figures.
  for (const key of ['torchMsPerSlice', 'ortVsTorch', 'ortInt8MsPerSlice', 'ortInt8ByBatch', 'int8Speedup', 'int8VsTorch'])
    expect(result[key], key).toBeNull();
  expect((result.notes as string[]).join('\n')).toContain('ldfsam-ph2 runs on CT here for timing only');
  const text = await runCli(['bench', '--help']);
  expect(text.stdout).toContain('--model <name|folder>');
}, 600_000);

it('a shipped model whose model.json lacks export.gflopsPerSlice: null FLOPs, and the notes say why', async () => {
  const work = await mkdtemp(join(tmpdir(), 'ldfsam-bench-model-'));
  try {
    const source = projectPath('models', 'ldfsam-ph2');
    const manifest = JSON.parse(readFileSync(join(source, 'model.json'), 'utf8')) as ModelManifest;
    const folder = join(work, 'old-export');
    await mkdir(folder);
    for (const f of manifest.files) await symlink(join(source, f.path), join(folder, f.path));
    const { gflopsPerSlice: _dropped, ...exportWithout } = manifest.export;
    await writeFile(join(folder, 'model.json'), JSON.stringify({ ...manifest, export: exportWithout }));
    const model = await shippedModel(folder, work);
    expect(model.gflopsPerSlice).toBeNull();
    expect(model.notes.join('\n')).toContain(
      `gflopsPerSlice: null, because ldfsam-ph2 ${manifest.version}'s model.json has no export.gflopsPerSlice`,
    );
    expect(model.manifest.modalities).toEqual(['*']); // the copy the bench runs accepts the CT
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}, 120_000);

it('ldfsam bench --model medsam-lite refuses a promptable-only model at once, saying why', async () => {
  const r = await runCli(['bench', '--model', 'medsam-lite', '--json'], {}, 120_000);
  expect(r.code).not.toBe(0);
  expect(r.stderr).toMatch(/medsam-lite [\d.]+ is promptable only \(no automatic graph\)/);
  expect(r.stderr).not.toContain('end to end'); // refused before any measuring
}, 120_000);
