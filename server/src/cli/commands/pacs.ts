/** `ldfsam pacs start|stop|status|load`: the embedded Orthanc, and loading files into any PACS. */
import type { Command } from 'commander';
import type { DicomPeer } from '../../config.js';
import { loadFiles } from '../../pacs/load.js';
import { orthancStatus, startOrthanc, stopOrthanc } from '../../pacs/orthanc.js';
import {
  action,
  clientFrom,
  configFrom,
  printJson,
  table,
  withOrthancOptions,
  withPacsOptions,
  type CommonFlags,
} from '../context.js';

export function registerPacs(program: Command): void {
  const pacs = program.command('pacs').description('run the embedded Orthanc PACS and load DICOM files into a PACS');

  withOrthancOptions(pacs.command('start'))
    .description('start Orthanc in the background (or in the foreground) and wait until it answers')
    .option('--foreground', 'stay attached; Ctrl-C stops Orthanc')
    .option('--json', 'print the result as JSON')
    .action(
      action(async (flags: CommonFlags & { foreground?: boolean }) => {
        const config = configFrom(flags);
        const handle = await startOrthanc(config, { detached: !flags.foreground });
        const result = {
          pid: handle.pid,
          alreadyRunning: handle.alreadyRunning,
          httpUrl: handle.httpUrl,
          dicomwebUrl: handle.dicomwebUrl,
          credentialsFile: handle.credentialsFile,
          dicomPort: handle.dicomPort,
          dicomPeers: handle.dicomPort === null ? [] : config.pacsDicomPeers,
          dataDir: config.dataDir,
        };
        if (flags.json) printJson(result);
        else {
          process.stdout.write(
            `${handle.alreadyRunning ? 'Orthanc is already running' : 'Orthanc started'} (pid ${handle.pid})\n` +
              `  DICOMweb: ${handle.dicomwebUrl}\n` +
              `  login:    ${pacsLogin(handle.credentialsFile)} (ldfsam commands read them there)\n` +
              `  DICOM:    ${dicomText(handle.dicomPort, config.pacsDicomPeers)}\n` +
              `  data:     ${config.dataDir}\n`,
          );
        }
        if (flags.foreground && handle.child) {
          const child = handle.child;
          const stop = () => child.kill('SIGTERM');
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
          await new Promise((r) => child.once('exit', r));
          await stopOrthanc(config);
        }
      }),
    );

  withOrthancOptions(pacs.command('stop'))
    .description('stop the Orthanc started by `pacs start` for this data folder')
    .option('--json', 'print the result as JSON')
    .action(
      action(async (flags: CommonFlags) => {
        const config = configFrom(flags);
        const result = await stopOrthanc(config);
        if (flags.json) printJson(result);
        else process.stdout.write(result.stopped ? `Orthanc stopped (pid ${result.pid})\n` : 'Orthanc was not running\n');
      }),
    );

  withOrthancOptions(pacs.command('status'))
    .description('say whether the embedded Orthanc runs and answers')
    .option('--json', 'print the status as JSON')
    .action(
      action(async (flags: CommonFlags) => {
        const config = configFrom(flags);
        const status = await orthancStatus(config);
        if (flags.json) printJson(status);
        else {
          process.stdout.write(
            status.answering
              ? `Orthanc ${status.version} answers at ${status.httpUrl}${status.pid ? ` (pid ${status.pid})` : ' (not started by ldfsam)'}\n`
              : `Orthanc is not running for ${status.dataDir} (nothing answers at ${status.httpUrl})\n`,
          );
        }
        if (!status.answering) process.exitCode = 3;
      }),
    );

  withPacsOptions(pacs.command('load'))
    .description('store DICOM files (files or folders, walked recursively) in the PACS through STOW-RS')
    .argument('<paths...>', 'DICOM files or folders')
    .option('--json', 'print the report as JSON')
    .action(
      action(async (paths: string[], flags: CommonFlags) => {
        const config = configFrom(flags);
        const client = clientFrom(config);
        const report = await loadFiles(client, paths, {
          onProgress: (done, total) => {
            if (!flags.json && process.stderr.isTTY) process.stderr.write(`\rstored ${done} file(s) of up to ${total}`);
          },
        });
        if (!flags.json && process.stderr.isTTY) process.stderr.write('\n');
        if (flags.json) printJson(report);
        else {
          const rows = [['STUDY', 'SERIES', 'MODALITY', 'INSTANCES']];
          for (const s of report.series) rows.push([s.studyInstanceUID, s.seriesInstanceUID, s.modality, String(s.instances)]);
          process.stdout.write(`Stored ${report.stored.length} instance(s) in ${config.dicomwebUrl}\n${table(rows)}\n`);
          for (const s of report.skipped) process.stdout.write(`skipped ${s.path}: ${s.reason}\n`);
          for (const f of report.failed) process.stdout.write(`FAILED  ${f.path}: ${f.reason}\n`);
          for (const w of report.warnings) process.stdout.write(`warning: ${w}\n`);
        }
        if (report.failed.length > 0) process.exitCode = 1;
      }),
    );
}

/** How a person logs in to the embedded Orthanc (its Explorer, curl); ldfsam commands do it themselves. */
export function pacsLogin(credentialsFile: string): string {
  return `user name and password in ${credentialsFile}`;
}

export function dicomText(port: number | null, peers: DicomPeer[]): string {
  if (port === null) return 'port closed (LDFSAM_PACS_DICOM_PEERS names no peer)';
  return `port ${port}, C-ECHO and C-STORE from ${peers.map((p) => `${p.aet}@${p.host}`).join(', ')} only`;
}
