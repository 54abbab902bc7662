/** The evaluations' prompting loop: one interactive session per series, each listed slice prompted the way the Python evaluation does. */
import { api } from './serve-child.js';

export type EvalPrompt = 'box' | 'point';

/** One slice's prompts: the reference label's bounding box (+5% a side) and a positive point at its centroid. */
export interface SlicePrompts {
  /** The mask's key in the answer (the Python scorer's case id). */
  key: string;
  /** The slice's SOP Instance UID; absent for a one-image series (slice 0). */
  sopInstanceUID?: string;
  box: number[];
  point: [number, number];
}

export interface SeriesRef {
  studyInstanceUID: string;
  seriesInstanceUID: string;
  model: string;
}

/**
 * Opens a session on the series through `ldfsam serve` at `url`, sends each slice's prompts of the
 * kinds asked for, closes the session; the answered masks (packed bits, base64) go into `masks[kind][key]`.
 */
export async function promptSeries(
  url: string,
  series: SeriesRef,
  slices: SlicePrompts[],
  kinds: EvalPrompt[],
  masks: Record<string, Record<string, string>>,
): Promise<void> {
  const s = (await api(url, '/interactive', series)) as { sessionId: string; slices: { sopInstanceUID: string }[] };
  const index = new Map(s.slices.map((x, i) => [x.sopInstanceUID, i]));
  try {
    for (const slice of slices) {
      const at = slice.sopInstanceUID === undefined ? 0 : index.get(slice.sopInstanceUID)!;
      for (const kind of kinds) {
        const body =
          kind === 'box'
            ? { slice: at, box: slice.box }
            : { slice: at, points: [{ x: slice.point[0], y: slice.point[1], positive: true }] };
        const answer = (await api(url, `/interactive/${s.sessionId}/prompt`, body)) as { mask: { bits: string } };
        (masks[kind] ??= {})[slice.key] = answer.mask.bits;
      }
    }
  } finally {
    await fetch(`${url}/api/interactive/${s.sessionId}`, { method: 'DELETE' });
  }
}
