/** The benchmarks' scratch stack: an Orthanc of their own, an `ldfsam serve` child process on it, JSON calls to its API. */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { LdfsamError } from '../errors.js';
import { startOrthanc, type OrthancHandle } from '../pacs/orthanc.js';
import { projectPath } from '../util/paths.js';
import { freePorts } from '../util/ports.js';

/** An Orthanc with its data under `work`/pacs, on two free loopback ports, stopped with the benchmark. */
export async function startBenchPacs(
  work: string,
  bins: { orthancBin: string; orthancPluginsDir: string },
): Promise<OrthancHandle> {
  const [pacsHttpPort, pacsDicomPort] = await freePorts(2);
  return startOrthanc(
    { ...bins, dataDir: join(work, 'pacs'), pacsHttpPort: pacsHttpPort!, pacsDicomPort: pacsDicomPort! },
    { detached: false },
  );
}

/** `ldfsam serve` on that PACS, its data under `work`, with these model folders (the first wins a name) and no viewer. */
export function startServeOn(
  orthanc: OrthancHandle,
  work: string,
  modelDirs: string[],
): Promise<{ url: string; child: ChildProcess }> {
  return startServe({
    LDFSAM_DICOMWEB_URL: orthanc.dicomwebUrl,
    LDFSAM_DICOMWEB_AUTHORIZATION: orthanc.authorization,
    LDFSAM_DATA_DIR: join(work, 'data'),
    LDFSAM_MODEL_DIRS: modelDirs.join(','),
    LDFSAM_VIEWER_DIR: join(work, 'no-viewer'),
  });
}

/** Starts `ldfsam serve` (the built CLI) with these variables on a free loopback port; resolves once /health answers. */
export async function startServe(env: Record<string, string>): Promise<{ url: string; child: ChildProcess }> {
  const [port] = await freePorts(1);
  const child = spawn(process.execPath, [projectPath('dist', 'server', 'src', 'cli', 'main.js'), 'serve'], {
    env: { ...process.env, ...env, LDFSAM_PORT: String(port), LDFSAM_HOST: '127.0.0.1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new LdfsamError('INTERNAL', `ldfsam serve stopped: ${stderr}`);
    if (
      await fetch(`${url}/health`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return { url, child };
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill();
  throw new LdfsamError('INTERNAL', `ldfsam serve did not answer within 120 s: ${stderr}`);
}

export async function api(url: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${url}/api${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new LdfsamError('INTERNAL', `${path}: HTTP ${res.status} ${text}`);
  return text.startsWith('{') ? JSON.parse(text) : text;
}
