/**
 * The shipped default models, as users get them: real test-split images wrapped as DICOM
 * (`ldfsam import-images`), segmented by `ldfsam segment` (server decoding, preprocessing, the
 * ONNX graph with its in-graph test-time flips, the manifest's clean-ups including the moment
 * ellipse) and read back from the SEG with pydicom, against the Python evaluation that produced the
 * manifests' published metrics (test/tools/shipped_model_parity.py). The two sides must agree
 * pixel for pixel, as the README says: a single differing pixel means the published figures do not
 * describe exactly what the server writes. The presence score too (every feature of the gate,
 * the training distance's nodes included, through onnxruntime-node against onnxruntime). And an
 * image unlike every training image (a dermoscopy photograph given to the fetal-head model as
 * ultrasound) is gated by featureMax and said to be so.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectPath } from '../../server/src/util/paths.js';
import { runCli } from '../setup/cli.js';
import { SHARED_DATA } from '../setup/data.js';
import { runPython } from '../setup/python.js';

const TOOL = 'test/tools/shipped_model_parity.py';
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ldfsam-shipped-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe.each([
  { model: 'ldfsam-hc18', dataset: 'hc18', preset: 'hc18' },
  { model: 'ldfsam-ph2', dataset: 'ph2', preset: 'ph2' },
])('shipped model $model', ({ model, dataset, preset }) => {
  it('segments test-split images through the server as the evaluation does', async () => {
    const folder = projectPath('models', model);
    const images = JSON.parse(await runPython(TOOL, ['pick', '--dataset', dataset, '--n', '2'])) as string[];
    expect(images).toHaveLength(2);
    for (const image of images) {
      const dicom = join(work, model, basename(image));
      const imported = await runCli(['import-images', '--preset', preset, '--out', dicom, image]);
      expect(imported.code, imported.stderr).toBe(0);
      const seg = join(work, model, `${basename(image)}.seg.dcm`);
      const segmented = await runCli(['segment', '--json', '--model', folder, '--input', dicom, '--output', seg]);
      expect(segmented.code, segmented.stderr).toBe(0);
      const c = JSON.parse(await runPython(TOOL, ['compare', '--model', folder, '--image', image, '--seg', seg])) as {
        evaluation: number;
        server: number;
        differing: number;
        dice: number;
        presenceScore: number | null;
      };
      const reported = JSON.parse(segmented.stdout) as { scores: number[] | null; slicesFound: number };
      console.log(`${model} ${basename(image)}: ${JSON.stringify(c)}`);
      expect(c.evaluation).toBeGreaterThan(1000); // a real structure was found
      expect(c.differing).toBe(0);
      expect(c.server).toBe(c.evaluation);
      // the server reports scores to 4 decimals
      expect(c.presenceScore).not.toBeNull();
      expect(reported.slicesFound).toBe(1);
      expect(Math.abs(reported.scores![0]! - c.presenceScore!)).toBeLessThanOrEqual(5e-5 + 1e-6);
    }
  }, 240_000); // two images, each imported, segmented and evaluated by three processes of their own
});

describe('shipped model ldfsam-hc18 on an image unlike its training data', () => {
  it('finds no head on a dermoscopy photograph wrapped as ultrasound, and says the image is unlike its training images', async () => {
    const image = join(SHARED_DATA, 'ph2', 'images', 'IMD002.jpg');
    const dicom = join(work, 'unlike', 'IMD002');
    const imported = await runCli(['import-images', '--modality', 'US', '--out', dicom, image]);
    expect(imported.code, imported.stderr).toBe(0);
    const out = join(work, 'unlike', 'IMD002.seg.dcm');
    const segmented = await runCli([
      'segment',
      '--json',
      '--model',
      projectPath('models', 'ldfsam-hc18'),
      '--input',
      dicom,
      '--output',
      out,
    ]);
    expect(segmented.code, segmented.stderr).toBe(0);
    const r = JSON.parse(segmented.stdout) as Record<string, unknown>;
    // beyond featureMax (the training distance): scored 0 whatever the logistic sum, counted, said
    expect(r).toMatchObject({ status: 'not-found', slicesFound: 0, scores: [0], slicesUnlikeTraining: 1 });
    expect(r.message).toMatch(
      /^No fetal head found: .*the slice is unlike every image the model was trained on\); nothing was stored\.$/,
    );
  }, 120_000);
});
