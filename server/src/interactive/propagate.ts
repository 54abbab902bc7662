/**
 * Propagation of a slice's mask through the series: each next slice is prompted with the box of the
 * previous slice's mask, widened by PROPAGATION_BOX_MARGIN per side (and, when asked, with that
 * slice's logits as the decoder's mask input), until the mask vanishes, the predicted IoU falls
 * below minIou, the series ends, the slice limit is reached, or the caller aborts. "up" goes to
 * higher slice indices of the planned order (along the slice normal: superior for axial slices in
 * the usual orientation), "down" to lower ones, "both" up first, then down.
 *
 * The worker stays busy: while slice k is decoded, slice k+1 is fetched and preprocessed on this
 * thread, and its encoding is queued behind the decode (the worker runs decodes first).
 */
import { LdfsamError } from '../errors.js';
import { isEmpty } from '../seg/bits.js';
import { maskBox, widenBox } from './prompts.js';
import type { InteractiveSession, PromptResult } from './session.js';

/** Of the previous mask's width / height, per side: room for the structure to grow from slice to slice. */
export const PROPAGATION_BOX_MARGIN = 0.1;

export type Direction = 'up' | 'down' | 'both';
export type StopReason = 'empty' | 'low-iou' | 'end-of-series' | 'limit' | 'cancelled';

export interface PropagateOptions {
  fromSlice: number;
  direction: Direction;
  minIou: number;
  /** Feed the previous slice's logits as the decoder's mask input. */
  useMask: boolean;
  maxSlices: number;
  signal: AbortSignal;
}

export type PropagationEvent =
  | { type: 'slice'; result: PromptResult; direction: 'up' | 'down'; done: number; total: number }
  | { type: 'stopped'; direction: 'up' | 'down'; reason: StopReason; atSlice: number | null; iou: number | null };

export async function* propagate(session: InteractiveSession, options: PropagateOptions): AsyncGenerator<PropagationEvent> {
  const { fromSlice } = options;
  session.checkSlice(fromSlice);
  const seed = session.masks.get(fromSlice);
  if (!seed || isEmpty(seed.bits))
    throw new LdfsamError('INVALID_INPUT', `slice ${fromSlice} has no mask in this session to propagate: prompt it first`);
  const count = session.plan.slices.length;
  const directions: ('up' | 'down')[] = options.direction === 'both' ? ['up', 'down'] : [options.direction];
  // Upper bound of the slices to do, for progress: every slice the directions reach, within the limit.
  const reach = (d: 'up' | 'down') => (d === 'up' ? count - 1 - fromSlice : fromSlice);
  const total = Math.min(
    options.maxSlices,
    directions.reduce((n, d) => n + reach(d), 0),
  );
  let done = 0;
  for (const direction of directions) {
    const step = direction === 'up' ? 1 : -1;
    let previous = { bits: seed.bits, logits: session.previousLogits(fromSlice) };
    let k = fromSlice + step;
    const inside = (i: number) => i >= 0 && i < count;
    let ahead = inside(k) ? prefetch(session, k, options.signal) : undefined;
    let stop: { reason: StopReason; atSlice: number | null; iou: number | null } | undefined;
    while (!stop) {
      if (options.signal.aborted) stop = { reason: 'cancelled', atSlice: null, iou: null };
      else if (!inside(k)) stop = { reason: 'end-of-series', atSlice: null, iou: null };
      else if (done >= options.maxSlices) stop = { reason: 'limit', atSlice: k, iou: null };
      if (stop) break;
      const { rows, columns } = session.plan;
      const box = widenBox(maskBox(previous.bits, rows, columns)!, PROPAGATION_BOX_MARGIN, rows, columns);
      await ahead;
      ahead = inside(k + step) ? prefetch(session, k + step, options.signal) : undefined;
      const before = { mask: session.masks.get(k), logits: session.previousLogits(k) };
      let result: PromptResult;
      try {
        result = await session.prompt(
          k,
          { box },
          { maskInput: options.useMask ? previous.logits : undefined, signal: options.signal },
        );
      } catch (err) {
        if (!options.signal.aborted) throw err;
        stop = { reason: 'cancelled', atSlice: k, iou: null }; // the slice's fetch was aborted
        break;
      }
      if (options.signal.aborted) stop = { reason: 'cancelled', atSlice: k, iou: null };
      else if (isEmpty(result.bits)) stop = { reason: 'empty', atSlice: k, iou: result.iou };
      else if (result.iou !== null && result.iou < options.minIou) stop = { reason: 'low-iou', atSlice: k, iou: result.iou };
      if (stop) {
        // Not part of the structure (or never sent): the slice gets back what it had, and accept cannot
        // find this one; unless a newer prompt on the slice (the user's) has answered meanwhile: that stays.
        if (session.masks.get(k)?.bits === result.bits) session.restore(k, before);
        break;
      }
      done++;
      yield { type: 'slice', result, direction, done, total };
      previous = { bits: result.bits, logits: result.logits };
      k += step;
    }
    yield { type: 'stopped', direction, ...stop };
    if (stop.reason === 'cancelled') return;
  }
}

/** Starts the slice's fetch, preprocessing and encoding now (into the cache); failures surface when it is prompted. */
function prefetch(session: InteractiveSession, index: number, signal: AbortSignal): Promise<void> {
  return session.embed(index, signal).then(
    () => undefined,
    () => undefined,
  );
}
