/**
 * Segmentation on voxel grids, for the MONAI Label API: an uploaded volume (seen slice by slice
 * along its acquisition axis, each slice as DICOM would display it) or a PACS series (read by the
 * series reader, on the grid seriesGrid() gives it). Automatic models run on every slice; prompts
 * are placed on the slices they point to (interactive/volume-prompts.ts runs them). The answer is a
 * uint8 label on the source's grid: segment numbers for automatic models, 1 for a prompted structure.
 */
import type { SlicePixels } from '../dicom/pixels.js';
import type { SeriesPlan } from '../dicom/series-plan.js';
import { readSeriesSlices } from '../dicom/series-reader.js';
import type { DicomWebClient } from '../dicomweb/client.js';
import { LdfsamError } from '../errors.js';
import { autoRefusal, type ModelRegistry, type RegisteredModel } from '../inference/registry.js';
import {
  acquisitionAxis,
  paintSlice,
  sliceValues,
  sliceView,
  voxelCount,
  voxelToView,
  type Grid,
  type SliceView,
  type Volume,
} from '../volume/grid.js';
import { dropSmallComponents, fillHoles, fitEllipse, keepLargestComponent } from './cleanup.js';
import { segmentSlices } from './segment-series.js';

/** Where slices come from: an uploaded volume or a planned PACS series. */
export interface SliceSourceOf {
  grid: Grid;
  view: SliceView;
  modality: string;
  /** The slices with these indices (all when absent), in ascending order. */
  read(indices?: number[], signal?: AbortSignal): AsyncIterable<{ index: number; pixels: SlicePixels }>;
}

export function volumeSource(volume: Volume, modality: string): SliceSourceOf {
  const view = sliceView(volume, acquisitionAxis(volume));
  return {
    grid: volume,
    view,
    modality,
    async *read(indices) {
      for (const index of indices ?? Array.from({ length: view.slices }, (_, i) => i))
        yield { index, pixels: { kind: 'grey', values: sliceValues(volume, view, index), invert: false } };
    },
  };
}

/** A PACS series: i = column, j = row, k = slice, each slice as the DICOM reader delivers it. */
export function seriesSource(client: DicomWebClient, plan: SeriesPlan, grid: Grid): SliceSourceOf {
  const view: SliceView = {
    axis: 2,
    xAxis: 0,
    yAxis: 1,
    flipX: false,
    flipY: false,
    rows: plan.rows,
    columns: plan.columns,
    slices: plan.slices.length,
  };
  return {
    grid,
    view,
    modality: plan.modality,
    async *read(indices, signal) {
      const wanted = indices ? new Set(indices) : undefined;
      const sub = wanted ? { ...plan, slices: plan.slices.filter((s) => wanted.has(s.index)) } : plan;
      for await (const slice of readSeriesSlices(client, sub, { signal }))
        yield { index: slice.plan.index, pixels: slice.pixels };
    },
  };
}

export interface LabelResult {
  label: Uint8Array;
  /** Label value of each segment name (MONAI Label's `label_names`). */
  labelNames: Record<string, number>;
  timingsMs: Record<string, number>;
}

/** An automatic model over every slice, with the manifest's clean-ups, painted into a label. */
export async function autoLabel(
  registry: ModelRegistry,
  model: RegisteredModel,
  source: SliceSourceOf,
  options: { batchSize?: number; minComponentVoxels?: number; signal?: AbortSignal } = {},
): Promise<LabelResult> {
  const { manifest } = model;
  const refusal = autoRefusal(manifest, source.modality);
  if (refusal) throw new LdfsamError('INVALID_INPUT', refusal);
  const { view } = source;
  const t0 = performance.now();
  const slices = (async function* () {
    for await (const s of source.read(undefined, options.signal)) yield { plan: { index: s.index }, pixels: s.pixels };
  })();
  const worker = await registry.worker(model);
  const plan = { rows: view.rows, columns: view.columns, modality: source.modality, slices: { length: view.slices } };
  const { masks } = await segmentSlices(slices, plan, manifest, worker, options);
  const t1 = performance.now();
  // The clean-ups in segmentPlan's order (components, largest, holes, ellipse).
  const minVoxels = options.minComponentVoxels ?? manifest.postprocessing.minComponentVoxels ?? 0;
  const post = manifest.postprocessing;
  for (const seg of masks) {
    if (minVoxels > 1) dropSmallComponents(seg, view.rows, view.columns, minVoxels);
    if (post.largestComponentOnly) keepLargestComponent(seg, view.rows, view.columns);
    if (post.fillHoles) fillHoles(seg, view.rows, view.columns);
    if (post.fitEllipse) fitEllipse(seg, view.rows, view.columns);
  }
  const label = new Uint8Array(voxelCount(source.grid.size));
  masks.forEach((perSlice, s) => perSlice.forEach((bits, i) => paintSlice(label, source.grid, view, i, bits, s + 1)));
  const labelNames = Object.fromEntries(manifest.segments.map((s) => [s.label, s.number]));
  return { label, labelNames, timingsMs: { infer: t1 - t0, cleanup: performance.now() - t1 } };
}

/** A label on a series' grid from the pipeline's masks (masks[segment - 1][slice], rows x columns bits). */
export function labelFromMasks(masks: Uint8Array[][], source: SliceSourceOf): Uint8Array {
  const label = new Uint8Array(voxelCount(source.grid.size));
  masks.forEach((perSlice, s) =>
    perSlice.forEach((bits, i) => bits && paintSlice(label, source.grid, source.view, i, bits, s + 1)),
  );
  return label;
}

/** One slice's prompt in its view pixels (x = column, y = row; the box [x0, y0, x1, y1] inclusive). */
export interface SlicePrompt {
  points: { x: number; y: number; positive: boolean }[];
  box?: [number, number, number, number];
}

/** MONAI Label's prompt parameters: voxel indices [i, j, k] and an ROI [i0, i1, j0, j1, k0, k1]. */
export interface VoxelPrompts {
  foreground: number[][];
  background: number[][];
  roi?: number[];
}

/** Slices whose prompts one request may carry (an ROI spans them all). */
export const MAX_PROMPTED_SLICES = 512;

/**
 * Prompts per slice: every slice the ROI spans gets its box (and the clicks on that slice); clicks
 * on other slices make prompts of their own.
 */
export function slicePrompts(grid: Grid, view: SliceView, prompts: VoxelPrompts): Map<number, SlicePrompt> {
  const inside = (p: number[], what: string) => {
    if (p.length !== 3 || p.some((v, a) => !Number.isFinite(v) || Math.round(v) < 0 || Math.round(v) >= grid.size[a]!))
      throw new LdfsamError(
        'INVALID_INPUT',
        `${what} ${JSON.stringify(p)} is not a voxel [i, j, k] of the ${grid.size.join(' x ')} volume`,
      );
    return p.map(Math.round);
  };
  const out = new Map<number, SlicePrompt>();
  const at = (s: number) => {
    let p = out.get(s);
    if (!p) out.set(s, (p = { points: [] }));
    return p;
  };
  if (prompts.roi) {
    const r = prompts.roi;
    if (r.length !== 6 || r.some((v) => !Number.isFinite(v)))
      throw new LdfsamError('INVALID_INPUT', 'roi must be [i0, i1, j0, j1, k0, k1] (voxel indices)');
    const lo = [0, 1, 2].map((a) => Math.max(0, Math.round(Math.min(r[2 * a]!, r[2 * a + 1]!))));
    const hi = [0, 1, 2].map((a) => Math.min(grid.size[a]! - 1, Math.round(Math.max(r[2 * a]!, r[2 * a + 1]!))));
    if (lo.some((v, a) => v > hi[a]!)) throw new LdfsamError('INVALID_INPUT', `roi ${JSON.stringify(r)} lies outside the volume`);
    const a = voxelToView(view, lo);
    const b = voxelToView(view, hi);
    const box: [number, number, number, number] = [
      Math.min(a.x, b.x),
      Math.min(a.y, b.y),
      Math.max(a.x, b.x),
      Math.max(a.y, b.y),
    ];
    const [s0, s1] = [Math.min(a.s, b.s), Math.max(a.s, b.s)];
    if (s1 - s0 + 1 > MAX_PROMPTED_SLICES)
      throw new LdfsamError('INVALID_INPUT', `the roi spans ${s1 - s0 + 1} slices; at most ${MAX_PROMPTED_SLICES} per request`);
    for (let s = s0; s <= s1; s++) at(s).box = box;
  }
  for (const [list, positive] of [
    [prompts.foreground, true],
    [prompts.background, false],
  ] as const) {
    for (const p of list) {
      const v = voxelToView(view, inside(p, positive ? 'foreground point' : 'background point'));
      at(v.s).points.push({ x: v.x, y: v.y, positive });
    }
  }
  for (const [s, p] of out) if (!p.box && !p.points.some((q) => q.positive)) out.delete(s); // background clicks alone segment nothing
  if (out.size > MAX_PROMPTED_SLICES)
    throw new LdfsamError('INVALID_INPUT', `prompts on ${out.size} slices; at most ${MAX_PROMPTED_SLICES} per request`);
  return out;
}
