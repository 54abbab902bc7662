import { describe, expect, it } from 'vitest';
import { decodeSlice } from '../../server/src/dicom/series-reader.js';
import type { SlicePlan } from '../../server/src/dicom/series-plan.js';
import { LdfsamError } from '../../server/src/errors.js';

const slice: SlicePlan = {
  index: 0,
  sopInstanceUID: '1.2.3',
  sopClassUID: '1.2.840.10008.5.1.4.1.1.2',
  frameNumber: 1,
  numberOfFrames: 1,
  instanceNumber: 1,
  position: [0, 0, 0],
  rescaleSlope: 1,
  rescaleIntercept: 0,
  format: {
    rows: 2,
    columns: 2,
    samplesPerPixel: 1,
    bitsAllocated: 16,
    bitsStored: 16,
    highBit: 15,
    pixelRepresentation: 0,
    photometricInterpretation: 'MONOCHROME2',
    planarConfiguration: 0,
  },
  palette: undefined,
  transferSyntaxUID: undefined,
};

const frame = (transferSyntaxUID: string, bytes: number[]) => ({
  frameNumber: 1,
  transferSyntaxUID,
  contentType: 'application/octet-stream',
  bytes: Buffer.from(bytes),
});

async function failure(p: Promise<unknown>): Promise<LdfsamError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(LdfsamError);
  return e as LdfsamError;
}

describe('decodeSlice', () => {
  it('decodes native little endian', async () => {
    const px = await decodeSlice(frame('1.2.840.10008.1.2.1', [1, 0, 2, 0, 3, 0, 4, 1]), slice);
    expect(px).toEqual({ kind: 'grey', values: Float32Array.from([1, 2, 3, 260]), invert: false });
  });

  it('refuses truncated native pixel data with the byte counts', async () => {
    const e = await failure(decodeSlice(frame('1.2.840.10008.1.2.1', [1, 0, 2]), slice));
    expect(e.code).toBe('UNSUPPORTED_DICOM');
    expect(e.message).toBe('instance 1.2.3 frame 1: truncated pixel data (3 bytes, expected 8)');
  });

  it('refuses a transfer syntax it cannot decode', async () => {
    const e = await failure(decodeSlice(frame('1.2.840.10008.1.2.4.100', [0]), slice));
    expect(e.code).toBe('UNSUPPORTED_DICOM');
    expect(e.message).toMatch(/cannot decode 1\.2\.840\.10008\.1\.2\.4\.100: transfer syntax .* is not supported/);
  });

  it('turns a codec failure on damaged JPEG 2000 / JPEG-LS / JPEG lossless data into a coded error', async () => {
    for (const ts of ['1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.70', '1.2.840.10008.1.2.5']) {
      const e = await failure(decodeSlice(frame(ts, [0xff, 0x4f, 0xff, 0x51, 0, 1, 2, 3]), slice));
      expect(e.code, ts).toBe('UNSUPPORTED_DICOM');
      expect(e.message, ts).toMatch(
        new RegExp(`instance 1\\.2\\.3 frame 1: (cannot decode ${ts.replace(/\./g, '\\.')}|decoded)`),
      );
    }
  });
});
