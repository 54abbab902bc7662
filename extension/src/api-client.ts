/**
 * The panel's client of the LDFSAM API (server/src/http). Every call carries the user's
 * Authorization header when there is one (OIDC access token from OHIF's user authentication
 * service, or the server-configured viewer token). Job progress comes from the server-sent events
 * stream, read with fetch (EventSource cannot send an Authorization header), with reconnection.
 */

/** The results a job writes: DICOM SEG, RT Structure Set, or both. */
export type OutputFormat = 'seg' | 'rtstruct' | 'both';

export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export const FINAL_STATES: readonly JobState[] = ['succeeded', 'failed', 'cancelled'];

export interface Job {
  id: string;
  state: JobState;
  request: { studyInstanceUID: string; seriesInstanceUID: string; model: string; outputs?: OutputFormat };
  progress: { stage: string; done: number; total: number } | null;
  result: JobResult | null;
  error: { code: string; message: string } | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

/** What a succeeded job stored (server/src/jobs/types.ts); the presence fields are absent in older results. */
export interface JobResult {
  /** stored, or empty / not-found: nothing was found and nothing stored. */
  status: string;
  segSeriesInstanceUID: string | null;
  segSopInstanceUID: string | null;
  rtstructSeriesInstanceUID?: string | null;
  rtstructSopInstanceUID?: string | null;
  /** What the user should know (e.g. why no RTSTRUCT was written). */
  notes?: string[];
  frames: number;
  slices: number;
  slicesFound?: number;
  scores?: number[] | null;
  presenceThreshold?: number | null;
  confidence?: number | null;
  message?: string;
}

export interface ModelInfo {
  name: string;
  version: string;
  description: string;
  /** auto: segments whole series unprompted; promptable: box/point prompts (interactive). */
  modes?: ('auto' | 'promptable')[];
  modalities: string[];
  segments: { number: number; label: string; color: number[] }[];
  metrics?: { dataset?: string; split?: string; dice?: { mean?: number; ci95?: number[] } } & Record<string, unknown>;
}

/** A slice pixel (x = column, y = row) and whether it marks the structure (positive) or not. */
export interface PromptPoint {
  x: number;
  y: number;
  positive: boolean;
}

/** [x0, y0, x1, y1]: inclusive pixel indices. */
export type Box = [number, number, number, number];

export interface InteractiveSession {
  sessionId: string;
  model: { name: string; version: string };
  studyInstanceUID: string;
  seriesInstanceUID: string;
  modality: string;
  rows: number;
  columns: number;
  /** The server's planned order: a slice's index in every call is its place here. */
  slices: { sopInstanceUID: string; frameNumber: number }[];
  maxPoints: number;
  idleTimeoutMs: number;
  propagation: { minIou: number; useMask: boolean; maxSlices: number };
}

/** A mask as the server sends it: packed bits, row-major, least significant bit first, base64. */
export interface SliceMask {
  slice: number;
  iou: number | null;
  cached?: boolean;
  mask: { rows: number; columns: number; bits: string };
  timingsMs?: Record<string, number>;
}

export interface PropagationEvent {
  name: 'slice' | 'stopped' | 'final' | 'error';
  data: Record<string, unknown>;
}

export interface Code {
  scheme: string;
  code: string;
  meaning: string;
}

export interface Accepted {
  segSeriesInstanceUID: string;
  segSopInstanceUID: string;
  instanceNumber: number;
  frames: number;
  slices: number[];
}

export interface Submitted {
  jobId: string;
  jobIds: string[];
  created: boolean[];
}

/** An error the panel can show: the server's code and message, or a network failure. */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface ApiClientOptions {
  apiBase: string;
  /** The Authorization header value to send, if any (looked up per request: tokens are renewed). */
  authorization?: () => string | undefined;
  fetch?: typeof fetch;
}

export class LdfsamApi {
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly options: ApiClientOptions) {
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
  }

  async models(): Promise<ModelInfo[]> {
    return ((await this.request('GET', '/models')) as { models: ModelInfo[] }).models;
  }

  /** One series, or every series of the study a model accepts when seriesInstanceUID is absent. */
  async submit(body: {
    studyInstanceUID: string;
    seriesInstanceUID?: string;
    model?: string;
    force?: boolean;
    outputs?: OutputFormat;
  }): Promise<Submitted> {
    return (await this.request('POST', '/jobs', { ...body, priority: 'interactive' })) as Submitted;
  }

  async job(id: string): Promise<Job> {
    return (await this.request('GET', `/jobs/${encodeURIComponent(id)}`)) as Job;
  }

  async cancel(id: string): Promise<Job> {
    return (await this.request('DELETE', `/jobs/${encodeURIComponent(id)}`)) as Job;
  }

  /**
   * Follows a job until it ends: calls onJob with every state the server sends and resolves with
   * the final one. A dropped stream is reopened (after a growing pause); `signal` stops following
   * (the job itself keeps running on the server).
   */
  async follow(id: string, onJob: (job: Job) => void, signal?: AbortSignal): Promise<Job> {
    let pause = 250;
    for (;;) {
      try {
        const res = await this.fetchImpl(this.url(`/jobs/${encodeURIComponent(id)}/events`), {
          headers: this.headers({ accept: 'text/event-stream' }),
          signal,
        });
        if (!res.ok || !res.body) throw await toApiError(res);
        const final = await readEvents(res.body, onJob);
        if (final) return final;
      } catch (err) {
        if (signal?.aborted) throw new ApiError('ABORTED', 'stopped following the job');
        if (err instanceof ApiError && err.status !== undefined && err.status < 500) throw err;
      }
      // The stream ended without a final state (server restart, proxy time-out): ask again.
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(pause * 2, 5000);
    }
  }

  /** Opens an interactive session on a series (the model's name, or the server's default for the modality). */
  async openSession(body: { studyInstanceUID: string; seriesInstanceUID: string; model?: string }): Promise<InteractiveSession> {
    return (await this.request('POST', '/interactive', body)) as InteractiveSession;
  }

  async closeSession(id: string): Promise<void> {
    await this.request('DELETE', `/interactive/${encodeURIComponent(id)}`);
  }

  /**
   * Has the server encode a slice ahead of its first prompt; resolves once it is cached there.
   * Aborting `signal` cancels the request (CANCELLED): the server then drops the encode unless
   * another request waits on it.
   */
  async encode(id: string, slice: number, signal?: AbortSignal): Promise<{ slice: number; cached: boolean }> {
    return (await this.request('POST', `/interactive/${encodeURIComponent(id)}/encode`, { slice }, signal)) as {
      slice: number;
      cached: boolean;
    };
  }

  async prompt(
    id: string,
    body: { slice: number; box?: Box; points?: PromptPoint[]; usePreviousMask?: boolean },
  ): Promise<SliceMask> {
    return (await this.request('POST', `/interactive/${encodeURIComponent(id)}/prompt`, body)) as SliceMask;
  }

  /**
   * Propagates a slice's mask through the series: calls onEvent for every server-sent event and
   * resolves with the last one (`final` or `error`). Aborting `signal` closes the stream, which stops
   * the propagation on the server.
   */
  async propagate(
    id: string,
    body: { fromSlice: number; direction?: 'both' | 'up' | 'down'; minIou?: number; useMask?: boolean },
    onEvent: (e: PropagationEvent) => void,
    signal?: AbortSignal,
  ): Promise<PropagationEvent> {
    let res: Response;
    try {
      res = await this.fetchImpl(this.url(`/interactive/${encodeURIComponent(id)}/propagate`), {
        method: 'POST',
        headers: this.headers({ accept: 'text/event-stream', 'content-type': 'application/json' }),
        body: JSON.stringify(body),
        signal,
      });
    } catch (err) {
      if (signal?.aborted) throw new ApiError('CANCELLED', 'propagation cancelled');
      throw new ApiError('NETWORK', `the LDFSAM server cannot be reached (${(err as Error).message})`);
    }
    if (!res.ok || !res.body) throw await toApiError(res);
    let last: PropagationEvent | undefined;
    try {
      await readStream(res.body, (name, data) => {
        last = { name: name as PropagationEvent['name'], data: data as Record<string, unknown> };
        onEvent(last);
        return name === 'final' || name === 'error';
      });
    } catch (err) {
      if (signal?.aborted) throw new ApiError('CANCELLED', 'propagation cancelled');
      throw err;
    }
    if (!last || (last.name !== 'final' && last.name !== 'error'))
      throw new ApiError('NETWORK', 'the propagation stream ended before its final event');
    return last;
  }

  async cancelPropagation(id: string): Promise<void> {
    await this.request('DELETE', `/interactive/${encodeURIComponent(id)}/propagate`);
  }

  async accept(
    id: string,
    body: {
      label: string;
      category?: Code;
      type?: Code;
      color?: [number, number, number];
      slices: { slice: number; bits?: string }[];
    },
  ): Promise<Accepted> {
    return (await this.request('POST', `/interactive/${encodeURIComponent(id)}/accept`, body)) as Accepted;
  }

  private url(path: string): string {
    return `${this.options.apiBase.replace(/\/$/, '')}${path}`;
  }

  private headers(extra: Record<string, string>): Record<string, string> {
    const auth = this.options.authorization?.();
    return auth ? { ...extra, authorization: auth } : extra;
  }

  private async request(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<unknown> {
    let res: Response;
    try {
      res = await this.fetchImpl(this.url(path), {
        method,
        headers: this.headers(
          body === undefined
            ? { accept: 'application/json' }
            : { accept: 'application/json', 'content-type': 'application/json' },
        ),
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      if (signal?.aborted) throw new ApiError('CANCELLED', 'request cancelled');
      throw new ApiError('NETWORK', `the LDFSAM server cannot be reached (${(err as Error).message})`);
    }
    if (!res.ok) throw await toApiError(res);
    return readJson(res, signal);
  }
}

/** The body of a 2xx answer: one cut off, cancelled or not JSON is a coded ApiError, never a bare one. */
async function readJson(res: Response, signal?: AbortSignal): Promise<unknown> {
  let text: string;
  try {
    text = await res.text();
  } catch (err) {
    if (signal?.aborted) throw new ApiError('CANCELLED', 'request cancelled');
    throw new ApiError('NETWORK', `the LDFSAM server's answer was cut off (${(err as Error).message})`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // a proxy's page answered 200 in the server's place
    throw new ApiError('HTTP_ERROR', `the server answered ${res.status} with something that is not JSON`, res.status);
  }
}

async function toApiError(res: Response): Promise<ApiError> {
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    if (body.error?.code) return new ApiError(body.error.code, body.error.message ?? '', res.status);
  } catch {
    // not our JSON: a proxy's error page
  }
  return new ApiError(res.status === 401 ? 'UNAUTHORIZED' : 'HTTP_ERROR', `the server answered ${res.status}`, res.status);
}

/** Parses a text/event-stream body; returns the job of a `final` event, or undefined if the stream ended first. */
export async function readEvents(body: ReadableStream<Uint8Array>, onJob: (job: Job) => void): Promise<Job | undefined> {
  let final: Job | undefined;
  await readStream(body, (name, data) => {
    onJob(data as Job);
    if (name === 'final') final = data as Job;
    return name === 'final';
  });
  return final;
}

/** Reads server-sent events until the stream ends or `onEvent` returns true (then the stream is closed). */
async function readStream(body: ReadableStream<Uint8Array>, onEvent: (name: string, data: unknown) => boolean): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
      const event = parseEvent(block);
      if (!event) continue;
      if (onEvent(event.name, event.job)) {
        await reader.cancel().catch(() => undefined);
        return;
      }
    }
  }
}

export function parseEvent(block: string): { name: string; job: Job } | undefined {
  let name = 'message';
  const data: string[] = [];
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') name = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length === 0) return undefined;
  return { name, job: JSON.parse(data.join('\n')) as Job };
}
