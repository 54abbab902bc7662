/** Jobs: what is persisted and what the API shows. */
export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export const FINAL_STATES: readonly JobState[] = ['succeeded', 'failed', 'cancelled'];

export interface JobRequest {
  studyInstanceUID: string;
  seriesInstanceUID: string;
  model: string;
  /** seg (absent: the default), rtstruct or both. */
  outputs?: 'seg' | 'rtstruct' | 'both';
}

/** The identity of a request (idempotency): the same series with the same model and outputs is the same request. */
export function requestKey(r: JobRequest): string {
  // SEG (the default) keeps the key it always had, so jobs recorded before outputs existed still match.
  const outputs = r.outputs && r.outputs !== 'seg' ? `|${r.outputs}` : '';
  return `${r.studyInstanceUID}|${r.seriesInstanceUID}|${r.model}${outputs}`;
}

export interface JobProgress {
  stage: string;
  done: number;
  total: number;
}

export interface JobResult {
  /** stored, or empty / not-found (the job succeeded and stored nothing: see message). */
  status: string;
  segSeriesInstanceUID: string | null;
  segSopInstanceUID: string | null;
  rtstructSeriesInstanceUID?: string | null;
  rtstructSopInstanceUID?: string | null;
  /** Where the results were stored: 'stow', 'dimse:AET@host:port'. */
  storedIn?: string[];
  /** What the user should know (e.g. why no RTSTRUCT was written). */
  notes?: string[];
  frames: number;
  slices: number;
  /** Slices with a frame in the SEG. Absent in results recorded before it existed. */
  slicesFound?: number;
  /** Per slice the model's presence score (4 decimals); null for a model without a presence gate. */
  scores?: number[] | null;
  presenceThreshold?: number | null;
  /** Mean presence score of the slices found (null when none, or no presence gate). */
  confidence?: number | null;
  /** The outcome in plain words. */
  message?: string;
  timingsMs: Record<string, number>;
}

export interface Job {
  id: string;
  batchId: string | null;
  state: JobState;
  request: JobRequest;
  /** Interactive (viewer) jobs go before batch jobs. */
  priority: number;
  progress: JobProgress | null;
  result: JobResult | null;
  error: { code: string; message: string } | null;
  attempts: number;
  createdAt: string;
  updatedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** The worker that ran it last (Redis queue). */
  worker?: string | null;
}
