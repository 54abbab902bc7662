/** `ldfsam bench-interactive`: the interactive API's speed against its targets (server/src/bench/interactive-bench.ts). */
import type { Command } from 'commander';
import { runInteractiveBench } from '../../bench/interactive-bench.js';
import { action, configFrom, printJson, table, type CommonFlags } from '../context.js';

export function registerBenchInteractive(program: Command): void {
  program
    .command('bench-interactive')
    .description(
      'measure interactive segmentation on the shared CT in a real Orthanc through ldfsam serve: the encoder alone, the first prompt on a slice (and less the encoder alone on that slice just before it), prompts on cached slices (server p50/p95, of which the decoder, client round trip), propagation over the series',
    )
    .option('--model <name|folder>', 'a promptable model (default: the first registered for CT)')
    .option('--prompts <n>', 'prompts on cached slices', '60')
    .option('--quality', "also propagation quality on the CT's insert, the previous mask as mask input off and on")
    .option('--json', 'print the figures as one JSON object')
    .action(
      action(async (flags: CommonFlags & { model?: string; prompts: string; quality?: boolean; json?: boolean }) => {
        const config = configFrom(flags);
        const r = await runInteractiveBench({
          model: flags.model,
          modelDirs: config.modelDirs,
          prompts: Math.max(1, Number(flags.prompts)),
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
              `encoder alone, ${r.model} (before, after)`,
              `${ms(r.encoderMs)} (${ms(r.encoderMsRuns[0])}, ${ms(r.encoderMsRuns[1])})`,
              '',
            ],
            [
              `first prompt on a slice, server (p50, max of ${r.firstPrompt.count})`,
              `${ms(r.firstPrompt.p50)}, ${ms(r.firstPrompt.max)}`,
              `<= ${ms(r.firstPrompt.target)}: ${verdict(r.firstPrompt.p50 <= r.firstPrompt.target)}`,
            ],
            [
              'first prompt less the encoder alone on its slice just before it (p50)',
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
              `propagation, ${r.propagation.slices} slices (seed prompt included)`,
              `${(r.propagation.ms / 1000).toFixed(1)} s, ${ms(r.propagation.msPerSlice)}/slice = ${r.propagation.ratioToEncoder.toFixed(2)} x encoder`,
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
      }),
    );
}
