/** SEG writer -> SEG reader, voxel for voxel, including frames that are not a whole number of bytes. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dcmjs from 'dcmjs';
import { describe, expect, it } from 'vitest';
import type { DicomJson } from '../../server/src/dicomweb/types.js';
import { creationDateTime } from '../../server/src/dicom/elements.js';
import { planSeries } from '../../server/src/dicom/series-plan.js';
import type { ModelManifest } from '../../server/src/models/manifest.js';
import { packBits } from '../../server/src/seg/bits.js';
import { placeFrames, readSegmentation } from '../../server/src/seg/reader.js';
import { buildSegmentation } from '../../server/src/seg/writer.js';
import { isLdfsamError, type LdfsamError } from '../../server/src/errors.js';
import { dciodvfy } from '../setup/dciodvfy.js';

const v = (vr: string, ...values: unknown[]) => ({ vr, Value: values });

function source(n: number, rows: number, columns: number): DicomJson {
  return {
    '00080016': v('UI', '1.2.840.10008.5.1.4.1.1.2'),
    '00080018': v('UI', `1.2.3.${n}`),
    '00080060': v('CS', 'CT'),
    '00100010': v('PN', { Alphabetic: 'Test^Patient' }),
    '00100020': v('LO', 'P1'),
    '0020000D': v('UI', '1.2.3'),
    '0020000E': v('UI', '1.2.3.4'),
    '00200013': v('IS', n),
    '00200032': v('DS', 0, 0, n * 3),
    '00200037': v('DS', 1, 0, 0, 0, 1, 0),
    '00200052': v('UI', '1.2.3.99'),
    '00280010': v('US', rows),
    '00280011': v('US', columns),
    '00280030': v('DS', 0.5, 0.5),
    '00280100': v('US', 16),
    '00280004': v('CS', 'MONOCHROME2'),
  };
}

const model = {
  name: 'test-model',
  version: '1.2.3',
  segments: [1, 2].map((number) => ({
    number,
    label: `Segment ${number}`,
    category: { scheme: 'SCT', code: '85756007', meaning: 'Tissue' },
    type: { scheme: 'SCT', code: '85756007', meaning: 'Tissue' },
    color: { rgb: [1, 2, 3], cielab: [100, 200, 300] },
  })),
} as unknown as Pick<ModelManifest, 'name' | 'version' | 'segments'>;

describe('SEG round trip', () => {
  it.each([
    [4, 4],
    [5, 3], // 15 pixels a frame: frames share bytes
  ])('writes and reads back %ix%i frames of two segments exactly', (rows, columns) => {
    const instances = [3, 1, 2].map((n) => source(n, rows, columns));
    const plan = planSeries(instances);
    const masks = plan.slices.map((_, i) =>
      Uint8Array.from({ length: rows * columns }, (_, p) => ((p * 7 + i * 3) % 5 === 0 ? 1 : 0)),
    );
    const frames = [
      ...plan.slices.map((_, i) => ({ sliceIndex: i, segmentNumber: 1, bits: packBits(masks[i]!) })),
      { sliceIndex: 1, segmentNumber: 2, bits: packBits(masks[0]!) },
    ];
    const seg = buildSegmentation({
      plan,
      sourceInstance: instances[0]!,
      frames,
      model,
      softwareVersion: '0.0.0',
      now: new Date(0),
    });
    const read = readSegmentation(seg.bytes);
    expect(read).toMatchObject({
      sopInstanceUID: seg.sopInstanceUID,
      seriesInstanceUID: seg.seriesInstanceUID,
      segmentationType: 'BINARY',
      rows,
      columns,
    });
    expect(read.segments.map((s) => [s.number, s.label, s.algorithmType])).toEqual([
      [1, 'Segment 1', 'AUTOMATIC'],
      [2, 'Segment 2', 'AUTOMATIC'],
    ]);
    const placed = placeFrames(read, plan);
    expect(read.frames).toHaveLength(4);
    read.frames.forEach((f, i) => {
      const expected = f.segmentNumber === 1 ? masks[placed[i]!]! : masks[0]!;
      expect(Array.from(f.mask), `frame ${i + 1}`).toEqual(Array.from(expected));
      expect(f.position).toEqual(plan.slices[placed[i]!]!.position);
    });
    // Deterministic: the same content gives the same UIDs and bytes.
    const again = buildSegmentation({
      plan,
      sourceInstance: instances[0]!,
      frames,
      model,
      softwareVersion: '0.0.0',
      now: new Date(0),
    });
    expect(Buffer.compare(Buffer.from(again.bytes), Buffer.from(seg.bytes))).toBe(0);
    // The Pixel Data appended after dcmjs's write is what dcmjs itself writes: reading the file with
    // dcmjs and writing it again gives the same bytes, and the element holds the frames, padded even.
    const reread = dcmjs.data.DicomMessage.readFile(Uint8Array.from(seg.bytes).buffer);
    const pixelData = new Uint8Array((reread.dict['7FE00010'] as { Value: ArrayBuffer[] }).Value[0]!);
    expect(pixelData.length % 2).toBe(0);
    expect(pixelData.length).toBe(Math.ceil(Math.ceil((4 * rows * columns) / 8) / 2) * 2);
    expect(Buffer.compare(Buffer.from((reread as unknown as { write(): ArrayBuffer }).write()), Buffer.from(seg.bytes))).toBe(0);
  });
});

/** dciodvfy's errors on the SEG written to a scratch file. */
async function dciodvfyErrors(bytes: Uint8Array): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'ldfsam-seg-'));
  try {
    writeFileSync(join(dir, 'seg.dcm'), bytes);
    return (await dciodvfy(join(dir, 'seg.dcm'))).errors;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('SEG Pixel Measures', () => {
  it('gives a source without Slice Thickness one from its geometry, also for uneven slices (dciodvfy: no error)', async () => {
    const instances = [0, 2.5, 7].map((z, i) => ({ ...source(i + 1, 4, 4), '00200032': v('DS', 0, 0, z) }));
    const plan = planSeries(instances);
    expect([plan.sliceThickness, plan.spacing.evenlySpaced]).toEqual([undefined, false]);
    const seg = buildSegmentation({
      plan,
      sourceInstance: instances[0]!,
      frames: [{ sliceIndex: 0, segmentNumber: 1, bits: packBits(new Uint8Array(16).fill(1)) }],
      model,
      softwareVersion: '0',
    });
    const ds = dcmjs.data.DicomMessage.readFile(Uint8Array.from(seg.bytes).buffer).dict as Record<string, any>;
    const measures = ds['52009229'].Value[0]['00289110'].Value[0];
    expect(measures['00180050'].Value.map(Number)).toEqual([2.5]); // the smallest gap
    expect(measures['00180088']).toBeUndefined(); // no one spacing between uneven slices
    expect(await dciodvfyErrors(seg.bytes)).toEqual([]);
  });
});

describe('creation dates and times', () => {
  const at = new Date(Date.UTC(2026, 0, 1, 20, 0, 0));

  it("are in the source's Timezone Offset From UTC when it names one, which the SEG then carries (dciodvfy: no error)", async () => {
    expect(creationDateTime({ '00080201': v('SH', '+0530') }, at)).toEqual({
      date: '20260102',
      time: '013000',
      zone: { '00080201': { vr: 'SH', Value: ['+0530'] } },
    });
    const instances = [1, 2].map((n) => ({ ...source(n, 4, 4), '00080201': v('SH', '-0300') }));
    const seg = buildSegmentation({
      plan: planSeries(instances),
      sourceInstance: instances[0]!,
      frames: [{ sliceIndex: 0, segmentNumber: 1, bits: packBits(new Uint8Array(16).fill(1)) }],
      model,
      softwareVersion: '0',
      now: at,
    });
    const ds = dcmjs.data.DicomMessage.readFile(Uint8Array.from(seg.bytes).buffer).dict as Record<string, any>;
    expect([ds['00080201'].Value[0], ds['00080023'].Value[0], ds['00080033'].Value[0]]).toEqual(['-0300', '20260101', '170000']);
    expect(await dciodvfyErrors(seg.bytes)).toEqual([]);
  });

  it("are this machine's local time without one (DICOM reads a date without an offset as local)", () => {
    const saved = process.env.TZ;
    process.env.TZ = 'America/New_York'; // UTC-5 in January
    try {
      expect(creationDateTime({}, new Date(Date.UTC(2026, 0, 1, 3, 0, 0)))).toEqual({
        date: '20251231',
        time: '220000',
        zone: {},
      });
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });
});

describe('SEG Lossy Image Compression', () => {
  it("says 01, with the source's ratio and method, when the source was lossy compressed (never reset); 00 otherwise", async () => {
    const lossy = [1, 2].map((n) => ({
      ...source(n, 4, 4),
      '00282110': v('CS', '01'),
      '00282112': v('DS', 9.5),
      '00282114': v('CS', 'ISO_10918_1'),
    }));
    const build = (instances: DicomJson[]) =>
      buildSegmentation({
        plan: planSeries(instances),
        sourceInstance: instances[0]!,
        frames: [{ sliceIndex: 0, segmentNumber: 1, bits: packBits(new Uint8Array(16).fill(1)) }],
        model,
        softwareVersion: '0',
      });
    const seg = build(lossy);
    const ds = dcmjs.data.DicomMessage.readFile(Uint8Array.from(seg.bytes).buffer).dict as Record<string, any>;
    expect([ds['00282110'].Value[0], Number(ds['00282112'].Value[0]), ds['00282114'].Value[0]]).toEqual([
      '01',
      9.5,
      'ISO_10918_1',
    ]);
    const plain = build([1, 2].map((n) => source(n, 4, 4)));
    const dsPlain = dcmjs.data.DicomMessage.readFile(Uint8Array.from(plain.bytes).buffer).dict as Record<string, any>;
    expect([dsPlain['00282110'].Value[0], dsPlain['00282112'], dsPlain['00282114']]).toEqual(['00', undefined, undefined]);
    expect(await dciodvfyErrors(seg.bytes)).toEqual([]);
  });
});

describe("SEG writer validation (as highdicom's constructor): each refusal is SEG_INVALID with its reason", () => {
  const instances = [source(1, 2, 2), source(2, 2, 2)];
  const plan = planSeries(instances);
  const bits = packBits(new Uint8Array(4).fill(1));
  const input = (over: Partial<Parameters<typeof buildSegmentation>[0]> = {}) => ({
    plan,
    sourceInstance: instances[0]!,
    frames: [{ sliceIndex: 0, segmentNumber: 1, bits }],
    model,
    softwareVersion: '0',
    ...over,
  });
  const refusal = (over: Partial<Parameters<typeof buildSegmentation>[0]>): LdfsamError => {
    try {
      buildSegmentation(input(over));
    } catch (err) {
      expect(isLdfsamError(err, 'SEG_INVALID'), String(err)).toBe(true);
      return err as LdfsamError;
    }
    throw new Error('buildSegmentation accepted the input');
  };

  it('accepts the valid input the refusals below change one thing of', () => {
    expect(buildSegmentation(input()).framesWritten).toBe(1);
  });

  it('no frame', () => {
    expect(refusal({ frames: [] }).message).toMatch(/at least one frame/);
  });

  it('a slice the series lacks', () => {
    expect(refusal({ frames: [{ sliceIndex: 5, segmentNumber: 1, bits }] }).message).toMatch(/slice 5/);
    expect(refusal({ frames: [{ sliceIndex: 0.5, segmentNumber: 1, bits }] }).message).toMatch(/slice 0.5/);
  });

  it('a segment the model lacks', () => {
    expect(refusal({ frames: [{ sliceIndex: 0, segmentNumber: 3, bits }] }).message).toMatch(/segment 3/);
  });

  it('segments not numbered 1..N in order', () => {
    const [one, two] = model.segments;
    expect(refusal({ model: { ...model, segments: [two!] } }).message).toMatch(/1\.\.1 .*has 2/);
    expect(refusal({ model: { ...model, segments: [two!, one!] } }).message).toMatch(/1\.\.2 in order; the model has 2, 1/);
  });

  it('two frames of the same segment and slice', () => {
    const frames = [0, 1, 0].map((sliceIndex) => ({ sliceIndex, segmentNumber: 1, bits }));
    expect(refusal({ frames }).message).toMatch(/two frames of segment 1 on slice 0/);
  });

  it('bits of another size than the frame: too few, and too many (never cut silently)', () => {
    for (const length of [0, 2]) {
      const frames = [{ sliceIndex: 0, segmentNumber: 1, bits: new Uint8Array(length) }];
      expect(refusal({ frames }).message).toMatch(new RegExp(`holds ${length} bytes; a 2 x 2 frame is 1`));
    }
  });

  it('a slice without Image Position (Patient) in a series with geometry', () => {
    const noPosition = { ...plan, slices: plan.slices.map((s, i) => (i === 1 ? { ...s, position: null } : s)) };
    expect(refusal({ plan: noPosition, frames: [{ sliceIndex: 1, segmentNumber: 1, bits }] }).message).toMatch(
      /slice 1 \(1\.2\.3\.2\) has no Image Position/,
    );
    // The slice that has one still writes.
    expect(buildSegmentation(input({ plan: noPosition })).framesWritten).toBe(1);
  });

  it('an orientation that is not 6 numbers', () => {
    expect(refusal({ plan: { ...plan, orientation: [1, 0, 0, 0, 1] } }).message).toMatch(/not 6 numbers/);
    expect(refusal({ plan: { ...plan, orientation: [1, 0, 0, 0, 1, NaN] } }).message).toMatch(/not 6 numbers/);
  });

  it('a source instance of another study, or of none', () => {
    const other = { ...instances[0]!, '0020000D': v('UI', '1.2.4') };
    expect(refusal({ sourceInstance: other }).message).toMatch(/Study Instance UID 1\.2\.4 is not the series' study 1\.2\.3/);
    const { '0020000D': _study, ...none } = instances[0]!;
    expect(refusal({ sourceInstance: none }).message).toMatch(/\(none\)/);
  });
});
