/**
 * The panel's state, kept outside any component: OHIF unmounts panels on every tab switch, and a
 * running job must still be shown when the panel comes back. Reducer-style pure functions over a
 * plain object, plus a tiny store that notifies the mounted view.
 */
import { FINAL_STATES, type Job, type JobResult, type JobState, type ModelInfo, type OutputFormat } from './api-client.js';

export interface ActiveSeries {
  studyInstanceUID: string;
  seriesInstanceUID: string;
  modality: string;
  description: string;
  sliceCount: number;
}

export interface ErrorInfo {
  code: string;
  message: string;
}

/** One series' segmentation as the panel knows it. */
export interface SeriesRun {
  jobId?: string;
  model: string;
  state: JobState | 'submitting';
  stage?: string;
  done: number;
  total: number;
  /** When the job started running (ms since epoch, browser clock), for elapsed and estimated time. */
  startedAt?: number;
  /** When `done` was first above zero: the rate is measured from there (model loading excluded). */
  firstSliceAt?: number;
  /** `done` at firstSliceAt (a whole batch of slices, or more when the panel joined a running job). */
  firstSliceDone?: number;
  finishedAt?: number;
  error?: ErrorInfo;
  segSeriesInstanceUID?: string;
  /** A succeeded run: on how many slices the structure was found, how sure, in words. */
  found?: FoundSummary;
  rtstructSeriesInstanceUID?: string;
  /** The result existed before this click (the server answered with an earlier job). */
  earlier?: boolean;
}

export interface FoundSummary {
  /** Slices with a mask in the stored SEG (0: nothing found, nothing stored). */
  slicesFound: number;
  slices: number;
  /** Mean presence score of the slices found (models with a presence gate). */
  confidence?: number;
  /** The server's words about the outcome. */
  message?: string;
}

export interface PanelState {
  models?: ModelInfo[];
  modelsError?: ErrorInfo;
  active?: ActiveSeries;
  /** The user's model choice per modality; the best default otherwise. */
  chosenModel: Record<string, string>;
  /** The results to write (a setting, kept in the browser): SEG by default. */
  outputs: OutputFormat;
  runs: Record<string, SeriesRun>;
  /** "Segment every series of this study": the study and its series keys. */
  batch?: { studyInstanceUID: string; keys: string[]; error?: ErrorInfo };
  /** The series whose existing result the user is asked about (re-run?). */
  confirmRerun?: string;
}

export const initialState: PanelState = { chosenModel: {}, outputs: 'seg', runs: {} };

export const OUTPUT_LABELS: Record<OutputFormat, string> = {
  seg: 'DICOM SEG',
  rtstruct: 'RT Structure Set (RTSTRUCT)',
  both: 'SEG and RTSTRUCT',
};

export function seriesKey(studyInstanceUID: string, seriesInstanceUID: string): string {
  return `${studyInstanceUID}|${seriesInstanceUID}`;
}

/** Automatic models that accept a modality: exact matches first, then wildcards, each by held-out Dice. */
export function acceptingModels(models: ModelInfo[], modality: string): ModelInfo[] {
  const dice = (m: ModelInfo) => m.metrics?.dice?.mean ?? 0;
  return models
    .filter((m) => (m.modes ?? ['auto']).includes('auto'))
    .filter((m) => m.modalities.includes(modality) || m.modalities.includes('*'))
    .sort((a, b) => Number(b.modalities.includes(modality)) - Number(a.modalities.includes(modality)) || dice(b) - dice(a));
}

export function selectedModel(state: PanelState): ModelInfo | undefined {
  if (!state.active || !state.models) return undefined;
  const accepting = acceptingModels(state.models, state.active.modality);
  const chosen = state.chosenModel[state.active.modality];
  return accepting.find((m) => m.name === chosen) ?? accepting[0];
}

export function isFinal(run: SeriesRun): boolean {
  return (FINAL_STATES as readonly string[]).includes(run.state);
}

/** A run updated by a job state from the server. Progress never goes backwards. */
export function applyJob(run: SeriesRun | undefined, job: Job, now: number): SeriesRun {
  const prev: SeriesRun = run ?? { model: job.request.model, state: 'queued', done: 0, total: 0 };
  // Slices done and their total go together: a state with fewer done (a stale read, or a later
  // stage's {0/1} resent after a reconnection) keeps both, so done never exceeds total.
  const forward = (job.progress?.done ?? 0) >= (prev.jobId === job.id ? prev.done : 0);
  const done = forward ? (job.progress?.done ?? 0) : prev.done;
  const next: SeriesRun = {
    ...prev,
    jobId: job.id,
    model: job.request.model,
    state: job.state,
    stage: job.progress?.stage ?? prev.stage,
    done,
    total: forward ? (job.progress?.total ?? prev.total) : prev.total,
  };
  if (job.state === 'running' && next.startedAt === undefined) next.startedAt = job.startedAt ? Date.parse(job.startedAt) : now;
  if (done > 0 && next.firstSliceAt === undefined) {
    next.firstSliceAt = now;
    next.firstSliceDone = done;
  }
  if ((FINAL_STATES as readonly string[]).includes(job.state)) {
    next.finishedAt = job.finishedAt ? Date.parse(job.finishedAt) : now;
    if (job.state === 'succeeded') {
      next.done = next.total = Math.max(next.total, job.result?.slices ?? next.total);
      next.segSeriesInstanceUID = job.result?.segSeriesInstanceUID ?? undefined;
      if (job.result) next.found = foundSummary(job.result);
      next.rtstructSeriesInstanceUID = job.result?.rtstructSeriesInstanceUID ?? undefined;
    }
    if (job.error) next.error = { code: job.error.code, message: job.error.message };
  }
  return next;
}

/** A result's "found on N of M slices" (older results without slicesFound: a stored SEG counts every frame's slice). */
export function foundSummary(result: JobResult): FoundSummary {
  const slicesFound = result.slicesFound ?? (result.segSeriesInstanceUID ? Math.min(result.frames, result.slices) : 0);
  return {
    slicesFound,
    slices: result.slices,
    ...(typeof result.confidence === 'number' ? { confidence: result.confidence } : {}),
    ...(result.message ? { message: result.message } : {}),
  };
}

/** A succeeded run that stored nothing because the model found nothing. */
export function foundNothing(run: SeriesRun): boolean {
  return run.state === 'succeeded' && run.found !== undefined && run.found.slicesFound === 0;
}

/** The whole-study view's counts: segmented, nothing found (not a failure), failed, cancelled, still running. */
export function batchCounts(runs: (SeriesRun | undefined)[]): {
  segmented: number;
  nothingFound: number;
  failed: number;
  cancelled: number;
  running: number;
} {
  const counts = { segmented: 0, nothingFound: 0, failed: 0, cancelled: 0, running: 0 };
  for (const r of runs) {
    if (!r) continue;
    if (!isFinal(r)) counts.running++;
    else if (r.state === 'failed') counts.failed++;
    else if (r.state === 'cancelled') counts.cancelled++;
    else if (foundNothing(r)) counts.nothingFound++;
    else counts.segmented++;
  }
  return counts;
}

/** Fraction done in [0, 1]; 1 when succeeded. */
export function fractionDone(run: SeriesRun): number {
  if (run.state === 'succeeded') return 1;
  return run.total > 0 ? Math.min(1, run.done / run.total) : 0;
}

/** Milliseconds since the job started (or its whole duration once finished). */
export function elapsedMs(run: SeriesRun, now: number): number | undefined {
  if (run.startedAt === undefined) return undefined;
  return Math.max(0, (run.finishedAt ?? now) - run.startedAt);
}

/**
 * Whether the panel shows a time that moves with the clock (a run's elapsed or remaining time):
 * only then is it redrawn between state changes.
 */
export function movesWithClock(state: PanelState): boolean {
  return Object.values(state.runs).some((r) => r && (!isFinal(r) || (r.startedAt !== undefined && r.finishedAt === undefined)));
}

/** Estimated milliseconds left, from the slice rate since the first slice; undefined until known. */
export function remainingMs(run: SeriesRun, now: number): number | undefined {
  if (isFinal(run) || run.firstSliceAt === undefined || run.total === 0 || run.done === 0) return undefined;
  const sinceFirst = now - run.firstSliceAt;
  // The time of the slices seen first is unknown (it includes loading; with batches it is a whole
  // batch); extrapolate from the later ones.
  const counted = run.done - (run.firstSliceDone ?? 1);
  if (counted <= 0 || sinceFirst <= 0) return undefined;
  return ((run.total - run.done) * sinceFirst) / counted;
}

export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '–';
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
}

/** A minimal observable store. */
export class Store<S> {
  private listeners = new Set<(s: S) => void>();
  constructor(private state: S) {}

  get(): S {
    return this.state;
  }

  /** Changes the state; `notify: false` defers telling the views until notify() (one render for several changes). */
  update(change: (s: S) => S, notify = true): void {
    this.state = change(this.state);
    if (notify) this.notify();
  }

  notify(): void {
    for (const l of this.listeners) l(this.state);
  }

  subscribe(listener: (s: S) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
