/**
 * How far V8 lets this process's old generation grow before it starts a major (mark-compact)
 * collection. V8 counts ArrayBuffer memory allocated since the last major collection against that
 * room, and the room it leaves by default (about twice the ~27 MB live heap) is used up every few
 * slices by the pipeline's frame answers, pixels and masks (1-3 MB each at 820 x 820): 71 major
 * collections marked the whole heap during a 600-slice series, 13 per 120 slices, each freeing next
 * to nothing of the JS heap (`--trace-gc-nvp`: 0.2-0.4 MB allocated between them). Growing the limit
 * to 4 x the live heap leaves 18 per 600 slices; node CPU per 820 x 820 slice 16.0 -> 11.5 ms, peak
 * RSS unchanged (bench/RESULTS.md, "the host path's major collections").
 */
import v8 from 'node:v8';

export const HEAP_GROWING_PERCENT = 300;

/** Sets the growth for every isolate of the process; call before the work starts (each collection re-reads it). */
export function growHeapLimit(): void {
  v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}
