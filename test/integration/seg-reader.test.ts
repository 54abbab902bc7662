/**
 * The repository's SEG reader on every SEG of ../shared/data/seg-corpus (written by dcmqi and
 * highdicom; BINARY, non-byte-aligned, RLE, FRACTIONAL, overlapping segments): every frame lands on
 * the source slice it references, every mask equals pydicom's decoding pixel for pixel, and
 * position-based placement agrees with reference-based placement.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readFileSeries } from '../../server/src/dicom/file-series.js';
import { unpackBits } from '../../server/src/seg/bits.js';
import { placeFrames, readSegmentation } from '../../server/src/seg/reader.js';
import { SHARED_DATA } from '../setup/data.js';
import { runPython } from '../setup/python.js';

const corpus = join(SHARED_DATA, 'seg-corpus');
const CASES: [string, string[]][] = [
  ['dcmqi/23x38x3/seg/label.seg', ['dcmqi/23x38x3/image']],
  ['dcmqi/24x38x3/seg/label.seg', ['dcmqi/24x38x3/image']],
  ['dcmqi/ct-3slice-seg/liver.dcm', ['dcmqi/ct-3slice']],
  ['dcmqi/ct-3slice-seg/partial_overlaps.dcm', ['dcmqi/ct-3slice']],
  ['highdicom/seg_image_ct_binary.dcm', ['highdicom/source-ct']],
  ['highdicom/seg_image_ct_binary_fractional.dcm', ['highdicom/source-ct']],
  ['highdicom/seg_image_ct_binary_overlap.dcm', ['highdicom/source-ct']],
  ['highdicom/seg_image_ct_binary_single_frame.dcm', ['highdicom/ct_image.dcm']],
  ['highdicom/seg_image_ct_true_fractional.dcm', ['highdicom/source-ct']],
  ['pydicom-data/liver.dcm', ['dcmqi/ct-3slice']],
  ['pydicom-data/liver_nonbyte_aligned.dcm', ['dcmqi/ct-3slice']],
  ['pydicom-data/liver_rle.dcm', ['dcmqi/ct-3slice']],
];

function differingPixels(a: Uint8Array, b: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (Boolean(a[i]) !== Boolean(b[i])) n++;
  return n;
}

describe('SEG reader on the dcmqi and highdicom corpus', async () => {
  const reference = JSON.parse(
    await runPython(
      'test/tools/seg_reference.py',
      CASES.map(([seg]) => join(corpus, seg)),
    ),
  ) as Record<string, { mask: string; sum: number; segment: number; source: string }[]>;

  it.each(CASES)('%s', async (segPath, sources) => {
    const seg = readSegmentation(readFileSync(join(corpus, segPath)));
    const expected = reference[join(corpus, segPath)]!;
    expect(seg.frames).toHaveLength(expected.length);
    expect(
      expected.some((f) => f.sum > 0),
      'the reference masks are not all empty',
    ).toBe(true);
    const series = await readFileSeries(sources.map((s) => join(corpus, s)));
    const placed = placeFrames(seg, series.plan);
    seg.frames.forEach((frame, i) => {
      const ref = expected[i]!;
      expect(frame.segmentNumber).toBe(ref.segment);
      expect(frame.referencedSOPInstanceUID).toBe(ref.source);
      // The mask pixel for pixel against pydicom's (a count of set pixels would miss a moved or flipped mask).
      const expectedMask = unpackBits(Buffer.from(ref.mask, 'base64'), 0, seg.rows * seg.columns);
      expect(frame.mask.length, `frame ${i + 1} size`).toBe(expectedMask.length);
      expect(differingPixels(frame.mask, expectedMask), `frame ${i + 1}: pixels differing from pydicom`).toBe(0);
      // Placed on the slice it references...
      expect(placed[i], `frame ${i + 1} placed`).toBeDefined();
      expect(series.plan.slices[placed[i]!]!.sopInstanceUID).toBe(ref.source);
      // ...which is also where its Plane Position puts it.
      if (frame.position && series.plan.normal) {
        const byPosition = placeFrames({ ...seg, frames: [{ ...frame, referencedSOPInstanceUID: undefined }] }, series.plan)[0];
        expect(byPosition).toBe(placed[i]);
      }
    });
    expect(seg.segments.map((s) => s.number)).toEqual(seg.segments.map((_, i) => i + 1));
    for (const e of expected) expect(seg.segments.some((s) => s.number === e.segment)).toBe(true);
  });
});
