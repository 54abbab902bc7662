/** `ldfsam bench-interactive`: the interactive API's speed against its targets (server/src/bench/interactive-bench.ts). */
import type { Command } from 'commander';
import { runInteractiveBench } from '../../bench/interactive-bench.js';
import { action, configFrom, printJson, table, type CommonFlags } from '../context.js';

export function registerBenchInteractive(program: Command): void {
  program
    .command('bench-interactive')
    .description(
      'measure interactive segmentation on the shared CT in a real Orthanc through ldfsam serve: the encoder alone, propagations over the series (each between two passes of the encoder alone), the first prompt on a slice (and less the encoder alone on that slice around it), prompts on cached slices (server p50/p95, of which the decoder, client round trip)',
    )
    .option('--model <name|folder>', 'a promptable model (default: the first registered for CT)')
    .option('--prompts <n>', 'prompts on cached slices', '60')
    .option('--propagations <n>', 'propagations over the series (the median run is the figure)', '3')
    .option('--quality', "also propagation quality on the CT's insert, the previous mask as mask input off and on")
    .option('--json', 'print the figures as one JSON object')
    .action(
      action(
        async (
          flags: CommonFlags & { model?: string; prompts: string; propagations: string; quality?: boolean; json?: boolean },
        ) => {
          const config = configFrom(flags);
          const r = await runInteractiveBench({
            model: flags.model,
            modelDirs: config.modelDirs,
            prompts: Math.max(1, Number(flags.prompts)),
            propagations: Math.max(1, Number(flags.propagations)),
            quality: Boolean(flags.quality),
            orthancBin: config.orthancBin,
            orthancPluginsDir: config.orthancPluginsDir,
            log: (line) => {
              if (!flags.json) process.stderr.write(`${line}\n`);
            },
          });
          if (flags.json) return printJson(r);
          const ms = (v: number) => `${v.toFixed(0)} ms`;
          const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
          process.stdout.write(
            `${table([
              ['FIGURE', 'VALUE', 'TARGET'],
              [
                `encoder alone, ${r.model} (mean of its passes over the series: each pass)`,
                `${ms(r.encoderMs)} (${r.encoderMsRuns.map(ms).join(', ')})`,
                '',
              ],
              [
                `first prompt on a slice, server (p50, max of ${r.firstPrompt.count})`,
                `${ms(r.firstPrompt.p50)}, ${ms(r.firstPrompt.max)}`,
                `<= ${ms(r.firstPrompt.target)}: ${verdict(r.firstPrompt.p50 <= r.firstPrompt.target)}`,
              ],
              [
                `first prompt less the encoder alone on its slice around it (p50 of ${r.firstPrompt.count})`,
                `${ms(r.firstPrompt.overEncoderP50)} (encoder alone p50 ${ms(r.firstPrompt.encoderBesideP50)})`,
                `<= 60 ms: ${verdict(r.firstPrompt.overEncoderP50 <= 60)}`,
              ],
              [
                'of which (p50 each) fetch, preprocessing, encoder, decoder, its run in the worker, mask',
                [
                  r.firstPrompt.parts.fetch,
                  r.firstPrompt.parts.preprocess,
                  r.firstPrompt.parts.encode,
                  r.firstPrompt.parts.decode,
                  r.firstPrompt.parts.decoderRun,
                  r.firstPrompt.parts.postprocess,
                ]
                  .map(ms)
                  .join(', '),
                '',
              ],
              [
                `prompt on a cached slice, server (p50, p95 of ${r.cachedPrompt.count})`,
                `${ms(r.cachedPrompt.p50)}, ${ms(r.cachedPrompt.p95)}`,
                `p95 <= 60 ms: ${verdict(r.cachedPrompt.p95 <= 60)}`,
              ],
              [
                'of which the decoder in the inference worker (p50, p95)',
                `${ms(r.cachedPrompt.decoderRunP50)}, ${ms(r.cachedPrompt.decoderRunP95)}`,
                '',
              ],
              [
                'prompt on a cached slice, client round trip (p50, p95)',
                `${ms(r.cachedPrompt.clientP50)}, ${ms(r.cachedPrompt.clientP95)}`,
                '',
              ],
              [
                `propagation, ${r.propagation.slices} slices (seed prompt included; the median of ${r.propagation.runs.length} runs, each against the encoder passes around it)`,
                `${(r.propagation.ms / 1000).toFixed(1)} s, ${ms(r.propagation.msPerSlice)}/slice = ${r.propagation.ratioToEncoder.toFixed(2)} x encoder (runs ${r.propagation.runs.map((x) => x.toFixed(2)).join(', ')})`,
                `<= 1.15 x: ${verdict(r.propagation.ratioToEncoder <= 1.15)}`,
              ],
              ['propagation stopped because', r.propagation.stoppedBecause.join(', '), ''],
              ...Object.entries(r.quality ?? {}).map(([name, q]) => [
                `CT insert, propagated from slice 4 (${name})`,
                `mean Dice ${q.meanDicePresent?.toFixed(3) ?? '-'} on its slices; predicted IoU min ${q.minIouPresent?.toFixed(3) ?? '-'} there, max ${q.maxIouAbsent?.toFixed(3) ?? '-'} past it`,
                '',
              ]),
            ])}\n`,
          );
        },
      ),
    );
}
