/**
 * The server's aspect-keeping fit (preprocessing.fit = longest-side-pad) against the Python
 * evaluation's, pixel for pixel: the same stored values give the same model input, and the same logits
 * give the same mask (test/tools/fit_reference.py runs ldfsam_models.evaluate's to_input / to_native).
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ModelManifest } from '../../server/src/models/manifest.js';
import { logitsToBits } from '../../server/src/pipeline/postprocess.js';
import { fittedSize, preprocessSlice } from '../../server/src/pipeline/preprocess.js';
import { unpackBits } from '../../server/src/seg/bits.js';
import { SHARED_DATA } from '../setup/data.js';
import { runPython } from '../setup/python.js';

const work = await mkdtemp(join(tmpdir(), 'ldfsam-fit-'));
afterAll(() => rm(work, { recursive: true, force: true }));

const manifest = (size: number): ModelManifest =>
  ({
    preprocessing: {
      inputSize: size,
      resize: 'bilinear',
      fit: 'longest-side-pad',
      channels: 'rgb',
      valueRange: [0, 1],
      inGraph: [],
      intensity: { default: { kind: 'minmax' } },
    },
  }) as unknown as ModelManifest;

const f32 = (path: string) => {
  const b = readFileSync(path);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
};

describe.each([
  ['HC18 ultrasound (grey, landscape)', join(SHARED_DATA, 'hc18', 'images', '000_HC.png'), 256],
  ['PH2 dermoscopy (colour)', join(SHARED_DATA, 'ph2', 'images', 'IMD002.jpg'), 256],
  ['HC18 at an odd input size', join(SHARED_DATA, 'hc18', 'images', '010_HC.png'), 250],
])('%s', (_name, image, size) => {
  it('gives the model the same input and returns the same mask as the Python evaluation', async () => {
    const out = join(work, `${size}-${image.split('/').pop()}`);
    await runPython('test/tools/fit_reference.py', ['--image', image, '--size', String(size), '--out', out]);
    const meta = JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8')) as { rows: number; columns: number; channels: number };
    const raw = f32(join(out, 'raw.f32'));
    const m = manifest(size);
    const pixels =
      meta.channels === 1
        ? ({ kind: 'grey', values: raw, invert: false } as const)
        : ({ kind: 'rgb', data: Uint8Array.from(raw), maxValue: 255 } as const);
    const input = preprocessSlice(pixels, meta.rows, meta.columns, m, 'US');
    const expected = f32(join(out, 'input.f32'));
    const fitted = fittedSize(meta.rows, meta.columns, m);
    expect(fitted.columns === size || fitted.rows === size).toBe(true);
    let worst = 0;
    let padding = 0;
    for (let i = 0; i < input.length; i++) {
      worst = Math.max(worst, Math.abs(input[i]! - expected[i]!));
      const y = Math.floor((i % (size * size)) / size);
      const x = i % size;
      if ((y >= fitted.rows || x >= fitted.columns) && (input[i] !== 0 || expected[i] !== 0)) padding++;
    }
    expect(padding).toBe(0); // the same fitted area, zeros around it in both
    // torch interpolates in float32, the server in float64 rounded to float32: below 1/100 of an
    // 8-bit grey level; a pixel moved by one would differ by up to 1/255 of the image's range.
    expect(worst).toBeLessThan(2e-5);
    const bits = logitsToBits(f32(join(out, 'logits.f32')), size, meta.rows, meta.columns, 0, fitted);
    const mask = unpackBits(bits, 0, meta.rows * meta.columns);
    const reference = readFileSync(join(out, 'mask.u8'));
    const native = f32(join(out, 'native.f32'));
    // Pixels may differ only where the logit is within float32 rounding of the threshold (torch
    // interpolates in float32, the server in float64): a geometric error would differ where logits
    // are large.
    const differing: number[] = [];
    for (let i = 0; i < mask.length; i++) if (mask[i] !== reference[i]) differing.push(i);
    expect(differing.filter((i) => Math.abs(native[i]!) > 1e-5)).toEqual([]);
    expect(differing.length).toBeLessThanOrEqual(2);
    expect(mask.reduce((a, b) => a + b, 0)).toBeGreaterThan(0.05 * mask.length); // a real mask, not an empty one
  });
});
