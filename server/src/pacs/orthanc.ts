/**
 * The embedded PACS: Debian's Orthanc started as a child process on a configuration derived from
 * orthanc-config/orthanc.json, with its storage, log, pid file and credentials in <data dir>/orthanc/.
 *
 * Its side doors are shut: HTTP answers only loopback clients that send the generated credentials
 * (basic authentication) and name it by a loopback Host (a Lua filter: DNS rebinding), and refuses
 * state-changing requests from pages of other origins (CSRF against a browser logged in to Orthanc
 * Explorer); the DICOM port is closed unless peers are configured, and then accepts only them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, openSync, closeSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { DicomPeer } from '../config.js';
import { LdfsamError } from '../errors.js';
import { projectPath } from '../util/paths.js';
import {
  basicAuthorization,
  ensurePacsCredentials,
  pacsCredentialsFile,
  readPacsCredentials,
  type PacsCredentials,
} from '../util/pacs-credentials.js';
import { sleep } from '../util/sleep.js';

export interface OrthancSettings {
  orthancBin: string;
  orthancPluginsDir: string;
  dataDir: string;
  pacsHttpPort: number;
  pacsDicomPort: number;
  /** The DICOM peers it accepts (LDFSAM_PACS_DICOM_PEERS); none = no DICOM port. */
  pacsDicomPeers?: DicomPeer[];
}

export interface OrthancHandle {
  pid: number;
  httpUrl: string;
  dicomwebUrl: string;
  /** The Authorization header Orthanc requires (server-side only). */
  authorization: string;
  /** Where the credentials are kept (mode 0600). */
  credentialsFile: string;
  /** The DICOM port, or null when it is closed (no peers configured). */
  dicomPort: number | null;
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
    luaFilter: join(dir, 'http-filter.lua'),
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

export function writeRuntimeConfig(settings: OrthancSettings, plugins: string[], credentials: PacsCredentials): string {
  const paths = orthancPaths(settings.dataDir);
  mkdirSync(paths.storage, { recursive: true });
  const template = JSON.parse(readFileSync(projectPath('orthanc-config', 'orthanc.json'), 'utf8')) as Record<string, unknown>;
  const peers = settings.pacsDicomPeers ?? [];
  writePrivate(paths.luaFilter, httpFilterLua(settings.pacsHttpPort));
  const config = {
    ...template,
    StorageDirectory: paths.storage,
    IndexDirectory: paths.storage,
    HttpPort: settings.pacsHttpPort,
    DicomPort: settings.pacsDicomPort,
    Plugins: plugins,
    RegisteredUsers: { [credentials.username]: credentials.password },
    LuaScripts: [paths.luaFilter],
    DicomServerEnabled: peers.length > 0,
    // Echo and store only: query/retrieve is DICOMweb's, behind the credentials.
    DicomModalities: Object.fromEntries(
      peers.map((p, i) => [
        `peer${i + 1}`,
        {
          AET: p.aet,
          Host: p.host,
          Port: p.port,
          AllowEcho: true,
          AllowStore: true,
          AllowFind: false,
          AllowFindWorklist: false,
          AllowGet: false,
          AllowMove: false,
          AllowStorageCommitment: false,
        },
      ]),
    ),
  };
  // It holds the password: readable by its owner only.
  writePrivate(paths.config, JSON.stringify(config, null, 2));
  return paths.config;
}

/**
 * Orthanc 1.10 answers any Host header. This filter (Orthanc's IncomingHttpRequestFilter, run after
 * the authentication check) lets through only requests that name Orthanc by a loopback Host, and
 * POST/PUT/DELETE only without an Origin or from Orthanc's own origin. Refused requests get 403.
 */
export function httpFilterLua(port: number): string {
  const hosts = ['127.0.0.1', 'localhost', '[::1]'].map((h) => `${h}:${port}`);
  const set = (items: string[]) => `{ ${items.map((i) => `[${JSON.stringify(i)}] = true`).join(', ')} }`;
  return `-- Generated by ldfsam pacs start (server/src/pacs/orthanc.ts); rewritten at every start.
local hosts = ${set(hosts)}
local origins = ${set(hosts.map((h) => `http://${h}`))}
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  if not hosts[string.lower(httpHeaders['host'] or '')] then
    return false
  end
  local origin = httpHeaders['origin']
  if origin ~= nil and method ~= 'GET' and method ~= 'HEAD' and not origins[string.lower(origin)] then
    return false
  end
  return true
end
`;
}

function writePrivate(file: string, text: string): void {
  writeFileSync(file, text, { mode: 0o600 });
  chmodSync(file, 0o600); // an older file keeps its mode through writeFileSync
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
  const credentials = ensurePacsCredentials(settings.dataDir);
  const authorization = basicAuthorization(credentials);
  const { httpUrl, dicomwebUrl } = urlsOf(settings);
  const peers = settings.pacsDicomPeers ?? [];
  const base = {
    httpUrl,
    dicomwebUrl,
    authorization,
    credentialsFile: pacsCredentialsFile(settings.dataDir),
    dicomPort: peers.length > 0 ? settings.pacsDicomPort : null,
  };
  const existing = readPid(paths.pidFile);
  const found = await probe(httpUrl, authorization);
  if (existing && isAlive(existing) && found !== 'nothing') {
    if (found === 'ours') return { ...base, pid: existing, alreadyRunning: true };
    throw new LdfsamError(
      'PACS_UNAVAILABLE',
      found === 'open'
        ? `the Orthanc running for ${settings.dataDir} (pid ${existing}) was started without authentication (by an older ldfsam); ` +
            'stop it with `ldfsam pacs stop` and start it again'
        : `the Orthanc running for ${settings.dataDir} (pid ${existing}) does not accept the credentials in ${base.credentialsFile}; ` +
            'stop it with `ldfsam pacs stop` and start it again',
    );
  }
  if (found !== 'nothing') {
    throw new LdfsamError(
      'PACS_UNAVAILABLE',
      `port ${settings.pacsHttpPort} is already taken by another Orthanc (not started from ${settings.dataDir}); ` +
        `stop it, or choose other ports with --http-port/--dicom-port (LDFSAM_PACS_HTTP_PORT, LDFSAM_PACS_DICOM_PORT)`,
    );
  }
  const configFile = writeRuntimeConfig(settings, plugins, credentials);
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
    if ((await probe(httpUrl, authorization)) === 'ours') break;
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
  return { ...base, pid: child.pid!, alreadyRunning: false, ...(options.detached ? {} : { child }) };
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
  const credentials = readPacsCredentials(settings.dataDir);
  let version: string | undefined;
  try {
    const res = await fetch(`${httpUrl}/system`, {
      signal: AbortSignal.timeout(2000),
      headers: credentials ? { authorization: basicAuthorization(credentials) } : {},
    });
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

/**
 * Who answers on the HTTP port: nothing; an Orthanc that takes these credentials and refuses
 * requests without them ('ours'); one that answers without any ('open': started without
 * authentication); or something else.
 */
async function probe(httpUrl: string, authorization: string): Promise<'nothing' | 'ours' | 'open' | 'other'> {
  const status = async (headers: Record<string, string>) => {
    const res = await fetch(`${httpUrl}/system`, { headers, signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.status;
  };
  try {
    if ((await status({ authorization })) !== 200) return 'other';
    return (await status({})) === 401 ? 'ours' : 'open';
  } catch {
    return 'nothing';
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
