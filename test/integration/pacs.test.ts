/**
 * `ldfsam pacs start|status|load|stop` as a user runs them: a second, detached Orthanc on free
 * ports in a temp data folder. It also holds the 2-frame RLE ultrasound, which shares its SOP
 * Instance UID with OBXXXX1A.dcm and so cannot live in the main test PACS.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DicomWebClient } from '../../server/src/dicomweb/client.js';
import { loadSeriesPlan } from '../../server/src/dicom/inspect.js';
import { readSeriesSlices } from '../../server/src/dicom/series-reader.js';
import { runCli } from '../setup/cli.js';
import { CT_DIR, RLE_TWIN } from '../setup/data.js';
import { freePorts } from '../setup/ports.js';
import { provided } from '../setup/provided.js';

const { referenceDir } = provided();
let env: Record<string, string>;
let dataDir: string;
let dicomwebUrl: string;

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

  it('start waits until Orthanc answers; a second start finds it running', async () => {
    const r = await runCli(['pacs', 'start', '--json'], env);
    expect(r.code).toBe(0);
    const started = JSON.parse(r.stdout) as { pid: number; alreadyRunning: boolean; dicomwebUrl: string };
    expect(started.alreadyRunning).toBe(false);
    expect(started.dicomwebUrl).toBe(dicomwebUrl);
    const system = await fetch(dicomwebUrl.replace('/dicom-web', '/system'));
    expect(system.ok).toBe(true);
    const again = JSON.parse((await runCli(['pacs', 'start', '--json'], env)).stdout) as { pid: number; alreadyRunning: boolean };
    expect(again).toMatchObject({ pid: started.pid, alreadyRunning: true });
    const status = await runCli(['pacs', 'status', '--json'], env);
    expect(JSON.parse(status.stdout)).toMatchObject({ running: true, answering: true, pid: started.pid, version: '1.10.1' });
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

    const client = new DicomWebClient({ url: dicomwebUrl });
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
