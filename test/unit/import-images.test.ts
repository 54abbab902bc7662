/** Images to DICOM (server/src/dicom/import-images.ts): JPEG headers, PNG values, UIDs, US calibration, refusals. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import dcmjs from 'dcmjs';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import type { DicomJson } from '../../server/src/dicomweb/types.js';
import { genericRequest, hc18Request, parseHc18Index, ph2Request } from '../../server/src/cli/commands/import-presets.js';
import { importImage, importUids, ultrasoundRegion, type ImportModality } from '../../server/src/dicom/import-images.js';
import { readJpegHeader } from '../../server/src/dicom/jpeg-header.js';
import { readPart10Header, readPart10Pixels } from '../../server/src/dicom/part10.js';
import { planSeries } from '../../server/src/dicom/series-plan.js';
import { isLdfsamError } from '../../server/src/errors.js';
import { SHARED_DATA } from '../setup/data.js';

/** A JPEG whose markers up to the scan are real (the entropy-coded data is not: nothing here decodes it). */
function jpeg(
  options: {
    sof?: number;
    rows?: number;
    columns?: number;
    components?: [number, number, number][]; // id, h, v
    jfif?: boolean;
    adobeTransform?: number;
    precision?: number;
  } = {},
): Uint8Array {
  const { sof = 0xc0, rows = 5, columns = 7, jfif = true, precision = 8 } = options;
  const components = options.components ?? [
    [1, 2, 2],
    [2, 1, 1],
    [3, 1, 1],
  ];
  const segment = (marker: number, body: number[]) => [0xff, marker, (body.length + 2) >> 8, (body.length + 2) & 255, ...body];
  const bytes = [0xff, 0xd8];
  if (jfif) bytes.push(...segment(0xe0, [...Buffer.from('JFIF\0'), 1, 1, 0, 0, 1, 0, 1, 0, 0]));
  if (options.adobeTransform !== undefined)
    bytes.push(...segment(0xee, [...Buffer.from('Adobe'), 0, 100, 0, 0, 0, 0, options.adobeTransform]));
  bytes.push(...segment(0xdb, [0, ...new Array<number>(64).fill(1)]));
  bytes.push(
    ...segment(sof, [
      precision,
      rows >> 8,
      rows & 255,
      columns >> 8,
      columns & 255,
      components.length,
      ...components.flatMap(([id, h, v]) => [id, (h << 4) | v, 0]),
    ]),
  );
  bytes.push(
    ...segment(0xda, [components.length, ...components.flatMap(([id]) => [id, 0]), 0, 63, 0]),
    0x12,
    0x34,
    0x56,
    0xff,
    0xd9,
  );
  return new Uint8Array(bytes);
}

function png(width: number, height: number, colorType: 0 | 2 | 6, data: number[], bitDepth: 8 | 16 = 8): Uint8Array {
  const image = new PNG({ width, height });
  image.data = bitDepth === 16 ? Buffer.from(new Uint16Array(data).buffer) : Buffer.from(data);
  const options = { colorType, bitDepth, inputColorType: colorType, inputHasAlpha: colorType === 6 };
  return new Uint8Array(PNG.sync.write(image, options));
}

function generic(bytes: Uint8Array, modality: ImportModality, pixelSpacingMm?: number, patientID?: string) {
  return importImage(genericRequest(bytes, 'image.png', { modality, pixelSpacingMm, patientID }));
}

/** The data set of a written file, as DICOM JSON (what planSeries reads). */
function datasetOf(bytes: Uint8Array): DicomJson {
  const file = dcmjs.data.DicomMessage.readFile(
    bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer,
  );
  return file.dict as DicomJson;
}

function refusal(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (err) {
    if (isLdfsamError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('JPEG header', () => {
  it('reads size, components and sampling of a 4:2:0 JFIF baseline JPEG', () => {
    const h = readJpegHeader(jpeg({ rows: 572, columns: 765 }));
    expect(h).toMatchObject({
      sof: 0xc0,
      precision: 8,
      rows: 572,
      columns: 765,
      jfif: true,
      colour: 'ycbcr',
      chromaSubsampled: true,
    });
    expect(h.components).toEqual([
      { id: 1, h: 2, v: 2 },
      { id: 2, h: 1, v: 1 },
      { id: 3, h: 1, v: 1 },
    ]);
  });

  it('reads a real PH2 file (765x572, 4:2:0)', () => {
    const h = readJpegHeader(readFileSync(join(SHARED_DATA, 'ph2', 'images', 'IMD002.jpg')));
    expect(h).toMatchObject({ sof: 0xc0, rows: 572, columns: 765, colour: 'ycbcr', chromaSubsampled: true });
  });

  it('tells RGB from YCbCr as libjpeg does (JFIF, Adobe transform flag, component ids) and grey', () => {
    const full: [number, number, number][] = [
      [1, 1, 1],
      [2, 1, 1],
      [3, 1, 1],
    ];
    expect(readJpegHeader(jpeg({ components: full }))).toMatchObject({ colour: 'ycbcr', chromaSubsampled: false });
    expect(readJpegHeader(jpeg({ components: full, jfif: false, adobeTransform: 0 })).colour).toBe('rgb');
    expect(readJpegHeader(jpeg({ components: full, jfif: false, adobeTransform: 1 })).colour).toBe('ycbcr');
    const rgbIds: [number, number, number][] = [
      [0x52, 1, 1],
      [0x47, 1, 1],
      [0x42, 1, 1],
    ];
    expect(readJpegHeader(jpeg({ components: rgbIds, jfif: false })).colour).toBe('rgb');
    expect(readJpegHeader(jpeg({ components: [[1, 1, 1]] })).colour).toBe('grey');
    const h422 = readJpegHeader(
      jpeg({
        components: [
          [1, 2, 1],
          [2, 1, 1],
          [3, 1, 1],
        ],
      }),
    );
    expect(h422.chromaSubsampled).toBe(true);
  });

  it('refuses what is not a JPEG header', () => {
    expect(refusal(() => readJpegHeader(new Uint8Array([1, 2, 3, 4])))).toMatchObject({ code: 'INVALID_INPUT' });
    const truncated = jpeg().subarray(0, 30);
    expect(refusal(() => readJpegHeader(truncated))).toMatchObject({ code: 'INVALID_INPUT', message: /not a readable JPEG/ });
  });
});

describe('JPEG to DICOM', () => {
  it('maps the chroma sampling to the Photometric Interpretation', () => {
    const photometric = (bytes: Uint8Array, modality: ImportModality = 'US') =>
      generic(bytes, modality).photometricInterpretation;
    expect(photometric(jpeg())).toBe('YBR_FULL_422');
    const full: [number, number, number][] = [
      [1, 1, 1],
      [2, 1, 1],
      [3, 1, 1],
    ];
    expect(photometric(jpeg({ components: full }))).toBe('YBR_FULL');
    expect(photometric(jpeg({ components: full, jfif: false, adobeTransform: 0 }), 'XC')).toBe('RGB');
    expect(photometric(jpeg({ components: [[1, 1, 1]] }), 'XC')).toBe('MONOCHROME2');
    // The VL Image module does not allow YBR_FULL.
    expect(refusal(() => generic(jpeg({ components: full }), 'XC'))).toMatchObject({
      code: 'INVALID_INPUT',
      message: /YBR_FULL/,
    });
  });

  it('refuses progressive, 12-bit, lossless and CMYK JPEG', () => {
    expect(refusal(() => generic(jpeg({ sof: 0xc2 }), 'XC'))).toMatchObject({
      code: 'INVALID_INPUT',
      message: /^progressive 8-bit JPEG/,
    });
    expect(refusal(() => generic(jpeg({ sof: 0xc1, precision: 12 }), 'OT')).message).toMatch(/extended sequential 12-bit/);
    expect(refusal(() => generic(jpeg({ sof: 0xc3 }), 'OT')).message).toMatch(/lossless/);
    const cmyk = jpeg({
      jfif: false,
      adobeTransform: 2,
      components: [
        [1, 1, 1],
        [2, 1, 1],
        [3, 1, 1],
        [4, 1, 1],
      ],
    });
    expect(refusal(() => generic(cmyk, 'OT')).message).toMatch(/4 components/);
  });

  it('encapsulates the bitstream unchanged, in one fragment, marked lossy ISO_10918_1', () => {
    const source = jpeg({ rows: 6, columns: 8 });
    const out = importImage(ph2Request(source, 'IMD123.jpg'));
    const pixels = readPart10Pixels(out.bytes);
    expect(pixels.transferSyntaxUID).toBe('1.2.840.10008.1.2.4.50');
    expect(pixels.pixelData).toHaveLength(1);
    const frame = pixels.pixelData[0]!;
    // Fragments have even length: an odd bitstream gets one trailing 00 byte after its EOI.
    expect(Buffer.from(frame.subarray(0, source.length)).equals(Buffer.from(source))).toBe(true);
    expect(frame.length).toBe(source.length + (source.length % 2));
    const ds = readPart10Header(out.bytes).dataset;
    expect(ds).toMatchObject({
      SOPClassUID: '1.2.840.10008.5.1.4.1.1.77.1.4',
      Modality: 'XC',
      PhotometricInterpretation: 'YBR_FULL_422',
      PlanarConfiguration: 0,
      Rows: 6,
      Columns: 8,
      SamplesPerPixel: 3,
      BitsAllocated: 8,
      LossyImageCompression: '01',
      LossyImageCompressionMethod: 'ISO_10918_1',
      PatientID: 'PH2-IMD123',
      PatientIdentityRemoved: 'YES',
    });
    expect(ds.PixelSpacing).toBeUndefined(); // PH2 publishes no pixel size
    expect(ds.AcquisitionContextSequence).toEqual([]);
  });
});

describe('PNG to DICOM', () => {
  it('stores 8-bit grey values unchanged (odd pixel count padded to even length)', () => {
    const values = [0, 1, 2, 100, 127, 128, 200, 254, 255];
    const out = generic(png(3, 3, 0, values), 'OT', 0.25);
    expect(out).toMatchObject({ rows: 3, columns: 3, samplesPerPixel: 1, photometricInterpretation: 'MONOCHROME2' });
    const [data] = readPart10Pixels(out.bytes).pixelData;
    expect([...data!.subarray(0, 9)]).toEqual(values);
    expect(data!.length).toBe(10);
    const ds = readPart10Header(out.bytes).dataset;
    expect(ds).toMatchObject({ SOPClassUID: '1.2.840.10008.5.1.4.1.1.7', ConversionType: 'WSD', PixelSpacing: [0.25, 0.25] });
  });

  it('stores RGB interleaved', () => {
    const values = [1, 2, 3, 4, 5, 6];
    const out = generic(png(2, 1, 2, values), 'XC');
    expect(out.photometricInterpretation).toBe('RGB');
    expect([...readPart10Pixels(out.bytes).pixelData[0]!]).toEqual(values);
    expect(readPart10Header(out.bytes).dataset).toMatchObject({ PlanarConfiguration: 0, SamplesPerPixel: 3 });
  });

  it('refuses 16-bit PNG, transparency and what is not an image', () => {
    expect(refusal(() => generic(png(2, 2, 0, [1, 2, 3, 65535], 16), 'OT'))).toMatchObject({
      code: 'INVALID_INPUT',
      message: /^16-bit grey PNG is not supported/,
    });
    expect(refusal(() => generic(png(2, 1, 6, [1, 2, 3, 255, 4, 5, 6, 128]), 'OT')).message).toMatch(/transparent pixels/);
    expect(generic(png(2, 1, 6, [1, 2, 3, 255, 4, 5, 6, 255]), 'OT').photometricInterpretation).toBe('RGB'); // opaque alpha dropped
    expect(refusal(() => generic(new TextEncoder().encode('file,subject\n'), 'OT'))).toMatchObject({
      code: 'INVALID_INPUT',
      message: /not a PNG or JPEG/,
    });
    const broken = png(3, 3, 0, [0, 1, 2, 3, 4, 5, 6, 7, 8]).slice(0, 45);
    expect(refusal(() => generic(broken, 'OT'))).toMatchObject({ code: 'INVALID_INPUT', message: /not a readable PNG/ });
  });
});

describe('UIDs', () => {
  const a = png(2, 2, 0, [1, 2, 3, 4]);
  const b = png(2, 2, 0, [1, 2, 3, 5]);

  it('are the same for the same file and settings, so a re-import is the same instance (identical bytes)', () => {
    const first = generic(a, 'US', 0.1);
    const again = generic(new Uint8Array(a), 'US', 0.1);
    expect(again.sopInstanceUID).toBe(first.sopInstanceUID);
    expect(Buffer.from(again.bytes).equals(Buffer.from(first.bytes))).toBe(true);
    for (const uid of [first.studyInstanceUID, first.seriesInstanceUID, first.sopInstanceUID]) {
      expect(uid).toMatch(/^2\.25\.[1-9]\d*$/);
      expect(uid.length).toBeLessThanOrEqual(64);
    }
    expect(new Set([first.studyInstanceUID, first.seriesInstanceUID, first.sopInstanceUID]).size).toBe(3);
  });

  it('differ for other contents, modality or spacing; a patient id puts files in one study', () => {
    const base = importUids({ patientID: 'P', studyKey: 'k', sourceSha256: 'aa', modality: 'US', pixelSpacingMm: 0.1 });
    const other = [
      importUids({ patientID: 'P', studyKey: 'k', sourceSha256: 'bb', modality: 'US', pixelSpacingMm: 0.1 }),
      importUids({ patientID: 'P', studyKey: 'k', sourceSha256: 'aa', modality: 'OT', pixelSpacingMm: 0.1 }),
      importUids({ patientID: 'P', studyKey: 'k', sourceSha256: 'aa', modality: 'US', pixelSpacingMm: 0.2 }),
      importUids({ patientID: 'P', studyKey: 'k', sourceSha256: 'aa', modality: 'US' }),
    ];
    for (const o of other) {
      expect(o.studyInstanceUID).toBe(base.studyInstanceUID);
      expect(o.seriesInstanceUID).not.toBe(base.seriesInstanceUID);
      expect(o.sopInstanceUID).not.toBe(base.sopInstanceUID);
    }
    // Without a patient id each file is its own patient and study; with one they share the study.
    expect(generic(a, 'OT').studyInstanceUID).not.toBe(generic(b, 'OT').studyInstanceUID);
    const [pa, pb] = [generic(a, 'OT', undefined, 'P001'), generic(b, 'OT', undefined, 'P001')];
    expect(pa.studyInstanceUID).toBe(pb.studyInstanceUID);
    expect(pa.seriesInstanceUID).not.toBe(pb.seriesInstanceUID);
  });
});

describe('ultrasound calibration', () => {
  it('covers the whole image in cm per pixel', () => {
    const region = ultrasoundRegion(540, 800, 0.069135804);
    const v = (tag: string) => region[tag]!.Value![0];
    expect([v('00186018'), v('0018601A'), v('0018601C'), v('0018601E')]).toEqual([0, 0, 799, 539]);
    expect([v('00186024'), v('00186026')]).toEqual([3, 3]);
    expect(v('0018602C')).toBeCloseTo(0.0069135804, 12);
    expect(v('0018602E')).toBeCloseTo(0.0069135804, 12);
  });

  it('is read back by the series planner as the index.csv pixel size in mm, without Pixel Spacing', () => {
    const index = parseHc18Index(
      '\uFEFFfile,subject,pixel_size_mm,head_circumference_mm\r\n010_2HC.png,010,0.079927246,72.87\r\n',
    );
    const out = importImage(hc18Request(png(4, 3, 0, new Array<number>(12).fill(7)), index.get('010_2HC.png')!));
    const ds = datasetOf(out.bytes);
    expect(ds['00280030']).toBeUndefined();
    const plan = planSeries([ds]);
    expect(plan).toMatchObject({
      modality: 'US',
      rows: 3,
      columns: 4,
      pixelSpacingSource: 'UltrasoundRegion',
      orderedBy: 'instanceNumber',
    });
    expect(plan.pixelSpacing![0]).toBeCloseTo(0.079927246, 12);
    expect(plan.pixelSpacing![1]).toBeCloseTo(0.079927246, 12);
    expect(readPart10Header(out.bytes).dataset).toMatchObject({
      SOPClassUID: '1.2.840.10008.5.1.4.1.1.6.1',
      PatientID: 'HC18-010',
      StudyID: 'HC18-010',
      SeriesNumber: 2, // the subject's second image
      InstanceNumber: 2,
      ImageType: ['DERIVED', 'PRIMARY', 'OBSTETRICAL', '0001'],
      ImageLaterality: 'U',
    });
  });

  it('generic US images get the region too; a bad spacing is refused', () => {
    const plan = planSeries([datasetOf(generic(png(2, 2, 0, [1, 2, 3, 4]), 'US', 0.3).bytes)]);
    expect(plan.pixelSpacing).toEqual([0.3, 0.3]);
    expect(refusal(() => generic(png(2, 2, 0, [1, 2, 3, 4]), 'US', -1)).code).toBe('INVALID_INPUT');
  });
});

describe('data set presets', () => {
  it('reads the HC18 index by column name and refuses one without pixel sizes', () => {
    const index = parseHc18Index('subject,file,pixel_size_mm\n007,007_HC.png,0.1\n');
    expect(index.get('007_HC.png')).toEqual({ file: '007_HC.png', subject: '007', pixelSizeMm: 0.1 });
    expect(refusal(() => parseHc18Index('file,subject\n1.png,1\n'))).toMatchObject({
      code: 'INVALID_INPUT',
      message: /pixel_size_mm/,
    });
  });

  it('refuses PH2 files that are not named IMDnnn', () => {
    expect(refusal(() => ph2Request(jpeg(), 'photo.jpg')).code).toBe('INVALID_INPUT');
  });
});
