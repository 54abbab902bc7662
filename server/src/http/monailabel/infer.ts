/**
 * POST /infer/{model}: an automatic model on the whole volume, or a promptable one on the slices
 * its prompts point to; the answer is a uint8 NRRD label on the image's exact grid. With
 * output=dicom_seg on a PACS series, the automatic result also goes to the PACS as DICOM SEG
 * through the auto path (same writer, STOW-RS, read back), and its UIDs are in the answer's params.
 */
import { readSeriesSlices } from '../../dicom/series-reader.js';
import type { DicomWebClient } from '../../dicomweb/client.js';
import { LdfsamError } from '../../errors.js';
import type { ModelRegistry } from '../../inference/registry.js';
import { segmentPlan, segmentSeries, type SegmentResult } from '../../pipeline/segment.js';
import { promptedLabel } from '../../interactive/volume-prompts.js';
import {
  autoLabel,
  labelFromMasks,
  seriesSource,
  volumeSource,
  type LabelResult,
  type SliceSourceOf,
  type VoxelPrompts,
} from '../../pipeline/volume-segment.js';
import { seriesGrid } from '../../volume/series-volume.js';
import type { ImageRef } from './images.js';
import type { ModelMode } from './info.js';
import type { RegisteredModel } from '../../inference/registry.js';

export type Output = 'image' | 'json' | 'all' | 'dicom_seg';

export interface InferRequest {
  name: string;
  model: RegisteredModel;
  mode: ModelMode;
  image: ImageRef;
  params: Record<string, unknown>;
  output: Output;
}

export interface InferDeps {
  registry: ModelRegistry;
  client: DicomWebClient;
  batchSize: number;
  minComponentVoxels: number;
}

export interface InferAnswer extends LabelResult {
  source: SliceSourceOf;
  params: Record<string, unknown>;
}

export async function runInference(deps: InferDeps, req: InferRequest, signal?: AbortSignal): Promise<InferAnswer> {
  const { image, model } = req;
  if (req.output === 'dicom_seg' && (image.kind !== 'pacs' || req.mode !== 'auto')) {
    throw new LdfsamError(
      'INVALID_INPUT',
      'output=dicom_seg needs an automatic model and a PACS series (image = its SeriesInstanceUID): the SEG references the series',
    );
  }
  const source =
    image.kind === 'pacs'
      ? seriesSource(deps.client, image.plan, seriesGrid(image.plan))
      : volumeSource(image.volume(), modalityParam(req.params) ?? modalityParam(image.entry.params) ?? 'OT');
  const extra: Record<string, unknown> = {};
  let result: LabelResult;
  if (req.mode === 'promptable') {
    const prompted = await promptedLabel(deps.registry, model, source, voxelPrompts(req.params), signal);
    const name = typeof req.params.label === 'string' && req.params.label ? req.params.label : undefined;
    result = name ? { ...prompted, labelNames: { [name]: 1 } } : prompted;
    extra.slices = prompted.slices;
  } else if (image.kind === 'pacs') {
    const options = {
      batchSize: deps.batchSize,
      minComponentVoxels: deps.minComponentVoxels || undefined,
      keepMasks: true,
      signal,
    };
    const t0 = performance.now();
    let seg: SegmentResult;
    if (req.output === 'dicom_seg') {
      seg = await segmentSeries(deps.client, deps.registry, { ...ids(image), model: model.manifest.name }, options);
      extra.dicom_seg = {
        status: seg.status,
        StudyInstanceUID: image.studyInstanceUID,
        SeriesInstanceUID: seg.segSeriesInstanceUID ?? null,
        SOPInstanceUID: seg.segSopInstanceUID ?? null,
        frames: seg.frames,
      };
    } else {
      const first =
        image.metadata.find((m) => m['00080018']?.Value?.[0] === image.plan.slices[0]!.sopInstanceUID) ?? image.metadata[0]!;
      seg = await segmentPlan(
        image.plan,
        first,
        readSeriesSlices(deps.client, image.plan, { signal }),
        deps.registry,
        model,
        options,
      );
    }
    result = {
      label: labelFromMasks(seg.masks ?? [], source),
      labelNames: Object.fromEntries(model.manifest.segments.map((s) => [s.label, s.number])),
      timingsMs: { ...seg.timingsMs, total: performance.now() - t0 },
    };
  } else {
    result = await autoLabel(deps.registry, model, source, {
      batchSize: deps.batchSize,
      minComponentVoxels: deps.minComponentVoxels || undefined,
      signal,
    });
  }
  const params = {
    label_names: result.labelNames,
    model: req.name,
    image: image.kind === 'pacs' ? image.seriesInstanceUID : image.entry.id,
    modality: source.modality,
    latencies: Object.fromEntries(Object.entries(result.timingsMs).map(([k, v]) => [k, Math.round(v) / 1000])),
    ...extra,
  };
  return { ...result, source, params };
}

function ids(image: Extract<ImageRef, { kind: 'pacs' }>) {
  return { studyInstanceUID: image.studyInstanceUID, seriesInstanceUID: image.seriesInstanceUID };
}

function modalityParam(params: Record<string, unknown>): string | undefined {
  const m = params.modality;
  if (m === undefined || m === null || m === '') return undefined;
  if (typeof m !== 'string' || !/^[A-Z]{2,16}$/.test(m))
    throw new LdfsamError('INVALID_INPUT', `modality ${JSON.stringify(m)} is not a DICOM modality (CT, MR, US ...)`);
  return m;
}

/** foreground / background ([[i, j, k], ...]) and roi ([i0, i1, j0, j1, k0, k1]) from the params. */
export function voxelPrompts(params: Record<string, unknown>): VoxelPrompts {
  const list = (name: string): number[][] => {
    const v = params[name];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || v.some((p) => !Array.isArray(p) || p.some((x) => typeof x !== 'number')))
      throw new LdfsamError('INVALID_INPUT', `${name} must be a list of voxel indices [i, j, k]`);
    return v as number[][];
  };
  const roi = params.roi;
  if (roi !== undefined && roi !== null && (!Array.isArray(roi) || (roi.length > 0 && roi.some((x) => typeof x !== 'number'))))
    throw new LdfsamError('INVALID_INPUT', 'roi must be [i0, i1, j0, j1, k0, k1] (voxel indices)');
  return {
    foreground: list('foreground'),
    background: list('background'),
    ...(Array.isArray(roi) && roi.length > 0 ? { roi: roi as number[] } : {}),
  };
}
