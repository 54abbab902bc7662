/**
 * C-STORE to a DICOM node, against dcmtk's storescp and a second Orthanc (the project's own start
 * code): the SEG and RTSTRUCT arrive with the data sets we wrote (byte for byte where the receiver
 * keeps bytes: storescp --bit-preserving; element for element in Orthanc, which re-encodes; and when
 * the node only takes implicit VR little endian); a node that is down, rejects the association or
 * does not take a SOP class gives the documented error, and nothing is half-stored.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { connect } from 'node:net';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dcmjs from 'dcmjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSeries } from '../../server/src/dicom/file-series.js';
import { DicomWebClient } from '../../server/src/dicomweb/client.js';
import { LdfsamError } from '../../server/src/errors.js';
import type { ModelManifest } from '../../server/src/models/manifest.js';
import { cStore, type DimseNode } from '../../server/src/pacs/dimse.js';
import type { OrthancHandle } from '../../server/src/pacs/orthanc.js';
import { packBits } from '../../server/src/seg/bits.js';
import { buildRtStruct } from '../../server/src/seg/rtstruct.js';
import { buildSegmentation } from '../../server/src/seg/writer.js';
import { projectPath } from '../../server/src/util/paths.js';
import { runCli } from '../setup/cli.js';
import { CT_DIR } from '../setup/data.js';
import { testOrthancSettings } from '../setup/orthanc.js';
import { startOrthanc } from '../../server/src/pacs/orthanc.js';
import { freePorts } from '../setup/ports.js';
import { pacsClient, pacsEnv, provided } from '../setup/provided.js';

const { dicomwebUrl, derivedDir } = provided();

/** The CLI with the test PACS's credentials (it runs with authentication, as the embedded PACS does). */
function cliWithPacs(args: string[], env: Record<string, string> = {}) {
  return runCli(args, { ...pacsEnv(), ...env });
}
const FIXTURE = projectPath('test', 'fixtures', 'model-threshold');
let work: string;
let orthanc: OrthancHandle;
let orthancDicomPort: number;
let objects: { label: string; bytes: Uint8Array; sopInstanceUID: string }[];
const options = { callingAet: 'LDFSAM', timeoutMs: 10_000, retries: 1, backoffMs: 50 };

/** The data set after the file meta information. */
function datasetBytes(bytes: Uint8Array): Buffer {
  const b = Buffer.from(bytes);
  let at = 132;
  while (b.readUInt16LE(at) === 0x0002) {
    const vr = b.toString('latin1', at + 4, at + 6);
    const long = ['OB', 'OW', 'UN', 'SQ', 'UT'].includes(vr);
    at += long ? 12 + b.readUInt32LE(at + 8) : 8 + b.readUInt16LE(at + 6);
  }
  return b.subarray(at);
}

/** Every element of the data set, as dcmjs reads it (encoding-independent; in implicit VR, Pixel Data's OB/OW is not in the file). */
function elements(bytes: Uint8Array): unknown {
  const file = dcmjs.data.DicomMessage.readFile(Uint8Array.from(bytes).buffer);
  const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(file.dict);
  delete ds._vrMap;
  return JSON.parse(JSON.stringify(ds, (_k, v: unknown) => (v instanceof ArrayBuffer ? Buffer.from(v).toString('base64') : v)));
}

interface Scp {
  node: DimseNode;
  dir: string;
  stop(): void;
}

/** dcmtk's storescp on a free port, keeping received bytes (+B) unless told otherwise. */
async function storescp(args: string[] = []): Promise<Scp> {
  const [port] = await freePorts(1);
  const dir = await mkdtemp(join(work, 'scp-'));
  const child: ChildProcess = spawn('storescp', ['+B', '-od', dir, '-aet', 'STORESCP', ...args, String(port)], {
    stdio: 'ignore',
  });
  // storescp is an oracle: not there, or not listening, fails the test with the reason.
  let failed: Error | undefined;
  child.once('error', (e) => (failed = e));
  child.once('exit', (code) => (failed ??= new Error(`storescp exited with status ${code}`)));
  // Listening when a TCP connect succeeds.
  let listening = false;
  for (let i = 0; i < 100 && !listening && !failed; i++) {
    listening = await new Promise<boolean>((resolve) => {
      const s = connect(port!, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (!listening) await new Promise((r) => setTimeout(r, 50));
  }
  if (!listening)
    throw new Error(
      `dcmtk's storescp did not start (${failed?.message ?? 'not listening after 5 s'}; npm run setup installs dcmtk)`,
    );
  return { node: { aet: 'STORESCP', host: '127.0.0.1', port: port! }, dir, stop: () => child.kill('SIGTERM') };
}

async function received(dir: string): Promise<Buffer[]> {
  return Promise.all((await readdir(dir)).sort().map((f) => readFile(join(dir, f))));
}

async function rejection(p: Promise<unknown>): Promise<LdfsamError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(LdfsamError);
  return e as LdfsamError;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ldfsam-dimse-'));
  // Its DICOM port open to ldfsam's calling AE title from loopback only, as LDFSAM_PACS_DICOM_PEERS would.
  const settings = await testOrthancSettings(join(work, 'orthanc2'), [{ aet: 'LDFSAM', host: '127.0.0.1', port: 104 }]);
  orthancDicomPort = settings.pacsDicomPort;
  orthanc = await startOrthanc(settings, { detached: false });
  // A SEG and an RTSTRUCT of the shared CT: a disc on three slices.
  const series = await readFileSeries([CT_DIR]);
  const { plan } = series;
  const masks = plan.slices.map((_, i) =>
    i >= 10 && i < 13
      ? packBits(
          Uint8Array.from({ length: plan.rows * plan.columns }, (_, p) =>
            Math.hypot((p % plan.columns) - 256, Math.floor(p / plan.columns) - 256) < 60 ? 1 : 0,
          ),
        )
      : undefined,
  );
  const model = {
    name: 'dimse-test',
    version: '1',
    segments: [
      {
        number: 1,
        label: 'Disc',
        category: { scheme: 'SCT', code: '85756007', meaning: 'Tissue' },
        type: { scheme: 'SCT', code: '85756007', meaning: 'Tissue' },
        color: { rgb: [255, 0, 0], cielab: [1, 2, 3] },
      },
    ],
  } as unknown as Pick<ModelManifest, 'name' | 'version' | 'segments'>;
  const frames = masks.flatMap((bits, sliceIndex) => (bits ? [{ sliceIndex, segmentNumber: 1, bits }] : []));
  const seg = buildSegmentation({ plan, sourceInstance: series.instances[0]!, frames, model, softwareVersion: '0' });
  const rt = buildRtStruct({ plan, sourceInstance: series.instances[0]!, masks: [masks], model, softwareVersion: '0' });
  objects = [
    { label: 'SEG', bytes: seg.bytes, sopInstanceUID: seg.sopInstanceUID },
    { label: 'RTSTRUCT', bytes: rt.bytes, sopInstanceUID: rt.sopInstanceUID },
  ];
}, 120_000);

afterAll(async () => {
  orthanc?.child?.kill('SIGTERM');
  await rm(work, { recursive: true, force: true });
});

describe('C-STORE to a DICOM node', () => {
  it('storescp receives both objects in one association, their data sets byte for byte as written', async () => {
    const scp = await storescp();
    try {
      const job = new AbortController();
      const stored = await cStore(scp.node, objects, { ...options, signal: job.signal });
      expect(getEventListeners(job.signal, 'abort')).toHaveLength(0); // the association's listener went with it
      expect(stored.map((s) => [s.label, s.status])).toEqual([
        ['SEG', 0],
        ['RTSTRUCT', 0],
      ]);
      const files = await received(scp.dir);
      expect(files).toHaveLength(2);
      for (const o of objects) {
        const match = files.find((f) => f.includes(Buffer.from(o.sopInstanceUID)));
        expect(match, o.label).toBeDefined();
        expect(Buffer.compare(datasetBytes(match!), datasetBytes(o.bytes)), o.label).toBe(0);
      }
    } finally {
      scp.stop();
    }
  });

  it('a node that takes implicit VR little endian only gets the same elements, transcoded', async () => {
    const cfg = join(work, 'implicit.cfg');
    await writeFile(
      cfg,
      [
        '[[TransferSyntaxes]]',
        '[Implicit]',
        'TransferSyntax1 = LittleEndianImplicit',
        '[[PresentationContexts]]',
        '[Results]',
        'PresentationContext1 = SegmentationStorage\\Implicit',
        'PresentationContext2 = RTStructureSetStorage\\Implicit',
        '[CtOnly]',
        'PresentationContext1 = CTImageStorage\\Implicit',
        '[[Profiles]]',
        '[Implicit]',
        'PresentationContexts = Results',
        '[CtOnly]',
        'PresentationContexts = CtOnly',
        '',
      ].join('\n'),
    );
    const scp = await storescp(['-xf', cfg, 'Implicit']);
    try {
      await cStore(scp.node, objects, options);
      const files = await received(scp.dir);
      for (const o of objects) {
        const match = files.find((f) => f.includes(Buffer.from(o.sopInstanceUID)))!;
        expect(match.includes(Buffer.from('1.2.840.10008.1.2\0')) || match.includes(Buffer.from('1.2.840.10008.1.2 '))).toBe(
          true,
        );
        expect(elements(match)).toEqual(elements(o.bytes));
      }
    } finally {
      scp.stop();
    }
    // A node that takes neither SOP class: refused before anything is sent, the SOP classes named.
    const ctOnly = await storescp(['-xf', cfg, 'CtOnly']);
    try {
      const e = await rejection(cStore(ctOnly.node, objects, options));
      expect(e.code).toBe('PACS_REJECTED');
      expect(e.message).toMatch(
        /refused: no presentation context accepted for SEG \(SOP class 1\.2\.840\.10008\.5\.1\.4\.1\.1\.66\.4\), RTSTRUCT/,
      );
      expect(e.message).toMatch(/nothing was stored there/);
      expect(await received(ctOnly.dir)).toEqual([]);
    } finally {
      ctOnly.stop();
    }
  });

  it('a node that rejects the association, or is not there, gives PACS_REJECTED / PACS_UNAVAILABLE after the retries', async () => {
    const refusing = await storescp(['--refuse']);
    try {
      const e = await rejection(cStore(refusing.node, objects, options));
      expect(e.code).toBe('PACS_REJECTED');
      expect(e.message).toMatch(/STORESCP@127\.0\.0\.1:\d+ refused: association rejected \(permanent, .*\)/);
    } finally {
      refusing.stop();
    }
    const [port] = await freePorts(1);
    const t0 = Date.now();
    const job = new AbortController();
    const down = { aet: 'DOWN', host: '127.0.0.1', port: port! };
    const e = await rejection(cStore(down, objects, { ...options, retries: 2, signal: job.signal }));
    expect(e.code).toBe('PACS_UNAVAILABLE');
    expect(getEventListeners(job.signal, 'abort')).toHaveLength(0); // none left by the 3 tries and 2 waits
    expect(e.message).toMatch(
      /failed after 3 tries: network error: .*ECONNREFUSED.*nothing was stored there; not stored: SEG, RTSTRUCT/,
    );
    expect(e.details).toMatchObject({ stored: [], notStored: ['SEG', 'RTSTRUCT'] });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150); // 50 + 100 ms of backoff
  });

  it('a second Orthanc (its DICOM port) stores both, with every element as written', async () => {
    const node = { aet: 'LDFSAM', host: '127.0.0.1', port: orthancDicomPort };
    expect(node.port).toBeGreaterThan(0);
    await cStore(node, objects, options);
    const second = new DicomWebClient({ url: orthanc.dicomwebUrl, headers: { authorization: orthanc.authorization } });
    for (const o of objects) {
      const found = await second.searchForInstances({ queryParams: { SOPInstanceUID: o.sopInstanceUID } });
      expect(found, o.label).toHaveLength(1);
      const study = found[0]!['0020000D']!.Value![0] as string;
      const series = found[0]!['0020000E']!.Value![0] as string;
      const bytes = await second.retrieveInstance({
        studyInstanceUID: study,
        seriesInstanceUID: series,
        sopInstanceUID: o.sopInstanceUID,
      });
      expect(elements(bytes)).toEqual(elements(o.bytes));
    }
  });

  it('ldfsam segment --store-via both: the PACS (STOW-RS) and the node (C-STORE) hold the same SEG and RTSTRUCT; a refusing node leaves the PACS untouched', async () => {
    const load = await cliWithPacs(['pacs', 'load', '--json', '--dicomweb', dicomwebUrl, join(derivedDir, 'ct-mono1')]);
    const ids = (JSON.parse(load.stdout) as { series: { studyInstanceUID: string; seriesInstanceUID: string }[] }).series[0]!;
    const base = ['segment', '--json', '--dicomweb', dicomwebUrl, '--model', FIXTURE, '--study', ids.studyInstanceUID];
    const pacs = pacsClient();
    // Result series already in the study (other test files may have segmented it): a refusing node must add none.
    const results = async () =>
      (await pacs.searchForSeries({ studyInstanceUID: ids.studyInstanceUID }))
        .filter((s) => ['SEG', 'RTSTRUCT'].includes(s['00080060']?.Value?.[0] as string))
        .map((s) => s['0020000E']?.Value?.[0] as string)
        .sort();
    const before = await results();
    const refusing = await storescp(['--refuse']);
    try {
      const r = await cliWithPacs([
        ...base,
        '--output-format',
        'both',
        '--store-dimse',
        `STORESCP@127.0.0.1:${refusing.node.port}`,
      ]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/\[PACS_REJECTED\].*association rejected/);
      expect(await results()).toEqual(before);
    } finally {
      refusing.stop();
    }
    const r = await cliWithPacs([
      ...base,
      '--output-format',
      'both',
      '--store-via',
      'both',
      '--store-dimse',
      `LDFSAM@127.0.0.1:${orthancDicomPort}`,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as {
      storedIn: string[];
      segSeriesInstanceUID: string;
      segSopInstanceUID: string;
      rtstructSeriesInstanceUID: string;
      rtstructSopInstanceUID: string;
    };
    expect(out.storedIn).toEqual(['stow', `dimse:LDFSAM@127.0.0.1:${orthancDicomPort}`]);
    expect(await results()).toEqual(expect.arrayContaining([out.segSeriesInstanceUID, out.rtstructSeriesInstanceUID]));
    // The refused run had stored nothing: not even this RTSTRUCT's series existed after it.
    expect(before).not.toContain(out.rtstructSeriesInstanceUID);
    const second = new DicomWebClient({ url: orthanc.dicomwebUrl, headers: { authorization: orthanc.authorization } });
    for (const uid of [out.segSopInstanceUID, out.rtstructSopInstanceUID])
      expect(await second.searchForInstances({ queryParams: { SOPInstanceUID: uid } })).toHaveLength(1);
  }, 300_000);
});
