/**
 * What `ldfsam inspect` reports: per series of a study, the geometry and pixel format the pipeline
 * will use, computed by the same planning code the pipeline runs.
 */
import type { DicomWebClient } from '../dicomweb/client.js';
import type { DicomJson } from '../dicomweb/types.js';
import { LdfsamError, toLdfsamError } from '../errors.js';
import { planSeries, type SeriesPlan } from './series-plan.js';
import { fetchFrames } from './series-reader.js';
import { str, TAG } from './tags.js';

export interface SeriesSummary {
  seriesInstanceUID: string;
  modality: string;
  seriesDescription?: string;
  sliceCount: number;
  rows: number;
  columns: number;
  samplesPerPixel: number;
  photometricInterpretation: string;
  /** [row, column] spacing in mm, or null when the images carry none. */
  pixelSpacing: [number, number] | null;
  pixelSpacingSource: SeriesPlan['pixelSpacingSource'];
  /** The 6 direction cosines, or null for 2D images without patient geometry. */
  orientation: number[] | null;
  /** One [x, y, z] per slice in processing order (null entries for 2D images). */
  positions: ([number, number, number] | null)[];
  sopInstanceUIDs: string[];
  frameNumbers: number[];
  orderedBy: SeriesPlan['orderedBy'];
  evenlySpaced: boolean;
  sliceSpacing: { mean: number; min: number; max: number } | null;
  frameOfReferenceUID: string | null;
  transferSyntaxes: string[];
  /** How many instances were asked for a frame to learn their transfer syntax (when the metadata did not say). */
  transferSyntaxesProbed: { instances: number; of: number };
  skippedInstances: SeriesPlan['skippedInstances'];
}

export interface SeriesFailure {
  seriesInstanceUID: string;
  modality: string;
  error: { code: string; message: string };
}

/** A series' metadata and its plan; unknown series are NOT_FOUND with a readable message. */
export async function loadSeries(
  client: DicomWebClient,
  ids: { studyInstanceUID: string; seriesInstanceUID: string },
  signal?: AbortSignal,
): Promise<{ plan: SeriesPlan; metadata: DicomJson[] }> {
  let metadata;
  try {
    metadata = await client.retrieveSeriesMetadata({ ...ids, signal });
  } catch (err) {
    if (err instanceof LdfsamError && err.code === 'NOT_FOUND') {
      throw new LdfsamError(
        'NOT_FOUND',
        `series ${ids.seriesInstanceUID} of study ${ids.studyInstanceUID} is not in the PACS`,
        err.details,
      );
    }
    throw err;
  }
  if (metadata.length === 0) {
    throw new LdfsamError('NOT_FOUND', `series ${ids.seriesInstanceUID} of study ${ids.studyInstanceUID} has no instances`);
  }
  return { plan: planSeries(metadata, ids), metadata };
}

export async function loadSeriesPlan(
  client: DicomWebClient,
  ids: { studyInstanceUID: string; seriesInstanceUID: string },
  signal?: AbortSignal,
): Promise<SeriesPlan> {
  return (await loadSeries(client, ids, signal)).plan;
}

export async function inspectStudy(
  client: DicomWebClient,
  options: { studyInstanceUID: string; seriesInstanceUID?: string; maxProbes?: number; signal?: AbortSignal },
): Promise<{ studyInstanceUID: string; series: (SeriesSummary | SeriesFailure)[] }> {
  const { studyInstanceUID, signal } = options;
  const found = await client.searchForSeries({ studyInstanceUID, signal });
  if (found.length === 0) throw new LdfsamError('NOT_FOUND', `study ${studyInstanceUID} is not in the PACS`);
  let seriesList = found.map((s) => ({
    uid: str(s, TAG.SeriesInstanceUID) ?? '',
    modality: str(s, TAG.Modality) ?? '',
    number: Number(str(s, TAG.SeriesNumber) ?? 0),
  }));
  seriesList.sort((a, b) => a.number - b.number || a.uid.localeCompare(b.uid));
  if (options.seriesInstanceUID) {
    seriesList = seriesList.filter((s) => s.uid === options.seriesInstanceUID);
    if (seriesList.length === 0) {
      throw new LdfsamError('NOT_FOUND', `series ${options.seriesInstanceUID} is not in study ${studyInstanceUID}`);
    }
  }
  const series: (SeriesSummary | SeriesFailure)[] = [];
  for (const s of seriesList) {
    try {
      const plan = await loadSeriesPlan(client, { studyInstanceUID, seriesInstanceUID: s.uid }, signal);
      series.push(await summarise(client, plan, options.maxProbes ?? 16, signal));
    } catch (err) {
      const e = toLdfsamError(err);
      // An unreachable PACS is not a property of one series: stop.
      if (e.code === 'PACS_UNAVAILABLE' || e.code === 'CANCELLED') throw e;
      series.push({ seriesInstanceUID: s.uid, modality: s.modality, error: { code: e.code, message: e.message } });
    }
  }
  return { studyInstanceUID, series };
}

async function summarise(
  client: DicomWebClient,
  plan: SeriesPlan,
  maxProbes: number,
  signal?: AbortSignal,
): Promise<SeriesSummary> {
  const instances = [...new Map(plan.slices.map((s) => [s.sopInstanceUID, s])).values()];
  const syntaxes = new Set<string>();
  const unknown = instances.filter((s) => !s.transferSyntaxUID);
  for (const s of instances) if (s.transferSyntaxUID) syntaxes.add(s.transferSyntaxUID);
  // The metadata rarely names the transfer syntax: ask for frame 1 of evenly spread instances.
  const probes = pickEvenly(unknown, maxProbes);
  for (const s of probes) {
    const ids = {
      studyInstanceUID: plan.studyInstanceUID,
      seriesInstanceUID: plan.seriesInstanceUID,
      sopInstanceUID: s.sopInstanceUID,
    };
    const [frame] = await fetchFrames(client, ids, [1], signal);
    if (frame) syntaxes.add(frame.transferSyntaxUID);
  }
  const { meanSpacing, minSpacing, maxSpacing } = plan.spacing;
  return {
    seriesInstanceUID: plan.seriesInstanceUID,
    modality: plan.modality,
    ...(plan.seriesDescription ? { seriesDescription: plan.seriesDescription } : {}),
    sliceCount: plan.slices.length,
    rows: plan.rows,
    columns: plan.columns,
    samplesPerPixel: plan.samplesPerPixel,
    photometricInterpretation: plan.photometricInterpretation,
    pixelSpacing: plan.pixelSpacing,
    pixelSpacingSource: plan.pixelSpacingSource,
    orientation: plan.orientation,
    positions: plan.slices.map((s) => s.position),
    sopInstanceUIDs: plan.slices.map((s) => s.sopInstanceUID),
    frameNumbers: plan.slices.map((s) => s.frameNumber),
    orderedBy: plan.orderedBy,
    evenlySpaced: plan.spacing.evenlySpaced,
    sliceSpacing: meanSpacing === undefined ? null : { mean: meanSpacing, min: minSpacing!, max: maxSpacing! },
    frameOfReferenceUID: plan.frameOfReferenceUID ?? null,
    transferSyntaxes: [...syntaxes].sort(),
    transferSyntaxesProbed: { instances: probes.length, of: unknown.length },
    skippedInstances: plan.skippedInstances,
  };
}

function pickEvenly<T>(items: T[], count: number): T[] {
  if (items.length <= count) return items;
  const out: T[] = [];
  for (let i = 0; i < count; i++) out.push(items[Math.round((i * (items.length - 1)) / (count - 1))]!);
  return [...new Set(out)];
}
