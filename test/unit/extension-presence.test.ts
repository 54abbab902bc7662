/**
 * The panel's view of what a run found (extension/src/panel-state.ts): "found on N of M slices"
 * with the confidence from the job result, nothing found as its own outcome (not a failure), and the
 * whole-study counts that keep nothing found apart from failures. Jobs are shaped like the server's.
 */
import { describe, expect, it } from 'vitest';
import { applyJob, batchCounts, foundNothing, foundSummary, type SeriesRun } from '../../extension/src/panel-state.js';
import type { Job, JobResult } from '../../server/src/jobs/types.js';

const T = '2025-03-04T10:00:00.000Z';

function succeeded(result: Partial<JobResult>): Job {
  return {
    id: 'job-1',
    batchId: null,
    state: 'succeeded',
    request: { studyInstanceUID: '1.2.3', seriesInstanceUID: '1.2.3.4', model: 'gated' },
    priority: 1,
    progress: { stage: 'done', done: 6, total: 6 },
    result: {
      status: 'stored',
      segSeriesInstanceUID: '2.25.1',
      segSopInstanceUID: '2.25.1.1',
      frames: 3,
      slices: 6,
      timingsMs: {},
      ...result,
    },
    error: null,
    attempts: 1,
    createdAt: T,
    updatedAt: T,
    startedAt: T,
    finishedAt: T,
  };
}

describe('what a run found', () => {
  it('a gated model: found on 3 of 6 slices with its confidence and words', () => {
    const run = applyJob(
      undefined,
      succeeded({
        slicesFound: 3,
        confidence: 0.9103,
        scores: [1, 0.06, 1, 0.02, 0.73, 0.06],
        message: 'Tissue found on 3 of 6 slices.',
      }),
      0,
    );
    expect(run.found).toEqual({ slicesFound: 3, slices: 6, confidence: 0.9103, message: 'Tissue found on 3 of 6 slices.' });
    expect(foundNothing(run)).toBe(false);
  });

  it('nothing found: succeeded, no SEG, slicesFound 0, the server message kept', () => {
    const message =
      'No tissue found: none of the 3 slices reached the presence threshold 0.50 (highest score 0.06); nothing was stored.';
    const run = applyJob(
      undefined,
      succeeded({
        status: 'not-found',
        segSeriesInstanceUID: null,
        segSopInstanceUID: null,
        frames: 0,
        slices: 3,
        slicesFound: 0,
        confidence: null,
        message,
      }),
      0,
    );
    expect(run).toMatchObject({ state: 'succeeded', found: { slicesFound: 0, slices: 3, message } });
    expect(run.found).not.toHaveProperty('confidence');
    expect(run.segSeriesInstanceUID).toBeUndefined();
    expect(foundNothing(run)).toBe(true);
  });

  it('results recorded before slicesFound existed: a stored SEG counts its frames, none counts 0', () => {
    expect(
      foundSummary({ status: 'stored', segSeriesInstanceUID: '2.25.1', segSopInstanceUID: null, frames: 28, slices: 28 }),
    ).toEqual({
      slicesFound: 28,
      slices: 28,
    });
    expect(
      foundSummary({ status: 'empty', segSeriesInstanceUID: null, segSopInstanceUID: null, frames: 0, slices: 2 }).slicesFound,
    ).toBe(0);
  });

  it('the whole-study counts keep nothing found apart from failures', () => {
    const found = applyJob(undefined, succeeded({ slicesFound: 3 }), 0);
    const none = applyJob(
      undefined,
      succeeded({ status: 'not-found', segSeriesInstanceUID: null, frames: 0, slicesFound: 0 }),
      0,
    );
    const failed: SeriesRun = {
      model: 'gated',
      state: 'failed',
      done: 0,
      total: 3,
      error: { code: 'INFERENCE_FAILED', message: 'x' },
    };
    const running: SeriesRun = { model: 'gated', state: 'running', done: 1, total: 3 };
    expect(batchCounts([found, none, none, failed, running, undefined])).toEqual({
      segmented: 1,
      nothingFound: 2,
      failed: 1,
      cancelled: 0,
      running: 1,
    });
  });
});
