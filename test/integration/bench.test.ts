/** The benchmark in its quick mode, so that it cannot rot: it runs and reports every figure. */
import { expect, it } from 'vitest';
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

it('ldfsam bench --model ldfsam-hc18 --quick --json measures the shipped model, and says why its FLOPs are null', async () => {
  const r = await runCli(['bench', '--model', 'ldfsam-hc18', '--quick', '--json'], {}, 600_000);
  expect(r.code, r.stderr).toBe(0);
  const result = JSON.parse(r.stdout) as Record<string, unknown>;
  expectPipelineFigures(result);
  expect(result.config).toBe('ldfsam-hc18 1.2.0 (tiny)');
  expect(Object.keys(result.ortByBatch as object)).toEqual(['1', '4', '8']);
  // The shipped manifests predate export.gflopsPerSlice; no PyTorch weights ship, so no PyTorch or int8 figures.
  for (const key of [
    'gflopsPerSlice',
    'floorMsPerSlice',
    'fractionOfFloor',
    'torchMsPerSlice',
    'ortVsTorch',
    'ortInt8MsPerSlice',
    'int8Speedup',
  ])
    expect(result[key], key).toBeNull();
  expect((result.notes as string[]).join('\n')).toMatch(
    /gflopsPerSlice: null, because ldfsam-hc18 1\.2\.0's model\.json has no export\.gflopsPerSlice/,
  );
  // The text output says the same.
  const text = await runCli(['bench', '--help']);
  expect(text.stdout).toContain('--model <name|folder>');
}, 600_000);
