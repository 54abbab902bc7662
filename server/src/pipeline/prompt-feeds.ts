/**
 * The decoder's inputs for one prompt, as model.json's `promptable` section (and
 * ldfsam_models/promptable.py) defines them. Pure. Prompts come in the slice's own pixels (x =
 * column, y = row; a box as inclusive pixel indices [x0, y0, x1, y1], as MedSAM takes it) and are
 * scaled into the model's input frame by fitted size / native size per axis, as the Python
 * evaluation scales them (the prompt encoder adds the half pixel). Points come first, then the box's
 * two corners; without a box, one padding point ends the list.
 */
import { LdfsamError } from '../errors.js';
import type { ModelManifest } from '../models/manifest.js';
import { fittedSize } from './preprocess.js';

export interface SlicePrompt {
  points: { x: number; y: number; positive: boolean }[];
  box?: [number, number, number, number];
}

export type Feeds = Record<string, { data: Float32Array; dims: number[] }>;

export function decoderFeeds(manifest: ModelManifest, prompt: SlicePrompt, rows: number, columns: number): Feeds {
  const pair = manifest.promptable;
  if (!pair) throw new LdfsamError('INVALID_INPUT', `model ${manifest.name} has no promptable export`);
  const { labels, maxPoints, padWhenNoBox } = pair.prompts;
  if (prompt.points.length === 0 && !prompt.box)
    throw new LdfsamError('INVALID_INPUT', 'a prompt needs a box or at least one point');
  if (prompt.points.length > maxPoints)
    throw new LdfsamError(
      'INVALID_INPUT',
      `${prompt.points.length} points on one slice; model ${manifest.name} takes at most ${maxPoints}`,
    );
  const fitted = fittedSize(rows, columns, manifest);
  const sx = fitted.columns / columns;
  const sy = fitted.rows / rows;
  const coords: number[] = [];
  const codes: number[] = [];
  for (const p of prompt.points) {
    coords.push(p.x * sx, p.y * sy);
    codes.push(p.positive ? labels.positive : labels.negative);
  }
  if (prompt.box) {
    const [x0, y0, x1, y1] = prompt.box;
    coords.push(x0 * sx, y0 * sy, x1 * sx, y1 * sy);
    codes.push(labels.boxTopLeft, labels.boxBottomRight);
  } else if (padWhenNoBox) {
    coords.push(0, 0);
    codes.push(labels.padding);
  }
  const size = manifest.preprocessing.inputSize;
  const n = codes.length;
  return {
    point_coords: { data: Float32Array.from(coords), dims: [1, n, 2] },
    point_labels: { data: Float32Array.from(codes), dims: [1, n] },
    mask_input: { data: new Float32Array(size * size), dims: [1, 1, size, size] },
    has_mask_input: { data: new Float32Array([0]), dims: [1] },
  };
}

/** Fraction of a mask's width and height added on each side when a box is made from it (as the evaluation does). */
export const BOX_MARGIN = 0.05;

/** The bounding box (inclusive pixels) of a row-major 0/1 mask plus extra points, widened by BOX_MARGIN and clipped. */
export function boxAround(
  mask: Uint8Array | undefined,
  rows: number,
  columns: number,
  extra: { x: number; y: number }[] = [],
): [number, number, number, number] | undefined {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  const take = (x: number, y: number) => {
    x0 = Math.min(x0, x);
    x1 = Math.max(x1, x);
    y0 = Math.min(y0, y);
    y1 = Math.max(y1, y);
  };
  if (mask) for (let i = 0; i < mask.length; i++) if (mask[i]) take(i % columns, Math.floor(i / columns));
  for (const p of extra) take(p.x, p.y);
  if (x0 > x1) return undefined;
  const mx = BOX_MARGIN * (x1 - x0 + 1);
  const my = BOX_MARGIN * (y1 - y0 + 1);
  return [Math.max(0, x0 - mx), Math.max(0, y0 - my), Math.min(columns - 1, x1 + mx), Math.min(rows - 1, y1 + my)];
}
