/** The README's main command (`npm start` = `ldfsam start`): up, sample data in, Ctrl-C stops all. */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { projectPath } from '../../server/src/util/paths.js';
import { CT_DIR, SINGLE_DIR } from '../setup/data.js';
import { freePorts } from '../setup/ports.js';

/** A GET with the given Host header (what a DNS-rebinding page's browser sends). */
function statusFor(port: number, path: string, host: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { ...headers, host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

/** `ldfsam start` as the user runs it, on free ports and in a temp data folder; output collected. */
function spawnStart(args: string[], ports: number[], dataDir: string, env: Record<string, string> = {}) {
  const [http, dicom, api] = ports;
  const child = spawn(process.execPath, [projectPath('dist/server/src/cli/main.js'), 'start', ...args], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: dataDir,
      LDFSAM_DATA_DIR: dataDir,
      LDFSAM_PACS_HTTP_PORT: String(http),
      LDFSAM_PACS_DICOM_PORT: String(dicom),
      LDFSAM_PORT: String(api),
      ...env,
    },
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const prompt = (timeoutMs: number) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no prompt; output:\n${out}`)), timeoutMs);
      child.stdout.on('data', () => out.includes('Press Ctrl-C to stop.') && (clearTimeout(timer), resolve()));
      child.once('exit', () => reject(new Error(`exited early:\n${out}`)));
    });
  return { child, output: () => out, prompt };
}

it('starts Orthanc and the API, stores the sample data, segments a sample series, and stops cleanly on Ctrl-C', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'ldfsam-start-'));
  const [http, dicom, api] = await freePorts(3);
  const { child, output, prompt } = spawnStart(['--sample-data', CT_DIR, SINGLE_DIR], [http!, dicom!, api!], dataDir, {
    LDFSAM_MODEL_DIRS: projectPath('test', 'fixtures'),
  });
  try {
    await prompt(60_000);
    expect(output()).toMatch(/CT\s+28\s+512x512\s+position, even\s+ready/);
    expect(output()).toMatch(/US\s+2\s+480x640\s+2D images\s+ready/);
    // Orthanc answers only with the generated credentials, which are printed nowhere.
    const file = join(dataDir, 'orthanc', 'credentials.json');
    const { username, password } = JSON.parse(readFileSync(file, 'utf8')) as { username: string; password: string };
    const authorization = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
    expect((await fetch(`http://127.0.0.1:${http}/system`)).status).toBe(401);
    expect((await fetch(`http://127.0.0.1:${http}/system`, { headers: { authorization } })).status).toBe(200);
    expect(output()).toContain(
      `Orthanc Explorer: http://127.0.0.1:${http}/app/explorer.html (log in with the user name and password in ${file})`,
    );
    expect(output()).toContain('PACS DICOM: port closed');
    expect(output()).not.toContain(password);
    // Named by a foreign Host (DNS rebinding), neither the API nor Orthanc serves anything.
    expect(await statusFor(api!, '/api/models', `attacker.example:${api}`)).toBe(421);
    expect(await statusFor(api!, '/dicom-web/studies', `attacker.example:${api}`)).toBe(421);
    expect(await statusFor(http!, '/system', `attacker.example:${http}`)).toBe(401);
    expect(await statusFor(http!, '/system', `attacker.example:${http}`, { authorization })).toBe(403);
    // The API runs, and the demonstration job ran. The only ultrasound here is the shared Philips
    // obstetric study (a gestational sac, no head): the HC18 model's presence gate finds nothing and
    // stores nothing (before the gate, it drew a "fetal head" on it).
    expect(output()).toMatch(new RegExp(`API: http://127\\.0\\.0\\.1:${api}/api`));
    expect(output()).toMatch(/Demo: ran ldfsam-hc18 on series [0-9.]+: No fetal head found/);
    expect((await fetch(`http://127.0.0.1:${api}/api/models`)).ok).toBe(true);
    child.kill('SIGINT');
    const code = await new Promise((r) => child.once('exit', r));
    expect(code).toBe(0);
    expect(output()).toMatch(/Stopped cleanly \(SIGINT, [\d.]+ s\)\.\n$/);
    await expect(fetch(`http://127.0.0.1:${http}/system`)).rejects.toThrow();
  } finally {
    child.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  }
});

it('with the default sample data (the README main command): images wrapped as DICOM, the viewer served, the demo shown there', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'ldfsam-start-default-'));
  const [http, dicom, api] = await freePorts(3);
  const { child, output, prompt } = spawnStart([], [http!, dicom!, api!], dataDir);
  try {
    await prompt(110_000);
    expect(output()).toMatch(/Stored 6 sample image\(s\) wrapped as DICOM/);
    expect(output()).toMatch(/US\s+1\s+540x800\s+2D images\s+ready/); // an HC18 image
    expect(output()).toMatch(/XC\s+1\s+57\dx76\d\s+2D images\s+ready/); // a PH2 image
    expect(output()).toContain(`Viewer: http://127.0.0.1:${api}/ (OHIF with the "LDFSAM auto-segment" mode)`);
    expect(output()).toContain(`3D Slicer: http://127.0.0.1:${api}/monailabel (server URL for 3D Slicer's MONAI Label module)`);
    const index = await fetch(`http://127.0.0.1:${api}/`);
    expect(await index.text()).toContain('<div id="root">');
    // The demo segments an HC18 image with the fetal-head model and links the viewer to it.
    const demo =
      /Demo: segmented series [0-9.]+ with ldfsam-hc18: SEG series (2\.25\.\d+) \(1 frame\) is in the PACS\.\n\s+See it in the viewer: (\S+)/.exec(
        output(),
      );
    expect(demo, output()).not.toBeNull();
    const study = new URL(demo![2]!).searchParams.get('StudyInstanceUIDs');
    const series = (await (
      await fetch(`http://127.0.0.1:${api}/dicom-web/studies/${study}/series`, { headers: { accept: 'application/dicom+json' } })
    ).json()) as Record<string, { Value?: string[] }>[];
    expect(series.map((s) => s['0020000E']?.Value?.[0])).toContain(demo![1]);
    child.kill('SIGINT');
    expect(await new Promise((r) => child.once('exit', r))).toBe(0);
  } finally {
    child.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  }
}, 180_000);
