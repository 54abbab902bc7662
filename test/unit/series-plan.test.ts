import { describe, expect, it } from 'vitest';
import type { DicomJson } from '../../server/src/dicomweb/types.js';
import { planSeries } from '../../server/src/dicom/series-plan.js';
import { LdfsamError } from '../../server/src/errors.js';

/** A minimal DICOM JSON instance; `extra` overrides or adds tags (undefined removes one). */
function instance(n: number, extra: Record<string, unknown[] | undefined> = {}): DicomJson {
  const tags: Record<string, [string, unknown[] | undefined]> = {
    '00080016': ['UI', ['1.2.840.10008.5.1.4.1.1.2']],
    '00080018': ['UI', [`1.2.3.${n}`]],
    '00080060': ['CS', ['CT']],
    '0020000D': ['UI', ['1.2.3']],
    '0020000E': ['UI', ['1.2.3.4']],
    '00200013': ['IS', [n]],
    '00200032': ['DS', [0, 0, n * 2.5]],
    '00200037': ['DS', [1, 0, 0, 0, 1, 0]],
    '00200052': ['UI', ['1.2.3.9']],
    '00280010': ['US', [4]],
    '00280011': ['US', [4]],
    '00280030': ['DS', [0.5, 0.5]],
    '00280100': ['US', [16]],
    '00280101': ['US', [12]],
    '00280102': ['US', [11]],
    '00280103': ['US', [0]],
    '00280004': ['CS', ['MONOCHROME2']],
  };
  const ds: DicomJson = {};
  for (const [tag, [vr, value]] of Object.entries(tags)) ds[tag] = { vr, Value: value! };
  for (const [tag, value] of Object.entries(extra)) {
    if (value === undefined) delete ds[tag];
    else ds[tag] = { vr: ds[tag]?.vr ?? 'SQ', Value: value };
  }
  return ds;
}

function refused(fn: () => unknown): LdfsamError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(LdfsamError);
    return err as LdfsamError;
  }
  throw new Error('expected a refusal');
}

describe('slice order', () => {
  it('sorts by position along the normal, not by instance number or list order', () => {
    const list = [instance(3, { '00200013': [1] }), instance(1, { '00200013': [3] }), instance(2, { '00200013': [2] })];
    const plan = planSeries(list);
    expect(plan.slices.map((s) => s.sopInstanceUID)).toEqual(['1.2.3.1', '1.2.3.2', '1.2.3.3']);
    expect(plan.spacing).toMatchObject({ meanSpacing: 2.5, evenlySpaced: true });
  });

  it('sorts feet-first/reversed normals by projection (descending z for a flipped orientation)', () => {
    const flipped = [1, 0, 0, 0, -1, 0]; // normal (0,0,-1)
    const plan = planSeries([1, 2, 3].map((n) => instance(n, { '00200037': flipped })));
    expect(plan.slices.map((s) => s.position![2])).toEqual([7.5, 5, 2.5]);
  });

  it('keeps uneven gaps and says so', () => {
    const plan = planSeries([instance(1), instance(2), instance(4)]);
    expect(plan.spacing.evenlySpaced).toBe(false);
    expect(plan.slices.map((s) => s.position![2])).toEqual([2.5, 5, 10]);
  });

  it('orders 2D images without geometry by instance number, then frame', () => {
    const us = (n: number, frames: number) =>
      instance(n, {
        '00080060': ['US'],
        '00200032': undefined,
        '00200037': undefined,
        '00280008': [frames],
        '00200013': [10 - n],
      });
    const plan = planSeries([us(1, 2), us(2, 1)]);
    expect(plan.orderedBy).toBe('instanceNumber');
    expect(plan.slices.map((s) => [s.sopInstanceUID, s.frameNumber])).toEqual([
      ['1.2.3.2', 1],
      ['1.2.3.1', 1],
      ['1.2.3.1', 2],
    ]);
  });
});

describe('enhanced multi-frame', () => {
  it('takes position per frame and orientation, spacing, rescale from the functional groups', () => {
    const z = [10, 0, 5];
    const perFrame = z.map((v, i) => ({
      '00209113': { vr: 'SQ', Value: [{ '00200032': { vr: 'DS', Value: [0, 0, v] } }] },
      '00289145': { vr: 'SQ', Value: [{ '00281053': { vr: 'DS', Value: [i + 1] }, '00281052': { vr: 'DS', Value: [-1000] } }] },
    }));
    const shared = {
      '00209116': { vr: 'SQ', Value: [{ '00200037': { vr: 'DS', Value: [1, 0, 0, 0, 1, 0] } }] },
      '00289110': { vr: 'SQ', Value: [{ '00280030': { vr: 'DS', Value: [0.7, 0.8] } }] },
    };
    const ds = instance(1, {
      '00080016': ['1.2.840.10008.5.1.4.1.1.2.1'],
      '00200032': undefined,
      '00200037': undefined,
      '00280030': undefined,
      '00280008': [3],
      '52009230': perFrame,
      '52009229': [shared],
    });
    const plan = planSeries([ds]);
    expect(plan.slices.map((s) => s.frameNumber)).toEqual([2, 3, 1]);
    expect(plan.slices.map((s) => s.rescaleSlope)).toEqual([2, 3, 1]);
    expect(plan.slices.every((s) => s.rescaleIntercept === -1000)).toBe(true);
    expect(plan.pixelSpacing).toEqual([0.7, 0.8]);
    expect(plan.orientation).toEqual([1, 0, 0, 0, 1, 0]);
  });

  it('refuses per-frame groups that do not match the number of frames', () => {
    const ds = instance(1, { '00280008': [3], '52009230': [{}, {}] });
    expect(refused(() => planSeries([ds])).message).toMatch(/2 per-frame functional groups for 3 frames/);
  });
});

describe('refusals', () => {
  it('a Number of Frames that is not a number (it is not taken as 1: a 2-frame file lost a frame so; fuzzer finding)', () => {
    for (const frames of [['many'], [null], [], ['-1'], ['2.5'], ['']]) {
      const ds = instance(1, { '00080060': ['US'], '00200032': undefined, '00200037': undefined, '00280008': frames });
      expect(refused(() => planSeries([ds])).message, JSON.stringify(frames)).toMatch(/Number of Frames .* is not valid/);
    }
  });

  it('two slices at the same position', () => {
    const e = refused(() => planSeries([instance(1), instance(2, { '00200032': [0, 0, 2.5] })]));
    expect(e.code).toBe('UNSUPPORTED_DICOM');
    expect(e.message).toMatch(/two slices at the same position/);
  });

  it('some slices with geometry and some without', () => {
    expect(refused(() => planSeries([instance(1), instance(2, { '00200032': undefined })])).message).toMatch(
      /1 of 2 slices lack/,
    );
  });

  it('an orientation that is not two orthogonal unit vectors', () => {
    expect(refused(() => planSeries([instance(1, { '00200037': [1, 0, 0, 1, 0, 0] })])).message).toMatch(/lack a valid/);
  });

  it('absurd sizes, before any pixel is fetched', () => {
    const e = refused(() => planSeries([instance(1, { '00280010': [65535], '00280011': [65535] })]));
    expect(e.message).toMatch(/65535 x 65535 x 1 samples exceeds the limit/);
  });

  it('missing Rows, or Bits Allocated that no decoder handles', () => {
    expect(refused(() => planSeries([instance(1, { '00280100': undefined })])).message).toMatch(
      /lacks Bits Allocated \(0028,0100\)/,
    );
    expect(refused(() => planSeries([instance(1, { '00280100': [12] })])).message).toMatch(/Bits Allocated 12 is not supported/);
    expect(refused(() => planSeries([instance(1, { '00280101': [20] })])).message).toMatch(/Bits Stored 20 does not fit/);
  });

  it('colour that contradicts its samples per pixel', () => {
    expect(refused(() => planSeries([instance(1, { '00280004': ['RGB'] })])).message).toMatch(/RGB with 1 sample/);
  });

  it('mixed pixel spacing', () => {
    expect(refused(() => planSeries([instance(1), instance(2, { '00280030': [0.6, 0.6] })])).message).toMatch(
      /mixes pixel spacings/,
    );
  });

  it('a Rescale Slope of 0', () => {
    expect(refused(() => planSeries([instance(1, { '00281053': [0] })])).message).toMatch(/Rescale Slope is 0/);
  });

  it('skips a SEG stored in the series but refuses a series of SEG only', () => {
    const seg = instance(9, { '00080016': ['1.2.840.10008.5.1.4.1.1.66.4'] });
    expect(planSeries([instance(1), seg]).skippedInstances).toEqual([
      { sopInstanceUID: '1.2.3.9', reason: 'Segmentation object' },
    ]);
    expect(refused(() => planSeries([seg])).message).toMatch(/holds no image instances \(Segmentation object\)/);
  });
});
