/**
 * What moving a series' frames from the PACS costs the server, whatever it does with them: a real
 * Orthanc, a generated `--size` x `--size` series of `--slices` single-frame instances (the shared
 * CT's kind), and node CPU per slice, rounds alternated so that the machine's drift falls on each:
 *   frames  the server's way: one WADO-RS frames request per instance, 4 in flight (the series
 *           reader's prefetch), through the project's DicomWebClient;
 *   series  one series-level WADO-RS retrieve (every instance as a Part 10 file in one multipart
 *           answer), gathered and split into parts (no pixel data located);
 *   drain   the same series answer read from the socket and dropped: the floor of any HTTP way.
 * Issue 18 asks <= 3 ms of node CPU per 512 slice for the whole host path; `drain` says how much of
 * it receiving the bytes alone takes.
 *
 * usage: npm run bench:transfer -- [--slices 200] [--size 512] [--rounds 5] [--json]
 */
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { python } from '../server/src/bench/model-under-test.js';
import { startBenchPacs } from '../server/src/bench/serve-child.js';
import { loadConfig } from '../server/src/config.js';
import { DicomWebClient } from '../server/src/dicomweb/client.js';
import { parseMultipart } from '../server/src/dicomweb/multipart.js';
import { nodeTransport } from '../server/src/dicomweb/transport.js';
import { loadFiles } from '../server/src/pacs/load.js';
import { projectPath } from '../server/src/util/paths.js';
import { median } from '../server/src/bench/median.js';

const { values: args } = parseArgs({
  options: {
    slices: { type: 'string', default: '200' },
    size: { type: 'string', default: '512' },
    rounds: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
  },
});
const slices = Number(args.slices);
const SERIES_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*';
/** Node CPU so far, ms: all of it, and the kernel's part (the socket reads' copies). */
const cpuMs = () => {
  const u = process.cpuUsage();
  return { all: (u.user + u.system) / 1000, system: u.system / 1000 };
};
const config = loadConfig({ env: process.env });
const work = await mkdtemp(join(tmpdir(), 'ldfsam-transfer-'));
const orthanc = await startBenchPacs(work, config);
try {
  const headers = { authorization: orthanc.authorization };
  const client = new DicomWebClient({ url: orthanc.dicomwebUrl, headers });
  const ctDir = projectPath('..', 'shared', 'data', 'dicom', 'ct-head-phantom-philips');
  const dir = join(work, 'series');
  const ids = JSON.parse(
    await python('bench/tools/long_series.py', ['--ct', ctDir, '--out', dir, '--slices', args.slices, '--size', args.size]),
  ) as { studyInstanceUID: string; seriesInstanceUID: string };
  await loadFiles(client, [dir]);
  const sops = (await client.retrieveSeriesMetadata(ids)).map((m) => String(m['00080018']!.Value![0]));
  const seriesUrl = `${orthanc.dicomwebUrl}/studies/${ids.studyInstanceUID}/series/${ids.seriesInstanceUID}`;

  const ways: Record<string, () => Promise<void>> = {
    async frames() {
      let next = 0;
      const lane = async () => {
        while (next < sops.length) {
          const sopInstanceUID = sops[next++]!;
          await client.retrieveInstanceFrames({ ...ids, sopInstanceUID, frameNumbers: [1], transferSyntaxUID: '*' });
        }
      };
      await Promise.all([lane(), lane(), lane(), lane()]);
    },
    async series() {
      const answer = await nodeTransport(seriesUrl, {
        method: 'GET',
        headers: { ...headers, accept: SERIES_ACCEPT },
        signal: new AbortController().signal,
      });
      const parts = parseMultipart(answer.body, answer.contentType).length;
      if (parts !== slices) throw new Error(`the series answer held ${parts} parts, not ${slices}`);
    },
    drain: () =>
      new Promise((resolve, reject) => {
        const req = http.get(seriesUrl, { headers: { ...headers, accept: SERIES_ACCEPT } }, (res) => {
          res.on('data', () => undefined);
          res.on('end', resolve);
          res.on('error', reject);
        });
        req.on('error', reject);
      }),
  };
  const perSlice: Record<string, { all: number; system: number }[]> = { frames: [], series: [], drain: [] };
  for (let round = 0; round < Number(args.rounds); round++)
    for (const [name, run] of Object.entries(ways)) {
      const before = cpuMs();
      await run();
      const after = cpuMs();
      perSlice[name]!.push({ all: (after.all - before.all) / slices, system: (after.system - before.system) / slices });
    }
  const figures = Object.fromEntries(
    Object.entries(perSlice).map(([name, xs]) => [
      name,
      {
        medianMs: median(xs.map((x) => x.all)),
        systemMedianMs: median(xs.map((x) => x.system)),
        runsMs: xs.map((x) => +x.all.toFixed(2)),
      },
    ]),
  );
  if (args.json) console.log(JSON.stringify({ slices, size: Number(args.size), nodeCpuMsPerSlice: figures }, null, 2));
  else
    for (const [name, f] of Object.entries(figures))
      console.log(
        `${name.padEnd(7)} node CPU ${f.medianMs.toFixed(2)} ms/slice, of which the kernel ${f.systemMedianMs.toFixed(2)} (medians; runs ${f.runsMs.join(', ')})`,
      );
} finally {
  orthanc.child?.kill('SIGKILL');
  await rm(work, { recursive: true, force: true });
}
