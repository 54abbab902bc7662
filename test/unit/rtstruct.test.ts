/** RTSTRUCT writer: contour points in patient space (oblique plane included), references, ROIs, determinism, refusals. */
import dcmjs from 'dcmjs';
import { describe, expect, it } from 'vitest';
import type { DicomJson } from '../../server/src/dicomweb/types.js';
import { planSeries } from '../../server/src/dicom/series-plan.js';
import type { ModelManifest } from '../../server/src/models/manifest.js';
import { packBits } from '../../server/src/seg/bits.js';
import { buildRtStruct, RTSTRUCT_SOP_CLASS, rtstructUnsupported } from '../../server/src/seg/rtstruct.js';

const v = (vr: string, ...values: unknown[]) => ({ vr, Value: values });
const S = Math.SQRT1_2;
// Rows run along (S, S, 0), columns along (0, 0, -1): an oblique plane, so no axis is swapped by accident.
const ORIENTATION = [S, S, 0, 0, 0, -1];

function source(n: number, rows: number, columns: number, geometry = true): DicomJson {
  const ds: DicomJson = {
    '00080016': v('UI', '1.2.840.10008.5.1.4.1.1.2'),
    '00080018': v('UI', `1.2.3.${n}`),
    '00080060': v('CS', geometry ? 'CT' : 'US'),
    '00100010': v('PN', { Alphabetic: 'Test^Patient' }),
    '00100020': v('LO', 'P1'),
    '0020000D': v('UI', '1.2.3'),
    '0020000E': v('UI', '1.2.3.4'),
    '00200013': v('IS', n),
    '00280010': v('US', rows),
    '00280011': v('US', columns),
    '00280100': v('US', 16),
    '00280004': v('CS', 'MONOCHROME2'),
  };
  if (geometry) {
    // Slices n mm apart along the normal (S, -S, 0) x ... : positions differ along the plane normal.
    ds['00200032'] = v('DS', 10 + n * S, 20 - n * S, 30);
    ds['00200037'] = v('DS', ...ORIENTATION);
    ds['00200052'] = v('UI', '1.2.3.99');
    ds['00280030'] = v('DS', 0.5, 2); // row spacing 0.5 mm, column spacing 2 mm
  }
  return ds;
}

const model = {
  name: 'test-model',
  version: '1.2.3',
  segments: [
    {
      number: 1,
      label: 'Liver',
      category: { scheme: 'SCT', code: '91723000', meaning: 'Anatomical Structure' },
      type: { scheme: 'SCT', code: '10200004', meaning: 'Liver' },
      color: { rgb: [221, 130, 101], cielab: [1, 2, 3] },
    },
    {
      number: 2,
      label: 'Lesion',
      category: { scheme: 'SCT', code: '49755003', meaning: 'Morphologically Abnormal Structure' },
      type: { scheme: 'SCT', code: '52988006', meaning: 'Lesion' },
      color: { rgb: [0, 255, 0], cielab: [1, 2, 3] },
    },
  ],
} as unknown as Pick<ModelManifest, 'name' | 'version' | 'segments'>;

type Item = Record<string, unknown>;

function read(bytes: Uint8Array): Item {
  const file = dcmjs.data.DicomMessage.readFile(Uint8Array.from(bytes).buffer);
  return dcmjs.data.DicomMetaDictionary.naturalizeDataset(file.dict);
}

describe('buildRtStruct', () => {
  const rows = 3;
  const columns = 4;
  const instances = [2, 1].map((n) => source(n, rows, columns));
  const plan = planSeries(instances);
  // Slice 0: pixel (row 1, column 2) only; slice 1 empty for segment 1; segment 2 on slice 1: everything.
  const one = new Uint8Array(rows * columns);
  one[1 * columns + 2] = 1;
  const masks = [
    [packBits(one), undefined],
    [undefined, packBits(new Uint8Array(rows * columns).fill(1))],
  ];

  it('puts each pixel-edge vertex at its place in patient space and references its image', () => {
    const rt = buildRtStruct({ plan, sourceInstance: instances[0]!, masks, model, softwareVersion: '0', now: new Date(0) });
    const ds = read(rt.bytes);
    expect(ds.SOPClassUID).toBe(RTSTRUCT_SOP_CLASS);
    expect(ds.Modality).toBe('RTSTRUCT');
    expect(ds.ApprovalStatus).toBe('UNAPPROVED');
    expect(rt.rois).toEqual([
      { number: 1, label: 'Liver', contours: 1, points: 4 },
      { number: 2, label: 'Lesion', contours: 1, points: 4 },
    ]);
    const roi = (ds.ROIContourSequence as Item[])[0]!;
    expect(roi.ROIDisplayColor).toEqual([221, 130, 101]);
    const contour = (roi.ContourSequence as Item[])[0]!;
    expect(contour.ContourGeometricType).toBe('CLOSED_PLANAR');
    expect(contour.NumberOfContourPoints).toBe(4);
    const slice = plan.slices[0]!;
    expect((contour.ContourImageSequence as Item[])[0]).toMatchObject({ ReferencedSOPInstanceUID: slice.sopInstanceUID });
    // The first vertex is the top-left corner of pixel (row 1, column 2): half a pixel before its centre.
    const p = slice.position!;
    const dx = (2 - 0.5) * 2; // columns along the row direction, 2 mm apart
    const dy = (1 - 0.5) * 0.5; // rows along the column direction, 0.5 mm apart
    const expected = [p[0] + S * dx, p[1] + S * dx, p[2] - dy];
    const data = contour.ContourData as number[];
    data.slice(0, 3).forEach((value, i) => expect(value).toBeCloseTo(expected[i]!, 3));
    // The next vertex is one pixel along the row: 2 mm along (S, S, 0).
    expect(data[3]! - data[0]!).toBeCloseTo(2 * S, 3);
    expect(data[5]! - data[2]!).toBeCloseTo(0, 6);
    const obs = ds.RTROIObservationsSequence as Item[];
    expect((obs[0]!.RTROIIdentificationCodeSequence as Item[])[0]).toMatchObject({
      CodeValue: '10200004',
      CodingSchemeDesignator: 'SCT',
    });
    expect(obs[0]!.RTROIInterpretedType).toBe('ORGAN');
    const structure = (ds.StructureSetROISequence as Item[])[1]!;
    expect(structure).toMatchObject({
      ROINumber: 2,
      ROIName: 'Lesion',
      ROIGenerationAlgorithm: 'AUTOMATIC',
      ReferencedFrameOfReferenceUID: '1.2.3.99',
    });
    const forRef = (ds.ReferencedFrameOfReferenceSequence as Item[])[0]!;
    const series = ((forRef.RTReferencedStudySequence as Item[])[0]!.RTReferencedSeriesSequence as Item[])[0]!;
    expect(series.SeriesInstanceUID).toBe('1.2.3.4');
    expect((series.ContourImageSequence as Item[]).map((i) => i.ReferencedSOPInstanceUID).sort()).toEqual(['1.2.3.1', '1.2.3.2']);
    expect(ds.PatientID).toBe('P1');
    expect(ds.StudyInstanceUID).toBe('1.2.3');
  });

  it('is deterministic: the same contours give the same UIDs and bytes', () => {
    const a = buildRtStruct({ plan, sourceInstance: instances[0]!, masks, model, softwareVersion: '0', now: new Date(0) });
    const b = buildRtStruct({ plan, sourceInstance: instances[0]!, masks, model, softwareVersion: '0', now: new Date(0) });
    expect(Buffer.compare(Buffer.from(a.bytes), Buffer.from(b.bytes))).toBe(0);
    const other = buildRtStruct({
      plan,
      sourceInstance: instances[0]!,
      masks: [masks[1]!, masks[0]!],
      model,
      softwareVersion: '0',
    });
    expect(other.seriesInstanceUID).toBe(a.seriesInstanceUID);
    expect(other.sopInstanceUID).not.toBe(a.sopInstanceUID);
  });

  it('writes a contour of 4,000 points (Contour Data over 64 kB) as DS: implicit VR, which has no 64 kB limit', () => {
    const big = [source(1, 512, 512)];
    // A square with a tooth on every other pixel of its sides: one contour of about 4,000 vertices.
    const comb = new Uint8Array(512 * 512);
    for (let y = 5; y < 507; y++)
      for (let x = 5; x < 507; x++)
        if (!(((y === 5 || y === 506) && x % 2 === 0) || ((x === 5 || x === 506) && y % 2 === 0))) comb[y * 512 + x] = 1;
    const rt = buildRtStruct({
      plan: planSeries(big),
      sourceInstance: big[0]!,
      masks: [[packBits(comb)], []],
      model,
      softwareVersion: '0',
    });
    const file = dcmjs.data.DicomMessage.readFile(Uint8Array.from(rt.bytes).buffer);
    expect((file.meta['00020010'] as { Value: string[] }).Value[0]).toBe('1.2.840.10008.1.2');
    const contours = (read(rt.bytes).ROIContourSequence as Item[])[0]!.ContourSequence as Item[];
    const longest = contours.reduce((a, c) => Math.max(a, (c.ContourData as number[]).length), 0);
    expect(longest * 12).toBeGreaterThan(65_534); // over 64 kB as text (about 12 characters a number)
    for (const c of contours) {
      expect((c.ContourData as number[]).every((n) => typeof n === 'number' && Number.isFinite(n))).toBe(true);
      expect((c.ContourData as number[]).length).toBe(3 * (c.NumberOfContourPoints as number));
    }
  });

  it('refuses a series without patient coordinates, and a tolerance of half a pixel or more', () => {
    const us = [source(1, rows, columns, false)];
    const usPlan = planSeries(us);
    expect(rtstructUnsupported(usPlan)).toMatch(/no patient coordinate system.*use the SEG output/);
    expect(() => buildRtStruct({ plan: usPlan, sourceInstance: us[0]!, masks: [[], []], model, softwareVersion: '0' })).toThrow(
      /no patient coordinate system/,
    );
    expect(rtstructUnsupported(plan)).toBeUndefined();
    expect(() =>
      buildRtStruct({ plan, sourceInstance: instances[0]!, masks, model, softwareVersion: '0', tolerance: 0.5 }),
    ).toThrow(/below 0.5 pixel/);
  });
});
