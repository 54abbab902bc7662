/** logitsToBits (row-cached, skipping logits safely below the threshold) equals the pixel-by-pixel loop and logitsToMask + packBits. */
import { describe, expect, it } from 'vitest';
import { logitsToBits, logitsToBitsReference, logitsToMask } from '../../server/src/pipeline/postprocess.js';
import { isEmpty, packBits } from '../../server/src/seg/bits.js';

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Logits of several kinds: a blob (a head), its edge exactly at the threshold, noise, all above, huge values. */
function logits(kind: number, size: number, threshold: number, random: () => number): Float32Array {
  const out = new Float32Array(size * size);
  const cx = random() * size;
  const cy = random() * size;
  const r = 2 + random() * size * 0.4;
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      const d = Math.hypot(x - cx, y - cy);
      let v: number;
      if (kind === 0) v = (r - d) / 4;
      else if (kind === 1)
        v = d < r ? threshold : threshold - 1; // plateaus exactly at the threshold
      else if (kind === 2) v = (random() - 0.5) * 20;
      else if (kind === 3) v = threshold + 1 + random();
      else if (kind === 4) v = (r - d) * 1e30;
      else v = random() < 0.001 ? threshold + 1e-7 : threshold - 1e-7; // specks a float32 step away
      out[y * size + x] = v;
    }
  return out;
}

describe('logitsToBits', () => {
  it('equals the pixel-by-pixel loop and logitsToMask + packBits: blobs, plateaus at the threshold, noise, huge values, fitted regions', () => {
    const random = rng(7);
    for (const size of [4, 16, 33])
      for (const [rows, columns] of [
        [1, 1],
        [5, 3],
        [16, 16],
        [37, 50],
        [100, 64],
      ] as const)
        for (const threshold of [0, 0.1, -2.5, 0.3333333333])
          for (let kind = 0; kind < 6; kind++) {
            const l = logits(kind, size, threshold, random);
            const fittedList = [
              { rows: size, columns: size },
              { rows: size, columns: Math.max(1, size - 3) },
              { rows: Math.max(1, Math.ceil(size / 2)), columns: size },
            ];
            for (const fitted of fittedList) {
              const what = `size ${size}, ${rows}x${columns}, t ${threshold}, kind ${kind}, fitted ${fitted.rows}x${fitted.columns}`;
              const fast = logitsToBits(l, size, rows, columns, threshold, fitted);
              expect(fast, what).toEqual(logitsToBitsReference(l, size, rows, columns, threshold, fitted));
              expect(fast, what).toEqual(packBits(logitsToMask(l, size, rows, columns, threshold, fitted)));
            }
          }
  }, 120_000);

  it('non-finite logits take the pixel-by-pixel path', () => {
    const l = logits(0, 16, 0, rng(8));
    l[5] = NaN;
    l[40] = Infinity;
    expect(logitsToBits(l, 16, 40, 40, 0)).toEqual(logitsToBitsReference(l, 16, 40, 40, 0));
  }, 120_000);

  it('a 256 -> 820 head: the same bits as the loop', () => {
    const l = logits(0, 256, 0, rng(9));
    expect(logitsToBits(l, 256, 820, 820, 0)).toEqual(logitsToBitsReference(l, 256, 820, 820, 0));
  }, 120_000);
});

describe('isEmpty', () => {
  it('any one bit set, at any length and byte offset (aligned or not), is seen; bytes around the view are not read', () => {
    for (let length = 0; length <= 13; length++)
      for (let offset = 0; offset < 4; offset++) {
        const buffer = new Uint8Array(offset + length + 4).fill(0xff);
        const bits = buffer.subarray(offset, offset + length);
        bits.fill(0);
        expect(isEmpty(bits), `${length} at ${offset}`).toBe(true);
        for (let i = 0; i < length; i++)
          for (const bit of [0, 7]) {
            bits[i] = 1 << bit;
            expect(isEmpty(bits), `${length} at ${offset}, byte ${i}`).toBe(false);
            bits[i] = 0;
          }
      }
  });
});
