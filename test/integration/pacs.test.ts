/**
 * `ldfsam pacs start|status|load|stop` as a user runs them: a second, detached Orthanc on free
 * ports in a temp data folder, with the credentials `pacs start` generates (the commands find them
 * in the data folder themselves). It also holds the 2-frame RLE ultrasound, which shares its SOP
 * Instance UID with OBXXXX1A.dcm and so cannot live in the main test PACS.
 */
import { readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DicomWebClient } from '../../server/src/dicomweb/client.js';
import { loadSeriesPlan } from '../../server/src/dicom/inspect.js';
import { readSeriesSlices } from '../../server/src/dicom/series-reader.js';
import { projectPath } from '../../server/src/util/paths.js';
import { runCli } from '../setup/cli.js';
import { CT_DIR, RLE_TWIN } from '../setup/data.js';
import { freePorts } from '../setup/ports.js';
import { provided } from '../setup/provided.js';

const { referenceDir } = provided();
let env: Record<string, string>;
let dataDir: string;
let dicomwebUrl: string;
let authorization: string;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'ldfsam-pacs-'));
  const [http, dicom] = await freePorts(2);
  env = { LDFSAM_DATA_DIR: dataDir, LDFSAM_PACS_HTTP_PORT: String(http), LDFSAM_PACS_DICOM_PORT: String(dicom) };
  dicomwebUrl = `http://127.0.0.1:${http}/dicom-web`;
});

afterAll(async () => {
  await runCli(['pacs', 'stop'], env);
  await rm(dataDir, { recursive: true, force: true });
});

describe('ldfsam pacs', () => {
  it('status says it is not running before start (exit status 3)', async () => {
    const r = await runCli(['pacs', 'status'], env);
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/Orthanc is not running/);
  });

  it('start generates credentials once (mode 0600), Orthanc requires them; a second start finds it running', async () => {
    const r = await runCli(['pacs', 'start', '--json'], env);
    expect(r.code).toBe(0);
    const started = JSON.parse(r.stdout) as {
      pid: number;
      alreadyRunning: boolean;
      dicomwebUrl: string;
      credentialsFile: string;
    };
    expect(started).toMatchObject({ alreadyRunning: false, dicomwebUrl, dicomPort: null });
    expect(started.credentialsFile).toBe(join(dataDir, 'orthanc', 'credentials.json'));
    // The password is in the credentials and in Orthanc's generated configuration: both owner-only.
    for (const file of [started.credentialsFile, join(dataDir, 'orthanc', 'orthanc.json')])
      expect((statSync(file).mode & 0o777).toString(8), file).toBe('600');
    const credentials = JSON.parse(readFileSync(started.credentialsFile, 'utf8')) as { username: string; password: string };
    expect(credentials.username).toBe('ldfsam');
    expect(credentials.password).toMatch(/^[A-Za-z0-9_-]{32}$/);
    authorization = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
    const system = dicomwebUrl.replace('/dicom-web', '/system');
    expect((await fetch(system)).status).toBe(401);
    expect((await fetch(system, { headers: { authorization: 'Basic bGRmc2FtOndyb25n' } })).status).toBe(401);
    expect((await fetch(system, { headers: { authorization } })).status).toBe(200);
    const again = JSON.parse((await runCli(['pacs', 'start', '--json'], env)).stdout) as { pid: number; alreadyRunning: boolean };
    expect(again).toMatchObject({ pid: started.pid, alreadyRunning: true });
    const status = await runCli(['pacs', 'status', '--json'], env);
    expect(JSON.parse(status.stdout)).toMatchObject({ running: true, answering: true, pid: started.pid, version: '1.10.1' });
    // The text says how a person logs in, without the password.
    const text = await runCli(['pacs', 'start'], env);
    expect(text.stdout).toContain(`login:    user name and password in ${started.credentialsFile}`);
    expect(text.stdout).toMatch(/DICOM: {4}port closed/);
    expect(text.stdout).not.toContain(credentials.password);
  });

  it('load stores a folder, skips the DICOMDIR with its reason, and prints what was stored', async () => {
    const r = await runCli(['pacs', 'load', CT_DIR], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Stored 28 instance\(s\) in http:\/\/127\.0\.0\.1:\d+\/dicom-web\n/);
    expect(r.stdout).toMatch(/CT\s+28\n/);
    expect(r.stdout).toMatch(/skipped .*DIRFILE: DICOMDIR/);
  });

  it('load refuses a missing path and skips a file that is not DICOM', async () => {
    const missing = await runCli(['pacs', 'load', join(dataDir, 'nope')], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/\[NOT_FOUND\]: no such file or folder/);
    const notDicom = await runCli(['pacs', 'load', '--json', join(dataDir, 'orthanc', 'orthanc.json')], env);
    expect(notDicom.code).toBe(0);
    expect(JSON.parse(notDicom.stdout).skipped[0].reason).toMatch(/not a DICOM Part 10 file/);
  });

  it('reads the 2-frame RLE ultrasound frame by frame, equal to pydicom', async () => {
    const load = await runCli(['pacs', 'load', '--json', RLE_TWIN], env);
    const { series } = JSON.parse(load.stdout) as { series: { studyInstanceUID: string; seriesInstanceUID: string }[] };
    const inspect = await runCli(['inspect', '--json', '--study', series[0]!.studyInstanceUID], env);
    const [us] = (
      JSON.parse(inspect.stdout) as { series: { sliceCount: number; frameNumbers: number[]; transferSyntaxes: string[] }[] }
    ).series;
    expect(us).toMatchObject({ sliceCount: 2, frameNumbers: [1, 2], transferSyntaxes: ['1.2.840.10008.1.2.5'] });

    const client = new DicomWebClient({ url: dicomwebUrl, headers: { authorization } });
    const plan = await loadSeriesPlan(client, series[0]!);
    const refs = (
      JSON.parse(readFileSync(join(referenceDir, 'index.json'), 'utf8')) as { file: string; frameNumber: number; bin: string }[]
    ).filter((r) => r.file === RLE_TWIN);
    expect(refs).toHaveLength(2);
    for await (const slice of readSeriesSlices(client, plan)) {
      const ref = refs.find((r) => r.frameNumber === slice.plan.frameNumber)!;
      const buf = readFileSync(join(referenceDir, ref.bin));
      const expected = new Uint16Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
      expect(slice.pixels.kind).toBe('rgb');
      expect(Buffer.compare(Buffer.from((slice.pixels as { data: Uint16Array }).data.buffer), Buffer.from(expected.buffer))).toBe(
        0,
      );
    }
  });

  it('segment reads the credentials from the data folder too, and stores its SEG', async () => {
    const load = await runCli(['pacs', 'load', '--json', CT_DIR], env);
    const [ct] = (JSON.parse(load.stdout) as { series: { studyInstanceUID: string; seriesInstanceUID: string }[] }).series;
    const model = projectPath('test', 'fixtures', 'model-threshold');
    const args = ['segment', '--json', '--model', model, '--study', ct!.studyInstanceUID, '--series', ct!.seriesInstanceUID];
    const r = await runCli(args, env);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'stored' });
  });

  it('stop stops it, and status says so', async () => {
    const r = await runCli(['pacs', 'stop', '--json'], env);
    expect(JSON.parse(r.stdout)).toMatchObject({ stopped: true });
    expect((await runCli(['pacs', 'status'], env)).code).toBe(3);
  });

  it('says what to install when Orthanc is missing', async () => {
    const r = await runCli(['pacs', 'start'], { ...env, LDFSAM_ORTHANC_BIN: '/nonexistent/Orthanc' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /\[PACS_NOT_INSTALLED\]: Orthanc was not found at \/nonexistent\/Orthanc\. Install it \(Debian\/Ubuntu: sudo apt-get install orthanc orthanc-dicomweb orthanc-gdcm\)/,
    );
    const plugins = await runCli(['pacs', 'start'], { ...env, LDFSAM_ORTHANC_PLUGINS_DIR: '/nonexistent' });
    expect(plugins.stderr).toMatch(/DICOMweb plugin was not found/);
  });

  it('every command has --help', async () => {
    for (const cmd of [
      [],
      ['start'],
      ['pacs'],
      ['pacs', 'start'],
      ['pacs', 'stop'],
      ['pacs', 'status'],
      ['pacs', 'load'],
      ['inspect'],
      ['segment'],
      ['serve'],
      ['jobs'],
      ['batch'],
    ]) {
      const r = await runCli([...cmd, '--help']);
      expect(r.code, cmd.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^Usage: ldfsam/);
    }
  });
});
