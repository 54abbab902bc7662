/**
 * A promptable model on images outside shared/data, through the interactive API: PyRadiomics' five
 * test cases (MR brain tumours, an MR breast lesion, CT lung nodules; bench/tools/outside_data.py
 * fetches them from PyPI once and writes each as a DICOM series), stored in a real Orthanc and
 * prompted through a real `ldfsam serve` on every slice whose reference label has at least 25
 * pixels, with the prompts the Python evaluation makes (the label's bounding box + 5% per side; one
 * positive point at its centroid). Dice per case (mean over its slices) and over all slices.
 *
 * usage: npm run bench:outside -- [--model medsam-lite] [--json]
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { promptSeries } from '../server/src/bench/prompt-series.js';
import { startBenchPacs, startServeOn } from '../server/src/bench/serve-child.js';
import { loadConfig } from '../server/src/config.js';
import { DicomWebClient } from '../server/src/dicomweb/client.js';
import { ModelRegistry } from '../server/src/inference/registry.js';
import { loadFiles } from '../server/src/pacs/load.js';
import { projectPath } from '../server/src/util/paths.js';

const { values: args } = parseArgs({
  options: { model: { type: 'string', default: 'medsam-lite' }, json: { type: 'boolean', default: false } },
});

interface OutsideCase {
  case: string;
  modality: string;
  studyInstanceUID: string;
  seriesInstanceUID: string;
  slices: { sop: string; k: number; pixels: number; box: number[]; point: [number, number] }[];
}

type Scores = Record<
  string,
  {
    cases: Record<string, { slices: number; dice: number }>;
    slices: number;
    meanDiceOverSlices: number;
    meanDiceOverCases: number;
  }
>;

const run = promisify(execFile);
const python = projectPath('models', '.venv', 'bin', 'python');
const tool = projectPath('bench', 'tools', 'outside_data.py');
const log = (line: string) => void (args.json || process.stderr.write(`${line}\n`));

const config = loadConfig({ env: process.env });
const registry = await ModelRegistry.load(config.modelDirs, {});
const model = await registry.resolve(args.model);
await registry.close();
const work = await mkdtemp(join(tmpdir(), 'ldfsam-bench-outside-'));
const orthanc = await startBenchPacs(work, config);
let serve: Awaited<ReturnType<typeof startServeOn>> | undefined;
try {
  log('PyRadiomics 3.0.1 test cases written as DICOM series...');
  const dicom = join(work, 'dicom');
  const cases = JSON.parse((await run(python, [tool, 'dicom', '--out', dicom], { maxBuffer: 64 << 20 })).stdout) as OutsideCase[];
  const client = new DicomWebClient({ url: orthanc.dicomwebUrl, headers: { authorization: orthanc.authorization } });
  await loadFiles(
    client,
    cases.map((c) => join(dicom, c.case)),
  );
  serve = await startServeOn(orthanc, work, [model.folder, ...config.modelDirs]);
  const masks: Record<string, Record<string, string>> = { box: {}, point: {} };
  for (const c of cases) {
    log(`${c.case} (${c.modality}): ${c.slices.length} slices with the structure`);
    const ref = { studyInstanceUID: c.studyInstanceUID, seriesInstanceUID: c.seriesInstanceUID, model: model.manifest.name };
    const slices = c.slices.map((x) => ({ key: `${c.case}/${x.k}`, sopInstanceUID: x.sop, box: x.box, point: x.point }));
    await promptSeries(serve.url, ref, slices, ['box', 'point'], masks);
  }
  const file = join(work, 'masks.json');
  await writeFile(file, JSON.stringify(masks));
  const scores = JSON.parse(
    (await run(python, [tool, 'score', '--out', dicom, '--masks', file], { maxBuffer: 64 << 20 })).stdout,
  ) as Scores;
  const result = { date: new Date().toISOString(), model: `${model.manifest.name} ${model.manifest.version}`, scores };
  if (args.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else
    for (const [prompt, r] of Object.entries(scores)) {
      const perCase = Object.entries(r.cases).map(([name, v]) => `${name} ${v.dice.toFixed(3)} (${v.slices})`);
      process.stdout.write(
        `${result.model}, ${prompt}: Dice over ${r.slices} slices ${r.meanDiceOverSlices.toFixed(4)}, over cases ` +
          `${r.meanDiceOverCases.toFixed(4)}; ${perCase.join(', ')}\n`,
      );
    }
} finally {
  serve?.child.kill();
  orthanc.child?.kill('SIGTERM');
  await rm(work, { recursive: true, force: true });
}
