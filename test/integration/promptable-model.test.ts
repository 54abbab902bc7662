/**
 * The promptable pair (encoder.onnx + decoder.onnx, model.json version 2) through onnxruntime-node,
 * what the server runs, against PyTorch; and the refusals: a pair whose encoder and decoder disagree,
 * a promptable-only model asked for its automatic graph.
 */
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LdfsamError } from '../../server/src/errors.js';
import { readManifest, type ModelManifest } from '../../server/src/models/manifest.js';
import { loadModel, openGraph } from '../../server/src/models/session.js';
import { projectPath } from '../../server/src/util/paths.js';
import { runPython } from '../setup/python.js';

let dir: string;
let folder: string;
let shapes: Record<string, number[]>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ldfsam-promptable-'));
  folder = join(dir, 'random-lite');
  await runPython('test/tools/export_promptable_reference.py', ['--out', folder]);
  shapes = JSON.parse(await readFile(join(folder, 'reference', 'shapes.json'), 'utf8')) as Record<string, number[]>;
}, 600_000);

afterAll(() => rm(dir, { recursive: true, force: true }));

async function tensor(name: string): Promise<ort.Tensor> {
  const buf = await readFile(join(folder, 'reference', `${name}.bin`));
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  return new ort.Tensor('float32', data, shapes[name]);
}

/** Largest |got - expected| over max(1, max |expected|): logits reach +-30, where float32 rounding differs by ~1e-4. */
async function relativeDiff(got: ort.Tensor, name: string): Promise<number> {
  const expected = (await tensor(name)).data as Float32Array;
  const data = got.data as Float32Array;
  expect(got.dims).toEqual(shapes[name]);
  let diff = 0;
  let scale = 1;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(data[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  return diff / scale;
}

async function rejection(p: Promise<unknown>): Promise<LdfsamError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(LdfsamError);
  expect((e as LdfsamError).code).toBe('MODEL_REJECTED');
  return e as LdfsamError;
}

describe('promptable export through onnxruntime-node', () => {
  it('the encoder gives PyTorch its embedding and feature tokens at batch 2', async () => {
    const manifest = await readManifest(folder);
    expect(manifest.modes).toEqual(['auto', 'promptable']);
    const encoder = await openGraph(folder, manifest.name, manifest.promptable!.encoder);
    const out = await encoder.run({ image: await tensor('image') });
    expect(await relativeDiff(out.image_embeddings!, 'image_embeddings')).toBeLessThan(1e-4);
    expect(await relativeDiff(out.feature_tokens!, 'feature_tokens')).toBeLessThan(1e-4);
  });

  it('the decoder answers a negative click + box + previous mask as PyTorch does', async () => {
    const manifest = await readManifest(folder);
    const decoder = await openGraph(folder, manifest.name, manifest.promptable!.decoder);
    const slice1 = async (name: string) => {
      const t = await tensor(name);
      const per = (t.data as Float32Array).length / t.dims[0]!;
      return new ort.Tensor('float32', (t.data as Float32Array).slice(per, 2 * per), [1, ...t.dims.slice(1)]);
    };
    const feeds: Record<string, ort.Tensor> = {
      image_embeddings: await slice1('image_embeddings'),
      feature_tokens: await slice1('feature_tokens'),
    };
    for (const name of ['point_coords', 'point_labels', 'mask_input', 'has_mask_input']) feeds[name] = await tensor(name);
    const out = await decoder.run(feeds);
    expect(await relativeDiff(out.mask_logits!, 'mask_logits')).toBeLessThan(1e-4);
    expect(await relativeDiff(out.iou!, 'iou')).toBeLessThan(1e-4);
  });
});

describe('refusals', () => {
  async function tampered(name: string, change: (m: ModelManifest) => void): Promise<string> {
    const target = join(dir, name);
    await mkdir(target, { recursive: true });
    for (const f of await readdir(folder)) if (f !== 'reference') await copyFile(join(folder, f), join(target, f));
    const manifest = JSON.parse(await readFile(join(target, 'model.json'), 'utf8')) as ModelManifest;
    change(manifest);
    await writeFile(join(target, 'model.json'), JSON.stringify(manifest));
    return target;
  }

  it('a version-2 manifest whose encoder and decoder shapes disagree loads nothing', async () => {
    const wrong = await tampered('grid-mismatch', (m) => {
      m.promptable!.decoder.inputs[0]!.shape = [1, 256, 64, 64];
    });
    const e = await rejection(readManifest(wrong));
    expect(e.message).toMatch(/encoder's output image_embeddings float32 \[batch, 256, 32, 32\] does not fit the decoder/);
    const missing = await tampered('tokens-missing', (m) => {
      m.promptable!.decoder.inputs = m.promptable!.decoder.inputs.filter((t) => t.name !== 'feature_tokens');
    });
    expect((await rejection(readManifest(missing))).message).toMatch(/feature_tokens .*\(no decoder input of that name\)/);
  });

  it('a manifest describing a graph it does not list with its hash is refused', async () => {
    const unlisted = await tampered('unlisted', (m) => {
      m.files = m.files.filter((f) => f.path !== 'decoder.onnx');
    });
    expect((await rejection(readManifest(unlisted))).message).toMatch(/decoder\.onnx is described but not listed/);
  });

  it('the shipped promptable-only model has no automatic graph to load', async () => {
    const e = await rejection(loadModel(projectPath('models', 'medsam-lite')));
    expect(e.message).toMatch(/medsam-lite has no automatic graph \(it is promptable only\)/);
  });
});
