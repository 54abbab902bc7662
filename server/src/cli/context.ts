/** What every CLI command shares: the config read once from flags + env + file, and output helpers. */
import type { Command } from 'commander';
import { loadConfig, type Config } from '../config.js';
export { clientFrom } from '../dicomweb/from-config.js';
import { toLdfsamError } from '../errors.js';

export interface CommonFlags {
  config?: string;
  dicomweb?: string;
  dataDir?: string;
  httpPort?: string;
  dicomPort?: string;
  json?: boolean;
  /** `--stop-timeout` of the long-running commands (LDFSAM_STOP_TIMEOUT_MS). */
  stopTimeout?: string;
}

export function withPacsOptions(cmd: Command): Command {
  return cmd
    .option('--dicomweb <url>', 'DICOMweb root of the PACS (env LDFSAM_DICOMWEB_URL; default: the embedded Orthanc)')
    .option('--config <file>', 'JSON config file (env LDFSAM_CONFIG)');
}

export function withOrthancOptions(cmd: Command): Command {
  return cmd
    .option('--http-port <port>', 'Orthanc HTTP port (env LDFSAM_PACS_HTTP_PORT, default 8042)')
    .option(
      '--dicom-port <port>',
      'Orthanc DICOM port (env LDFSAM_PACS_DICOM_PORT, default 4242); open only to LDFSAM_PACS_DICOM_PEERS, closed without them',
    )
    .option('--data-dir <dir>', 'data folder (env LDFSAM_DATA_DIR, default ~/.ldfsam)')
    .option('--config <file>', 'JSON config file (env LDFSAM_CONFIG)');
}

/** `more`: a command's own flags, named like the config keys (undefined = not given). */
export function configFrom(flags: CommonFlags, more: Record<string, unknown> = {}): Config {
  return loadConfig({
    env: process.env,
    file: flags.config,
    flags: {
      dicomwebUrl: flags.dicomweb,
      dataDir: flags.dataDir,
      pacsHttpPort: flags.httpPort,
      pacsDicomPort: flags.dicomPort,
      stopTimeoutMs: flags.stopTimeout,
      ...more,
    },
  });
}

/** The `--stop-timeout` option of the commands that stop as cli/stop.ts says. */
export const STOP_TIMEOUT_OPTION = [
  '--stop-timeout <ms>',
  'longest stop after SIGTERM/SIGINT (env LDFSAM_STOP_TIMEOUT_MS, default 10000)',
] as const;

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Runs a command body; any error is printed once, with its code, and sets exit status 1. */
export function action<A extends unknown[]>(body: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await body(...args);
    } catch (err) {
      const e = toLdfsamError(err);
      const json = args.some((a) => typeof a === 'object' && a !== null && (a as CommonFlags).json === true);
      if (json) process.stdout.write(`${JSON.stringify({ error: e.toJSON() }, null, 2)}\n`);
      process.stderr.write(`ldfsam: error [${e.code}]: ${e.message}\n`);
      if (e.code === 'INTERNAL' && process.env.LDFSAM_DEBUG) process.stderr.write(`${(err as Error).stack ?? ''}\n`);
      process.exitCode = 1;
    }
  };
}

/** A plain text table, columns padded to their widest cell. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}
