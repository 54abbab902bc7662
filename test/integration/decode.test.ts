/**
 * Every frame of the shared DICOM files, read from a real Orthanc through the server's own series
 * planning, fetching and decoding, equals pydicom's decoding of the same file.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DicomWebClient } from '../../server/src/dicomweb/client.js';
import { loadSeriesPlan } from '../../server/src/dicom/inspect.js';
import { readSeriesSlices, type Slice } from '../../server/src/dicom/series-reader.js';
import { pacsClient, provided } from '../setup/provided.js';
import { RLE_TWIN } from '../setup/data.js';

interface Reference {
  file: string;
  studyInstanceUID: string;
  seriesInstanceUID: string;
  sopInstanceUID: string;
  transferSyntaxUID: string;
  photometricInterpretation: string;
  frameNumber: number;
  kind: 'grey' | 'rgb';
  dtype: string;
  shape: number[];
  bin: string;
}

const { referenceDir } = provided();
const references = JSON.parse(readFileSync(join(referenceDir, 'index.json'), 'utf8')) as Reference[];

function referenceValues(ref: Reference): Float32Array | Uint8Array | Uint16Array {
  const buf = readFileSync(join(referenceDir, ref.bin));
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  if (ref.dtype === 'float32') return new Float32Array(ab);
  if (ref.dtype === 'uint16') return new Uint16Array(ab);
  if (ref.dtype === 'uint8') return new Uint8Array(ab);
  throw new Error(`unexpected reference dtype ${ref.dtype}`);
}

/** Reads whole series once and indexes their slices by SOP instance + frame. */
async function readAll(client: DicomWebClient, refs: Reference[]): Promise<Map<string, Slice>> {
  const out = new Map<string, Slice>();
  const series = new Map(refs.map((r) => [r.seriesInstanceUID, r]));
  for (const r of series.values()) {
    const plan = await loadSeriesPlan(client, r);
    for await (const slice of readSeriesSlices(client, plan)) {
      out.set(`${slice.plan.sopInstanceUID}#${slice.plan.frameNumber}`, slice);
    }
  }
  return out;
}

function expectEqualPixels(slice: Slice | undefined, ref: Reference): void {
  expect(slice, `${ref.file} frame ${ref.frameNumber} was not read`).toBeDefined();
  const expected = referenceValues(ref);
  if (ref.kind === 'grey') {
    expect(slice!.pixels.kind).toBe('grey');
    const got = (slice!.pixels as { values: Float32Array }).values;
    expect(got.length).toBe(expected.length);
    let mismatches = 0;
    for (let i = 0; i < got.length; i++) if (got[i] !== expected[i]) mismatches++;
    expect(mismatches, `${ref.file}: grey values differ from pydicom`).toBe(0);
    expect((slice!.pixels as { invert: boolean }).invert).toBe(ref.photometricInterpretation === 'MONOCHROME1');
  } else {
    expect(slice!.pixels.kind).toBe('rgb');
    const got = (slice!.pixels as { data: Uint8Array | Uint16Array }).data;
    expect(got.constructor).toBe(expected.constructor);
    expect(got.length).toBe(expected.length);
    // Exact, except where two correct decoders may round differently: YCbCr to RGB, and lossy JPEG
    // (referenced by Pillow's libjpeg-turbo; see test/tools/pydicom_reference.py): 1 level.
    const tolerance =
      ref.transferSyntaxUID === '1.2.840.10008.1.2.4.50' ? 1 : ref.photometricInterpretation.startsWith('YBR_FULL') ? 1 : 0;
    let worst = 0;
    let total = 0;
    for (let i = 0; i < got.length; i++) {
      const d = Math.abs(got[i]! - expected[i]!);
      worst = Math.max(worst, d);
      total += d;
    }
    expect(worst, `${ref.file}: RGB values differ from pydicom by up to ${worst}`).toBeLessThanOrEqual(tolerance);
    expect(total / got.length, `${ref.file}: mean difference`).toBeLessThanOrEqual(tolerance === 0 ? 0 : 0.5);
  }
}

describe('decoding matches pydicom for every shared file', () => {
  const client = pacsClient();
  const mainRefs = references.filter((r) => r.file !== RLE_TWIN);
  let slices: Map<string, Slice>;

  beforeAll(async () => {
    slices = await readAll(client, mainRefs);
  });

  it('covers the syntaxes and colour models of the shared and derived data', () => {
    const syntaxes = new Set(mainRefs.map((r) => r.transferSyntaxUID));
    expect(syntaxes).toEqual(
      new Set([
        '1.2.840.10008.1.2',
        '1.2.840.10008.1.2.1',
        '1.2.840.10008.1.2.4.50',
        '1.2.840.10008.1.2.4.70',
        '1.2.840.10008.1.2.4.80',
        '1.2.840.10008.1.2.4.90',
        '1.2.840.10008.1.2.5',
      ]),
    );
    expect(new Set(mainRefs.map((r) => r.photometricInterpretation))).toEqual(
      new Set(['MONOCHROME1', 'MONOCHROME2', 'RGB', 'YBR_FULL', 'YBR_FULL_422', 'YBR_RCT', 'PALETTE COLOR']),
    );
    expect(new Set(mainRefs.map((r) => r.kind))).toEqual(new Set(['grey', 'rgb']));
    expect(mainRefs.length).toBeGreaterThanOrEqual(28 + 20 + 5 + 28 * 4 + 3 + 4);
  });

  it.each(mainRefs.map((r) => [`${r.file.split('/').slice(-2).join('/')} frame ${r.frameNumber}`, r] as const))(
    '%s',
    (_name, ref) => {
      expectEqualPixels(slices.get(`${ref.sopInstanceUID}#${ref.frameNumber}`), ref);
    },
  );
});
