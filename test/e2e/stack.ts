/**
 * The real stack for the browser tests, started the way `npm start` does it: Orthanc (the
 * project's own start code, free ports, a temp folder), ultrasound images wrapped as DICOM by
 * `ldfsam import-images` and stored, a multi-frame cine for long jobs, and the server with the
 * viewer, the shipped models and a model that fails on batches (the induced server error).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { expect } from 'vitest';
import { loadConfig } from '../../server/src/config.js';
import { DicomWebClient } from '../../server/src/dicomweb/client.js';
import { startServer, type RunningServer } from '../../server/src/http/server.js';
import { silentLogger } from '../../server/src/log.js';
import { loadFiles } from '../../server/src/pacs/load.js';
import { projectPath } from '../../server/src/util/paths.js';
import { runCli } from '../setup/cli.js';
import { CT_DIR, SHARED_DATA } from '../setup/data.js';
import { startTestOrthanc } from '../setup/orthanc.js';
import { runPython } from '../setup/python.js';

export const HC18 = join(SHARED_DATA, 'hc18', 'images');

export interface Stack {
  url: string;
  pacs: DicomWebClient;
  /** The study of one HC18 image of the model's held-out test split (patient HC18-006). */
  usStudy: string;
  /** Subject 022's study: two images, two series (the whole-study batch). */
  twoSeriesStudy: string;
  /** A 300-frame cine of one HC18 image at half size: long enough to cancel (about 10 s of work). */
  cineStudy: string;
  /** The shared 28-slice CT, when asked for (`withCt`). */
  ctStudy?: string;
  /** Three CT-geometry slices on which the presence fixture (test/fixtures/model-presence) finds nothing. */
  negativeStudy: string;
  stop(): Promise<void>;
}

export interface StackOptions {
  /** LDFSAM_API_TOKENS of the server (authentication on). */
  apiTokens?: string[];
  /** LDFSAM_VIEWER_TOKEN: the token the served viewer carries. */
  viewerToken?: string;
  /** OIDC: the provider, the access tokens' audience, and the viewer's client id. */
  oidc?: { issuer: string; audience: string; jwksUrl: string; clientId: string };
  /** Also store the shared 28-slice CT. */
  withCt?: boolean;
  /** More model folders to register (e.g. the promptable fixture). */
  modelDirs?: string[];
  /** More configuration (config keys, as flags). */
  flags?: Record<string, unknown>;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  for (const [path, fix] of [
    [projectPath('vendor', 'ohif-app', 'dist', 'index.html'), 'npm run setup (scripts/fetch-viewer.sh)'],
    [projectPath('dist', 'extension', 'ldfsam-extension.js'), 'npm run build'],
    ['/usr/bin/chromium', 'npm run setup (Debian package chromium)'],
  ] as const) {
    if (!existsSync(path)) throw new Error(`${path} is missing: run ${fix}`);
  }
  const work = await mkdtemp(join(tmpdir(), 'ldfsam-e2e-'));
  const orthanc = await startTestOrthanc(join(work, 'pacs'));
  let server: RunningServer | undefined;
  const stop = async () => {
    await server?.close();
    orthanc.child?.kill('SIGTERM');
    await rm(work, { recursive: true, force: true });
  };
  try {
    const imported = await runCli(
      [
        'import-images',
        '--preset',
        'hc18',
        '--out',
        join(work, 'imported'),
        '--store',
        '--json',
        '--dicomweb',
        orthanc.dicomwebUrl,
        join(HC18, '006_HC.png'),
        join(HC18, '022_HC.png'),
        join(HC18, '022_2HC.png'),
      ],
      { LDFSAM_DICOMWEB_AUTHORIZATION: orthanc.authorization },
    );
    if (imported.code !== 0) throw new Error(`import-images failed: ${imported.stderr}`);
    const cineStudy = (
      await runPython('test/tools/make_us_cine.py', [
        '--images',
        join(HC18, '012_HC.png'),
        '--frames',
        '300',
        '--scale',
        '0.5',
        '--out',
        join(work, 'cine', 'cine.dcm'),
      ])
    ).trim();
    const presence = JSON.parse(
      await runPython('test/tools/make_presence_series.py', [
        '--ct',
        projectPath('..', 'shared', 'data', 'dicom', 'ct-head-phantom-philips'),
        '--out',
        join(work, 'presence'),
      ]),
    ) as Record<string, { folder: string; studyInstanceUID: string }>;
    const negative = presence['presence-none']!;
    const pacs = new DicomWebClient({ url: orthanc.dicomwebUrl, headers: { authorization: orthanc.authorization } });
    const loaded = await loadFiles(pacs, [join(work, 'cine'), negative.folder, ...(options.withCt ? [CT_DIR] : [])]);
    if (loaded.failed.length > 0) throw new Error(`cine not stored: ${JSON.stringify(loaded.failed)}`);
    const usStudy = (await pacs.searchForStudies({ queryParams: { PatientID: 'HC18-006' } }))[0]?.['0020000D']
      ?.Value?.[0] as string;
    if (!usStudy) throw new Error('the imported HC18 study is not in the PACS');
    await runPython('test/tools/make_failing_model.py', ['--out', join(work, 'models', 'fails-on-batches')]);
    const config = loadConfig({
      env: {},
      flags: {
        dicomwebUrl: orthanc.dicomwebUrl,
        dicomwebAuthorization: orthanc.authorization,
        dataDir: join(work, 'data'),
        port: 0,
        modelDirs: [join(work, 'models'), projectPath('test', 'fixtures', 'model-presence'), ...(options.modelDirs ?? [])],
        batchSize: 2,
        apiTokens: options.apiTokens,
        viewerToken: options.viewerToken,
        oidcIssuer: options.oidc?.issuer,
        oidcAudience: options.oidc?.audience,
        oidcJwksUrl: options.oidc?.jwksUrl,
        oidcClientId: options.oidc?.clientId,
        ...options.flags,
      },
    });
    server = await startServer({ ...config, port: 0 }, silentLogger);
    if ('missing' in server.viewer) throw new Error(`the server serves no viewer: ${server.viewer.missing}`);
    const twoSeriesStudy = (await pacs.searchForStudies({ queryParams: { PatientID: 'HC18-022' } }))[0]?.['0020000D']
      ?.Value?.[0] as string;
    if (!twoSeriesStudy) throw new Error('the imported HC18-022 study is not in the PACS');
    // The presence series is a CT study too (slices of the shared CT): the shared CT is the other one.
    const ctStudies = options.withCt ? await pacs.searchForStudies({ queryParams: { ModalitiesInStudy: 'CT' } }) : [];
    const ctStudy = ctStudies
      .map((s) => s['0020000D']?.Value?.[0] as string | undefined)
      .find((uid) => uid !== undefined && uid !== negative.studyInstanceUID);
    if (options.withCt && !ctStudy) throw new Error('the shared CT study is not in the PACS');
    return {
      url: server.url,
      pacs,
      usStudy,
      twoSeriesStudy,
      cineStudy,
      ctStudy,
      negativeStudy: negative.studyInstanceUID,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * After Auto-segment was clicked: OHIF's segmentation service holds one segmentation (the SEG is
 * loaded in the viewer) and the PACS holds exactly one SEG series in the study.
 */
export async function expectOneSegmentation(page: Page, stack: Stack): Promise<void> {
  await expect
    .poll(() => page.evaluate(() => (globalThis as any).services.segmentationService.getSegmentations().length), {
      timeout: 90_000,
    })
    .toBe(1);
  expect(await stack.pacs.searchForSeries({ studyInstanceUID: stack.usStudy, queryParams: { Modality: 'SEG' } })).toHaveLength(1);
}
