/**
 * MONAI Label's active learning, over the PACS: the next image series that an automatic model
 * accepts and that has no LDFSAM SEG yet. `first` takes them in a fixed order (study date and
 * time, study, series number, series UID), `random` any of them.
 *
 * "Has an LDFSAM SEG": a SEG series in the same study whose Series Description says "LDFSAM
 * <model> <version>" and whose UID is the one the SEG writer derives from (this series, that model,
 * that version); SEG series described as LDFSAM otherwise (written by another path) are read and
 * count when their Referenced Series names this series. Series that no regular voxel grid holds
 * (uneven spacing, gantry tilt: the API refuses them) are skipped.
 */
import type { DicomWebClient } from '../../dicomweb/client.js';
import type { DicomJson } from '../../dicomweb/types.js';
import { str, TAG } from '../../dicom/tags.js';
import { loadSeries } from '../../dicom/inspect.js';
import { LdfsamError, toLdfsamError } from '../../errors.js';
import { seriesGrid } from '../../volume/series-volume.js';
import { accepts, type ModelRegistry } from '../../inference/registry.js';
import { segSeriesUid } from '../../seg/uids.js';

export const STRATEGIES = {
  first: 'the first series (by study date, study, series number) that a model accepts and that has no LDFSAM SEG',
  random: 'a random series that a model accepts and that has no LDFSAM SEG',
} as const;
export type Strategy = keyof typeof STRATEGIES;

/** Series looked at in one request (QIDO pages of 500). */
const MAX_SERIES = 20_000;

interface Candidate {
  study: string;
  series: string;
  modality: string;
  patientId: string;
  studyDate: string;
  seriesNumber: number;
  description: string;
}

export interface NextSample {
  id: string;
  name: string;
  PatientID: string;
  StudyInstanceUID: string;
  SeriesInstanceUID: string;
  Modality: string;
  SeriesDescription: string;
  strategy: string;
  models: string[];
}

export async function nextSample(
  client: DicomWebClient,
  registry: ModelRegistry,
  strategy: Strategy,
  options: { model?: string; random?: () => number; signal?: AbortSignal } = {},
): Promise<NextSample | undefined> {
  const autoModels = registry.list().filter((m) => !options.model || m.manifest.name === options.model);
  if (options.model && autoModels.length === 0)
    throw new LdfsamError('NOT_FOUND', `unknown model ${JSON.stringify(options.model)}`);
  const acceptedBy = (modality: string) => autoModels.filter((m) => accepts(m.manifest, modality)).map((m) => m.manifest.name);
  const all = await allSeries(client, options.signal);
  const candidates = all.filter((c) => c.modality !== 'SEG' && acceptedBy(c.modality).length > 0);
  if (strategy === 'first') {
    candidates.sort(
      (a, b) =>
        a.studyDate.localeCompare(b.studyDate) ||
        a.study.localeCompare(b.study) ||
        a.seriesNumber - b.seriesNumber ||
        a.series.localeCompare(b.series),
    );
  } else {
    const random = options.random ?? Math.random;
    for (let i = candidates.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [candidates[i], candidates[j]] = [candidates[j]!, candidates[i]!];
    }
  }
  const segmented = new Map<string, Promise<Set<string>>>(); // per study: source series with an LDFSAM SEG
  for (const c of candidates) {
    let done = segmented.get(c.study);
    if (!done)
      segmented.set(
        c.study,
        (done = segmentedSeries(
          client,
          all.filter((s) => s.study === c.study),
          options.signal,
        )),
      );
    if ((await done).has(c.series)) continue;
    if (!(await onRegularGrid(client, c, options.signal))) continue;
    return {
      id: c.series,
      name: `${c.series}.nrrd`,
      PatientID: c.patientId || c.series,
      StudyInstanceUID: c.study,
      SeriesInstanceUID: c.series,
      Modality: c.modality,
      SeriesDescription: c.description,
      strategy,
      models: acceptedBy(c.modality),
    };
  }
  return undefined;
}

/** Whether the series can be served as a volume (a regular grid); series that cannot are skipped. */
async function onRegularGrid(client: DicomWebClient, c: Candidate, signal?: AbortSignal): Promise<boolean> {
  try {
    seriesGrid((await loadSeries(client, { studyInstanceUID: c.study, seriesInstanceUID: c.series }, signal)).plan);
    return true;
  } catch (err) {
    const e = toLdfsamError(err);
    if (e.code === 'UNSUPPORTED_DICOM' || e.code === 'NOT_FOUND') return false;
    throw e;
  }
}

async function allSeries(client: DicomWebClient, signal?: AbortSignal): Promise<Candidate[]> {
  const out: Candidate[] = [];
  const page = 500;
  for (let offset = 0; offset < MAX_SERIES; offset += page) {
    const found: DicomJson[] = await client.searchForSeries({
      queryParams: { limit: page, offset, includefield: '00100020,00080020,00080030' },
      signal,
    });
    for (const s of found) {
      out.push({
        study: str(s, TAG.StudyInstanceUID) ?? '',
        series: str(s, TAG.SeriesInstanceUID) ?? '',
        modality: str(s, TAG.Modality) ?? '',
        patientId: str(s, '00100020') ?? '',
        studyDate: `${str(s, '00080020') ?? ''}${str(s, '00080030') ?? ''}`,
        seriesNumber: Number(str(s, TAG.SeriesNumber) ?? 0) || 0,
        description: str(s, '0008103E') ?? '',
      });
    }
    if (found.length < page) break;
  }
  return out.filter((c) => c.study && c.series);
}

async function segmentedSeries(client: DicomWebClient, study: Candidate[], signal?: AbortSignal): Promise<Set<string>> {
  const done = new Set<string>();
  for (const seg of study.filter((s) => s.modality === 'SEG' && s.description.startsWith('LDFSAM'))) {
    const [, model, version] = seg.description.split(/\s+/);
    const derived = study.find((s) => model && version && segSeriesUid(s.series, model, version) === seg.series);
    if (derived) {
      done.add(derived.series);
      continue;
    }
    const metadata = await client.retrieveSeriesMetadata({ studyInstanceUID: seg.study, seriesInstanceUID: seg.series, signal });
    for (const instance of metadata)
      for (const ref of instance['00081115']?.Value ?? []) {
        const uid = str(ref as DicomJson, TAG.SeriesInstanceUID);
        if (uid) done.add(uid);
      }
  }
  return done;
}
