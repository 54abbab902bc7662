/** The benchmark in its quick mode, so that it cannot rot: it runs and reports every figure. */
import { expect, it } from 'vitest';
import { runCli } from '../setup/cli.js';

it('ldfsam bench --quick --json reports every figure', async () => {
  const r = await runCli(['bench', '--quick', '--json'], {}, 600_000);
  expect(r.code, r.stderr).toBe(0);
  const result = JSON.parse(r.stdout) as Record<string, unknown>;
  for (const key of [
    'floorMsPerSlice',
    'ortMsPerSlice',
    'torchMsPerSlice',
    'ortVsTorch',
    'fractionOfFloor',
    'endToEndMsPerSlice',
    'pipelineOverhead',
    'peakRssMb',
    'ortInt8MsPerSlice',
    'int8Speedup',
    'int8VsTorch',
    'hostMsPerSlice',
    'endToEndInferShare',
  ]) {
    expect(typeof result[key], key).toBe('number');
    expect(result[key] as number, key).toBeGreaterThan(key === 'pipelineOverhead' ? -1 : 0);
  }
  expect(Object.keys(result.ortByBatch as object)).toEqual(['1', '4', '8']);
  expect(Object.keys(result.ortInt8ByBatch as object)).toEqual(['1', '4', '8']);
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
}, 600_000);
