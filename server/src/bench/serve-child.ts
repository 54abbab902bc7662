/** An `ldfsam serve` child process for the benchmarks, and JSON calls to its API. */
import { spawn, type ChildProcess } from 'node:child_process';
import { LdfsamError } from '../errors.js';
import { projectPath } from '../util/paths.js';
import { freePorts } from '../util/ports.js';

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
