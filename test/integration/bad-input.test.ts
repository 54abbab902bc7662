/**
 * Bad input from a real PACS gets a specific, coded error and never takes the process down.
 * The damaged series are derived from the shared CT by test/tools/make_test_series.py.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadSeriesPlan } from '../../server/src/dicom/inspect.js';
import { readSeriesSlices } from '../../server/src/dicom/series-reader.js';
import { LdfsamError } from '../../server/src/errors.js';
import { runCli } from '../setup/cli.js';
import { freePorts } from '../setup/ports.js';
import { pacsClient, pacsEnv, provided } from '../setup/provided.js';

const { dicomwebUrl, derivedDir } = provided();
const client = pacsClient();
const studies = new Map<string, { studyInstanceUID: string; seriesInstanceUID: string }>();

beforeAll(async () => {
  for (const name of ['mixed-sizes', 'mixed-orient', 'no-geometry', 'truncated', 'no-images']) {
    const result = await runCli(['pacs', 'load', join(derivedDir, name), '--json', '--dicomweb', dicomwebUrl], pacsEnv());
    expect(result.code).toBe(0);
    const { series } = JSON.parse(result.stdout) as { series: { studyInstanceUID: string; seriesInstanceUID: string }[] };
    studies.set(name, series[0]!);
  }
});

async function inspectError(name: string): Promise<{ code: string; message: string }> {
  const ids = studies.get(name)!;
  const result = await runCli(['inspect', '--study', ids.studyInstanceUID, '--json', '--dicomweb', dicomwebUrl], pacsEnv());
  expect(result.code).toBe(0);
  const [series] = (JSON.parse(result.stdout) as { series: { error?: { code: string; message: string } }[] }).series;
  expect(series!.error).toBeDefined();
  return series!.error!;
}

async function readAll(ids: { studyInstanceUID: string; seriesInstanceUID: string }): Promise<number> {
  const plan = await loadSeriesPlan(client, ids);
  let n = 0;
  for await (const _ of readSeriesSlices(client, plan)) n++;
  return n;
}

describe('bad series are refused with a specific reason', () => {
  it('mixed image sizes', async () => {
    const e = await inspectError('mixed-sizes');
    expect(e.code).toBe('UNSUPPORTED_DICOM');
    expect(e.message).toMatch(/mixes image sizes \(512x512 .*: 2 slice\(s\), 256x256 .*: 1 slice\(s\)\)/);
  });

  it('mixed orientations', async () => {
    const e = await inspectError('mixed-orient');
    expect(e.code).toBe('UNSUPPORTED_DICOM');
    expect(e.message).toMatch(/mixes image orientations/);
  });

  it('CT without Image Position/Orientation (Patient)', async () => {
    const e = await inspectError('no-geometry');
    expect(e.code).toBe('UNSUPPORTED_DICOM');
    expect(e.message).toMatch(/2 of 2 slices lack a valid Image Position\/Orientation/);
  });

  it('a series with no image instances', async () => {
    const e = await inspectError('no-images');
    expect(e.code).toBe('UNSUPPORTED_DICOM');
    expect(e.message).toMatch(/holds no image instances/);
  });

  it('truncated pixel data fails the read with a coded error, and the reader stays usable', async () => {
    const ids = studies.get('truncated')!;
    const failure = await readAll(ids).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(LdfsamError);
    expect((failure as LdfsamError).code).toBe('UNSUPPORTED_DICOM');
    expect((failure as LdfsamError).message).toMatch(/frame 1: truncated pixel data \(262144 bytes, expected 524288\)$/);
    // The same client reads a good series right after.
    const [mr] = await client.searchForSeries({ queryParams: { Modality: 'MR' } });
    const mrIds = { studyInstanceUID: String(mr!['0020000D']!.Value![0]), seriesInstanceUID: String(mr!['0020000E']!.Value![0]) };
    expect(await readAll(mrIds)).toBe(20);
  });
});

describe('bad requests', () => {
  it('an unknown study is NOT_FOUND, exit status 1, and one line on stderr', async () => {
    const r = await runCli(['inspect', '--study', '1.2.3.4.5.6.7.8.9', '--dicomweb', dicomwebUrl], pacsEnv());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ldfsam: error \[NOT_FOUND\]: study 1\.2\.3\.4\.5\.6\.7\.8\.9 is not in the PACS\n$/);
  });

  it('an unknown series of a known study is NOT_FOUND', async () => {
    const ids = studies.get('mixed-sizes')!;
    const r = await runCli(
      ['inspect', '--study', ids.studyInstanceUID, '--series', '1.2.3', '--json', '--dicomweb', dicomwebUrl],
      pacsEnv(),
    );
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({
      error: { code: 'NOT_FOUND', message: expect.stringMatching(/series 1\.2\.3 is not in study/) },
    });
  });

  it('a malformed UID is INVALID_INPUT and never reaches the PACS', async () => {
    const r = await runCli(['inspect', '--study', '../../system', '--dicomweb', dicomwebUrl], pacsEnv());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[INVALID_INPUT\]: not a DICOM UID/);
  });

  it('an unreachable PACS is PACS_UNAVAILABLE after the retries, with the URL', async () => {
    const [port] = await freePorts(1);
    const r = await runCli(['inspect', '--study', '1.2.3'], {
      LDFSAM_DICOMWEB_URL: `http://127.0.0.1:${port}/dicom-web`,
      LDFSAM_PACS_RETRIES: '1',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `[PACS_UNAVAILABLE]: cannot reach the PACS at http://127.0.0.1:${port}/dicom-web/studies/1.2.3/series: ECONNREFUSED`,
    );
  });

  it('an invalid configuration names the variable', async () => {
    const r = await runCli(['inspect', '--study', '1.2.3'], { LDFSAM_PACS_HTTP_PORT: 'eighty' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[CONFIG_INVALID\]: invalid configuration: pacsHttpPort \(LDFSAM_PACS_HTTP_PORT\)/);
  });
});
