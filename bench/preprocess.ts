/**
 * The grey preprocessing step alone (modality values, intensity range, resize into the 256 input):
 * a frame's modality values made first and then scaled (the values path) against the frame's stored
 * words read in place (the path the pipeline takes), per intensity policy, on a synthetic 12-bit
 * head-shaped CT slice at 512x512 and 820x820. Minimum of 40 runs each, in ms; both paths give the
 * same input bit for bit (test/unit/preprocess-stored.test.ts). Then an 8-bit 600x800 ultrasound frame,
 * and the 512 CT rows once more in the same process: what a server that sees both kinds pays.
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
const greyFormat = (rows: number, columns: number, bits: 8 | 16): PixelFormat => ({
  rows,
  columns,
  samplesPerPixel: 1,
  bitsAllocated: bits,
  bitsStored: bits === 16 ? 12 : 8,
  highBit: bits === 16 ? 11 : 7,
  pixelRepresentation: 0,
  photometricInterpretation: 'MONOCHROME2',
  planarConfiguration: 0,
});

/** One table row per policy: the values path against the stored words, fastest of 40 runs. */
function rows(label: string, bytes: Uint8Array, format: PixelFormat, modality: string, scale: typeof rescale): void {
  const frame = { bytes, planar: false, photometric: 'MONOCHROME2' };
  const { rows: r, columns: c } = format;
  for (const policy of policies) {
    const m = manifest(policy);
    const values = fastest(() =>
      preprocessSlice({ kind: 'grey', values: modalityValues(frame, format, scale), invert: false }, r, c, m, modality, out),
    );
    const stored = fastest(() => preprocessSlice(toSlicePixels(frame, format, scale), r, c, m, modality, out));
    console.log(`${label.padEnd(26)}${policy.kind.padEnd(12)}${values.toFixed(2).padStart(16)}${stored.toFixed(2).padStart(19)}`);
  }
}

/** An 8-bit ultrasound-sized frame: a bright sector with speckle-like texture. */
function usFrame(rows: number, columns: number): Uint8Array {
  const bytes = new Uint8Array(rows * columns);
  for (let i = 0; i < bytes.length; i++) bytes[i] = i % columns > columns / 5 ? 40 + ((i * 37) % 180) : 0;
  return bytes;
}

console.log('frame                     policy      values path (ms)  stored words (ms)');
for (const n of [512, 820]) rows(`${n}x${n} CT (16-bit)`, headFrame(n), greyFormat(n, n, 16), 'CT', rescale);
// A server sees 8-bit frames (ultrasound) and 16-bit ones (CT) in one process: the 512 CT rows again
// after 8-bit frames show whether the loops over words slowed down for having seen both array types.
rows('600x800 US (8-bit)', usFrame(600, 800), greyFormat(600, 800, 8), 'US', { slope: 1, intercept: 0 });
rows('512x512 CT, after 8-bit', headFrame(512), greyFormat(512, 512, 16), 'CT', rescale);
