/**
 * A series read from DICOM Part 10 files instead of a PACS (`ldfsam segment --input <folder>`): the
 * same planning and decoding, with the files' data sets in the role of the WADO-RS metadata.
 */
import { readFile } from 'node:fs/promises';
import type { DicomJson } from '../dicomweb/types.js';
import { LdfsamError } from '../errors.js';
import { listFiles } from '../util/files.js';
import { nativeFrameLength } from './pixels.js';
import { isPart10, readDicomFile } from './part10.js';
import { planSeries, type SeriesPlan } from './series-plan.js';
import { decodeSlice, framesFromPart10, loadPalette, type Slice } from './series-reader.js';
import { str, TAG } from './tags.js';

export interface FileSeries {
  plan: SeriesPlan;
  instances: DicomJson[];
  files: Map<string, string>;
}

/** Reads every DICOM file under `paths` and plans one series (the only one, or `seriesInstanceUID`). */
export async function readFileSeries(paths: string[], seriesInstanceUID?: string): Promise<FileSeries> {
  const bySeries = new Map<string, { instances: DicomJson[]; files: Map<string, string> }>();
  for (const path of await listFiles(paths)) {
    const bytes = await readFile(path);
    if (!isPart10(bytes)) continue;
    let dict: DicomJson;
    try {
      // The header only: pixel data is read per slice later, so memory stays one slice.
      const file = readDicomFile(bytes, { header: true });
      dict = file.dict as DicomJson;
      const ts = (file.meta as DicomJson)['00020010'];
      if (ts) dict[TAG.TransferSyntaxUID] = ts;
    } catch (err) {
      throw new LdfsamError('UNSUPPORTED_DICOM', `${path} is not readable DICOM: ${(err as Error).message}`);
    }
    if (dict[TAG.Rows]) dict[TAG.PixelData] = { vr: 'OB', BulkDataURI: `file://${path}` };
    const series = str(dict, TAG.SeriesInstanceUID);
    const sop = str(dict, TAG.SOPInstanceUID);
    if (!series || !sop) continue;
    const entry = bySeries.get(series) ?? { instances: [], files: new Map<string, string>() };
    entry.instances.push(dict);
    entry.files.set(sop, path);
    bySeries.set(series, entry);
  }
  if (bySeries.size === 0) throw new LdfsamError('NOT_FOUND', `no DICOM image files under ${paths.join(', ')}`);
  let chosen = seriesInstanceUID ? bySeries.get(seriesInstanceUID) : undefined;
  if (seriesInstanceUID && !chosen) throw new LdfsamError('NOT_FOUND', `series ${seriesInstanceUID} is not among the files`);
  if (!chosen) {
    if (bySeries.size > 1) {
      throw new LdfsamError(
        'INVALID_INPUT',
        `the files hold ${bySeries.size} series (${[...bySeries.keys()].join(', ')}): choose one with --series`,
      );
    }
    chosen = [...bySeries.values()][0]!;
  }
  return { plan: planSeries(chosen.instances), instances: chosen.instances, files: chosen.files };
}

export async function* readFileSlices(series: FileSeries): AsyncGenerator<Slice> {
  let cached: { sop: string; bytes: Buffer } | undefined;
  for (const slice of series.plan.slices) {
    if (cached?.sop !== slice.sopInstanceUID)
      cached = { sop: slice.sopInstanceUID, bytes: await readFile(series.files.get(slice.sopInstanceUID)!) };
    const [frame] = framesFromPart10(cached.bytes, [slice.frameNumber], nativeFrameLength(slice.format));
    const palette = slice.palette
      ? await loadPalette(
          undefined,
          {
            studyInstanceUID: series.plan.studyInstanceUID,
            seriesInstanceUID: series.plan.seriesInstanceUID,
            sopInstanceUID: slice.sopInstanceUID,
          },
          slice.palette,
        )
      : undefined;
    yield { plan: slice, pixels: await decodeSlice(frame!, slice, palette), transferSyntaxUID: frame!.transferSyntaxUID };
  }
}
