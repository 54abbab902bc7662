/** The interactive section's pure state functions (extension/src/interactive-state.ts). */
import { describe, expect, it } from 'vitest';
import type { ModelInfo } from '../../extension/src/api-client.js';
import {
  acceptSlices,
  chosenLabel,
  clicksNeedBox,
  decodeBits,
  encodeBits,
  initialInteractive,
  maskedSlices,
  nextPrompt,
  paintMask,
  promptableModels,
  rgbaWord,
  setMask,
  sliceOf,
  sliceToEncodeAhead,
  aheadUnwanted,
  undo,
  withPrompt,
  type InteractiveState,
} from '../../extension/src/interactive-state.js';

const model = (
  name: string,
  modalities: string[],
  modes: ModelInfo['modes'],
  metrics: ModelInfo['metrics'] = undefined,
): ModelInfo => ({
  name,
  version: '1',
  description: '',
  modes,
  modalities,
  segments: [],
  metrics,
});

describe('interactive state', () => {
  it('lists promptable models for a modality, those made for it before catch-alls', () => {
    const models = [
      model('generic', ['*'], ['promptable']),
      model('auto-only', ['US'], ['auto']),
      model('us-both', ['US'], ['auto', 'promptable']),
      model('ct', ['CT'], ['promptable']),
    ];
    expect(promptableModels(models, 'US').map((m) => m.name)).toEqual(['us-both', 'generic']);
    expect(promptableModels(models, 'MR').map((m) => m.name)).toEqual(['generic']);
  });

  it("reads from a model's prompted metrics whether clicks alone segment", () => {
    const lite = model('medsam-lite', ['*'], ['promptable'], {
      prompted: [
        { dataset: 'hc18', prompt: "the reference's bounding box + 5% of its size per side", dice: { mean: 0.96 } },
        { dataset: 'hc18', prompt: "one positive point at the reference's centroid", dice: { mean: 0.02 } },
      ],
    });
    const clicks = model('clicks', ['*'], ['promptable'], { prompted: [{ prompt: 'one positive point', dice: 0.9 }] });
    expect(clicksNeedBox(lite)).toBe(true);
    expect(clicksNeedBox(clicks)).toBe(false);
    expect(clicksNeedBox(model('none', ['*'], ['promptable']))).toBeUndefined();
  });

  it('the box tool replaces a slice prompt, the point tool adds to it', () => {
    const a = nextPrompt(undefined, { box: [1, 2, 30, 40] });
    const b = nextPrompt(a, { point: { x: 5, y: 6, positive: false } });
    expect(b).toEqual({ box: [1, 2, 30, 40], points: [{ x: 5, y: 6, positive: false }] });
    expect(nextPrompt(b, { box: [3, 3, 9, 9] })).toEqual({ box: [3, 3, 9, 9], points: [] });
  });

  it('undo restores the slice as it was; a restored mask is marked dirty (the server holds another)', () => {
    const m1 = { bits: Uint8Array.of(1), iou: 0.9, dirty: false };
    const m2 = { bits: Uint8Array.of(3), iou: 0.8, dirty: false };
    let s = withPrompt(initialInteractive, 2, { box: [0, 0, 5, 5], points: [] });
    s = setMask(s, 2, m1);
    s = withPrompt(s, 2, { box: [0, 0, 5, 5], points: [{ x: 1, y: 1, positive: true }] });
    s = setMask(s, 2, m2);
    s = undo(s);
    expect(s.prompts[2]).toEqual({ box: [0, 0, 5, 5], points: [] });
    expect(s.masks[2]).toEqual({ ...m1, dirty: true });
    s = undo(s);
    expect(s.prompts[2]).toBeUndefined();
    expect(s.masks[2]).toBeUndefined();
    expect(undo(s)).toBe(s);
  });

  it('accept sends every non-empty mask, with its bits only when the server does not hold it', () => {
    let s = setMask(initialInteractive, 5, { bits: Uint8Array.of(0, 4), iou: 1, dirty: false });
    s = setMask(s, 3, { bits: Uint8Array.of(255, 1), iou: 1, dirty: true });
    s = setMask(s, 7, { bits: Uint8Array.of(0, 0), iou: 1, dirty: true });
    expect(acceptSlices(s)).toEqual([{ slice: 3, bits: encodeBits(Uint8Array.of(255, 1)) }, { slice: 5 }]);
    expect(maskedSlices(s)).toEqual([3, 5]);
  });

  it('base64 bits round-trip, also past the chunk size', () => {
    const bits = new Uint8Array(100_000).map((_, i) => (i * 31) & 255);
    expect(decodeBits(encodeBits(bits))).toEqual(bits);
  });

  it('names the structure from the list (SNOMED CT) or free text', () => {
    expect(chosenLabel({ ...initialInteractive, label: { key: 'liver', text: '' } })).toMatchObject({
      label: 'Liver',
      type: { scheme: 'SCT', code: '10200004', meaning: 'Liver' },
      category: { scheme: 'SCT', code: '91723000' },
    });
    expect(chosenLabel({ ...initialInteractive, label: { key: 'free', text: '  Left adrenal ' } })).toEqual({
      label: 'Left adrenal',
    });
    expect(chosenLabel({ ...initialInteractive, label: { key: 'free', text: ' ' } })).toBeUndefined();
  });

  it("maps an image to the session's planned slice by SOP instance and frame", () => {
    const session = {
      slices: [
        { sopInstanceUID: '1.2', frameNumber: 2 },
        { sopInstanceUID: '1.2', frameNumber: 1 },
      ],
    } as never;
    expect(sliceOf(session, '1.2', 1)).toBe(1);
    expect(sliceOf(session, '1.3', 1)).toBeUndefined();
  });
});

describe('the preview overlay', () => {
  it('paints a packed mask pixel by pixel: the colour where a bit is set, transparent elsewhere', () => {
    // 5 x 7 = 35 pixels: the last byte is partly padding; its padding bits must not be painted.
    const pixels = 35;
    const bits = Uint8Array.of(0b1000_0001, 0, 0b0101_0000, 0xff, 0xff);
    const on = rgbaWord(10, 20, 30, 120);
    const out = new Uint32Array(pixels + 4).fill(7); // stale words from a previous mask, and words past the image
    paintMask(bits, pixels, on, out);
    const expected = Array.from({ length: pixels }, (_, i) => ((bits[i >> 3]! >> (i & 7)) & 1 ? on : 0));
    expect([...out.subarray(0, pixels)]).toEqual(expected);
    expect([...out.subarray(pixels)]).toEqual([7, 7, 7, 7]);
    expect(expected.filter((w) => w === on)).toHaveLength(2 + 2 + 8 + 3);
    // The word is the RGBA bytes in memory order, as ImageData holds them.
    expect([...new Uint8ClampedArray(Uint32Array.of(on).buffer)]).toEqual([10, 20, 30, 120]);
  });

  it('paints the same pixels as a per-pixel reading of the bits on a large random mask', () => {
    const rows = 97;
    const columns = 131;
    let seed = 1;
    const bits = new Uint8Array(Math.ceil((rows * columns) / 8)).map(() => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % 3 === 0 ? 0 : seed >>> 24;
    });
    const out = new Uint32Array(rows * columns);
    paintMask(bits, rows * columns, 0xdeadbeef, out);
    for (let i = 0; i < rows * columns; i++) expect(out[i]).toBe((bits[i >> 3]! >> (i & 7)) & 1 ? 0xdeadbeef : 0);
  });
});

describe('encoding ahead of the first click', () => {
  const session = { sessionId: 's' } as unknown as NonNullable<InteractiveState['session']>;
  const on = { ...initialInteractive, session, tool: 'box' as const, slice: 7 };

  it('asks for the slice shown while a tool is on and a session is open', () => {
    expect(sliceToEncodeAhead(on, new Set())).toBe(7);
    expect(sliceToEncodeAhead({ ...on, slice: 0 }, new Set([7]))).toBe(0);
  });

  it('asks for nothing without a tool, a session or a slice of the series, during a propagation, or when already known', () => {
    expect(sliceToEncodeAhead({ ...on, tool: 'none' }, new Set())).toBeUndefined();
    expect(sliceToEncodeAhead({ ...on, session: undefined }, new Set())).toBeUndefined();
    expect(sliceToEncodeAhead({ ...on, slice: undefined }, new Set())).toBeUndefined();
    expect(sliceToEncodeAhead({ ...on, busy: 'propagate' }, new Set())).toBeUndefined();
    expect(sliceToEncodeAhead({ ...on, busy: 'prompt' }, new Set())).toBe(7);
    expect(sliceToEncodeAhead(on, new Set([7]))).toBeUndefined();
    expect(sliceToEncodeAhead(on, new Set(), new Set([7]))).toBeUndefined();
  });

  it('gives up an encode asked ahead once the user has moved to another slice, put the tools away or lost the session', () => {
    expect(aheadUnwanted(on, 7)).toBe(false);
    expect(aheadUnwanted({ ...on, busy: 'prompt' }, 7)).toBe(false); // a click there waits on the same encode
    expect(aheadUnwanted({ ...on, slice: 8 }, 7)).toBe(true);
    expect(aheadUnwanted({ ...on, slice: undefined }, 7)).toBe(true);
    expect(aheadUnwanted({ ...on, tool: 'none' }, 7)).toBe(true);
    expect(aheadUnwanted({ ...on, session: undefined }, 7)).toBe(true);
  });
});
