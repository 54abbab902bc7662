/**
 * What an `image` id names: a volume in the local datastore (uploaded, or a session), else a series
 * in the PACS by its SeriesInstanceUID. Parsed volumes of the last few ids are kept, so that each
 * click of an interactive session does not re-read the file.
 */
import { readFileSync } from 'node:fs';
import type { DicomWebClient } from '../../dicomweb/client.js';
import { loadSeries } from '../../dicom/inspect.js';
import type { SeriesPlan } from '../../dicom/series-plan.js';
import type { DicomJson } from '../../dicomweb/types.js';
import { str, TAG } from '../../dicom/tags.js';
import { isValidUid } from '../../util/uid.js';
import { LdfsamError } from '../../errors.js';
import type { Volume } from '../../volume/grid.js';
import { readVolume } from '../../volume/read.js';
import type { StoreEntry, VolumeStore } from '../../volume/store.js';

export type ImageRef =
  | { kind: 'local'; entry: StoreEntry; volume: () => Volume }
  | { kind: 'pacs'; studyInstanceUID: string; seriesInstanceUID: string; plan: SeriesPlan; metadata: DicomJson[] };

const CACHED_VOLUMES = 2;

export class ImageResolver {
  private readonly volumes = new Map<string, Volume>();

  constructor(
    private readonly store: VolumeStore,
    private readonly client: DicomWebClient,
    private readonly maxVolumeBytes: number,
  ) {}

  async resolve(id: string, signal?: AbortSignal): Promise<ImageRef> {
    const entry = this.store.get(id);
    if (entry) return { kind: 'local', entry, volume: () => this.volume(entry) };
    if (!isValidUid(id)) throw new LdfsamError('NOT_FOUND', `no image ${JSON.stringify(id)} in the datastore (upload it first)`);
    const studyInstanceUID = await studyOfSeries(this.client, id, signal);
    const { plan, metadata } = await loadSeries(this.client, { studyInstanceUID, seriesInstanceUID: id }, signal);
    return { kind: 'pacs', studyInstanceUID, seriesInstanceUID: id, plan, metadata };
  }

  /** Reads a volume file whole (throws what is wrong with it), before anything keeps it. */
  check(bytes: Uint8Array, what: string): void {
    readVolume(bytes, this.maxVolumeBytes, what);
  }

  /** The parsed volume of a stored entry (kept for the last few entries, keyed by upload). */
  volume(entry: StoreEntry): Volume {
    const key = `${entry.id}\u0000${entry.uploadedAt}`;
    const cached = this.volumes.get(key);
    if (cached) {
      this.volumes.delete(key);
      this.volumes.set(key, cached);
      return cached;
    }
    const volume = readVolume(readFileSync(this.store.path(entry)), this.maxVolumeBytes, `image ${JSON.stringify(entry.id)}`);
    this.volumes.set(key, volume);
    while (this.volumes.size > CACHED_VOLUMES) this.volumes.delete(this.volumes.keys().next().value!);
    return volume;
  }
}

/** The study of a series, by a QIDO-RS search over all series. */
export async function studyOfSeries(client: DicomWebClient, seriesInstanceUID: string, signal?: AbortSignal): Promise<string> {
  const found = await client.searchForSeries({ queryParams: { SeriesInstanceUID: seriesInstanceUID }, signal });
  const study = found.map((s) => str(s, TAG.StudyInstanceUID)).find(Boolean);
  if (!study)
    throw new LdfsamError('NOT_FOUND', `no image ${seriesInstanceUID} in the datastore, and no such series in the PACS`);
  return study;
}
