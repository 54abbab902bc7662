/**
 * Prompts in a slice's pixels to the promptable decoder's inputs, as model.json's `promptable`
 * section says: user points, then the box's two corners (labels boxTopLeft, boxBottomRight); with no
 * box, one padding point (0, 0) when padWhenNoBox. A slice pixel (x = column, y = row) maps to the
 * model's input frame by x * fitted.columns / columns and y * fitted.rows / rows, where fitted is the
 * part of the input the slice fills (`fittedSize`): SAM's convention of plain scaling (its prompt
 * encoder adds the half pixel). Boxes are [x0, y0, x1, y1], inclusive pixel indices (MedSAM's).
 * Pure functions (zeroMask keeps one constant per size); the checks throw INVALID_INPUT saying what is wrong.
 */
import { LdfsamError } from '../errors.js';
import type { Outputs } from '../inference/inference-worker.js';
import type { ModelManifest } from '../models/manifest.js';
import { fittedSize } from '../pipeline/preprocess.js';

export interface PromptPoint {
  x: number;
  y: number;
  positive: boolean;
}

export type Box = [number, number, number, number];

export interface Prompt {
  box?: Box;
  points?: PromptPoint[];
}

/** The decoder inputs besides the encoder's outputs (the promptable contract's names). */
export const PROMPT_INPUTS = ['point_coords', 'point_labels', 'mask_input', 'has_mask_input'] as const;

/** Refuses a prompt that is empty, has too many points, or reaches outside the rows x columns image. */
export function checkPrompt(prompt: Prompt, rows: number, columns: number, maxPoints: number): void {
  const invalid = (message: string) => new LdfsamError('INVALID_INPUT', message);
  const points = prompt.points ?? [];
  if (!prompt.box && points.length === 0) throw invalid('a prompt needs a box or at least one point');
  if (points.length > maxPoints) throw invalid(`at most ${maxPoints} points per prompt (got ${points.length})`);
  const inside = (x: number, y: number) => x >= 0 && y >= 0 && x <= columns - 1 && y <= rows - 1;
  points.forEach((p, i) => {
    if (!inside(p.x, p.y))
      throw invalid(
        `point ${i + 1} (${p.x}, ${p.y}) is outside the ${columns} x ${rows} image (x 0..${columns - 1}, y 0..${rows - 1})`,
      );
  });
  if (prompt.box) {
    const [x0, y0, x1, y1] = prompt.box;
    if (!inside(x0, y0) || !inside(x1, y1))
      throw invalid(`the box [${prompt.box.join(', ')}] reaches outside the ${columns} x ${rows} image`);
    if (!(x1 > x0 && y1 > y0)) throw invalid(`the box [${prompt.box.join(', ')}] is empty: it needs x1 > x0 and y1 > y0`);
  }
}

/** point_coords (1, N, 2) and point_labels (1, N) in the input frame, in the manifest's order. */
export function promptTensors(
  prompt: Prompt,
  rows: number,
  columns: number,
  manifest: ModelManifest,
): { point_coords: Outputs[string]; point_labels: Outputs[string] } {
  const spec = manifest.promptable!.prompts;
  const fitted = fittedSize(rows, columns, manifest);
  const sx = fitted.columns / columns;
  const sy = fitted.rows / rows;
  const coords: number[] = [];
  const labels: number[] = [];
  for (const p of prompt.points ?? []) {
    coords.push(p.x * sx, p.y * sy);
    labels.push(p.positive ? spec.labels.positive : spec.labels.negative);
  }
  if (prompt.box) {
    const [x0, y0, x1, y1] = prompt.box;
    coords.push(x0 * sx, y0 * sy, x1 * sx, y1 * sy);
    labels.push(spec.labels.boxTopLeft, spec.labels.boxBottomRight);
  } else if (spec.padWhenNoBox) {
    coords.push(0, 0);
    labels.push(spec.labels.padding);
  }
  const n = labels.length;
  return {
    point_coords: { data: Float32Array.from(coords), dims: [1, n, 2] },
    point_labels: { data: Float32Array.from(labels), dims: [1, n] },
  };
}

/**
 * Every decoder input, by name: the slice's encoder outputs, the prompt, and the previous step's
 * mask logits (input frame) when given. An input the contract does not name is refused.
 */
export function decoderFeeds(
  manifest: ModelManifest,
  embedding: Outputs,
  prompt: ReturnType<typeof promptTensors>,
  maskInput: Float32Array | undefined,
): Outputs {
  const size = manifest.preprocessing.inputSize;
  const feeds: Outputs = {};
  for (const input of manifest.promptable!.decoder.inputs) {
    const name = input.name;
    if (name === 'point_coords' || name === 'point_labels') feeds[name] = prompt[name];
    else if (name === 'mask_input') feeds[name] = { data: maskInput ?? zeroMask(size), dims: [1, 1, size, size] };
    else if (name === 'has_mask_input') feeds[name] = { data: Float32Array.of(maskInput ? 1 : 0), dims: [1] };
    else if (embedding[name]) feeds[name] = embedding[name];
    else
      throw new LdfsamError(
        'MODEL_REJECTED',
        `${manifest.name}: the decoder input ${name} is neither an encoder output nor a prompt`,
      );
  }
  return feeds;
}

const zeroMasks = new Map<number, Float32Array>();

/**
 * The mask_input of a prompt without a previous mask: all zeros, one per size, in shared memory, so
 * the inference worker keeps its copy between clicks instead of receiving 256 kB each time. Never written.
 */
export function zeroMask(size: number): Float32Array {
  let mask = zeroMasks.get(size);
  if (!mask) zeroMasks.set(size, (mask = new Float32Array(new SharedArrayBuffer(size * size * 4))));
  return mask;
}

/** The smallest box [x0, y0, x1, y1] (inclusive) holding every set bit, or undefined when none is set. */
export function maskBox(bits: Uint8Array, rows: number, columns: number): Box | undefined {
  let x0 = columns;
  let y0 = rows;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < rows; y++) {
    const row = y * columns;
    for (let x = 0; x < columns; x++) {
      const i = row + x;
      if (bits[i >> 3] === 0 && (i & 7) === 0 && x + 8 <= columns) {
        x += 7; // a whole empty byte within the row
        continue;
      }
      if ((bits[i >> 3]! >> (i & 7)) & 1) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        y1 = y;
      }
    }
  }
  return x1 < 0 ? undefined : [x0, y0, x1, y1];
}

/** A box widened by `margin` of its width / height on each side, clipped to the image (the reference prompt of the evaluation). */
export function widenBox(box: Box, margin: number, rows: number, columns: number): Box {
  const [x0, y0, x1, y1] = box;
  const mx = margin * (x1 - x0 + 1);
  const my = margin * (y1 - y0 + 1);
  return [Math.max(0, x0 - mx), Math.max(0, y0 - my), Math.min(columns - 1, x1 + mx), Math.min(rows - 1, y1 + my)];
}

/** Set bits of a packed mask. */
export function countBits(bits: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < bits.length; i++) {
    let b = bits[i]!;
    while (b) {
      b &= b - 1;
      n++;
    }
  }
  return n;
}
