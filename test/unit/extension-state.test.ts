/**
 * The OHIF panel's state logic (extension/src/panel-state.ts): which model is offered for a
 * modality, how job states from the server move a run forward, and the time estimates. Jobs are
 * shaped like the server's own Job (server/src/jobs/types.ts), and their progress follows what the
 * runner publishes: plan {0/1}, infer in batches of 4 slices, then encode/store/verify {0/1}.
 */
import { describe, expect, it } from 'vitest';
import type { ModelInfo } from '../../extension/src/api-client.js';
import {
  acceptingModels,
  applyJob,
  elapsedMs,
  formatDuration,
  fractionDone,
  initialState,
  isFinal,
  movesWithClock,
  remainingMs,
  selectedModel,
  seriesKey,
  Store,
  type PanelState,
  type SeriesRun,
} from '../../extension/src/panel-state.js';
import type { Job, JobProgress, JobState } from '../../server/src/jobs/types.js';

const STUDY = '1.3.46.670589.33.1.27492712521914879309.27169771283235650014';
const SERIES = '1.3.46.670589.33.1.6002432791750815306.26862469513794233732';
const SEG_SERIES = '2.25.171933364011939152744337412858745186117';
const JOB_ID = '3f1c2a9e-5b7d-4e21-9c0a-8d6f4b2e1a77';
const CREATED = '2025-03-04T10:00:00.000Z';
const STARTED = '2025-03-04T10:00:01.500Z';
const FINISHED = '2025-03-04T10:00:09.250Z';

/** A job as GET /api/jobs/:id and the SSE stream send it. */
function job(state: JobState, progress: JobProgress | null, extra: Partial<Job> = {}): Job {
  return {
    id: JOB_ID,
    batchId: null,
    state,
    request: { studyInstanceUID: STUDY, seriesInstanceUID: SERIES, model: 'ldfsam-hc18' },
    priority: 1,
    progress,
    result: null,
    error: null,
    attempts: 1,
    createdAt: CREATED,
    updatedAt: CREATED,
    startedAt: state === 'queued' ? null : STARTED,
    finishedAt: null,
    ...extra,
  };
}

function model(name: string, modalities: string[], dice?: number): ModelInfo {
  return {
    name,
    version: '1.0.0',
    description: `${name} (tiny)`,
    modalities,
    segments: [{ number: 1, label: 'Fetal head', color: [255, 128, 0] }],
    // The server sends `metrics: null` for a model without held-out figures.
    metrics: (dice === undefined
      ? null
      : { dataset: 'hc18', split: 'test', dice: { mean: dice, ci95: [dice - 0.01, dice + 0.01] } }) as
      ModelInfo['metrics'] | undefined,
  };
}

const MODELS: ModelInfo[] = [
  model('threshold-fixture', ['*']),
  model('generic-strong', ['*'], 0.99),
  model('ldfsam-ph2', ['XC'], 0.914),
  model('us-older', ['US', 'OT'], 0.9),
  model('ldfsam-hc18', ['US'], 0.955),
];

const names = (models: ModelInfo[]) => models.map((m) => m.name);

describe('model choice', () => {
  it('offers exact modality matches first, then wildcard models, each by held-out Dice', () => {
    // generic-strong has the best Dice overall, but a model made for US comes first.
    expect(names(acceptingModels(MODELS, 'US'))).toEqual(['ldfsam-hc18', 'us-older', 'generic-strong', 'threshold-fixture']);
    expect(names(acceptingModels(MODELS, 'XC'))).toEqual(['ldfsam-ph2', 'generic-strong', 'threshold-fixture']);
    // No model made for CT: the wildcards, the one without metrics last.
    expect(names(acceptingModels(MODELS, 'CT'))).toEqual(['generic-strong', 'threshold-fixture']);
    expect(
      acceptingModels(
        MODELS.filter((m) => !m.modalities.includes('*')),
        'CT',
      ),
    ).toEqual([]);
    // Modalities are matched exactly.
    expect(names(acceptingModels(MODELS.slice(2), 'us'))).toEqual([]);
  });

  it('never offers a promptable-only model for automatic segmentation', () => {
    const promptable = { ...model('medsam-lite', ['*'], 0.99), modes: ['promptable' as const] };
    const both = { ...model('ldfsam-hc18', ['US'], 0.97), modes: ['auto' as const, 'promptable' as const] };
    expect(names(acceptingModels([promptable, both, ...MODELS.slice(0, 1)], 'US'))).toEqual(['ldfsam-hc18', 'threshold-fixture']);
    expect(names(acceptingModels([promptable], 'CT'))).toEqual([]);
  });

  it('selects the best model for the active series unless the user chose another one for that modality', () => {
    const active = {
      studyInstanceUID: STUDY,
      seriesInstanceUID: SERIES,
      modality: 'US',
      description: 'Fetal head',
      sliceCount: 1,
    };
    expect(selectedModel(initialState)).toBeUndefined();
    expect(selectedModel({ ...initialState, models: MODELS })).toBeUndefined(); // no active series
    expect(selectedModel({ ...initialState, active })).toBeUndefined(); // models not loaded yet
    const state: PanelState = { ...initialState, models: MODELS, active };
    expect(selectedModel(state)?.name).toBe('ldfsam-hc18');
    expect(selectedModel({ ...state, chosenModel: { US: 'threshold-fixture' } })?.name).toBe('threshold-fixture');
    // A choice for another modality, or of a model that does not accept this one, is ignored.
    expect(selectedModel({ ...state, chosenModel: { XC: 'threshold-fixture' } })?.name).toBe('ldfsam-hc18');
    expect(selectedModel({ ...state, chosenModel: { US: 'ldfsam-ph2' } })?.name).toBe('ldfsam-hc18');
    expect(selectedModel({ ...state, active: { ...active, modality: 'MR' } })?.name).toBe('generic-strong');
    expect(selectedModel({ ...state, models: [MODELS[2]!], active: { ...active, modality: 'MR' } })).toBeUndefined();
  });

  it('keys runs by study and series', () => {
    expect(seriesKey(STUDY, SERIES)).toBe(`${STUDY}|${SERIES}`);
  });
});

describe('applyJob', () => {
  const t0 = Date.parse('2025-03-04T10:00:02.000Z');

  it('follows a job from the queue to success: progress only moves forward, and success is 100%', () => {
    let run: SeriesRun | undefined;
    run = applyJob(run, job('queued', null), t0);
    expect(run).toMatchObject({ jobId: JOB_ID, model: 'ldfsam-hc18', state: 'queued', done: 0, total: 0 });
    expect(isFinal(run)).toBe(false);
    expect(fractionDone(run)).toBe(0);
    expect(elapsedMs(run, t0)).toBeUndefined();
    expect(remainingMs(run, t0)).toBeUndefined();

    run = applyJob(run, job('running', { stage: 'plan', done: 0, total: 1 }), t0 + 100);
    expect(run.state).toBe('running');
    expect(run.startedAt).toBe(Date.parse(STARTED)); // the server's start, not the browser's clock
    expect(elapsedMs(run, Date.parse(STARTED) + 2500)).toBe(2500);
    expect(run.firstSliceAt).toBeUndefined();

    run = applyJob(run, job('running', { stage: 'infer', done: 4, total: 28 }), t0 + 1000);
    expect(run).toMatchObject({ stage: 'infer', done: 4, total: 28, firstSliceAt: t0 + 1000 });
    run = applyJob(run, job('running', { stage: 'infer', done: 8, total: 28 }), t0 + 2000);
    run = applyJob(run, job('running', { stage: 'infer', done: 12, total: 28 }), t0 + 3000);
    // A stale state (GET /api/jobs/:id reads what was persisted, at most 4 times a second) never lowers it.
    run = applyJob(run, job('running', { stage: 'infer', done: 8, total: 28 }), t0 + 3100);
    expect(run).toMatchObject({ done: 12, total: 28 });
    expect(fractionDone(run)).toBeCloseTo(12 / 28);
    expect(run.firstSliceAt).toBe(t0 + 1000);

    run = applyJob(run, job('running', { stage: 'infer', done: 28, total: 28 }), t0 + 5000);
    // After the slices the runner reports encode/store/verify as {0/1}; the SSE stream resent after
    // a reconnection starts with that persisted state. The slice count stays.
    run = applyJob(run, job('running', { stage: 'store', done: 0, total: 1 }), t0 + 5200);
    expect(run).toMatchObject({ stage: 'store', done: 28, total: 28 });
    expect(fractionDone(run)).toBe(1);
    expect(remainingMs(run, t0 + 5300)).toBe(0);

    run = applyJob(
      run,
      job(
        'succeeded',
        { stage: 'done', done: 28, total: 28 },
        {
          finishedAt: FINISHED,
          result: {
            status: 'stored',
            segSeriesInstanceUID: SEG_SERIES,
            segSopInstanceUID: `${SEG_SERIES}.1`,
            frames: 19,
            slices: 28,
            timingsMs: { plan: 40, fetch: 900, infer: 5200, store: 300 },
          },
        },
      ),
      t0 + 9000,
    );
    expect(run).toMatchObject({ state: 'succeeded', done: 28, total: 28, segSeriesInstanceUID: SEG_SERIES });
    expect(run.error).toBeUndefined();
    expect(isFinal(run)).toBe(true);
    expect(fractionDone(run)).toBe(1);
    expect(run.finishedAt).toBe(Date.parse(FINISHED));
    // Once finished, elapsed is the job's duration, whatever the time now.
    expect(elapsedMs(run, t0 + 60_000)).toBe(Date.parse(FINISHED) - Date.parse(STARTED));
    expect(remainingMs(run, t0 + 9000)).toBeUndefined();
  });

  it('an earlier result seen for the first time is complete: 100% of the slices the server reports', () => {
    const earlier = job('succeeded', null, {
      finishedAt: FINISHED,
      result: {
        status: 'stored',
        segSeriesInstanceUID: SEG_SERIES,
        segSopInstanceUID: `${SEG_SERIES}.1`,
        frames: 3,
        slices: 28,
        timingsMs: {},
      },
    });
    const run = applyJob(undefined, earlier, t0);
    expect(run).toMatchObject({ state: 'succeeded', done: 28, total: 28, segSeriesInstanceUID: SEG_SERIES });
    expect(fractionDone(run)).toBe(1);
    // Nothing found on any slice: succeeded, no SEG stored.
    const nothingFound: Job = {
      ...earlier,
      result: { ...earlier.result!, status: 'empty', segSeriesInstanceUID: null, segSopInstanceUID: null, frames: 0 },
    };
    const empty = applyJob(undefined, nothingFound, t0);
    expect(empty.state).toBe('succeeded');
    expect(empty.segSeriesInstanceUID).toBeUndefined();
  });

  it('a failed job keeps its error code and the progress it had; a cancelled one says CANCELLED', () => {
    let run = applyJob(undefined, job('running', { stage: 'infer', done: 8, total: 28 }), t0);
    run = applyJob(
      run,
      job(
        'failed',
        { stage: 'infer', done: 8, total: 28 },
        {
          finishedAt: FINISHED,
          attempts: 3,
          error: { code: 'UNSUPPORTED_DICOM', message: 'instance 1.2.3.4: truncated pixel data' },
        },
      ),
      t0 + 1000,
    );
    expect(run).toMatchObject({
      state: 'failed',
      done: 8,
      total: 28,
      error: { code: 'UNSUPPORTED_DICOM', message: 'instance 1.2.3.4: truncated pixel data' },
    });
    expect(fractionDone(run)).toBeCloseTo(8 / 28);
    expect(isFinal(run)).toBe(true);
    expect(remainingMs(run, t0 + 2000)).toBeUndefined();
    expect(run.segSeriesInstanceUID).toBeUndefined();

    const cancelled = applyJob(
      applyJob(undefined, job('running', { stage: 'infer', done: 4, total: 28 }), t0),
      job(
        'cancelled',
        { stage: 'infer', done: 4, total: 28 },
        {
          finishedAt: FINISHED,
          error: { code: 'CANCELLED', message: 'cancelled by request; nothing was stored' },
        },
      ),
      t0,
    );
    expect(cancelled).toMatchObject({ state: 'cancelled', error: { code: 'CANCELLED' }, done: 4 });
    expect(fractionDone(cancelled)).toBeLessThan(1);
  });

  it('a new job for the same series starts from zero, not from the previous job', () => {
    const old = applyJob(undefined, job('running', { stage: 'infer', done: 20, total: 28 }), t0);
    const rerun = applyJob(old, job('queued', null, { id: '9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d' }), t0 + 10);
    expect(rerun).toMatchObject({ jobId: '9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d', state: 'queued', done: 0 });
  });

  it('uses the browser clock for the start when the server gives none', () => {
    const run = applyJob(undefined, job('running', { stage: 'plan', done: 0, total: 1 }, { startedAt: null }), t0 + 42);
    expect(run.startedAt).toBe(t0 + 42);
  });
});

describe('time estimates', () => {
  const t = 1_000_000;
  const running = (over: Partial<SeriesRun>): SeriesRun => ({
    model: 'ldfsam-hc18',
    state: 'running',
    done: 0,
    total: 0,
    ...over,
  });

  it('extrapolates from the slice rate after the first slice, whose time includes loading', () => {
    // One slice per event: slice 1 at t, slices 2..5 in the next 4 s: 1 s per slice, 15 left.
    expect(remainingMs(running({ done: 5, total: 20, firstSliceAt: t }), t + 4000)).toBe(15_000);
    expect(remainingMs(running({ done: 1, total: 20, firstSliceAt: t }), t + 4000)).toBeUndefined(); // no rate yet
    expect(remainingMs(running({ done: 5, total: 20 }), t + 4000)).toBeUndefined(); // no first slice seen
    expect(remainingMs(running({ done: 5, total: 20, firstSliceAt: t }), t)).toBeUndefined();
    expect(remainingMs(running({ done: 0, total: 0 }), t)).toBeUndefined();
  });

  it('measures the rate from the first progress seen, also when slices come in batches', () => {
    // The server's default batch is 4 slices: events say 4, 8, 12 ... of 28, one batch a second.
    let run: SeriesRun | undefined;
    run = applyJob(run, job('running', { stage: 'infer', done: 4, total: 28 }), t);
    run = applyJob(run, job('running', { stage: 'infer', done: 8, total: 28 }), t + 1000);
    run = applyJob(run, job('running', { stage: 'infer', done: 12, total: 28 }), t + 2000);
    // 8 slices in 2 s since the first batch: 250 ms per slice, 16 slices left.
    expect(remainingMs(run, t + 2000)).toBe(4000);
    // Following a job already half done (panel opened, page reloaded): the rate is not diluted
    // by the slices done before the panel saw the job.
    let late: SeriesRun | undefined;
    late = applyJob(late, job('running', { stage: 'infer', done: 16, total: 28 }), t);
    late = applyJob(late, job('running', { stage: 'infer', done: 20, total: 28 }), t + 1000);
    expect(remainingMs(late, t + 1000)).toBe(2000);
  });

  it('redraws with the clock only while a shown time moves: a run not finished, or one finished without an end time', () => {
    const panel = (runs: Record<string, SeriesRun>): PanelState => ({ ...initialState, runs });
    expect(movesWithClock(initialState)).toBe(false);
    expect(movesWithClock(panel({ a: running({ startedAt: t }) }))).toBe(true);
    expect(movesWithClock(panel({ a: { ...running({}), state: 'submitting' } }))).toBe(true);
    const done = { ...running({ startedAt: t, finishedAt: t + 5000 }), state: 'succeeded' as const };
    expect(movesWithClock(panel({ a: done }))).toBe(false);
    expect(movesWithClock(panel({ a: done, b: { ...done, state: 'failed', finishedAt: undefined } }))).toBe(true);
    expect(movesWithClock(panel({ a: { ...done, state: 'cancelled', startedAt: undefined, finishedAt: undefined } }))).toBe(
      false,
    );
  });

  it('formats durations in seconds, then minutes and two-digit seconds', () => {
    expect(formatDuration(undefined)).toBe('–');
    expect(formatDuration(Number.NaN)).toBe('–');
    expect(formatDuration(Number.POSITIVE_INFINITY)).toBe('–');
    expect(formatDuration(0)).toBe('0 s');
    expect(formatDuration(400)).toBe('0 s');
    expect(formatDuration(1500)).toBe('2 s');
    expect(formatDuration(59_400)).toBe('59 s');
    expect(formatDuration(59_600)).toBe('1 min 00 s');
    expect(formatDuration(65_000)).toBe('1 min 05 s');
    expect(formatDuration(3_725_000)).toBe('62 min 05 s');
  });
});

describe('Store', () => {
  it('notifies every subscriber with the new state until it unsubscribes', () => {
    const store = new Store<PanelState>(initialState);
    const a: PanelState[] = [];
    const b: PanelState[] = [];
    const offA = store.subscribe((s) => a.push(s));
    store.subscribe((s) => b.push(s));
    store.update((s) => ({ ...s, chosenModel: { US: 'ldfsam-hc18' } }));
    expect(store.get().chosenModel).toEqual({ US: 'ldfsam-hc18' });
    expect(a).toEqual([store.get()]);
    expect(b).toEqual([store.get()]);
    offA();
    const key = seriesKey(STUDY, SERIES);
    store.update((s) => ({ ...s, runs: { ...s.runs, [key]: applyJob(undefined, job('queued', null), 0) } }));
    expect(a).toHaveLength(1);
    expect(b).toHaveLength(2);
    expect(b[1]!.runs[key]!.state).toBe('queued');
    // The initial state object is never mutated.
    expect(initialState).toEqual({ chosenModel: {}, outputs: 'seg', runs: {} });
  });
});

describe('result format', () => {
  it('is SEG by default; a finished job gives the run its SEG and RTSTRUCT series', () => {
    expect(initialState.outputs).toBe('seg');
    const done = {
      ...job('succeeded', { stage: 'done', done: 28, total: 28 }),
      result: {
        status: 'stored',
        segSeriesInstanceUID: '1.2.3.4',
        segSopInstanceUID: '1.2.3.5',
        rtstructSeriesInstanceUID: '1.2.3.6',
        rtstructSopInstanceUID: '1.2.3.7',
        frames: 28,
        slices: 28,
      },
    };
    const run = applyJob(undefined, done, 0);
    expect(run).toMatchObject({ segSeriesInstanceUID: '1.2.3.4', rtstructSeriesInstanceUID: '1.2.3.6' });
  });
});
