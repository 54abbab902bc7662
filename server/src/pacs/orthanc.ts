/**
 * The embedded PACS: Debian's Orthanc started as a child process on a configuration derived from
 * orthanc-config/orthanc.json, with its storage, log and pid file in <data dir>/orthanc/.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LdfsamError } from '../errors.js';
import { projectPath } from '../util/paths.js';

export interface OrthancSettings {
  orthancBin: string;
  orthancPluginsDir: string;
  dataDir: string;
  pacsHttpPort: number;
  pacsDicomPort: number;
}

export interface OrthancHandle {
  pid: number;
  httpUrl: string;
  dicomwebUrl: string;
  /** The process was already running (started by an earlier `pacs start`). */
  alreadyRunning: boolean;
  /** Set when this process owns the child (foreground mode). */
  child?: ChildProcess;
}

export interface OrthancStatus {
  running: boolean;
  answering: boolean;
  pid: number | undefined;
  httpUrl: string;
  dicomwebUrl: string;
  version: string | undefined;
  dataDir: string;
  logFile: string;
}

export function orthancPaths(dataDir: string) {
  const dir = join(dataDir, 'orthanc');
  return {
    dir,
    storage: join(dir, 'storage'),
    config: join(dir, 'orthanc.json'),
    pidFile: join(dir, 'orthanc.pid'),
    logFile: join(dir, 'orthanc.log'),
  };
}

export function urlsOf(settings: OrthancSettings): { httpUrl: string; dicomwebUrl: string } {
  const httpUrl = `http://127.0.0.1:${settings.pacsHttpPort}`;
  return { httpUrl, dicomwebUrl: `${httpUrl}/dicom-web` };
}

/** Refuses with the exact install command when Orthanc or its DICOMweb plugin is missing. */
export function checkOrthancInstalled(settings: OrthancSettings): string[] {
  const install = 'apt-get install orthanc orthanc-dicomweb orthanc-gdcm';
  if (!existsSync(settings.orthancBin)) {
    throw new LdfsamError(
      'PACS_NOT_INSTALLED',
      `Orthanc was not found at ${settings.orthancBin}. Install it (Debian/Ubuntu: sudo ${install}), or set ` +
        `LDFSAM_ORTHANC_BIN to its path, or use a PACS you already run with --dicomweb <url> / LDFSAM_DICOMWEB_URL.`,
    );
  }
  const dicomweb = join(settings.orthancPluginsDir, 'libOrthancDicomWeb.so');
  if (!existsSync(dicomweb)) {
    throw new LdfsamError(
      'PACS_NOT_INSTALLED',
      `Orthanc's DICOMweb plugin was not found at ${dicomweb}. Install it (Debian/Ubuntu: sudo apt-get install orthanc-dicomweb), ` +
        `or set LDFSAM_ORTHANC_PLUGINS_DIR to the folder that holds it.`,
    );
  }
  const plugins = [dicomweb];
  const gdcm = join(settings.orthancPluginsDir, 'libOrthancGdcm.so');
  if (existsSync(gdcm)) plugins.push(gdcm);
  return plugins;
}

export function writeRuntimeConfig(settings: OrthancSettings, plugins: string[]): string {
  const paths = orthancPaths(settings.dataDir);
  mkdirSync(paths.storage, { recursive: true });
  const template = JSON.parse(readFileSync(projectPath('orthanc-config', 'orthanc.json'), 'utf8')) as Record<string, unknown>;
  const config = {
    ...template,
    StorageDirectory: paths.storage,
    IndexDirectory: paths.storage,
    HttpPort: settings.pacsHttpPort,
    DicomPort: settings.pacsDicomPort,
    Plugins: plugins,
  };
  writeFileSync(paths.config, JSON.stringify(config, null, 2));
  return paths.config;
}

/**
 * Starts Orthanc and waits until its REST API answers. `detached`: it outlives this process
 * (pid file, `pacs stop`); otherwise it is this process's child and dies with it.
 */
export async function startOrthanc(
  settings: OrthancSettings,
  options: { detached: boolean; timeoutMs?: number },
): Promise<OrthancHandle> {
  const plugins = checkOrthancInstalled(settings);
  const paths = orthancPaths(settings.dataDir);
  const { httpUrl, dicomwebUrl } = urlsOf(settings);
  const existing = readPid(paths.pidFile);
  if (existing && isAlive(existing) && (await answers(httpUrl))) {
    return { pid: existing, httpUrl, dicomwebUrl, alreadyRunning: true };
  }
  if (await answers(httpUrl)) {
    throw new LdfsamError(
      'PACS_UNAVAILABLE',
      `port ${settings.pacsHttpPort} is already taken by another Orthanc (not started from ${settings.dataDir}); ` +
        `stop it, or choose other ports with --http-port/--dicom-port (LDFSAM_PACS_HTTP_PORT, LDFSAM_PACS_DICOM_PORT)`,
    );
  }
  const configFile = writeRuntimeConfig(settings, plugins);
  const log = openSync(paths.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(settings.orthancBin, [configFile], {
      detached: options.detached,
      stdio: ['ignore', log, log],
      cwd: paths.dir,
    });
  } finally {
    closeSync(log);
  }
  const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
  const spawnError = new Promise<Error>((resolveError) => child.once('error', resolveError));
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    const outcome = await Promise.race([
      exited.then((code) => ({ exited: code })),
      spawnError.then((error) => ({ error })),
      sleep(100).then(() => null),
    ]);
    if (outcome && 'error' in outcome) {
      throw new LdfsamError('PACS_NOT_INSTALLED', `cannot start ${settings.orthancBin}: ${outcome.error.message}`);
    }
    if (outcome && 'exited' in outcome) {
      throw new LdfsamError(
        'PACS_UNAVAILABLE',
        `Orthanc exited at start (code ${String(outcome.exited)}); last lines of ${paths.logFile}:\n${tail(paths.logFile, 8)}`,
      );
    }
    if (await answers(httpUrl)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new LdfsamError(
        'PACS_UNAVAILABLE',
        `Orthanc did not answer at ${httpUrl} within ${options.timeoutMs ?? 30_000} ms; see ${paths.logFile}`,
      );
    }
  }
  writeFileSync(paths.pidFile, String(child.pid));
  if (options.detached) child.unref();
  return { pid: child.pid!, httpUrl, dicomwebUrl, alreadyRunning: false, ...(options.detached ? {} : { child }) };
}

/** Stops the Orthanc recorded in the data folder's pid file: SIGTERM, then SIGKILL after 15 s. */
export async function stopOrthanc(settings: OrthancSettings): Promise<{ stopped: boolean; pid: number | undefined }> {
  const paths = orthancPaths(settings.dataDir);
  const pid = readPid(paths.pidFile);
  if (!pid || !isAlive(pid)) {
    rmSync(paths.pidFile, { force: true });
    return { stopped: false, pid };
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 15_000;
  while (isAlive(pid) && Date.now() < deadline) await sleep(100);
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(paths.pidFile, { force: true });
  return { stopped: true, pid };
}

export async function orthancStatus(settings: OrthancSettings): Promise<OrthancStatus> {
  const paths = orthancPaths(settings.dataDir);
  const { httpUrl, dicomwebUrl } = urlsOf(settings);
  const pid = readPid(paths.pidFile);
  const running = pid !== undefined && isAlive(pid);
  let version: string | undefined;
  try {
    const res = await fetch(`${httpUrl}/system`, { signal: AbortSignal.timeout(2000) });
    if (res.ok) version = ((await res.json()) as { Version?: string }).Version;
  } catch {
    version = undefined;
  }
  return {
    running,
    answering: version !== undefined,
    pid: running ? pid : undefined,
    httpUrl,
    dicomwebUrl,
    version,
    dataDir: settings.dataDir,
    logFile: paths.logFile,
  };
}

async function answers(httpUrl: string): Promise<boolean> {
  try {
    const res = await fetch(`${httpUrl}/system`, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
