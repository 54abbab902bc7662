/** `ldfsam bench`: the measuring stick (see server/src/bench/bench.ts and bench/RESULTS.md). */
import type { Command } from 'commander';
import { runBench } from '../../bench/bench.js';
import { LdfsamError } from '../../errors.js';
import { action, configFrom, printJson, table, type CommonFlags } from '../context.js';

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description(
      'measure: compute floor, onnxruntime-node (fp32, int8) vs PyTorch, host work per slice, end to end on a real series, peak memory on a long series',
    )
    .option('--model-config <name>', 'model configuration, random weights (tiny or full)', 'tiny')
    .option('--slices <n>', 'slices for the model-only timings', '16')
    .option('--long-slices <n>', 'slices of the generated long series for peak memory (0 = skip)', '600')
    .option('--long-size <n>', 'rows = columns of the long series', '820')
    .option('--batch-size <n>', 'slices per inference call in the pipeline (env LDFSAM_BATCH_SIZE)')
    .option('--quick', 'a quick run (CI): 4 slices, a 10-slice long series')
    .option('--json', 'print the figures as one JSON object')
    .action(
      action(
        async (
          flags: CommonFlags & {
            modelConfig: string;
            slices: string;
            longSlices: string;
            longSize: string;
            batchSize?: string;
            quick?: boolean;
          },
        ) => {
          if (flags.modelConfig !== 'tiny' && flags.modelConfig !== 'full')
            throw new LdfsamError('INVALID_INPUT', '--model-config must be tiny or full');
          const config = configFrom(flags);
          const result = await runBench({
            config: flags.modelConfig,
            slices: flags.quick ? 4 : Number(flags.slices),
            longSlices: flags.quick ? 10 : Number(flags.longSlices),
            longSize: Number(flags.longSize),
            batchSize: Number(flags.batchSize ?? config.batchSize),
            orthancBin: config.orthancBin,
            orthancPluginsDir: config.orthancPluginsDir,
            log: (line) => {
              if (!flags.json) process.stderr.write(`${line}\n`);
            },
          });
          if (flags.json) return printJson(result);
          const f = (v: number | null, d = 1) => (v === null ? '-' : v.toFixed(d));
          process.stdout.write(
            `${table([
              ['FIGURE', 'VALUE'],
              ['fp32 matrix-product rate (onnxruntime-node)', `${f(result.matmulGflops)} GFLOP/s`],
              [`model FLOPs per slice (${result.config})`, `${f(result.gflopsPerSlice, 2)} GFLOP`],
              ['compute floor per slice', `${f(result.floorMsPerSlice)} ms`],
              ...Object.entries(result.ortByBatch).map(([b, ms]) => [
                `onnxruntime-node, batch ${b}`,
                `${f(ms)} ms/slice (${f(1000 / ms)} slices/s)`,
              ]),
              ...Object.entries(result.ortInt8ByBatch).map(([b, ms]) => [
                `onnxruntime-node int8 (MatMul weights), batch ${b}`,
                `${f(ms)} ms/slice (${f(1000 / ms)} slices/s)`,
              ]),
              ['PyTorch eager, batch 1', `${f(result.torchMsPerSlice)} ms/slice`],
              ['onnxruntime-node vs PyTorch (torch time / ort time, batch 1)', `${f(result.ortVsTorch, 2)}x`],
              ['onnxruntime-node int8 vs PyTorch fp32 (batch 1)', `${f(result.int8VsTorch, 2)}x`],
              ['int8 speed-up over fp32 (onnxruntime-node, best batch)', `${f(result.int8Speedup, 2)}x`],
              [
                `host work per ${result.longSeries?.size ?? ''} px slice (values, preprocess, logits to bits)`,
                `${f(result.hostMsPerSlice, 2)} ms`,
              ],
              ['fraction of the compute floor (best batch)', f(result.fractionOfFloor, 2)],
              [`end to end (${result.endToEndSlices} CT slices in Orthanc)`, `${f(result.endToEndMsPerSlice)} ms/slice`],
              ...Object.entries(result.stageMs).map(([k, v]) => [`  stage ${k}`, `${v} ms`]),
              ['pipeline overhead (end to end / model-only - 1)', `${f(result.pipelineOverhead * 100)}%`],
              ['share of the end-to-end time in inference (same run)', `${f(result.endToEndInferShare * 100)}%`],
              [
                `long series (${result.longSeries?.slices ?? 0} slices): process, pipeline stages`,
                result.longSeries
                  ? `${f(result.longSeries.msPerSlice)}, ${f(result.longSeries.pipelineMsPerSlice)} ms/slice (overhead ${f(result.longSeries.overhead * 100)}%; ${f(result.longSeries.inferShare * 100)}% in inference; start-up ${f(result.longSeries.startupMs / 1000)} s)`
                  : '-',
              ],
              [
                `peak RSS, ${result.longSeries?.slices ?? 0} slices ${result.longSeries?.size ?? 0}x${result.longSeries?.size ?? 0}`,
                result.peakRssMb === null ? '-' : `${result.peakRssMb} MB`,
              ],
            ])}\n`,
          );
        },
      ),
    );
}
