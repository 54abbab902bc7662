/**
 * Global set-up of the integration tests: a real Orthanc (the project's own start code, on free
 * ports, storage in a temp folder) loaded with the shared data and the derived test series, and
 * pydicom's decoding of the same files as the reference.
 */
import { readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import type { Provided } from './provided.js';
import { DicomWebClient } from '../../server/src/dicomweb/client.js';
import { loadFiles } from '../../server/src/pacs/load.js';
import { CT_DIR, MR_DIR, ctFiles, mrFiles, RLE_TWIN, SINGLE_DIR, singleImages } from './data.js';

/** Derived series whose every frame is compared with pydicom's decoding. */
const DECODE_SERIES = [
  'ct-rle',
  'ct-j2k',
  'ct-jpegls',
  'ct-jpegll',
  'us-jpegll',
  'ct-mono1',
  'us-ybr-full',
  'us-ybr-422',
  'us-planar',
  'us-jpeg-422',
];
import { startTestOrthanc } from './orthanc.js';
import { runPython } from './python.js';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const workDir = await mkdtemp(join(tmpdir(), 'ldfsam-test-'));
  const orthanc = await startTestOrthanc(join(workDir, 'pacs'));
  const stop = async () => {
    orthanc.child?.kill('SIGTERM');
    await rm(workDir, { recursive: true, force: true });
  };
  try {
    const referenceDir = join(workDir, 'reference');
    const derivedDir = join(workDir, 'derived');
    await runPython('test/tools/make_test_series.py', [
      '--ct',
      CT_DIR,
      '--us',
      join(SINGLE_DIR, 'US1_UNCR.dcm'),
      '--out',
      derivedDir,
    ]);
    await runPython('test/tools/pydicom_reference.py', [
      '--out',
      referenceDir,
      ...ctFiles(),
      ...singleImages(),
      RLE_TWIN,
      ...mrFiles(),
      join(derivedDir, 'enhanced-ct', '000.dcm'),
      ...DECODE_SERIES.flatMap((name) => derivedFiles(derivedDir, name)),
    ]);
    const client = new DicomWebClient({ url: orthanc.dicomwebUrl, headers: { authorization: orthanc.authorization } });
    const report = await loadFiles(client, [CT_DIR, ...singleImages(), MR_DIR, derivedDir]);
    if (report.failed.length > 0) throw new Error(`test data not stored: ${JSON.stringify(report.failed)}`);
    provideAll(project, {
      dicomwebUrl: orthanc.dicomwebUrl,
      orthancHttpUrl: orthanc.httpUrl,
      pacsAuthorization: orthanc.authorization,
      referenceDir,
      derivedDir,
      workDir,
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return stop;
}

export function provideAll(project: TestProject, values: Provided): void {
  const provide = project.provide as unknown as (key: string, value: unknown) => void;
  for (const [key, value] of Object.entries(values)) provide(key, value);
}

function derivedFiles(derivedDir: string, name: string): string[] {
  return readdirSync(join(derivedDir, name))
    .sort()
    .map((f) => join(derivedDir, name, f));
}
