import { describe, expect, it } from 'vitest';
import { decodeRle } from '../../server/src/dicom/codecs/rle.js';
import { buildPalette, expandSegmentedLut, modalityValues, storedValues, toSlicePixels } from '../../server/src/dicom/pixels.js';
import type { PixelFormat } from '../../server/src/dicom/series-plan.js';

const grey = (over: Partial<PixelFormat> = {}): PixelFormat => ({
  rows: 1,
  columns: 4,
  samplesPerPixel: 1,
  bitsAllocated: 16,
  bitsStored: 16,
  highBit: 15,
  pixelRepresentation: 0,
  photometricInterpretation: 'MONOCHROME2',
  planarConfiguration: 0,
  ...over,
});

const le16 = (...values: number[]) => new Uint8Array(new Uint16Array(values).buffer);

describe('grey pixels', () => {
  it('modalityValues (one pass, views over the frame) equals storedValues * slope + intercept', () => {
    let seed = 3;
    const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) & 0xff;
    const formats: [Partial<PixelFormat>, boolean][] = [
      [{ bitsAllocated: 8, bitsStored: 8, highBit: 7 }, false],
      [{}, false],
      [{ pixelRepresentation: 1 }, false],
      [{ bitsStored: 12, highBit: 11, pixelRepresentation: 1 }, false],
      [{ bitsStored: 12, highBit: 11 }, false],
      [{}, true],
      [{ bitsAllocated: 32, bitsStored: 32, highBit: 31, pixelRepresentation: 1 }, false],
    ];
    for (const [over, bigEndian] of formats) {
      const format = grey({ rows: 3, columns: 5, ...over });
      for (const offset of [0, 1]) {
        // An odd byte offset (a frame inside a multipart body) takes the DataView path.
        const backing = Uint8Array.from({ length: offset + 15 * (format.bitsAllocated / 8) }, next);
        const rescale = { slope: 0.5, intercept: -1024 };
        // As a Uint8Array and as a Node Buffer (a multipart part is a Buffer view, whose slice() is no copy).
        for (const bytes of [backing.subarray(offset), Buffer.from(backing.buffer, offset)]) {
          const frame = { bytes, planar: false, photometric: 'MONOCHROME2', bigEndian };
          const expected = Float32Array.from(storedValues(frame, format), (v) => v * rescale.slope + rescale.intercept);
          expect(modalityValues(frame, format, rescale)).toEqual(expected);
        }
      }
    }
  });

  it('masks bits above Bits Stored and sign-extends signed 12-bit values', () => {
    const format = grey({ bitsStored: 12, highBit: 11, pixelRepresentation: 1 });
    // 0xF800: overlay bits set above a stored 0x800 (-2048); 0x07FF = 2047; 0x0FFF = -1.
    const values = storedValues(
      { bytes: le16(0xf800, 0x07ff, 0x0fff, 0x0001), planar: false, photometric: 'MONOCHROME2' },
      format,
    );
    expect(Array.from(values)).toEqual([-2048, 2047, -1, 1]);
  });

  it('keeps unsigned values and masks their unused high bits', () => {
    const format = grey({ bitsStored: 12, highBit: 11 });
    const values = storedValues({ bytes: le16(0xf001, 0x0fff, 0, 4095), planar: false, photometric: 'MONOCHROME2' }, format);
    expect(Array.from(values)).toEqual([1, 4095, 0, 4095]);
  });

  it('applies Rescale Slope/Intercept and flags MONOCHROME1 for inversion without changing values', () => {
    const format = grey({ photometricInterpretation: 'MONOCHROME1' });
    const px = toSlicePixels({ bytes: le16(0, 1, 2, 1000), planar: false, photometric: 'MONOCHROME1' }, format, {
      slope: 2,
      intercept: -1024,
    });
    expect(px).toEqual({ kind: 'grey', values: Float32Array.from([-1024, -1022, -1020, 976]), invert: true });
  });

  it('reads big-endian samples of the retired explicit big endian syntax', () => {
    const bytes = new Uint8Array([0x01, 0x02, 0, 0, 0, 0, 0, 0]);
    expect(storedValues({ bytes, planar: false, photometric: 'MONOCHROME2', bigEndian: true }, grey())[0]).toBe(0x0102);
  });
});

describe('colour pixels', () => {
  const rgbFormat = (photometric: string, planar: 0 | 1 = 0): PixelFormat =>
    grey({
      rows: 1,
      columns: 2,
      samplesPerPixel: 3,
      bitsAllocated: 8,
      bitsStored: 8,
      highBit: 7,
      photometricInterpretation: photometric,
      planarConfiguration: planar,
    });

  it('undoes planar configuration', () => {
    const px = toSlicePixels(
      { bytes: new Uint8Array([1, 2, 10, 20, 100, 200]), planar: true, photometric: 'RGB' },
      rgbFormat('RGB', 1),
      { slope: 1, intercept: 0 },
    );
    expect(Array.from((px as { data: Uint8Array }).data)).toEqual([1, 10, 100, 2, 20, 200]);
  });

  it('converts YBR_FULL with the full-range BT.601 equations', () => {
    // Y=128, Cb=Cr=128 is mid grey; pure red (255,0,0) is Y=76, Cb=85, Cr=255.
    const px = toSlicePixels(
      { bytes: new Uint8Array([128, 128, 128, 76, 85, 255]), planar: false, photometric: 'YBR_FULL' },
      rgbFormat('YBR_FULL'),
      { slope: 1, intercept: 0 },
    );
    const data = Array.from((px as { data: Uint8Array }).data);
    expect(data.slice(0, 3)).toEqual([128, 128, 128]);
    expect(data[3]).toBeGreaterThanOrEqual(253);
    expect(data[4]).toBeLessThanOrEqual(1);
    expect(data[5]).toBeLessThanOrEqual(1);
  });

  it('expands YBR_FULL_422 pairs (Y1 Y2 Cb Cr) to two RGB pixels', () => {
    const px = toSlicePixels(
      { bytes: new Uint8Array([50, 200, 128, 128]), planar: false, photometric: 'YBR_FULL_422' },
      rgbFormat('YBR_FULL_422'),
      { slope: 1, intercept: 0 },
    );
    expect(Array.from((px as { data: Uint8Array }).data)).toEqual([50, 50, 50, 200, 200, 200]);
  });

  it('looks up PALETTE COLOR with the first mapped value and clamps outside the table', () => {
    const palette = buildPalette([3, 10, 16], { red: le16(100, 200, 300), green: le16(1, 2, 3), blue: le16(7, 8, 9) }, false);
    expect(palette.bits).toBe(16);
    const format = grey({ bitsAllocated: 8, bitsStored: 8, highBit: 7, photometricInterpretation: 'PALETTE COLOR' });
    const px = toSlicePixels(
      { bytes: new Uint8Array([9, 10, 12, 250]), planar: false, photometric: 'PALETTE COLOR' },
      format,
      { slope: 1, intercept: 0 },
      palette,
    );
    expect(Array.from((px as { data: Uint16Array }).data)).toEqual([100, 1, 7, 100, 1, 7, 300, 3, 9, 300, 3, 9]);
  });

  it('takes 8-bit palette entries from the data length, not the nominal bits', () => {
    const palette = buildPalette(
      [4, 0, 16],
      { red: new Uint8Array([1, 2, 3, 4]), green: new Uint8Array(4), blue: new Uint8Array(4) },
      false,
    );
    expect(palette.bits).toBe(8);
    expect(Array.from(palette.red)).toEqual([1, 2, 3, 4]);
  });
});

describe('segmented palettes (PS3.3 C.7.9.2)', () => {
  it('expands discrete, linear and indirect segments', () => {
    // discrete [0, 10]; linear to 50 over 4 steps; indirect: repeat 2 segments from word 0.
    const words = [0, 2, 0, 10, 1, 4, 50, 2, 2, 0, 0];
    expect(expandSegmentedLut(words)).toEqual([0, 10, 20, 30, 40, 50, 0, 10, 20, 30, 40, 50]);
  });

  it('rounds linear segments half to even like numpy', () => {
    expect(expandSegmentedLut([0, 1, 0, 1, 4, 2])).toEqual([0, 0, 1, 2, 2]);
  });

  it('refuses a table that starts with a linear segment', () => {
    expect(() => expandSegmentedLut([1, 4, 50])).toThrow(/first segment cannot be linear/);
  });
});

describe('RLE lossless', () => {
  const header = (offsets: number[]) => {
    const h = new Uint8Array(64);
    const v = new DataView(h.buffer);
    v.setUint32(0, offsets.length, true);
    offsets.forEach((o, i) => v.setUint32(4 + 4 * i, o, true));
    return h;
  };

  it('decodes literal and replicate runs of a 16-bit frame, high byte segment first', () => {
    // 4 pixels: high bytes [1,1,1,1] (replicate), low bytes [2,3,4,5] (literal).
    const high = [0xfd, 1];
    const low = [3, 2, 3, 4, 5];
    const data = new Uint8Array([...header([64, 64 + high.length]), ...high, ...low]);
    const out = decodeRle(data, 1, 4, 1, 2);
    expect(Array.from(new Uint16Array(out.buffer))).toEqual([0x0102, 0x0103, 0x0104, 0x0105]);
  });

  it('reports a truncated segment instead of returning short data', () => {
    const data = new Uint8Array([...header([64]), 1, 7]);
    expect(() => decodeRle(data, 1, 4, 1, 1)).toThrow(/RLE (literal run runs past|segment holds)/);
  });

  it('refuses a header size the frame cannot hold before allocating for it (fuzzer finding)', () => {
    const before = process.memoryUsage().arrayBuffers;
    const data = new Uint8Array([...header([64]), 0xff, 0]);
    expect(() => decodeRle(data, 16384, 16384, 1, 1)).toThrow(/66 bytes cannot hold 16384 x 16384 x 1 bytes/);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(2 ** 20);
  });

  it('refuses a segment count that does not fit the format', () => {
    expect(() => decodeRle(new Uint8Array([...header([64, 65]), 0, 0]), 1, 1, 1, 1)).toThrow(/2 segments, expected 1/);
  });
});
