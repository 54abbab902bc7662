/** `ldfsam bench`: the measuring stick (see server/src/bench/bench.ts and bench/RESULTS.md). */
import type { Command } from 'commander';
import { runBench, type BenchResult } from '../../bench/bench.js';
import { LdfsamError } from '../../errors.js';
import { action, configFrom, printJson, table, type CommonFlags } from '../context.js';

interface BenchFlags extends CommonFlags {
  modelConfig: string;
  model?: string;
  provider?: string;
  slices: string;
  longSlices: string;
  longSize: string;
  batchSize?: string;
  quick?: boolean;
}

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description(
      'measure: compute floor, onnxruntime-node (fp32, int8) vs PyTorch, the host path per slice, end to end on a real series, peak memory on a long series',
    )
    .option('--model-config <name>', 'model configuration, random weights (tiny or full)', 'tiny')
    .option('--model <name|folder>', 'a shipped model instead of a random-weight configuration (no PyTorch or int8 figures)')
    .option('--provider <provider>', 'onnxruntime execution provider: auto, cpu or cuda (env LDFSAM_PROVIDER, default auto)')
    .option('--slices <n>', 'slices for the model-only timings', '16')
    .option('--long-slices <n>', 'slices of the generated long series (0 = skip)', '600')
    .option('--long-size <n>', 'rows = columns of the long series', '820')
    .option('--batch-size <n>', "slices per inference call in the pipeline (env LDFSAM_BATCH_SIZE; default: the provider's)")
    .option('--quick', 'a quick run (CI): 4 slices, a 10-slice long series')
    .option('--json', 'print the figures as one JSON object')
    .action(
      action(async (flags: BenchFlags) => {
        if (flags.modelConfig !== 'tiny' && flags.modelConfig !== 'full')
          throw new LdfsamError('INVALID_INPUT', '--model-config must be tiny or full');
        const config = configFrom(flags, { provider: flags.provider, batchSize: flags.batchSize });
        const result = await runBench({
          config: flags.modelConfig,
          model: flags.model,
          provider: config.provider,
          slices: flags.quick ? 4 : Number(flags.slices),
          longSlices: flags.quick ? 10 : Number(flags.longSlices),
          longSize: Number(flags.longSize),
          batchSize: config.batchSize,
          orthancBin: config.orthancBin,
          orthancPluginsDir: config.orthancPluginsDir,
          log: (line) => process.stderr.write(`${line}\n`),
        });
        if (flags.json) return printJson(result);
        process.stdout.write(`${text(result)}\n`);
      }),
    );
}

function text(result: BenchResult): string {
  const f = (v: number | null | undefined, d = 1) => (v === null || v === undefined ? '-' : v.toFixed(d));
  const long = result.longSeries;
  const h = result.hostPath;
  const hostRow = (size: string, fig: BenchResult['hostPath']['512'] | null) => [
    `host path per ${size} slice (${fig?.slices ?? 0} slices; node CPU, every thread; the model replayed)`,
    fig
      ? `${f(fig.cpuMsPerSlice, 2)} ms CPU (wall ${f(fig.wallMsPerSlice, 2)} ms; the PACS ${f(fig.pacsCpuMsPerSlice, 2)} ms CPU)`
      : '-',
  ];
  return `${table([
    ['FIGURE', 'VALUE'],
    ['model', `${result.config} on ${result.provider.toUpperCase()}, batch ${result.batchSize} in the pipeline`],
    ['fp32 matrix-product rate (onnxruntime-node)', `${f(result.matmulGflops)} GFLOP/s`],
    ['model FLOPs per slice', result.gflopsPerSlice === null ? '- (see notes)' : `${f(result.gflopsPerSlice, 2)} GFLOP`],
    ['compute floor per slice', `${f(result.floorMsPerSlice)} ms`],
    ...Object.entries(result.ortByBatch).map(([b, ms]) => [
      `onnxruntime-node, batch ${b}`,
      `${f(ms)} ms/slice (${f(1000 / ms)} slices/s)`,
    ]),
    ...Object.entries(result.ortInt8ByBatch ?? {}).map(([b, ms]) => [
      `onnxruntime-node int8 (MatMul weights), batch ${b}`,
      `${f(ms)} ms/slice (${f(1000 / ms)} slices/s)`,
    ]),
    ['PyTorch eager, batch 1', `${f(result.torchMsPerSlice)} ms/slice`],
    ['onnxruntime-node vs PyTorch (torch time / ort time, batch 1)', `${f(result.ortVsTorch, 2)}x`],
    ['onnxruntime-node int8 vs PyTorch fp32 (batch 1)', `${f(result.int8VsTorch, 2)}x`],
    ['int8 speed-up over fp32 (onnxruntime-node, best batch)', `${f(result.int8Speedup, 2)}x`],
    [`pixel work per ${long?.size ?? ''} px slice (values, preprocess, logits to bits)`, `${f(result.hostMsPerSlice, 2)} ms`],
    hostRow('512x512', h['512']),
    hostRow(`${long?.size ?? 820}x${long?.size ?? 820}`, h['820']),
    ['fraction of the compute floor (best batch)', f(result.fractionOfFloor, 2)],
    [`end to end (${result.endToEndSlices} CT slices in Orthanc)`, `${f(result.endToEndMsPerSlice)} ms/slice`],
    ...Object.entries(result.stageMs).map(([k, v]) => [`  stage ${k}`, `${v} ms`]),
    ['pipeline overhead (end to end / model-only - 1)', `${f(result.pipelineOverhead * 100)}%`],
    ['share of the end-to-end time in inference (same run)', `${f(result.endToEndInferShare * 100)}%`],
    [
      `long series (${long?.slices ?? 0} slices): process, pipeline stages`,
      long
        ? `${f(long.msPerSlice)}, ${f(long.pipelineMsPerSlice)} ms/slice (overhead ${f(long.overhead * 100)}%; ${f(long.inferShare * 100)}% in inference; start-up ${f(long.startupMs / 1000)} s)`
        : '-',
    ],
    [
      `peak RSS, ${long?.slices ?? 0} slices ${long?.size ?? 0}x${long?.size ?? 0}`,
      result.peakRssMb === null ? '-' : `${result.peakRssMb} MB`,
    ],
  ])}\n\nnotes:\n${result.notes.map((n) => `- ${n}`).join('\n')}`;
}
