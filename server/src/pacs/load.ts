/**
 * `ldfsam pacs load`: finds DICOM Part 10 files under the given paths and stores them through
 * STOW-RS, in requests of bounded size. Files that are not DICOM, or are DICOMDIR indexes, are
 * skipped with the reason; what the PACS refused is reported with its failure reason.
 */
import { readFile } from 'node:fs/promises';
import type { DicomWebClient } from '../dicomweb/client.js';
import { LdfsamError } from '../errors.js';
import { DICOMDIR_SOP_CLASS, isPart10, readPart10Header } from '../dicom/part10.js';
import { listFiles } from '../util/files.js';

export interface LoadedFile {
  path: string;
  sopInstanceUID: string;
  sopClassUID: string;
  studyInstanceUID: string;
  seriesInstanceUID: string;
  modality: string;
  transferSyntaxUID: string;
}

export interface LoadReport {
  stored: LoadedFile[];
  failed: (Partial<LoadedFile> & { path: string; reason: string })[];
  skipped: { path: string; reason: string }[];
  warnings: string[];
  /** One line per series stored: study, series, modality, instance count. */
  series: { studyInstanceUID: string; seriesInstanceUID: string; modality: string; instances: number }[];
}

export async function loadFiles(
  client: DicomWebClient,
  paths: string[],
  options: { maxRequestBytes?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<LoadReport> {
  const maxBytes = options.maxRequestBytes ?? 32 * 1024 * 1024;
  const files = await listFiles(paths);
  const report: LoadReport = { stored: [], failed: [], skipped: [], warnings: [], series: [] };
  const seen = new Map<string, string>();
  let batch: { file: LoadedFile; bytes: Uint8Array }[] = [];
  let batchBytes = 0;
  let done = 0;

  const flush = async () => {
    if (batch.length === 0) return;
    const current = batch;
    batch = [];
    batchBytes = 0;
    let result: Awaited<ReturnType<DicomWebClient['storeInstances']>>;
    try {
      result = await client.storeInstances({ datasets: current.map((b) => b.bytes) });
    } catch (err) {
      // Orthanc answers 400 to a whole request when one file in it cannot be parsed, naming none (the
      // others are stored): the load stopped there (found by test/reliability). Each file of such a
      // request is stored alone, so that the refused one is named and the load goes on.
      if (!(err instanceof LdfsamError && err.details.status === 400)) throw err;
      if (current.length > 1) {
        for (const one of current) {
          batch = [one];
          await flush();
        }
        return;
      }
      report.failed.push({
        ...current[0]!.file,
        reason: `PACS refused it: ${err.message.replace(/^PACS answered /, '').slice(0, 200)}`,
      });
      done++;
      options.onProgress?.(done, files.length);
      return;
    }
    const stored = new Set(result.stored.map((s) => s.sopInstanceUID));
    const failed = new Map(result.failed.map((f) => [f.sopInstanceUID, f.failureReason]));
    for (const { file } of current) {
      if (failed.has(file.sopInstanceUID)) {
        report.failed.push({
          ...file,
          reason: `PACS refused it (failure reason 0x${failed.get(file.sopInstanceUID)!.toString(16).toUpperCase()})`,
        });
      } else if (stored.has(file.sopInstanceUID) || (result.stored.length === 0 && result.failed.length === 0)) {
        report.stored.push(file);
      } else {
        report.failed.push({ ...file, reason: 'the PACS answer does not list this instance' });
      }
    }
    report.warnings.push(...result.warnings);
    done += current.length;
    options.onProgress?.(done, files.length);
  };

  for (const path of files) {
    const bytes = await readFile(path);
    if (!isPart10(bytes)) {
      report.skipped.push({ path, reason: 'not a DICOM Part 10 file (no "DICM" after the 128-byte preamble)' });
      continue;
    }
    let header;
    try {
      header = readPart10Header(bytes);
    } catch (err) {
      report.skipped.push({ path, reason: `unreadable DICOM: ${(err as Error).message}` });
      continue;
    }
    if (header.mediaStorageSOPClassUID === DICOMDIR_SOP_CLASS) {
      report.skipped.push({ path, reason: 'DICOMDIR (a media index, not an image); its images are loaded from their own files' });
      continue;
    }
    const ds = header.dataset;
    const text = (key: string) => (typeof ds[key] === 'string' ? ds[key] : '');
    const file: LoadedFile = {
      path,
      sopInstanceUID: text('SOPInstanceUID'),
      sopClassUID: text('SOPClassUID'),
      studyInstanceUID: text('StudyInstanceUID'),
      seriesInstanceUID: text('SeriesInstanceUID'),
      modality: text('Modality'),
      transferSyntaxUID: header.transferSyntaxUID ?? '',
    };
    if (!file.sopInstanceUID || !file.studyInstanceUID || !file.seriesInstanceUID) {
      report.skipped.push({ path, reason: 'lacks SOP Instance, Study or Series Instance UID' });
      continue;
    }
    const twin = seen.get(file.sopInstanceUID);
    if (twin) {
      report.warnings.push(`${path} has the same SOP Instance UID as ${twin}; the PACS keeps only one of them`);
    }
    seen.set(file.sopInstanceUID, path);
    if (batchBytes + bytes.length > maxBytes) await flush();
    batch.push({ file, bytes });
    batchBytes += bytes.length;
  }
  await flush();

  const bySeries = new Map<string, LoadReport['series'][number]>();
  for (const f of report.stored) {
    const entry = bySeries.get(f.seriesInstanceUID) ?? {
      studyInstanceUID: f.studyInstanceUID,
      seriesInstanceUID: f.seriesInstanceUID,
      modality: f.modality,
      instances: 0,
    };
    entry.instances++;
    bySeries.set(f.seriesInstanceUID, entry);
  }
  report.series = [...bySeries.values()];
  return report;
}
