/**
 * Seeded DICOM fuzzing through the real paths: every damaged input (fuzz/cases.ts) goes through
 * `segment --input` (in-process, as the CLI runs it), a sample through the spawned CLI, and a subset
 * is stored into a real Orthanc of its own and segmented through the PACS path. Each must end, in
 * time, in a success or a coded error; no SEG may be stored for a failed series; memory stays bounded.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DicomWebClient } from '../../server/src/dicomweb/client.js';
import { ModelRegistry, type RegisteredModel } from '../../server/src/inference/registry.js';
import { loadFiles } from '../../server/src/pacs/load.js';
import type { OrthancHandle } from '../../server/src/pacs/orthanc.js';
import { projectPath } from '../../server/src/util/paths.js';
import { runCli } from '../setup/cli.js';
import { CT_DIR, SINGLE_DIR } from '../setup/data.js';
import { startTestOrthanc } from '../setup/orthanc.js';
import { CATEGORIES, makeCases, type FuzzCase } from './fuzz/cases.js';
import { parseDicom, remove, serialize, setString } from './fuzz/elements.js';
import { runFileCase, runPacsCase, uniquified, writeCase, type Outcome } from './fuzz/run-case.js';
import { FULL, record, tally, type Row } from './summary.js';

const SEED = Number(process.env.LDFSAM_FUZZ_SEED ?? 20261130);
const FILE_CASES = FULL ? 1300 : 130;
const PACS_CASES = FULL ? 156 : 26;
const CLI_CASES = FULL ? 26 : 4;
const CASE_TIMEOUT_MS = 20_000;
const FIXTURE = projectPath('test', 'fixtures', 'model-threshold');

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const mb = (n: number) => Math.round(n / 2 ** 20);

let workDir: string;
let registry: ModelRegistry;
let model: RegisteredModel;
const failures: string[] = [];

function note(c: FuzzCase, o: Outcome) {
  if (!o.ok) failures.push(`${c.id} [${c.category}, ${c.base}] ${c.what}: ${o.result} ${o.detail ?? ''}`.slice(0, 2000));
}

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'ldfsam-fuzz-'));
  registry = new ModelRegistry({ executionProvider: 'cpu', intraOpNumThreads: 1 });
  model = await registry.add(FIXTURE);
});

afterAll(async () => {
  await registry?.close();
  await rm(workDir, { recursive: true, force: true });
});

describe(`DICOM fuzzing (seed ${SEED})`, () => {
  it(`${FILE_CASES} damaged inputs through segment --input: success or a coded error, in time, memory bounded`, async () => {
    const cases = makeCases(SEED, FILE_CASES);
    gc();
    const before = process.memoryUsage();
    let peakRss = before.rss;
    let peakBuffers = before.arrayBuffers;
    const outcomes: (Outcome & { category: string })[] = [];
    let previous = before.arrayBuffers;
    for (const c of cases) {
      const o = await runFileCase(c, workDir, registry, model, CASE_TIMEOUT_MS);
      // Sampled before any collection: a buffer sized from a header that was never checked shows here
      // (the largest honest case, the 600 x 800 palette images, needs well under 100 MB).
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss);
      if (m.arrayBuffers - previous > 256 * 2 ** 20) {
        o.ok = false;
        o.detail = `array buffers grew by ${mb(m.arrayBuffers - previous)} MB in this case`;
      }
      previous = m.arrayBuffers;
      peakBuffers = Math.max(peakBuffers, m.arrayBuffers);
      outcomes.push({ ...o, category: c.category });
      note(c, o);
      if (outcomes.length % 20 === 0) {
        gc();
        previous = process.memoryUsage().arrayBuffers;
      }
    }
    gc();
    const after = process.memoryUsage();
    const rows: Row[] = tally('fuzz: segment --input', outcomes);
    const slowest = Math.max(...outcomes.map((o) => o.ms));
    rows[0]!.note =
      `RSS ${mb(before.rss)} -> ${mb(after.rss)} MB (peak ${mb(peakRss)}), array buffers peak +${mb(peakBuffers - before.arrayBuffers)} MB, ` +
      `slowest case ${Math.round(slowest)} ms`;
    const results = new Map<string, number>();
    for (const o of outcomes) results.set(o.result, (results.get(o.result) ?? 0) + 1);
    rows[1]!.note = `outcomes: ${[...results].map(([k, v]) => `${k} ${v}`).join(', ')}`;
    record(rows);
    expect(new Set(outcomes.map((o) => o.category)).size).toBe(CATEGORIES.length);
    expect(failures).toEqual([]);
    expect(mb(after.rss - before.rss)).toBeLessThan(400);
  }, 900_000);

  it(`${CLI_CASES} of them through the spawned CLI: exit 0 or 1 with a coded message`, async () => {
    const cases = makeCases(SEED + 1, CLI_CASES * CATEGORIES.length).filter((_, i) => i % CATEGORIES.length < CLI_CASES);
    const outcomes: { category: string; ok: boolean }[] = [];
    for (const c of cases.slice(0, CLI_CASES)) {
      const folder = await writeCase(c, workDir);
      const out = join(folder, 'seg.out');
      const r = await runCli(['segment', '--model', FIXTURE, '--input', folder, '--output', out, '--json'], {}, 60_000);
      const ok =
        r.code === 0 || (r.code !== null && r.code > 0 && /\[[A-Z_]+\]/.test(r.stderr) && !/\[INTERNAL\]/.test(r.stderr));
      if (!ok) failures.push(`CLI ${c.id} [${c.category}] ${c.what}: exit ${r.code} ${r.stderr.slice(0, 500)}`);
      outcomes.push({ category: 'cli sample', ok });
    }
    record(tally('fuzz: spawned CLI', outcomes));
    expect(failures).toEqual([]);
  }, 600_000);

  describe('through a real Orthanc', () => {
    let orthanc: OrthancHandle;
    let client: DicomWebClient;
    beforeAll(async () => {
      orthanc = await startTestOrthanc(join(workDir, 'pacs'));
      client = new DicomWebClient({ url: orthanc.dicomwebUrl, retries: 1, headers: { authorization: orthanc.authorization } });
    }, 120_000);
    afterAll(() => {
      orthanc?.child?.kill('SIGTERM');
    });

    it('instances Orthanc cannot cut frames from (500 "Not implemented yet") are damaged input, not an unavailable PACS', async () => {
      const j2k = parseDicom(readFileSync(join(SINGLE_DIR, 'US1_J2KR.dcm')));
      remove(j2k, '00280004');
      const ct = parseDicom(readFileSync(join(CT_DIR, 'I10')));
      setString(ct, '00020010', '1.2.840.10008.1.2.4.999', 'UI');
      for (const [id, bytes, expected] of [
        ['901', serialize(j2k), 'success'], // no Photometric Interpretation: 3 samples read as RGB, as from files
        ['902', serialize(ct), 'UNSUPPORTED_DICOM'],
      ] as const) {
        const c = {
          id: `regression-${id}`,
          category: 'transfer-syntax' as const,
          base: '',
          what: id,
          files: [{ name: 'a.dcm', bytes }],
          mustFail: false,
        };
        const o = await runPacsCase(c, workDir, client, registry, model, CASE_TIMEOUT_MS);
        expect(o.result, o.detail).toBe(expected);
      }
    }, 120_000);

    it('pacs load of a folder with one file Orthanc cannot parse (400 for the whole request) stores the rest and names it', async () => {
      const good = ['I10', 'I20'].map((f) => readFileSync(join(CT_DIR, f)));
      const cut = readFileSync(join(CT_DIR, 'I30')).subarray(0, 300_000);
      const c = uniquified({
        id: 'regression-903',
        category: 'truncated-file',
        base: '',
        what: '',
        files: [...good, cut].map((bytes, i) => ({ name: `${i}.dcm`, bytes })),
        mustFail: false,
      });
      const folder = await writeCase(c, workDir);
      const report = await loadFiles(client, [folder]);
      expect(report.stored.map((f) => f.path.slice(-5))).toEqual(['0.dcm', '1.dcm']);
      expect(report.failed.map((f) => [f.path.slice(-5), f.reason.slice(0, 20)])).toEqual([['2.dcm', 'PACS refused it: 400']]);
    }, 120_000);

    it(`${PACS_CASES} damaged inputs stored and segmented through the PACS path: no SEG for a failed series`, async () => {
      const cases = makeCases(SEED + 2, PACS_CASES);
      const outcomes: { category: string; ok: boolean; result: string; checked: boolean }[] = [];
      for (const c of cases) {
        const o = await runPacsCase(c, workDir, client, registry, model, CASE_TIMEOUT_MS);
        if (o.segsAfterFailure > 0) o.detail = `${o.segsAfterFailure} SEG series stored for a failed case; ${o.detail ?? ''}`;
        note(c, o);
        // A case the PACS refused entirely ran none of our code: nothing of ours was judged.
        outcomes.push({ category: c.category, ok: o.ok, result: o.result, checked: o.result !== 'not-stored' });
      }
      const rows = tally('fuzz: PACS path', outcomes);
      const results = new Map<string, number>();
      for (const o of outcomes) results.set(o.result, (results.get(o.result) ?? 0) + 1);
      const summary = `outcomes: ${[...results].map(([k, v]) => `${k} ${v}`).join(', ')}`;
      rows[0]!.note = rows[0]!.note ? `${summary}; ${rows[0]!.note}` : summary;
      record(rows);
      expect(failures).toEqual([]);
    }, 900_000);
  });
});
