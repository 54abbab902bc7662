/**
 * The host path of `ldfsam bench` alone (bench's hostMsPerSlice512/820 without the model-only,
 * end-to-end and long-process figures): a real Orthanc with the shared CT and a generated
 * `--size` x `--size` series of `--slices` slices, the model run once on the CT to record its
 * logits, then the whole pipeline with those logits replayed, `--runs` times per series, each run's
 * node CPU per slice printed (and the PACS's). Short enough to run under `node --cpu-prof`.
 *
 * usage: npm run bench:host -- [--model ldfsam-hc18] [--slices 120] [--size 820] [--runs 3] [--default-heap-growth] [--json]
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { measureHostPath, LogitsReplay, recordInto } from '../server/src/bench/host-path.js';
import { python, shippedModel } from '../server/src/bench/model-under-test.js';
import { startBenchPacs } from '../server/src/bench/serve-child.js';
import { loadConfig } from '../server/src/config.js';
import { DicomWebClient } from '../server/src/dicomweb/client.js';
import { ModelRegistry } from '../server/src/inference/registry.js';
import { loadFiles } from '../server/src/pacs/load.js';
import { segmentSeries } from '../server/src/pipeline/segment.js';
import { projectPath } from '../server/src/util/paths.js';
import { growHeapLimit } from '../server/src/util/heap-growth.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'ldfsam-hc18' },
    slices: { type: 'string', default: '120' },
    size: { type: 'string', default: '820' },
    runs: { type: 'string', default: '3' },
    'batch-size': { type: 'string', default: '4' },
    json: { type: 'boolean', default: false },
    /** Write a V8 CPU profile of the measured runs of each series (not the set-up) as <prefix>-ct.cpuprofile and <prefix>-<size>x<slices>.cpuprofile. */
    'cpu-prof': { type: 'string' },
    'sampling-us': { type: 'string', default: '200' },
    /** Write a sampling heap profile (every allocation, collected or not) of the measured runs as <prefix>-ct.heapprofile and <prefix>-<size>x<slices>.heapprofile. */
    'heap-prof': { type: 'string' },
    /** V8's default old-generation growth instead of the server's (server/src/util/heap-growth.ts), to compare. */
    'default-heap-growth': { type: 'boolean', default: false },
  },
});
if (!args['default-heap-growth']) growHeapLimit(); // as the ldfsam command does
/** Starts V8's sampling profiler on this thread; the function returned stops it and writes the profile. */
async function startProfile(samplingUs: number): Promise<(file: string) => Promise<void>> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: samplingUs });
  await session.post('Profiler.start');
  return async (file) => {
    const { profile } = await session.post('Profiler.stop');
    await writeFile(file, JSON.stringify(profile));
    session.disconnect();
  };
}

/** Starts V8's sampling heap profiler, counting objects collected since as well; the function returned writes the profile. */
async function startHeapProfile(): Promise<(file: string) => Promise<void>> {
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 16384,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  } as { samplingInterval: number });
  return async (file) => {
    const { profile } = await session.post('HeapProfiler.stopSampling');
    await writeFile(file, JSON.stringify(profile));
    session.disconnect();
  };
}

const log = (line: string) => process.stderr.write(`${line}\n`);
const config = loadConfig({ env: process.env });
const work = await mkdtemp(join(tmpdir(), 'ldfsam-host-'));
const orthanc = await startBenchPacs(work, config);
const registry = new ModelRegistry({ executionProvider: 'cpu' });
try {
  const batchSize = Number(args['batch-size']);
  const runs = Number(args.runs);
  const client = new DicomWebClient({ url: orthanc.dicomwebUrl, headers: { authorization: orthanc.authorization } });
  const ctDir = projectPath('..', 'shared', 'data', 'dicom', 'ct-head-phantom-philips');
  const ct = (await loadFiles(client, [ctDir])).series[0]!;
  const model = await shippedModel(args.model, work);
  const registered = await registry.add(model.folder);
  const replay = new LogitsReplay();
  const stop = recordInto(await registry.worker(registered), replay);
  log(`recording ${model.label}'s logits on the CT...`);
  await segmentSeries(client, registry, { ...ct, model: registered.manifest.name }, { batchSize });
  stop();
  await registry.close();
  // name: the JSON key and the profiles' suffix, apart even when the generated series is 512 too
  const series: { name: string; ids: { studyInstanceUID: string; seriesInstanceUID: string } }[] = [{ name: 'ct', ids: ct }];
  if (Number(args.slices) > 0) {
    log(`generating and storing a ${args.slices}-slice ${args.size}x${args.size} series...`);
    const dir = join(work, 'long');
    const ids = JSON.parse(
      await python('bench/tools/long_series.py', ['--ct', ctDir, '--out', dir, '--slices', args.slices, '--size', args.size]),
    ) as { studyInstanceUID: string; seriesInstanceUID: string };
    await loadFiles(client, [dir]);
    await rm(dir, { recursive: true, force: true });
    series.push({ name: `${args.size}x${args.slices}`, ids });
  }
  const out: Record<string, unknown> = {};
  for (const { name, ids } of series) {
    const prof = args['cpu-prof'] ? await startProfile(Number(args['sampling-us'])) : undefined;
    const heap = args['heap-prof'] ? await startHeapProfile() : undefined;
    const fig = await measureHostPath(client, registered, replay, ids, { runs, batchSize, pacsPid: orthanc.child?.pid });
    if (prof) await prof(`${args['cpu-prof']}-${name}.cpuprofile`);
    if (heap) await heap(`${args['heap-prof']}-${name}.heapprofile`);
    out[name] = fig;
    log(
      `${name}: ${fig.slices} slices, node CPU ${fig.cpuMsPerSlice.toFixed(2)} ms/slice (runs ${fig.cpuRunsMsPerSlice
        .map((v) => v.toFixed(2))
        .join(
          ', ',
        )}), GC pauses ${fig.gcMsPerSlice.toFixed(2)} (${fig.majorGcsPerRun} major per run), wall ${fig.wallMsPerSlice.toFixed(2)}, PACS ${fig.pacsCpuMsPerSlice?.toFixed(2) ?? '-'} ms CPU; kernel ${fig.systemMsPerSlice.toFixed(2)}; by thread ${Object.entries(
        fig.threadCpuMsPerSlice,
      )
        .map(([t, ms]) => `${t} ${ms.toFixed(2)}`)
        .join(', ')}`,
    );
  }
  if (args.json) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
} finally {
  await registry.close();
  orthanc.child?.kill('SIGKILL');
  await rm(work, { recursive: true, force: true });
}
