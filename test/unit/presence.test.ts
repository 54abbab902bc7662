/** The presence gate's pure parts: the score, the manifest checks, the words, the SEG's record of the scores. */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { planSeries } from '../../server/src/dicom/series-plan.js';
import { readPart10Header } from '../../server/src/dicom/part10.js';
import type { DicomJson } from '../../server/src/dicomweb/types.js';
import { readManifest, type ModelManifest, type PresenceSpec } from '../../server/src/models/manifest.js';
import { beyondTraining, outcomeMessage, presenceScores, roundScore, scoreRange } from '../../server/src/pipeline/presence.js';
import { packBits } from '../../server/src/seg/bits.js';
import { buildSegmentation } from '../../server/src/seg/writer.js';
import { projectPath } from '../../server/src/util/paths.js';

const spec: PresenceSpec = {
  output: 'presence_features',
  features: ['detectorScore', 'predictedIou', 'maskArea', 'maskConfidence'],
  weights: [2, 3, -1, 0.5],
  bias: -2.5,
  threshold: 0.5,
};

describe('presence score', () => {
  it('is sigmoid(bias + weights . features) per row of a (batch, features) output', () => {
    const rows = [
      [0.9, 0.8, 0.3, 0.7],
      [0.1, 0.2, 0.0, 0.0],
    ];
    const scores = presenceScores(spec, { data: Float32Array.from(rows.flat()), dims: [2, 4] }, 2);
    rows.forEach((row, b) => {
      const z = spec.bias + row.reduce((sum, v, i) => sum + spec.weights[i]! * Math.fround(v), 0);
      expect(scores[b]).toBeCloseTo(1 / (1 + Math.exp(-z)), 12);
    });
    expect(scores[0]).toBeGreaterThan(0.5);
    expect(scores[1]).toBeLessThan(0.5);
    expect(roundScore(0.123456)).toBe(0.1235);
  });

  it('scores 0 a row with a feature above its featureMax (or NaN there), whatever the sum', () => {
    const limited: PresenceSpec = { ...spec, featureMax: { maskArea: 0.5 } };
    const rows = [
      [0.9, 0.8, 0.3, 0.7], // within: scored as without the limit
      [0.9, 0.8, 0.6, 0.7], // area above 0.5: gated
      [0.9, 0.8, Number.NaN, 0.7],
    ];
    const scores = presenceScores(limited, { data: Float32Array.from(rows.flat()), dims: [3, 4] }, 3);
    expect(scores[0]).toBe(presenceScores(spec, { data: Float32Array.from(rows[0]!), dims: [1, 4] }, 1)[0]);
    expect(scores[0]).toBeGreaterThan(0.5);
    expect(scores.slice(1)).toEqual([0, 0]);
    expect(beyondTraining(limited, { data: Float32Array.from(rows.flat()), dims: [3, 4] }, 3)).toEqual([false, true, true]);
    expect(beyondTraining(spec, { data: Float32Array.from(rows.flat()), dims: [3, 4] }, 3)).toEqual([false, false, false]);
  });

  it('refuses an output of the wrong shape (INFERENCE_FAILED)', () => {
    expect(() => presenceScores(spec, { data: new Float32Array(6), dims: [2, 3] }, 2)).toThrow(/\[2, 3\], expected \[2, 4\]/);
    expect(() => presenceScores(spec, { data: new Float32Array(4), dims: [1, 4] }, 2)).toThrow(/expected \[2, 4\]/);
  });
});

describe('the manifest presence block', () => {
  const fixture = projectPath('test', 'fixtures', 'model-presence');

  it('the fixture loads; a block whose output or weights do not fit the graph is refused', async () => {
    const manifest = await readManifest(fixture);
    expect(manifest.postprocessing.presence).toMatchObject({ output: 'presence_features', threshold: 0.5 });
    const dir = await mkdtemp(join(tmpdir(), 'ldfsam-presence-'));
    try {
      await cp(fixture, dir, { recursive: true });
      const broken = async (change: (m: ModelManifest) => void) => {
        const m = JSON.parse(await readFile(join(fixture, 'model.json'), 'utf8')) as ModelManifest;
        change(m);
        await writeFile(join(dir, 'model.json'), JSON.stringify(m));
        return readManifest(dir);
      };
      await expect(broken((m) => (m.postprocessing.presence!.weights = [1, 2, 3]))).rejects.toThrow(
        /presence has 4 feature\(s\) but 3 weight\(s\)/,
      );
      await expect(broken((m) => (m.postprocessing.presence!.output = 'iou'))).rejects.toThrow(
        /presence reads iou as \(batch, 4\), but the model has \[batch, 1\]/,
      );
      await expect(broken((m) => (m.postprocessing.presence!.output = 'nothing'))).rejects.toThrow(/no such output/);
      await expect(broken((m) => (m.postprocessing.presence!.threshold = 1.5))).rejects.toThrow(/model.json is invalid/);
      await expect(broken((m) => (m.postprocessing.presence!.featureMax = { elsewhere: 1 }))).rejects.toThrow(
        /featureMax names elsewhere, which is not one of its features/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the outcome in words', () => {
  const head = { segments: [{ label: 'Fetal head' }] } as Pick<ModelManifest, 'segments'>;
  const base = { slices: 5, scores: [0.1, 0.92, 0.81, 0.05, 0.2], threshold: 0.5, storedEmpty: false };

  it('found: on how many slices, the scores of those slices, the threshold', () => {
    expect(outcomeMessage(head, { ...base, slicesFound: 2, foundScores: [0.92, 0.81] })).toBe(
      'Fetal head found on 2 of 5 slices (presence score 0.81–0.92, threshold 0.50).',
    );
    expect(scoreRange([0.5])).toBe('0.50');
  });

  it('nothing found: says so plainly, with the highest score, and what was stored', () => {
    const none = { ...base, scores: [0.1, 0.3, 0.05, 0.2, 0.01], slicesFound: 0, foundScores: [] };
    expect(outcomeMessage(head, none)).toBe(
      'No fetal head found: none of the 5 slices reached the presence threshold 0.50 (highest score 0.30); nothing was stored.',
    );
    expect(outcomeMessage(head, { ...none, slices: 1, scores: [0.3], storedEmpty: true })).toBe(
      'No fetal head found: the slice did not reach the presence threshold 0.50 (highest score 0.30); an empty segmentation was stored as asked.',
    );
    // A model without a gate that segmented nothing.
    expect(outcomeMessage({ segments: [{ label: 'CT lesion' }] } as never, { ...none, scores: null, threshold: null })).toBe(
      'No CT lesion found: the model segmented nothing on any of the 5 slices; nothing was stored.',
    );
    // Slices beyond the gate's featureMax: said why their scores are 0.
    const zeros = { ...none, scores: [0, 0, 0, 0, 0.2] };
    expect(outcomeMessage(head, { ...zeros, unlikeTraining: 4 })).toBe(
      'No fetal head found: none of the 5 slices reached the presence threshold 0.50 (highest score 0.20; 4 of the 5 slices are unlike every image the model was trained on); nothing was stored.',
    );
    expect(outcomeMessage(head, { ...zeros, scores: [0, 0, 0, 0, 0], unlikeTraining: 5 })).toMatch(
      /\(highest score 0\.00; all 5 slices are unlike every image/,
    );
    expect(outcomeMessage(head, { ...none, slices: 1, scores: [0], unlikeTraining: 1 })).toMatch(
      /\(highest score 0\.00; the slice is unlike every image the model was trained on\); nothing was stored\.$/,
    );
    expect(outcomeMessage(head, { ...base, scores: null, threshold: null, slicesFound: 5, foundScores: [] })).toBe(
      'Fetal head found on 5 of 5 slices.',
    );
  });
});

describe('the SEG keeps each frame score', () => {
  it('in Frame Comments per frame and in the Segment Description', () => {
    const v = (vr: string, ...values: unknown[]) => ({ vr, Value: values });
    const instances: DicomJson[] = [1, 2, 3].map((n) => ({
      '00080016': v('UI', '1.2.840.10008.5.1.4.1.1.6.1'),
      '00080018': v('UI', `1.2.3.${n}`),
      '00080060': v('CS', 'US'),
      '0020000D': v('UI', '1.2.3'),
      '0020000E': v('UI', '1.2.3.4'),
      '00200013': v('IS', n),
      '00280010': v('US', 2),
      '00280011': v('US', 4),
      '00280100': v('US', 8),
      '00280004': v('CS', 'MONOCHROME2'),
    }));
    const plan = planSeries(instances);
    const model = {
      name: 'gated',
      version: '1.0.0',
      segments: [
        {
          number: 1,
          label: 'Fetal head',
          category: { scheme: 'SCT', code: '91723000', meaning: 'Anatomical Structure' },
          type: { scheme: 'SCT', code: '69536005', meaning: 'Head' },
          color: { rgb: [1, 2, 3], cielab: [1, 2, 3] },
        },
      ],
    } as unknown as Pick<ModelManifest, 'name' | 'version' | 'segments'>;
    const bits = packBits(Uint8Array.from([0, 1, 1, 0, 0, 1, 1, 0]));
    const seg = buildSegmentation({
      plan,
      sourceInstance: instances[0]!,
      frames: [
        { sliceIndex: 2, segmentNumber: 1, bits, score: 0.61234 },
        { sliceIndex: 0, segmentNumber: 1, bits, score: 0.98765 },
      ],
      model,
      softwareVersion: '0.0.0',
      presenceThreshold: 0.5,
    });
    const ds = readPart10Header(seg.bytes).dataset as {
      PerFrameFunctionalGroupsSequence: { FrameContentSequence: { FrameComments?: string }[] }[];
      SegmentSequence: { SegmentDescription?: string }[];
    };
    expect(ds.PerFrameFunctionalGroupsSequence.map((f) => f.FrameContentSequence[0]!.FrameComments)).toEqual([
      'LDFSAM presence score 0.9877 (threshold 0.5000)',
      'LDFSAM presence score 0.6123 (threshold 0.5000)',
    ]);
    expect(ds.SegmentSequence[0]!.SegmentDescription).toBe(
      'LDFSAM presence: found on 2 of 3 slices, score 0.61-0.99 (threshold 0.50)',
    );
  });
});
