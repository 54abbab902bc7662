/**
 * The presence gate end to end with a model whose per-slice score is known (test/fixtures/
 * model-presence: score = sigmoid(40 x mask area - 4), threshold 0.5) on series whose every slice's
 * answer is known (test/tools/make_presence_series.py), against the real Orthanc: a mixed series
 * stores only the slices that pass, each frame with its score in the SEG (dciodvfy, highdicom); a
 * series of negatives stores nothing and says so through the CLI and the jobs API (both queue
 * backends), and the batch view counts it as nothing found, not as a failure.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/src/config.js';
import { readPart10Header } from '../../server/src/dicom/part10.js';
import { startServer } from '../../server/src/http/server.js';
import { silentLogger } from '../../server/src/log.js';
import { readSegmentation } from '../../server/src/seg/reader.js';
import { projectPath } from '../../server/src/util/paths.js';
import { runCli } from '../setup/cli.js';
import { CT_DIR } from '../setup/data.js';
import { pacsClient, pacsEnv, provided } from '../setup/provided.js';
import { runPython } from '../setup/python.js';
import { startTestRedis, type TestRedis } from './queue-redis-server.js';

const exec = promisify(execFile);
const { dicomwebUrl, pacsAuthorization } = provided();
const client = pacsClient();
const FIXTURE = projectPath('test', 'fixtures', 'model-presence');

interface MadeSeries {
  folder: string;
  studyInstanceUID: string;
  seriesInstanceUID: string;
  slices: { radius: number | null; area: number; score: number; sopInstanceUID: string }[];
}
let work: string;
let made: Record<'presence-mixed' | 'presence-none', MadeSeries>;
let redis: TestRedis | undefined;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ldfsam-presence-'));
  made = JSON.parse(await runPython('test/tools/make_presence_series.py', ['--ct', CT_DIR, '--out', work]));
  const r = await runCli(
    ['pacs', 'load', '--json', '--dicomweb', dicomwebUrl, made['presence-mixed'].folder, made['presence-none'].folder],
    pacsEnv(),
  );
  expect(r.code).toBe(0);
}, 120_000);

afterAll(async () => {
  await redis?.stop();
  await rm(work, { recursive: true, force: true });
});

function segment(s: MadeSeries, extra: string[] = []) {
  return runCli(
    [
      'segment',
      '--dicomweb',
      dicomwebUrl,
      '--model',
      FIXTURE,
      '--study',
      s.studyInstanceUID,
      '--series',
      s.seriesInstanceUID,
      ...extra,
    ],
    pacsEnv(),
  );
}

async function segSeries(study: string) {
  return client.searchForSeries({ studyInstanceUID: study, queryParams: { Modality: 'SEG' } });
}

describe('ldfsam segment with a presence gate', () => {
  it('a mixed series: only the slices that pass get a frame, each with its score, and the SEG is valid', async () => {
    const s = made['presence-mixed'];
    const r = await segment(s, ['--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ status: 'stored', slices: 6, frames: 3, slicesFound: 3, presenceThreshold: 0.5 });
    expect(out.message).toMatch(/^Tissue found on 3 of 6 slices \(presence score 0\.7\d–1\.00, threshold 0\.50\)\.$/);
    // The scores are the fixture's, from the disc areas (the input is a 256 x 256 resize: a little off).
    expect(out.scores).toHaveLength(6);
    s.slices.forEach((slice, i) => expect(Math.abs(out.scores[i] - slice.score), `slice ${i + 1}`).toBeLessThan(0.03));
    const passing = s.slices.map((slice) => slice.score >= 0.5);
    expect(passing).toEqual([true, false, true, false, true, false]);
    expect(out.confidence).toBeCloseTo((out.scores[0] + out.scores[2] + out.scores[4]) / 3, 3);

    const bytes = await client.retrieveInstance({
      studyInstanceUID: s.studyInstanceUID,
      seriesInstanceUID: out.segSeriesInstanceUID,
      sopInstanceUID: out.segSopInstanceUID,
    });
    const file = join(work, 'mixed-seg.dcm');
    await writeFile(file, bytes);
    const { stdout, stderr } = await exec('dciodvfy', [file]).catch((e: { stdout: string; stderr: string }) => e);
    expect(`${stdout}\n${stderr}`.split('\n').filter((l) => /^Error/.test(l))).toEqual([]);

    // Frames on exactly the passing slices, each the fixture's mask there (highdicom reads it too).
    const seg = readSegmentation(bytes);
    expect(seg.frames.map((f) => f.referencedSOPInstanceUID)).toEqual(
      s.slices.filter((_, i) => passing[i]).map((slice) => slice.sopInstanceUID),
    );
    const check = JSON.parse(await runPython('test/tools/check_seg.py', [file, s.folder])) as {
      highdicom: string;
      frames: { found: boolean; dice: number }[];
    };
    expect(check.highdicom).toBe('ok');
    for (const f of check.frames) expect(f.found && f.dice > 0.95).toBe(true);

    // Each frame's score in its Frame Comments, the summary in the Segment Description.
    const ds = readPart10Header(bytes).dataset as {
      PerFrameFunctionalGroupsSequence: { FrameContentSequence: { FrameComments?: string }[] }[];
      SegmentSequence: { SegmentDescription?: string }[];
    };
    const comments = ds.PerFrameFunctionalGroupsSequence.map((f) => f.FrameContentSequence[0]!.FrameComments);
    expect(comments).toEqual([0, 2, 4].map((i) => `LDFSAM presence score ${out.scores[i].toFixed(4)} (threshold 0.5000)`));
    expect(ds.SegmentSequence[0]!.SegmentDescription).toMatch(
      /^LDFSAM presence: found on 3 of 6 slices, score 0\.7\d-1\.00 \(threshold 0\.50\)$/,
    );
  }, 180_000);

  it('a series of negatives: nothing stored, and the CLI says so in words and in JSON', async () => {
    const s = made['presence-none'];
    const text = await segment(s);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/0 frame\(s\); no SEG stored/);
    expect(text.stdout).toMatch(
      /No tissue found: none of the 3 slices reached the presence threshold 0\.50 \(highest score 0\.0\d\); nothing was stored\./,
    );
    const json = JSON.parse((await segment(s, ['--json'])).stdout);
    expect(json).toMatchObject({
      status: 'not-found',
      frames: 0,
      slicesFound: 0,
      confidence: null,
      segSeriesInstanceUID: null,
      presenceThreshold: 0.5,
      slicesUnlikeTraining: 0, // the fixture's gate has no featureMax
    });
    expect(json.scores.every((x: number) => x < 0.5)).toBe(true);
    // Slices 1 and 3 hold a small bright disc: the mask was there, the gate removed it (and the
    // ellipse clean-up did not bring it back).
    expect(s.slices.map((x) => x.radius !== null)).toEqual([true, false, true]);
    expect(await segSeries(s.studyInstanceUID)).toHaveLength(0);

    // --store-empty: one empty frame, stored as asked, still found on no slice.
    const stored = JSON.parse((await segment(s, ['--json', '--store-empty'])).stdout);
    expect(stored).toMatchObject({ status: 'stored', frames: 1, slicesFound: 0 });
    expect(stored.message).toMatch(/No tissue found: .*; an empty segmentation was stored as asked\./);
    const seg = readSegmentation(
      await client.retrieveInstance({
        studyInstanceUID: s.studyInstanceUID,
        seriesInstanceUID: stored.segSeriesInstanceUID,
        sopInstanceUID: stored.segSopInstanceUID,
      }),
    );
    expect(seg.frames).toHaveLength(1);
    expect(seg.frames[0]!.mask.every((v) => v === 0)).toBe(true);
  }, 240_000);
});

describe.each(['sqlite', 'redis'] as const)('the jobs API with a presence gate (%s queue)', (backend) => {
  it('GET /api/jobs/{id} says nothing was found; the batch view counts it apart from failures', async () => {
    let queue = 'sqlite';
    if (backend === 'redis') {
      redis ??= await startTestRedis();
      queue = redis.url(2);
    }
    const config = loadConfig({
      env: {},
      flags: {
        dicomwebUrl,
        dicomwebAuthorization: pacsAuthorization,
        dataDir: join(work, `data-${backend}`),
        port: 0,
        modelDirs: [FIXTURE],
        queue,
      },
    });
    const server = await startServer({ ...config, port: 0 }, silentLogger, { withWorker: true });
    const call = async (path: string, body?: unknown) => {
      const res = await fetch(`${server.url}${path}`, {
        method: body ? 'POST' : 'GET',
        headers: { 'content-type': 'application/json' },
        body: body ? JSON.stringify(body) : undefined,
      });
      return (await res.json()) as any;
    };
    try {
      const none = made['presence-none'];
      const mixed = made['presence-mixed'];
      const before = (await segSeries(none.studyInstanceUID)).length;
      const { jobId } = await call('/api/jobs', {
        studyInstanceUID: none.studyInstanceUID,
        seriesInstanceUID: none.seriesInstanceUID,
        model: 'presence-fixture',
      });
      let job: any;
      for (let i = 0; i < 2400 && !['succeeded', 'failed', 'cancelled'].includes(job?.state); i++) {
        await new Promise((r) => setTimeout(r, 100));
        job = await call(`/api/jobs/${jobId}`);
      }
      expect(job).toMatchObject({
        state: 'succeeded',
        error: null,
        result: { status: 'not-found', frames: 0, slices: 3, slicesFound: 0, segSeriesInstanceUID: null, confidence: null },
      });
      expect(job.result.scores).toHaveLength(3);
      expect(job.result.message).toMatch(/^No tissue found: .*nothing was stored\.$/);
      expect((await segSeries(none.studyInstanceUID)).length).toBe(before);

      const batch = await call('/api/batches', {
        studies: [none.studyInstanceUID, mixed.studyInstanceUID],
        model: 'presence-fixture',
        force: true,
      });
      let view: any;
      for (let i = 0; i < 2400 && !view?.done; i++) {
        await new Promise((r) => setTimeout(r, 100));
        view = await call(`/api/batches/${batch.batchId}`);
      }
      expect(view.counts).toMatchObject({ succeeded: 2, failed: 0 });
      expect(view.nothingFound).toBe(1);
      const byStudy = Object.fromEntries(view.jobs.map((j: any) => [j.request.studyInstanceUID, j.result]));
      expect(byStudy[mixed.studyInstanceUID]).toMatchObject({ status: 'stored', slicesFound: 3, slices: 6 });
      expect(byStudy[none.studyInstanceUID]).toMatchObject({ status: 'not-found', slicesFound: 0 });

      // The command-line clients show it too: "nothing found" in the job list.
      const jobs = await runCli(['jobs', '--server', server.url]);
      expect(jobs.stdout).toMatch(/nothing found/);
    } finally {
      await server.close();
    }
  }, 300_000);
});
