/**
 * The exported model through onnxruntime-node (what the server runs) equals PyTorch, and the server
 * refuses a model whose files or manifest do not hold together.
 */
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LdfsamError } from '../../server/src/errors.js';
import { readManifest } from '../../server/src/models/manifest.js';
import { loadModel } from '../../server/src/models/session.js';
import { runPython } from '../setup/python.js';

let dir: string;
let folder: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ldfsam-model-'));
  folder = join(dir, 'random-tiny');
  await runPython('test/tools/export_with_reference.py', ['--config', 'tiny', '--out', folder]);
}, 180_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function floats(name: string): Promise<Float32Array> {
  const buf = await readFile(join(folder, 'reference', `${name}.bin`));
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

/** A copy of the model folder to tamper with. */
async function copyOfModel(name: string): Promise<string> {
  const target = join(dir, name);
  await mkdir(target, { recursive: true });
  for (const f of await readdir(folder)) if (f !== 'reference') await copyFile(join(folder, f), join(target, f));
  return target;
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

describe('exported model', () => {
  it('runs in onnxruntime-node with the outputs of PyTorch (max |diff| < 1e-4)', async () => {
    const model = await loadModel(folder);
    const shapes = JSON.parse(await readFile(join(folder, 'reference', 'shapes.json'), 'utf8')) as Record<string, number[]>;
    const input = new ort.Tensor('float32', await floats('input'), shapes.input);
    const out = await model.session.run({ image: input });
    for (const name of ['mask_logits', 'iou']) {
      const expected = await floats(name);
      const got = out[name]!.data as Float32Array;
      expect(out[name]!.dims).toEqual(shapes[name]);
      let worst = 0;
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - expected[i]!));
      expect(worst, name).toBeLessThan(1e-4);
    }
    expect(model.manifest.preprocessing.inputSize).toBe(256);
  });

  it('refuses a corrupted ONNX file', async () => {
    const copy = await copyOfModel('corrupt');
    const onnx = await readFile(join(copy, 'model.onnx'));
    onnx[onnx.length >> 1] = onnx[onnx.length >> 1]! ^ 0xff;
    await writeFile(join(copy, 'model.onnx'), onnx);
    const e = await rejection(loadModel(copy));
    expect(e.message).toMatch(/model\.onnx does not match model\.json \(size or SHA-256 differs\)/);
  });

  it('refuses a manifest whose shapes disagree with the graph, naming both', async () => {
    const copy = await copyOfModel('shapes');
    const manifest = JSON.parse(await readFile(join(copy, 'model.json'), 'utf8')) as { inputs: { shape: unknown[] }[] };
    manifest.inputs[0]!.shape = ['batch', 3, 512, 512];
    await writeFile(join(copy, 'model.json'), JSON.stringify(manifest));
    const e = await rejection(loadModel(copy));
    expect(e.message).toBe(
      "random-tiny (model.onnx): the ONNX inputs (image float32 [dynamic, 3, 256, 256]) are not the manifest's (image float32 [dynamic, 3, 512, 512])",
    );
  });

  it('refuses a manifest that breaks the schema or lacks a file', async () => {
    const copy = await copyOfModel('schema');
    const manifest = JSON.parse(await readFile(join(copy, 'model.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(copy, 'model.json'), JSON.stringify({ ...manifest, unexpected: true }));
    expect((await rejection(readManifest(copy))).message).toMatch(
      /model\.json is invalid: .*must NOT have additional properties/,
    );
    await writeFile(join(copy, 'model.json'), JSON.stringify(manifest));
    await rm(join(copy, 'model.onnx'));
    expect((await rejection(readManifest(copy))).message).toMatch(/model\.onnx is listed in model\.json but missing/);
  });
});
