/**
 * The grey preprocessing step alone (modality values, intensity range, resize into the 256 input):
 * a frame's modality values made first and then scaled (the values path) against the frame's stored
 * words read in place (the path the pipeline takes), per intensity policy, on a synthetic 12-bit
 * head-shaped CT slice at 512x512 and 820x820. Minimum of 40 runs each, in ms; both paths give the
 * same input bit for bit (test/unit/preprocess-stored.test.ts).
 *
 * usage: npm run bench:preprocess
 */
import { modalityValues, toSlicePixels } from '../server/src/dicom/pixels.js';
import type { PixelFormat } from '../server/src/dicom/series-plan.js';
import type { IntensityPolicy, ModelManifest } from '../server/src/models/manifest.js';
import { preprocessSlice } from '../server/src/pipeline/preprocess.js';

const manifest = (intensity: IntensityPolicy) =>
  ({
    preprocessing: {
      inputSize: 256,
      resize: 'bilinear',
      channels: 'rgb',
      valueRange: [0, 1],
      inGraph: [],
      intensity: { default: intensity },
      fit: 'longest-side-pad',
    },
  }) as unknown as ModelManifest;

/** A skull-like ring around textured brain, air outside: 12-bit stored values, rescale intercept -1024. */
function headFrame(n: number): Uint8Array {
  const words = new Uint16Array(n * n);
  for (let y = 0; y < n; y++)
    for (let x = 0; x < n; x++) {
      const r = Math.hypot(x - n / 2, y - n / 2);
      words[y * n + x] = r < n * 0.4 ? 1000 + ((x * 7 + y * 13) % 200) + (r < n * 0.38 ? 0 : 1500) : 0;
    }
  return new Uint8Array(words.buffer);
}

function fastest(run: () => void, times = 40): number {
  let best = Infinity;
  for (let i = 0; i < times; i++) {
    const t = performance.now();
    run();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}

const policies: IntensityPolicy[] = [
  { kind: 'window', center: 40, width: 400 },
  { kind: 'minmax' },
  { kind: 'percentile', low: 0.5, high: 99.5 },
];
const rescale = { slope: 1, intercept: -1024 };
const out = new Float32Array(3 * 256 * 256);
console.log('size     policy      values path (ms)  stored words (ms)');
for (const n of [512, 820]) {
  const format: PixelFormat = {
    rows: n,
    columns: n,
    samplesPerPixel: 1,
    bitsAllocated: 16,
    bitsStored: 12,
    highBit: 11,
    pixelRepresentation: 0,
    photometricInterpretation: 'MONOCHROME2',
    planarConfiguration: 0,
  };
  const frame = { bytes: headFrame(n), planar: false, photometric: 'MONOCHROME2' };
  for (const policy of policies) {
    const m = manifest(policy);
    const values = fastest(() =>
      preprocessSlice({ kind: 'grey', values: modalityValues(frame, format, rescale), invert: false }, n, n, m, 'CT', out),
    );
    const stored = fastest(() => preprocessSlice(toSlicePixels(frame, format, rescale), n, n, m, 'CT', out));
    console.log(
      `${`${n}x${n}`.padEnd(9)}${policy.kind.padEnd(12)}${values.toFixed(2).padStart(16)}${stored.toFixed(2).padStart(19)}`,
    );
  }
}
