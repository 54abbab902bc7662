/**
 * `ldfsam eval-interactive`: how well a promptable model segments through the interactive API,
 * measured as the Python evaluation measures it. The images of a data set's test split are wrapped as
 * DICOM (`ldfsam import-images`), stored in a real Orthanc and prompted through a real `ldfsam serve`
 * with the prompts the Python evaluation makes from each reference mask (its bounding box + 5% per
 * side; one positive point at its centroid: bench/tools/interactive_eval.py); the answered masks are
 * scored with the same metrics code. With `compare`, `python -m ldfsam_models eval --prompt` runs on
 * the same model folder and images (from the PNG/JPEG files, not DICOM), case by case beside it.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { LdfsamError } from '../errors.js';
import { ModelRegistry } from '../inference/registry.js';
import { projectPath } from '../util/paths.js';
import { promptSeries, type EvalPrompt } from './prompt-series.js';
import { startBenchPacs, startServeOn } from './serve-child.js';

const run = promisify(execFile);

export type { EvalPrompt };

export interface InteractiveEvalOptions {
  dataset: 'hc18' | 'ph2';
  split: string;
  model?: string;
  modelDirs: string[];
  prompts: EvalPrompt[];
  limit: number;
  compare: boolean;
  orthancBin: string;
  orthancPluginsDir: string;
  log: (line: string) => void;
}

export interface PromptEval {
  prompt: EvalPrompt;
  description: string;
  cases: number;
  dice: { mean: number; ci95: [number, number]; median: number };
  /** The Python evaluation on the same cases, and the per-case differences (API - Python). */
  python?: { dice: number; meanAbsDifference: number; maxAbsDifference: number; casesDifferingOver001: number };
}

export interface InteractiveEvalResult {
  date: string;
  model: string;
  dataset: string;
  split: string;
  results: PromptEval[];
}

interface Case {
  id: string;
  image: string;
  box: [number, number, number, number];
  point: [number, number];
}

const python = () => projectPath('models', '.venv', 'bin', 'python');
const tool = () => projectPath('bench', 'tools', 'interactive_eval.py');

/** The split's images wrapped as DICOM and stored: record id -> its study and series. */
async function importSplit(cases: Case[], dataset: string, pacs: { dicomwebUrl: string; authorization: string }, out: string) {
  const { stdout } = await run(
    process.execPath,
    [
      projectPath('dist', 'server', 'src', 'cli', 'main.js'),
      'import-images',
      '--preset',
      dataset,
      '--out',
      out,
      '--store',
      '--json',
      '--dicomweb',
      pacs.dicomwebUrl,
      ...cases.map((c) => c.image),
    ],
    { maxBuffer: 256 << 20, env: { ...process.env, LDFSAM_DICOMWEB_AUTHORIZATION: pacs.authorization } },
  );
  const report = JSON.parse(stdout) as {
    images: { source: string; studyInstanceUID: string; seriesInstanceUID: string }[];
    failed: unknown[];
  };
  if (report.failed.length > 0) throw new LdfsamError('INTERNAL', `import-images failed on ${JSON.stringify(report.failed)}`);
  const bySource = new Map(report.images.map((i) => [resolve(i.source), i]));
  return new Map(cases.map((c) => [c.id, bySource.get(resolve(c.image))!]));
}

export async function runInteractiveEval(options: InteractiveEvalOptions): Promise<InteractiveEvalResult> {
  const log = options.log;
  const registry = await ModelRegistry.load(options.modelDirs, {});
  const model = options.model
    ? await registry.resolve(options.model)
    : registry.promptableFor(options.dataset === 'hc18' ? 'US' : 'XC')[0];
  await registry.close();
  if (!model?.manifest.promptable) throw new LdfsamError('NOT_FOUND', `no promptable model ${options.model ?? ''} is registered`);
  const limit = options.limit > 0 ? ['--limit', String(options.limit)] : [];
  const split = ['--dataset', options.dataset, '--split', options.split, ...limit];
  const cases = JSON.parse((await run(python(), [tool(), 'prompts', ...split], { maxBuffer: 64 << 20 })).stdout) as Case[];
  const work = await mkdtemp(join(tmpdir(), 'ldfsam-eval-interactive-'));
  const orthanc = await startBenchPacs(work, options);
  let serve: ChildProcess | undefined;
  try {
    log(`${options.dataset} ${options.split}: ${cases.length} images wrapped as DICOM and stored...`);
    const series = await importSplit(cases, options.dataset, orthanc, join(work, 'dicom'));
    const served = await startServeOn(orthanc, work, [model.folder, ...options.modelDirs]);
    serve = served.child;
    const masks: Record<string, Record<string, string>> = Object.fromEntries(options.prompts.map((p) => [p, {}]));
    for (const [i, c] of cases.entries()) {
      const ids = series.get(c.id)!;
      const ref = {
        studyInstanceUID: ids.studyInstanceUID,
        seriesInstanceUID: ids.seriesInstanceUID,
        model: model.manifest.name,
      };
      await promptSeries(served.url, ref, [{ key: c.id, box: c.box, point: c.point }], options.prompts, masks);
      if ((i + 1) % 20 === 0) log(`  ${i + 1} / ${cases.length}`);
    }
    const file = join(work, 'masks.json');
    await writeFile(file, JSON.stringify(masks));
    const scored = JSON.parse(
      (await run(python(), [tool(), 'score', ...split, '--masks', file], { maxBuffer: 64 << 20 })).stdout,
    ) as Record<
      string,
      {
        summary: { prompt: string; cases: number; dice: { mean: number; ci95: [number, number]; median: number } };
        cases: { id: string; dice: number }[];
      }
    >;
    const results: PromptEval[] = [];
    for (const p of options.prompts) {
      const r = scored[p]!;
      const entry: PromptEval = { prompt: p, description: r.summary.prompt, cases: r.summary.cases, dice: r.summary.dice };
      if (options.compare) {
        log(`python -m ldfsam_models eval --prompt ${p} on the same images...`);
        const { stdout } = await run(
          python(),
          ['-m', 'ldfsam_models', 'eval', '--model', model.folder, ...split, '--prompt', p, '--json'],
          {
            cwd: projectPath('models'),
            env: { ...process.env, PYTHONPATH: projectPath('models') },
            maxBuffer: 64 << 20,
          },
        );
        // Python's json writes an empty prediction's infinite distances as Infinity, which JSON lacks.
        const py = JSON.parse(stdout.replace(/-?\bInfinity\b|\bNaN\b/g, 'null')) as {
          summary: { dice: { mean: number } };
          cases: { id: string; dice: number }[];
        };
        const theirs = new Map(py.cases.map((x) => [x.id, x.dice]));
        const diffs = r.cases.map((x) => x.dice - theirs.get(x.id)!);
        entry.python = {
          dice: py.summary.dice.mean,
          meanAbsDifference: diffs.reduce((a, d) => a + Math.abs(d), 0) / diffs.length,
          maxAbsDifference: Math.max(...diffs.map(Math.abs)),
          casesDifferingOver001: diffs.filter((d) => Math.abs(d) > 0.001).length,
        };
      }
      results.push(entry);
    }
    return {
      date: new Date().toISOString(),
      model: `${model.manifest.name} ${model.manifest.version}`,
      dataset: options.dataset,
      split: options.split,
      results,
    };
  } finally {
    serve?.kill();
    orthanc.child?.kill('SIGTERM');
    await rm(work, { recursive: true, force: true });
  }
}
