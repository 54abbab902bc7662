/**
 * Runs one fuzz case through the real code paths and classifies the outcome: the file path of
 * `ldfsam segment --input <folder> --output <seg>` (readFileSeries + segmentPlan, in-process), or
 * the PACS path (STOW-RS into a real Orthanc, then segmentSeries). A case passes when it ends, in
 * time, in a success or a coded LdfsamError (never INTERNAL, never a plain Error), and fails when
 * it succeeds although it must not.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import dcmjs from 'dcmjs';
import type { DicomWebClient } from '../../../server/src/dicomweb/client.js';
import { readFileSeries, readFileSlices } from '../../../server/src/dicom/file-series.js';
import { LdfsamError } from '../../../server/src/errors.js';
import type { ModelRegistry, RegisteredModel } from '../../../server/src/inference/registry.js';
import { loadFiles } from '../../../server/src/pacs/load.js';
import { segmentPlan, segmentSeries } from '../../../server/src/pipeline/segment.js';
import { loadBases, type FuzzCase } from './cases.js';
import { find, parseDicom, valueString } from './elements.js';

export interface Outcome {
  ok: boolean;
  /** 'success', an error code, 'not-stored' (PACS refused every file), or what went wrong. */
  result: string;
  ms: number;
  detail?: string;
}

const TIMEOUT = Symbol('timeout');

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMEOUT> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<typeof TIMEOUT>((r) => (timer = setTimeout(() => r(TIMEOUT), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** `run` answers 'success', or another outcome (e.g. 'not-stored'); it throws on failure. */
function judge(c: FuzzCase, run: () => Promise<string>, timeoutMs: number): Promise<Outcome> {
  const t0 = performance.now();
  const done = (ok: boolean, result: string, detail?: string): Outcome => ({ ok, result, ms: performance.now() - t0, detail });
  return withTimeout(run(), timeoutMs).then(
    (r) => {
      if (r === TIMEOUT) return done(false, 'timeout', `no answer within ${timeoutMs} ms`);
      if (r !== 'success') return done(true, r);
      return c.mustFail ? done(false, 'success', 'succeeded on input that cannot be segmented faithfully') : done(true, r);
    },
    (err: unknown) => {
      if (err instanceof LdfsamError && err.code !== 'INTERNAL') return done(true, err.code, err.message);
      const name = err instanceof LdfsamError ? 'INTERNAL' : 'uncoded';
      return done(false, name, err instanceof Error ? `${err.name}: ${err.message}\n${err.stack}` : String(err));
    },
  );
}

export async function writeCase(c: FuzzCase, dir: string): Promise<string> {
  const folder = join(dir, c.id);
  await rm(folder, { recursive: true, force: true });
  await mkdir(folder, { recursive: true });
  for (const f of c.files) await writeFile(join(folder, f.name), f.bytes);
  return folder;
}

/** `ldfsam segment --input <folder> --output <file>`, as segment.ts does it, in this process. */
export async function runFileCase(
  c: FuzzCase,
  dir: string,
  registry: ModelRegistry,
  model: RegisteredModel,
  timeoutMs: number,
): Promise<Outcome> {
  const folder = await writeCase(c, dir);
  try {
    return await judge(
      c,
      async () => {
        const series = await readFileSeries([folder]);
        const result = await segmentPlan(series.plan, series.instances[0]!, readFileSlices(series), registry, model, {
          batchSize: 4,
          storeEmpty: true,
        });
        // What would be written must be a readable SEG with the frames the result reports.
        const seg = dcmjs.data.DicomMessage.readFile(Uint8Array.from(result.segBytes!).buffer);
        const frames = Number((seg.dict['00280008'] as { Value: unknown[] }).Value[0]);
        if (frames !== result.frames) throw new Error(`SEG holds ${frames} frames, the result says ${result.frames}`);
        return 'success';
      },
      timeoutMs,
    );
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

export interface PacsOutcome extends Outcome {
  /** SEG series found in the case's studies after a failure (must be none). */
  segsAfterFailure: number;
}

/**
 * Stores the case's files (what the PACS accepts) and segments every series stored. A case the PACS
 * refuses entirely counts as handled ('not-stored'). After a failure, no SEG may be in the study.
 */
export async function runPacsCase(
  c: FuzzCase,
  dir: string,
  client: DicomWebClient,
  registry: ModelRegistry,
  model: RegisteredModel,
  timeoutMs: number,
): Promise<PacsOutcome> {
  const folder = await writeCase(uniquified(c), dir);
  const studies = new Set<string>();
  // The PACS keeps one instance per SOP Instance UID, so a series with a duplicate is whole again once
  // stored: segmenting it is right, provided the upload said that one file was dropped.
  const duplicate = c.category === 'duplicate-sop';
  try {
    const outcome = await judge(
      duplicate ? { ...c, mustFail: false } : c,
      async () => {
        const report = await loadFiles(client, [folder]);
        if (duplicate && !report.warnings.some((w) => w.includes('same SOP Instance UID')))
          throw new Error(`no warning about the duplicate SOP Instance UID: ${JSON.stringify(report.warnings)}`);
        if (report.series.length === 0) return 'not-stored';
        for (const s of report.series) {
          studies.add(s.studyInstanceUID);
          await segmentSeries(
            client,
            registry,
            { studyInstanceUID: s.studyInstanceUID, seriesInstanceUID: s.seriesInstanceUID, model: model.manifest.name },
            { batchSize: 4, storeEmpty: true },
          );
        }
        // The PACS refused some files (named in the report): what it holds is whole, and segmenting
        // it is right even for a case whose files as a whole cannot be segmented.
        return report.failed.length > 0 ? 'success, damaged files refused' : 'success';
      },
      timeoutMs,
    );
    let segsAfterFailure = 0;
    if (!outcome.result.startsWith('success')) {
      for (const study of studies) {
        segsAfterFailure += (await client.searchForSeries({ studyInstanceUID: study, queryParams: { Modality: 'SEG' } })).length;
      }
    }
    // The PACS is up all along: a damaged instance must not read as an unavailable PACS (that is
    // retried as if it were down).
    if (outcome.result === 'PACS_UNAVAILABLE') {
      return { ...outcome, ok: false, segsAfterFailure, detail: `PACS_UNAVAILABLE while the PACS is up: ${outcome.detail}` };
    }
    return { ...outcome, ok: outcome.ok && segsAfterFailure === 0, segsAfterFailure };
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

let baseUids: string[] | undefined;
/**
 * The case with its study, series and instance UIDs made its own (every case of a base shares them,
 * and the PACS keeps the first instance of a UID). Done on the bytes, digit by digit and length
 * preserving, so that it works on files no parser can read and changes no element length; first
 * digits of components are kept, so the UIDs stay valid.
 */
export function uniquified(c: FuzzCase): FuzzCase {
  baseUids ??= [
    ...new Set(
      loadBases()
        .flatMap((b) =>
          b.parsed.flatMap((f) => ['0020000D', '0020000E', '00080018'].map((t) => find(f, t)).filter((e) => e !== undefined)),
        )
        .map(valueString),
    ),
  ];
  const code = String(Number(c.id.replace(/\D/g, '')) % 1e8).padStart(8, '0');
  const own = c.files.flatMap((f) => {
    try {
      const parsed = parseDicom(f.bytes);
      return ['0020000D', '0020000E', '00080018'].flatMap((t) => (find(parsed, t) ? [valueString(find(parsed, t)!)] : []));
    } catch {
      return []; // damaged: its UIDs are base UIDs, or none
    }
  });
  const uids = [...new Set([...baseUids, ...own])];
  const files = c.files.map((f) => {
    const bytes = Buffer.from(f.bytes);
    for (const uid of uids) {
      const mapped = remapUid(uid, code);
      const from = Buffer.from(uid, 'latin1');
      for (let at = bytes.indexOf(from); at >= 0; at = bytes.indexOf(from, at + from.length)) bytes.write(mapped, at, 'latin1');
    }
    return { ...f, bytes };
  });
  return { ...c, files };
}

function remapUid(uid: string, code: string): string {
  const chars = [...uid];
  let k = 0;
  for (let i = chars.length - 1; i > 0 && k < code.length; i--) {
    if (chars[i] === '.' || chars[i - 1] === '.') continue;
    chars[i] = String((Number(chars[i]) + Number(code[k++])) % 10);
  }
  return chars.join('');
}
