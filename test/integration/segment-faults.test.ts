/**
 * PACS faults during a job, injected by a real HTTP proxy in front of the real Orthanc: a connection
 * that breaks while frames are fetched, and a PACS that answers 503 to the store. Each ends in a
 * coded error, and nothing is stored. Each uses a study that no other test file segments, since the
 * test PACS is shared by all files.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { projectPath } from '../../server/src/util/paths.js';
import { runCli } from '../setup/cli.js';
import { pacsClient, pacsEnv, provided } from '../setup/provided.js';
import { startFaultProxy } from '../setup/proxy.js';

const { dicomwebUrl, derivedDir } = provided();
const client = pacsClient();
const FIXTURE = projectPath('test', 'fixtures', 'model-threshold');
let proxy: { dicomwebUrl: string; close(): Promise<void> } | undefined;

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});

async function idsOf(name: string) {
  const r = await runCli(['pacs', 'load', '--json', '--dicomweb', dicomwebUrl, join(derivedDir, name)], pacsEnv());
  return (JSON.parse(r.stdout) as { series: { studyInstanceUID: string; seriesInstanceUID: string }[] }).series[0]!;
}

describe('PACS faults during segmentation', () => {
  it('a connection broken while frames are fetched: PACS_UNAVAILABLE, nothing stored', async () => {
    const ids = await idsOf('ct-jpegll');
    proxy = await startFaultProxy(dicomwebUrl, (method, url) =>
      method === 'GET' && url.includes('/frames/') ? 'reset' : undefined,
    );
    const r = await runCli(['segment', '--model', FIXTURE, '--study', ids.studyInstanceUID, '--series', ids.seriesInstanceUID], {
      ...pacsEnv(),
      LDFSAM_DICOMWEB_URL: proxy.dicomwebUrl,
      LDFSAM_PACS_RETRIES: '1',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[PACS_UNAVAILABLE\]: cannot reach the PACS at .*\/frames\//);
    expect(
      await client.searchForSeries({ studyInstanceUID: ids.studyInstanceUID, queryParams: { Modality: 'SEG' } }),
    ).toHaveLength(0);
  });

  it('a store answered 503 (after retries): PACS_UNAVAILABLE, nothing stored', async () => {
    const ids = await idsOf('us-ybr-422'); // a study no other test segments
    let stores = 0;
    proxy = await startFaultProxy(dicomwebUrl, (method) => (method === 'POST' ? (stores++, 503) : undefined));
    const r = await runCli(['segment', '--model', FIXTURE, '--study', ids.studyInstanceUID, '--series', ids.seriesInstanceUID], {
      ...pacsEnv(),
      LDFSAM_DICOMWEB_URL: proxy.dicomwebUrl,
      LDFSAM_PACS_RETRIES: '2',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[PACS_UNAVAILABLE\]: PACS answered 503/);
    expect(stores).toBe(3); // first try + 2 retries
    expect(
      await client.searchForSeries({ studyInstanceUID: ids.studyInstanceUID, queryParams: { Modality: 'SEG' } }),
    ).toHaveLength(0);
  });
});
