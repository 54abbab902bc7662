/**
 * The report of bench/gpu-check.sh: reads what its steps left in OUT_DIR and writes
 * OUT_DIR/gpu-check.json (everything) and OUT_DIR/gpu-check.md (one table, with issue 18's targets).
 *
 * usage: node dist/bench/gpu-report.js OUT_DIR [--missing] [--seconds N]
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchResult } from '../server/src/bench/bench.js';
import type { GpuReport } from '../server/src/inference/gpu-setup.js';

const [out, ...flags] = process.argv.slice(2);
if (!out) throw new Error('usage: gpu-report.js OUT_DIR [--missing] [--seconds N]');
const read = (name: string) => (existsSync(join(out, name)) ? readFileSync(join(out, name), 'utf8') : undefined);
const json = <T>(name: string): T | undefined => {
  try {
    const text = read(name);
    return text ? (JSON.parse(text) as T) : undefined;
  } catch {
    return undefined;
  }
};
const gpu = json<GpuReport>('gpu.json');

if (flags.includes('--missing')) {
  const lacks = gpu?.lacks.length
    ? gpu.lacks
    : [`ldfsam gpu check failed: ${(read('gpu.log') ?? '').trim().split('\n').at(-1) ?? ''}`];
  const text = `GPU check not run: this machine lacks\n${lacks.map((l) => `  - ${l}`).join('\n')}\n`;
  process.stderr.write(text);
  writeFileSync(
    join(out, 'gpu-check.json'),
    `${JSON.stringify({ date: new Date().toISOString(), ran: false, machine: gpu ?? null, lacks }, null, 2)}\n`,
  );
  writeFileSync(
    join(out, 'gpu-check.md'),
    `# GPU check (${new Date().toISOString()})\n\nNot run: this machine lacks\n\n${lacks.map((l) => `- ${l}`).join('\n')}\n`,
  );
  process.exit(0);
}

interface TorchRow {
  runtime: string;
  precision: string;
  batch: number;
  msPerSlice: number;
}
const steps = ['cuda-shipped', 'cuda-full', 'cpu-shipped', 'cpu-full'] as const;
const runs = Object.fromEntries(
  steps.map((s) => {
    const rc = Number(read(`${s}.rc`) ?? 'NaN');
    const result = rc === 0 ? json<BenchResult>(`${s}.json`) : undefined;
    const failure =
      rc === 0
        ? undefined
        : `${rc === 124 || rc === 137 ? 'ran out of time' : `exit ${rc}`}: ${(read(`${s}.log`) ?? '').trim().split('\n').slice(-2).join(' ')}`;
    return [s, { rc, seconds: Number(read(`${s}.seconds`) ?? 'NaN'), result: result ?? null, failure: failure ?? null }];
  }),
);
const torch = json<{ device: string; rows: TorchRow[] }>('torch-figures.json');
const utilisation = (read('util-cuda-full.csv') ?? '')
  .split('\n')
  .map(Number)
  .filter((v) => Number.isFinite(v) && v >= 0);

const f = (v: number | null | undefined, d = 1) => (v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));
const rows = [
  '| run | model | provider, batch | onnxruntime ms/slice (best batch) | 28-slice CT end to end, ms/slice | long series: s PACS to SEG stored | its overhead over model-only | share in inference | host CPU ms/slice 512 / 820 |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
];
for (const s of steps) {
  const r = runs[s]!;
  const b = r.result;
  if (!b) {
    rows.push(`| ${s} | | | ${r.failure ?? 'not run'} | | | | | |`);
    continue;
  }
  const best = Object.entries(b.ortByBatch).sort((x, y) => x[1] - y[1])[0]!;
  const long = b.longSeries;
  rows.push(
    `| ${s} | ${b.config} | ${b.provider}, ${b.batchSize} | ${f(best[1], 2)} (batch ${best[0]}) | ${f(b.endToEndMsPerSlice, 2)} | ${long ? `${f((long.pipelineMsPerSlice * long.slices) / 1000, 2)} (${long.slices} x ${long.size}x${long.size})` : '-'} | ${long ? `${f(long.overhead * 100)}%` : '-'} | ${long ? `${f(long.inferShare * 100)}%` : '-'} | ${f(b.hostMsPerSlice512, 2)} / ${f(b.hostMsPerSlice820, 2)} |`,
  );
}

// onnxruntime-node CUDA against PyTorch CUDA bf16, same model (full, random weights) and batch.
const ortFull = runs['cuda-full']?.result?.ortByBatch ?? {};
const versus = (torch?.rows ?? [])
  .filter((r) => r.runtime === 'pytorch' && r.precision === 'bf16' && ortFull[String(r.batch)] !== undefined)
  .map((r) => ({
    batch: r.batch,
    torchBf16MsPerSlice: r.msPerSlice,
    ortMsPerSlice: ortFull[String(r.batch)]!,
    ratio: r.msPerSlice / ortFull[String(r.batch)]!,
  }));
const long = runs['cuda-full']?.result?.longSeries;
const seriesSeconds = long ? (long.pipelineMsPerSlice * long.slices) / 1000 : null;
const bestVs = versus.length ? Math.max(...versus.map((v) => v.ratio)) : null;
const meanUtil = utilisation.length ? utilisation.reduce((a, b) => a + b, 0) / utilisation.length : null;
const targets = [
  '| target (issue 18, one H100-class GPU) | measured |',
  '| --- | --- |',
  `| 400-slice 512x512 series, PACS to SEG stored, \`full\`: <= 5 s | ${f(seriesSeconds, 2)} s |`,
  `| GPU busy >= 80% of the inference stage | ${meanUtil === null ? '-' : `${f(meanUtil)}% mean utilisation over the whole cuda-full run (${utilisation.length} samples of nvidia-smi; a lower bound for the inference stage)`} |`,
  `| onnxruntime-node CUDA >= 0.8x PyTorch CUDA bf16, same model and batch | ${bestVs === null ? '- (no CUDA PyTorch or no common batch)' : `${f(bestVs, 2)}x at best; per batch ${versus.map((v) => `${v.batch}: ${f(v.ratio, 2)}x`).join(', ')}`} |`,
];
const d = gpu?.driver;
const machine = `${d?.gpus.map((g) => `${g.name} (${g.memoryMiB} MiB)`).join(', ') ?? 'no GPU'}, driver ${d?.driverVersion ?? '-'} (CUDA ${d?.cudaVersion ?? '-'}), onnxruntime-node ${gpu?.ortNodeVersion ?? '-'}`;
const seconds = flags.includes('--seconds') ? Number(flags[flags.indexOf('--seconds') + 1]) : null;
const md = `# GPU check (${new Date().toISOString()})\n\n${machine}; the whole check took ${f(seconds, 0)} s.\n\n${rows.join('\n')}\n\n${targets.join('\n')}\n`;
writeFileSync(join(out, 'gpu-check.md'), md);
writeFileSync(
  join(out, 'gpu-check.json'),
  `${JSON.stringify({ date: new Date().toISOString(), ran: true, seconds, machine: gpu, runs, torch: torch ?? null, ortVsTorchBf16: versus, gpuUtilisation: utilisation }, null, 2)}\n`,
);
process.stdout.write(md);
