/** `ldfsam eval-interactive`: prompted quality through the interactive API (server/src/bench/interactive-eval.ts). */
import type { Command } from 'commander';
import { runInteractiveEval, type EvalPrompt } from '../../bench/interactive-eval.js';
import { LdfsamError } from '../../errors.js';
import { action, configFrom, printJson, table, type CommonFlags } from '../context.js';

export function registerEvalInteractive(program: Command): void {
  program
    .command('eval-interactive')
    .description(
      "prompted Dice through the interactive API: a data set's test split wrapped as DICOM, prompted with each reference's box (+5%) and, separately, one positive point at its centroid",
    )
    .requiredOption('--dataset <name>', 'hc18 or ph2 (../shared/data)')
    .option('--split <name>', 'train, val or test', 'test')
    .option('--model <name|folder>', 'a promptable model (default: the first registered for the data set modality)')
    .option('--prompt <kind>', 'box, point or both', 'both')
    .option('--limit <n>', 'only the first N images of the split (0 = all)', '0')
    .option('--compare', 'also run the Python evaluation (python -m ldfsam_models eval --prompt) and compare case by case')
    .option('--json', 'print the figures as one JSON object')
    .action(
      action(
        async (
          flags: CommonFlags & {
            dataset: string;
            split: string;
            model?: string;
            prompt: string;
            limit: string;
            compare?: boolean;
            json?: boolean;
          },
        ) => {
          if (flags.dataset !== 'hc18' && flags.dataset !== 'ph2')
            throw new LdfsamError('INVALID_INPUT', '--dataset must be hc18 or ph2');
          if (!['box', 'point', 'both'].includes(flags.prompt))
            throw new LdfsamError('INVALID_INPUT', '--prompt must be box, point or both');
          const config = configFrom(flags);
          const r = await runInteractiveEval({
            dataset: flags.dataset,
            split: flags.split,
            model: flags.model,
            modelDirs: config.modelDirs,
            prompts: flags.prompt === 'both' ? ['box', 'point'] : [flags.prompt as EvalPrompt],
            limit: Number(flags.limit),
            compare: Boolean(flags.compare),
            orthancBin: config.orthancBin,
            orthancPluginsDir: config.orthancPluginsDir,
            log: (line) => {
              if (!flags.json) process.stderr.write(`${line}\n`);
            },
          });
          if (flags.json) return printJson(r);
          const d = (v: number) => v.toFixed(4);
          process.stdout.write(
            `${r.model} on ${r.dataset} ${r.split}, through the interactive API\n${table([
              ['PROMPT', 'CASES', 'DICE (95% CI)', 'MEDIAN', 'PYTHON EVAL', 'MEAN |DIFF|', 'MAX |DIFF|'],
              ...r.results.map((x) => [
                x.description,
                String(x.cases),
                `${d(x.dice.mean)} [${d(x.dice.ci95[0])}, ${d(x.dice.ci95[1])}]`,
                d(x.dice.median),
                x.python ? d(x.python.dice) : '-',
                x.python ? d(x.python.meanAbsDifference) : '-',
                x.python ? `${d(x.python.maxAbsDifference)} (${x.python.casesDifferingOver001} > 0.001)` : '-',
              ]),
            ])}\n`,
          );
        },
      ),
    );
}
