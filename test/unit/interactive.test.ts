/** The interactive API's pure parts: prompt checks and tensors, mask boxes, the embedding cache, propagation's bookkeeping, codes and colours. */
import { describe, expect, it } from 'vitest';
import { localCode } from '../../server/src/interactive/accept.js';
import { EmbeddingCache } from '../../server/src/interactive/embedding-cache.js';
import { checkPrompt, countBits, decoderFeeds, maskBox, promptTensors, widenBox } from '../../server/src/interactive/prompts.js';
import { propagate } from '../../server/src/interactive/propagate.js';
import type { InteractiveSession, PromptResult, SliceMask } from '../../server/src/interactive/session.js';
import type { ModelManifest } from '../../server/src/models/manifest.js';
import { packBits } from '../../server/src/seg/bits.js';
import { rgbToDicomLab } from '../../server/src/seg/colour.js';

const labels = { positive: 1, negative: 0, boxTopLeft: 2, boxBottomRight: 3, padding: -1 };
function manifest(fit: 'stretch' | 'longest-side-pad', padWhenNoBox = true): ModelManifest {
  return {
    name: 'm',
    version: '1',
    preprocessing: { inputSize: 256, fit },
    postprocessing: { output: 'mask_logits', threshold: 0 },
    promptable: {
      encoder: { file: 'e', inputs: [], outputs: [{ name: 'image_embeddings', dtype: 'float32', shape: ['batch', 8, 4, 4] }] },
      decoder: {
        file: 'd',
        inputs: ['image_embeddings', 'point_coords', 'point_labels', 'mask_input', 'has_mask_input'].map((name) => ({
          name,
          dtype: 'float32' as const,
          shape: [1],
        })),
        outputs: [],
      },
      prompts: { labels, maxPoints: 16, padWhenNoBox, multimaskForSinglePoint: false },
    },
  } as unknown as ModelManifest;
}

describe('prompts', () => {
  it('refuses empty, out-of-image and crowded prompts, and accepts the image edges', () => {
    const ok = (p: Parameters<typeof checkPrompt>[0]) => () => checkPrompt(p, 480, 640, 3);
    expect(ok({ box: [0, 0, 639, 479] })).not.toThrow();
    expect(ok({ points: [{ x: 639, y: 479, positive: true }] })).not.toThrow();
    for (const bad of [
      {},
      { points: [] },
      { box: [0, 0, 640, 479] as [number, number, number, number] },
      { box: [0, -0.5, 10, 10] as [number, number, number, number] },
      { box: [10, 10, 10, 20] as [number, number, number, number] },
      { box: [10, 20, 30, 20] as [number, number, number, number] },
      { box: [30, 10, 10, 20] as [number, number, number, number] },
      { points: [{ x: 1, y: 480, positive: true }] },
      { points: Array.from({ length: 4 }, () => ({ x: 1, y: 1, positive: true })) },
    ]) {
      expect(ok(bad), JSON.stringify(bad)).toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }));
    }
  });

  it('puts points first, then the box corners, scaled by fitted / native per axis', () => {
    // 480 x 640 with longest-side-pad at 256: fitted 192 rows x 256 columns, scale 0.4 on both axes.
    const t = promptTensors(
      {
        box: [100, 50, 300, 200],
        points: [
          { x: 10, y: 20, positive: true },
          { x: 30, y: 40, positive: false },
        ],
      },
      480,
      640,
      manifest('longest-side-pad'),
    );
    expect(t.point_coords.dims).toEqual([1, 4, 2]);
    expect([...t.point_coords.data].map((v) => +v.toFixed(4))).toEqual([4, 8, 12, 16, 40, 20, 120, 80]);
    expect([...t.point_labels.data]).toEqual([1, 0, 2, 3]);
    // Stretch: each axis to 256 on its own.
    const s = promptTensors({ box: [0, 0, 639, 479] }, 480, 640, manifest('stretch'));
    expect([...s.point_coords.data].map((v) => +v.toFixed(3))).toEqual([0, 0, 255.6, 255.467]);
  });

  it('pads a prompt without a box with one (0, 0) point labelled -1, when the model says so', () => {
    const t = promptTensors({ points: [{ x: 64, y: 64, positive: true }] }, 256, 256, manifest('stretch'));
    expect([...t.point_coords.data]).toEqual([64, 64, 0, 0]);
    expect([...t.point_labels.data]).toEqual([1, -1]);
    const n = promptTensors({ points: [{ x: 64, y: 64, positive: true }] }, 256, 256, manifest('stretch', false));
    expect([...n.point_labels.data]).toEqual([1]);
  });

  it('feeds every decoder input by name: the encoder outputs, the prompt, a previous mask or zeros', () => {
    const m = manifest('stretch');
    const embedding = { image_embeddings: { data: new Float32Array(128).fill(2), dims: [1, 8, 4, 4] } };
    const prompt = promptTensors({ box: [1, 1, 9, 9] }, 256, 256, m);
    const plain = decoderFeeds(m, embedding, prompt, undefined);
    expect(Object.keys(plain).sort()).toEqual([
      'has_mask_input',
      'image_embeddings',
      'mask_input',
      'point_coords',
      'point_labels',
    ]);
    expect([...plain.has_mask_input!.data]).toEqual([0]);
    expect(plain.mask_input!.dims).toEqual([1, 1, 256, 256]);
    // Zeros, in shared memory, the same array for every prompt (the inference worker keeps its copy).
    expect(plain.mask_input!.data.every((v) => v === 0)).toBe(true);
    expect(plain.mask_input!.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(decoderFeeds(m, embedding, prompt, undefined).mask_input!.data).toBe(plain.mask_input!.data);
    const previous = new Float32Array(256 * 256).fill(-3);
    const withMask = decoderFeeds(m, embedding, prompt, previous);
    expect([...withMask.has_mask_input!.data]).toEqual([1]);
    expect(withMask.mask_input!.data).toBe(previous);
    expect(() => decoderFeeds(m, {}, prompt, undefined)).toThrow(expect.objectContaining({ code: 'MODEL_REJECTED' }));
  });

  it('finds the box of a packed mask (rows not a multiple of 8 wide) and widens it within the image', () => {
    const rows = 7;
    const columns = 13;
    const mask = new Uint8Array(rows * columns);
    expect(maskBox(packBits(mask), rows, columns)).toBeUndefined();
    for (const [x, y] of [
      [3, 2],
      [9, 2],
      [12, 5],
      [4, 6],
    ])
      mask[y! * columns + x!] = 1;
    const bits = packBits(mask);
    expect(maskBox(bits, rows, columns)).toEqual([3, 2, 12, 6]);
    expect(countBits(bits)).toBe(4);
    expect(widenBox([3, 2, 12, 6], 0.1, rows, columns)).toEqual([2, 1.5, 12, 6]);
  });
});

describe('embedding cache', () => {
  const outputs = (bytes: number) => ({ e: { data: new Float32Array(bytes / 4), dims: [bytes / 4] } });

  it('keeps the most recently used entries within its byte limit and counts hits', async () => {
    const cache = new EmbeddingCache(1000);
    for (const key of ['a', 'b', 'c']) await cache.get(key, async () => outputs(400));
    // Two fit: 'a' went first.
    expect(cache.stats()).toMatchObject({ entries: 2, bytes: 800, hits: 0, misses: 3, evictions: 1 });
    expect(cache.has('a')).toBe(false);
    expect((await cache.get('b', async () => outputs(400))).hit).toBe(true);
    // 'b' was used last: 'c' goes when 'd' comes.
    await cache.get('d', async () => outputs(400));
    expect([cache.has('b'), cache.has('c'), cache.has('d')]).toEqual([true, false, true]);
    // Larger than the whole cache: computed, used, not kept.
    expect((await cache.get('huge', async () => outputs(2000))).hit).toBe(false);
    expect(cache.stats()).toMatchObject({ entries: 2, bytes: 800 });
  });

  it('computes a key once however many ask at the same time, and forgets a failure', async () => {
    const cache = new EmbeddingCache(10_000);
    let runs = 0;
    const slow = () =>
      new Promise<ReturnType<typeof outputs>>((resolve) => {
        runs++;
        setTimeout(() => resolve(outputs(40)), 20);
      });
    const answers = await Promise.all([cache.get('k', slow), cache.get('k', slow), cache.get('k', slow)]);
    expect(runs).toBe(1);
    expect(answers.map((a) => a.hit)).toEqual([false, true, true]);
    await expect(cache.get('bad', async () => Promise.reject(new Error('encoder failed')))).rejects.toThrow('encoder failed');
    expect((await cache.get('bad', async () => outputs(40))).hit).toBe(false);
  });

  it("ends only the cancelled caller's wait: the shared computation answers the others and is kept", async () => {
    const cache = new EmbeddingCache(10_000);
    let finish!: (o: ReturnType<typeof outputs>) => void;
    const slow = () => new Promise<ReturnType<typeof outputs>>((resolve) => (finish = resolve));
    const first = new AbortController();
    const cancelled = cache.get('k', slow, first.signal);
    const other = cache.get('k', slow, new AbortController().signal);
    first.abort();
    await expect(cancelled).rejects.toMatchObject({ code: 'CANCELLED' });
    finish(outputs(40));
    expect((await other).outputs.e!.data.length).toBe(10);
    expect(cache.has('k')).toBe(true);
    // A caller whose signal has already aborted does not wait at all.
    const gone = new AbortController();
    gone.abort();
    await expect(cache.get('late', () => new Promise(() => undefined), gone.signal)).rejects.toMatchObject({ code: 'CANCELLED' });
  });

  it('gives up a computation once every caller has gone: dropped if not started, else its result serves the next caller', async () => {
    const cache = new EmbeddingCache(10_000);
    // Like the PACS fetch + worker encode: a give-up before the start rejects (dropped), after it runs on.
    const runs: { signal: AbortSignal; started: boolean; finish: (o: ReturnType<typeof outputs>) => void }[] = [];
    const slow = (signal: AbortSignal) =>
      new Promise<ReturnType<typeof outputs>>((finish, fail) => {
        const run = { signal, started: false, finish };
        runs.push(run);
        signal.addEventListener('abort', () => !run.started && fail(new Error('dropped')));
      });
    const tick = () => new Promise((r) => setTimeout(r, 0));
    const [a, b] = [new AbortController(), new AbortController()];
    const first = cache.get('k', slow, a.signal);
    const second = cache.get('k', slow, b.signal);
    a.abort();
    await expect(first).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(runs[0]!.signal.aborted).toBe(false); // the second caller still waits
    b.abort();
    await expect(second).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(runs[0]!.signal.aborted).toBe(true);
    await tick();
    expect(cache.stats().dropped).toBe(1);
    // Dropped before it started: the next caller gets a new computation.
    const third = cache.get('k', slow, new AbortController().signal);
    await tick();
    expect(runs).toHaveLength(2);
    runs[1]!.finish(outputs(40));
    expect((await third).hit).toBe(false);
    expect(cache.stats()).toMatchObject({ entries: 1, bytes: 40 });
    // Given up after it started: it runs on, and a caller meanwhile waits for it, not for a second pass.
    const leaving = new AbortController();
    const gone = cache.get('n', slow, leaving.signal);
    runs[2]!.started = true;
    leaving.abort();
    await expect(gone).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(runs[2]!.signal.aborted).toBe(true);
    const back = cache.get('n', slow, new AbortController().signal);
    await tick();
    expect(runs).toHaveLength(3);
    runs[2]!.finish(outputs(40));
    expect((await back).outputs.e!.data.length).toBe(10);
    expect(cache.stats()).toMatchObject({ entries: 2, bytes: 80, dropped: 1 }); // kept once
    // A caller without a signal never goes: its computation is not given up whoever else leaves.
    const other = new AbortController();
    const keeps = cache.get('m', slow);
    const leaves = cache.get('m', slow, other.signal);
    other.abort();
    await expect(leaves).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(runs[3]!.signal.aborted).toBe(false);
    runs[3]!.finish(outputs(40));
    expect((await keeps).hit).toBe(false);
  });
});

describe('propagation', () => {
  /** A session over 4 slices of 8 x 8 whose prompts answer `answer(slice)`, storing it as the session does. */
  function fakeSession(answer: (slice: number, s: { masks: Map<number, SliceMask> }) => Uint8Array) {
    const s = {
      plan: { slices: [0, 1, 2, 3], rows: 8, columns: 8 },
      masks: new Map<number, SliceMask>(),
      checkSlice: () => undefined,
      previousLogits: () => undefined,
      embed: async () => ({ outputs: {}, hit: true }),
      restore(index: number, state: { mask?: SliceMask }) {
        if (state.mask) s.masks.set(index, state.mask);
        else s.masks.delete(index);
      },
      async prompt(slice: number): Promise<PromptResult> {
        const bits = answer(slice, s);
        return { slice, bits, iou: 1, cached: true, usedPreviousMask: false, logits: new Float32Array(1), timingsMs: {} };
      },
    };
    return s;
  }
  const square = packBits(new Uint8Array(64).map((_, i) => (i % 8 > 1 && i % 8 < 6 && i > 16 && i < 48 ? 1 : 0)));
  const run = async (s: ReturnType<typeof fakeSession>) => {
    const events = [];
    const options = { fromSlice: 0, direction: 'up' as const, minIou: 0, useMask: false, maxSlices: 10 };
    for await (const e of propagate(s as unknown as InteractiveSession, { ...options, signal: new AbortController().signal }))
      events.push(e);
    return events;
  };

  it("gives a refused slice back its mask, but keeps a user's prompt answered meanwhile", async () => {
    const before = { bits: packBits(new Uint8Array(64).fill(1)), iou: 0.5 };
    // Slice 1 answers empty (the structure ends): the propagation's answer was stored, and goes.
    const refused = fakeSession((slice, s) => {
      const bits = new Uint8Array(8);
      s.masks.set(slice, { bits, iou: 1 });
      return bits;
    });
    refused.masks.set(0, { bits: square, iou: 1 });
    refused.masks.set(1, before);
    expect((await run(refused)).at(-1)).toMatchObject({ type: 'stopped', reason: 'empty', atSlice: 1 });
    expect(refused.masks.get(1)).toBe(before);
    // The user prompted slice 1 while the propagation's prompt ran: the user's (newer) answer is the one kept.
    const user = { bits: square, iou: 0.9 };
    const raced = fakeSession((slice, s) => {
      s.masks.set(slice, user);
      return new Uint8Array(8);
    });
    raced.masks.set(0, { bits: square, iou: 1 });
    raced.masks.set(1, before);
    expect((await run(raced)).at(-1)).toMatchObject({ type: 'stopped', reason: 'empty', atSlice: 1 });
    expect(raced.masks.get(1)).toBe(user);
  });
});

describe('codes and colours', () => {
  it('gives a free-text label a stable local code', () => {
    expect(localCode('Left  kidney ').code).toBe(localCode('left kidney').code);
    expect(localCode('Left kidney')).toMatchObject({ scheme: '99LDFSAM', meaning: 'Left kidney' });
    expect(localCode('Left kidney').code).toMatch(/^L[0-9A-F]{10}$/);
    expect(localCode('Right kidney').code).not.toBe(localCode('Left kidney').code);
  });

  it('converts sRGB to DICOM CIELab as the model exporter does', () => {
    // The values models/ldfsam_models/manifest.py wrote into the shipped and fixture manifests.
    expect(rgbToDicomLab([230, 159, 0])).toEqual([46275, 37131, 52088]);
    expect(rgbToDicomLab([0, 158, 115])).toEqual([37841, 21140, 36175]);
  });
});
