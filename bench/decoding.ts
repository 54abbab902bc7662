/**
 * Where should compressed frames be decoded: in the PACS (WADO-RS transcoding to explicit little
 * endian) or in the server (frames as stored, wasm/JS codecs)? Starts its own Orthanc in a temp
 * folder, stores the shared CT re-encoded as RLE and JPEG 2000 (test/tools/make_test_series.py),
 * then reads every slice both ways, alternating rounds so machine drift hits both alike.
 *
 * usage: npm run bench:decoding [-- --rounds 5]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBenchPacs } from '../server/src/bench/serve-child.js';
import { loadConfig } from '../server/src/config.js';
import { DicomWebClient, EXPLICIT_VR_LITTLE_ENDIAN } from '../server/src/dicomweb/client.js';
import { loadSeriesPlan } from '../server/src/dicom/inspect.js';
import { readSeriesSlices } from '../server/src/dicom/series-reader.js';
import { loadFiles } from '../server/src/pacs/load.js';
import { projectPath } from '../server/src/util/paths.js';
import { median } from '../server/src/bench/median.js';

const rounds = Number(process.argv[process.argv.indexOf('--rounds') + 1] || 5) || 5;

async function timeRead(
  client: DicomWebClient,
  plan: Awaited<ReturnType<typeof loadSeriesPlan>>,
  transferSyntaxUID?: string,
): Promise<number> {
  const t0 = performance.now();
  let n = 0;
  for await (const _ of readSeriesSlices(client, plan, { transferSyntaxUID, prefetch: 1 })) n++;
  return (performance.now() - t0) / n;
}

const work = await mkdtemp(join(tmpdir(), 'ldfsam-bench-'));
// The configured Orthanc (LDFSAM_ORTHANC_BIN, LDFSAM_ORTHANC_PLUGINS_DIR), as `ldfsam start` runs it.
const orthanc = await startBenchPacs(work, loadConfig({ env: process.env }));
try {
  const derived = join(work, 'derived');
  execFileSync(projectPath('models/.venv/bin/python'), [
    projectPath('test/tools/make_test_series.py'),
    '--ct',
    projectPath('../shared/data/dicom/ct-head-phantom-philips'),
    '--us',
    projectPath('../shared/data/dicom/single-images/US1_UNCR.dcm'),
    '--out',
    derived,
  ]);
  const client = new DicomWebClient({ url: orthanc.dicomwebUrl, retries: 0, headers: { authorization: orthanc.authorization } });
  const rows: string[] = [];
  const plans = [];
  for (const name of ['ct-rle', 'ct-j2k']) {
    const report = await loadFiles(client, [join(derived, name)]);
    plans.push({ name, plan: await loadSeriesPlan(client, report.series[0]!) });
  }
  const serverTimes = new Map<string, number>();
  for (const { name, plan } of plans) {
    await timeRead(client, plan); // warm-up: wasm compile, PACS cache
    const times: number[] = [];
    for (let r = 0; r < rounds; r++) times.push(await timeRead(client, plan));
    serverTimes.set(name, median(times));
  }
  // PACS transcoding last: a crash of the PACS must not spoil the server figures.
  let crashed = false;
  for (const { name, plan } of plans) {
    const s = serverTimes.get(name)!;
    let pacs = '';
    if (crashed) pacs = 'not measured (PACS down)';
    else {
      try {
        const times: number[] = [];
        for (let r = 0; r < rounds; r++) times.push(await timeRead(client, plan, EXPLICIT_VR_LITTLE_ENDIAN));
        pacs = `${median(times).toFixed(2)} ms/slice  (server/PACS = ${(s / median(times)).toFixed(2)})`;
      } catch (err) {
        crashed = !(await fetch(`${orthanc.httpUrl}/system`).then(
          () => true,
          () => false,
        ));
        pacs = `${crashed ? 'Orthanc CRASHED' : 'failed'}: ${(err as Error).message.slice(0, 100)}`;
      }
    }
    rows.push(`${name.padEnd(7)}  server decode ${s.toFixed(2)} ms/slice  |  PACS transcode ${pacs}`);
  }
  console.log(`Decoding 28 CT slices 512x512, median of ${rounds} rounds, one request at a time:\n${rows.join('\n')}`);
} finally {
  orthanc.child?.kill('SIGKILL');
  await rm(work, { recursive: true, force: true });
}
