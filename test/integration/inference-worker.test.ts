/**
 * The inference worker's promptable path with the shipped medsam-lite: the encoder's outputs come
 * back in shared memory and a decode shares them with the worker thread instead of copying 4 MB per
 * click; the masks are bit for bit those of the same decode fed plain (copied) arrays, and of the
 * decoder run in this thread by onnxruntime-node directly.
 */
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { InferenceWorker, type Outputs } from '../../server/src/inference/inference-worker.js';
import type { WorkerRequest } from '../../server/src/inference/worker.js';
import { sessionOptions } from '../../server/src/models/session.js';
import { decoderFeeds, promptTensors, type Prompt } from '../../server/src/interactive/prompts.js';
import { projectPath } from '../../server/src/util/paths.js';
import { promptSlices } from '../../server/src/interactive/volume-prompts.js';

let worker: InferenceWorker;
const embeddings: Outputs[] = [];

/** A deterministic image in [0, 1) (a seeded LCG), 3 x 256 x 256. */
function image(seed: number): Float32Array {
  const data = new Float32Array(3 * 256 * 256);
  let s = seed;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    data[i] = s / 2 ** 32;
  }
  return data;
}

/** The same feeds in ordinary (not shared) memory: what postMessage copies, as before. */
function plainCopy(feeds: Outputs): Outputs {
  return Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, { data: Float32Array.from(t.data), dims: t.dims }]));
}

const prompt = (i: number): Prompt => ({ box: [40, 50, 170, 200], points: [{ x: 60 + 9 * i, y: 120, positive: i % 2 === 0 }] });

beforeAll(async () => {
  worker = await InferenceWorker.start(projectPath('models', 'medsam-lite'));
  for (const seed of [1, 2]) embeddings.push(await worker.encode(image(seed), [1, 3, 256, 256]));
}, 120_000);

afterAll(() => worker?.close());

describe('inference worker, promptable pair', () => {
  it("returns the encoder's outputs in shared memory, and posts them to a decode without a copy", async () => {
    const embedding = embeddings[0]!.image_embeddings!;
    expect(embedding.dims).toEqual([1, 256, 64, 64]);
    expect(embedding.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    const posted = vi.spyOn(Worker.prototype, 'postMessage');
    try {
      const m = worker.manifest;
      for (const i of [0, 1])
        await worker.decode(decoderFeeds(m, embeddings[0]!, promptTensors(prompt(i), 256, 256, m), undefined));
      const decodes = posted.mock.calls.map(([message]) => message as WorkerRequest).filter((r) => r.kind === 'decode');
      expect(decodes).toHaveLength(2);
      for (const r of decodes) {
        if (r.kind !== 'decode') continue;
        // The cached array itself, shared: postMessage gives the worker a view of the same memory.
        expect(r.feeds.image_embeddings!.data).toBe(embedding.data);
        expect(r.feeds.mask_input!.data.buffer).toBeInstanceOf(SharedArrayBuffer);
        expect(r.feeds.point_coords!.data.buffer).toBeInstanceOf(ArrayBuffer);
      }
      // Each shared array keeps its number: the worker copies a slice's embedding once, not per click.
      const numbers = decodes.map((r) => (r.kind === 'decode' ? r.feeds.image_embeddings!.shared : undefined));
      expect(numbers[0]).toBeTypeOf('number');
      expect(numbers[1]).toBe(numbers[0]);
    } finally {
      posted.mockRestore();
    }
  });

  it('gives bit for bit the masks of plain copies and of onnxruntime-node run directly, switching slices and mask inputs', async () => {
    const m = worker.manifest;
    // The reference: the decoder in this thread, plain arrays, the server's session options.
    const alone = await ort.InferenceSession.create(projectPath('models', 'medsam-lite', 'decoder.onnx'), sessionOptions());
    // Slice 0 twice, slice 1, slice 0 again, then slice 1 with a previous mask as input: the worker's
    // copy of the shared embedding must follow each switch.
    const steps: { slice: number; withMask: boolean }[] = [
      { slice: 0, withMask: false },
      { slice: 0, withMask: false },
      { slice: 1, withMask: false },
      { slice: 0, withMask: false },
      { slice: 1, withMask: true },
      { slice: 1, withMask: false },
    ];
    const [a, b] = embeddings.map((e) => Buffer.from(e.image_embeddings!.data.buffer));
    expect(a!.equals(b!)).toBe(false); // a stale embedding would show
    let previous: Float32Array | undefined;
    for (const [i, step] of steps.entries()) {
      const feeds = decoderFeeds(
        m,
        embeddings[step.slice]!,
        promptTensors(prompt(i), 256, 256, m),
        step.withMask ? previous : undefined,
      );
      const shared = (await worker.decode(feeds)).outputs;
      const plain = (await worker.decode(plainCopy(feeds))).outputs;
      const reference = await alone.run(
        Object.fromEntries(Object.entries(plainCopy(feeds)).map(([k, t]) => [k, new ort.Tensor('float32', t.data, t.dims)])),
      );
      expect(shared.mask_logits!.dims).toEqual([1, 1, 256, 256]);
      for (const other of [plain.mask_logits!.data, reference.mask_logits!.data as Float32Array])
        expect(Buffer.from(shared.mask_logits!.data.buffer).equals(Buffer.from(other.buffer))).toBe(true);
      expect([...shared.iou!.data]).toEqual([...plain.iou!.data]);
      expect([...shared.iou!.data]).toEqual([...(reference.iou!.data as Float32Array)]);
      previous = shared.mask_logits!.data;
    }
    await alone.release();
  });
});

describe('inference worker, dropping an encode nobody waits for', () => {
  it('drops the queued encode whose signal aborts during the run before it (CANCELLED); the running one answers', async () => {
    const [running, queued] = [new AbortController(), new AbortController()];
    // The worker is idle and warm (beforeAll): the first starts at once and runs for hundreds of ms.
    const first = worker.encode(image(5), [1, 3, 256, 256], running.signal);
    const second = worker.encode(image(6), [1, 3, 256, 256], queued.signal);
    await new Promise((r) => setTimeout(r, 100));
    running.abort(); // started: runs to its end
    queued.abort(); // next in line: dropped, though the run before it ends first
    expect((await first).image_embeddings!.dims).toEqual([1, 256, 64, 64]);
    await expect(second).rejects.toMatchObject({ code: 'CANCELLED', message: 'dropped before it ran' });
    // An encode whose signal had aborted before it was sent is not sent at all.
    await expect(worker.encode(image(7), [1, 3, 256, 256], queued.signal)).rejects.toMatchObject({ code: 'CANCELLED' });
    // The worker goes on serving.
    expect((await worker.encode(image(8), [1, 3, 256, 256])).image_embeddings!.dims).toEqual([1, 256, 64, 64]);
  }, 60_000);
});

describe('prompted volume slices (MONAI Label promptable inference)', () => {
  it("pass their caller's signal to the encode: a slice still queued when the caller goes is dropped, not run", async () => {
    const busy = worker.encode(image(9), [1, 3, 256, 256]); // another caller's encode holds the worker
    const abort = new AbortController();
    async function* oneSlice() {
      yield { index: 0, pixels: { kind: 'grey' as const, values: image(10).subarray(0, 256 * 256), invert: false } };
    }
    const asked = promptSlices(
      worker,
      worker.manifest,
      { rows: 256, columns: 256, modality: 'US' },
      oneSlice(),
      new Map([[0, { box: [40, 50, 170, 200] as [number, number, number, number], points: [] }]]),
      abort.signal,
    );
    await new Promise((r) => setTimeout(r, 50));
    abort.abort(); // the client of /infer has gone
    await expect(asked).rejects.toMatchObject({ code: 'CANCELLED', message: 'dropped before it ran' });
    expect((await busy).image_embeddings!.dims).toEqual([1, 256, 64, 64]);
  }, 60_000);
});

describe('inference worker, automatic batches', () => {
  it('hands each batch input back whole (a short batch is a view of it); a refilled input gives the outputs of a fresh one', async () => {
    const auto = await InferenceWorker.start(projectPath('models', 'ldfsam-hc18'));
    try {
      const plane = 3 * 256 * 256;
      expect(auto.takeInput(2 * plane)).toBeUndefined();
      const first = new Float32Array(2 * plane);
      first.set(image(3));
      // A short last batch: one slice, a view of a two-slice buffer; the buffer is transferred.
      await auto.run(first.subarray(0, plane), [1, 3, 256, 256]);
      expect(first.length).toBe(0);
      const back = auto.takeInput(2 * plane)!;
      expect(back.length).toBe(2 * plane);
      expect(auto.takeInput(2 * plane)).toBeUndefined();
      // Refilled with another slice (the old values under it): the same logits as a fresh buffer.
      back.set(image(4));
      const refilled = await auto.run(back.subarray(0, plane), [1, 3, 256, 256]);
      const fresh = await auto.run(image(4), [1, 3, 256, 256]);
      expect(Buffer.from(refilled.mask_logits!.data.buffer).equals(Buffer.from(fresh.mask_logits!.data.buffer))).toBe(true);
      expect(auto.takeInput(plane)!.length).toBe(plane); // the fresh one's, after the refilled one's
      expect(auto.takeInput(2 * plane)!.length).toBe(2 * plane);
    } finally {
      await auto.close();
    }
  }, 120_000);
});

describe('inference worker, closing', () => {
  it('ends by itself: the run in progress finishes, requests after it are refused, the thread is not terminated', async () => {
    const w = await InferenceWorker.start(projectPath('models', 'ldfsam-hc18'));
    const running = w.run(image(5), [1, 3, 256, 256]);
    const closing = w.close();
    // the batch asked for before the close still gets its logits
    expect((await running).mask_logits!.dims).toEqual([1, 1, 256, 256]);
    // 'closed': the thread released its sessions and ended on its own within the bound, no terminate()
    expect(await closing).toBe('closed');
    await expect(w.run(image(6), [1, 3, 256, 256])).rejects.toThrow(/the inference worker stopped \(exit code 0\)/);
    expect(await w.close()).toBe('closed');
  }, 120_000);
});
