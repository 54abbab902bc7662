/**
 * Decompression of encapsulated frames in the server. Why here and not in the PACS: Debian's Orthanc
 * 1.10.1 with the GDCM plugin crashed (SIGSEGV) when asked to transcode JPEG 2000 frames to explicit
 * little endian, and not every DICOMweb server transcodes at all; see the README's "Decoding" notes
 * for the measurements. The wasm codecs are the ones OHIF/cornerstone use in the browser.
 */
import { createRequire } from 'node:module';
import { Decoder as JpegLosslessDecoder } from 'jpeg-lossless-decoder-js';
import { decodeRle } from './rle.js';

const require = createRequire(import.meta.url);

export const TS = {
  ImplicitLittle: '1.2.840.10008.1.2',
  ExplicitLittle: '1.2.840.10008.1.2.1',
  Deflated: '1.2.840.10008.1.2.1.99',
  ExplicitBig: '1.2.840.10008.1.2.2',
  JpegBaseline: '1.2.840.10008.1.2.4.50',
  JpegExtended: '1.2.840.10008.1.2.4.51',
  JpegLossless: '1.2.840.10008.1.2.4.57',
  JpegLosslessSV1: '1.2.840.10008.1.2.4.70',
  JpegLsLossless: '1.2.840.10008.1.2.4.80',
  JpegLsNearLossless: '1.2.840.10008.1.2.4.81',
  J2kLossless: '1.2.840.10008.1.2.4.90',
  J2k: '1.2.840.10008.1.2.4.91',
  Rle: '1.2.840.10008.1.2.5',
} as const;

export const NATIVE_SYNTAXES = new Set<string>([TS.ImplicitLittle, TS.ExplicitLittle, TS.Deflated, TS.ExplicitBig]);
export const DECODABLE_SYNTAXES = new Set<string>([...NATIVE_SYNTAXES, ...Object.values(TS)]);

export interface DecodedFrame {
  /** Little-endian samples, `bytesPerSample` bytes each. */
  bytes: Uint8Array;
  width: number;
  height: number;
  components: number;
  /** Planar (sample-major) layout: true for RLE output. */
  planar: boolean;
  /** The codec undid the colour transform (JPEG YCbCr, JPEG 2000 RCT/ICT): samples are RGB. */
  colourConvertedToRgb: boolean;
}

interface WasmDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  getDecodedBuffer(): Uint8Array;
  decode(): void;
  getFrameInfo(): { width: number; height: number; componentCount: number; bitsPerSample: number };
  delete(): void;
}
type WasmModule = Record<string, new () => WasmDecoder>;
const wasmModules = new Map<string, Promise<WasmModule>>();

function loadWasm(pkg: string): Promise<WasmModule> {
  let loading = wasmModules.get(pkg);
  if (!loading) {
    const factory = require(pkg) as (overrides: object) => Promise<WasmModule>;
    // The codecs print progress ("[INFO] Header of tile 1 / 1 has been read.") on stdout: silence
    // them, so that --json output stays JSON. Their errors reach us as exceptions.
    loading = factory({ print: () => undefined, printErr: () => undefined });
    wasmModules.set(pkg, loading);
  }
  return loading;
}

async function decodeWasm(pkg: string, className: string, input: Uint8Array): Promise<DecodedFrame & { bitsPerSample: number }> {
  const mod = await loadWasm(pkg);
  const Ctor = mod[className];
  if (!Ctor) throw new Error(`${pkg} has no ${className}`);
  const decoder = new Ctor();
  try {
    decoder.getEncodedBuffer(input.length).set(input);
    decoder.decode();
    const info = decoder.getFrameInfo();
    return {
      bytes: new Uint8Array(decoder.getDecodedBuffer()), // a copy: the wasm heap is reused
      width: info.width,
      height: info.height,
      components: info.componentCount,
      bitsPerSample: info.bitsPerSample,
      planar: false,
      colourConvertedToRgb: false,
    };
  } finally {
    decoder.delete();
  }
}

/**
 * Decompresses one encapsulated frame. `bytesPerSample` is Bits Allocated / 8 of the data set;
 * throws a plain Error with the codec's words on damaged data (the caller adds the DICOM context).
 */
export async function decompress(
  transferSyntaxUID: string,
  input: Uint8Array,
  expect: { rows: number; columns: number; samples: number; bytesPerSample: number; photometric: string },
): Promise<DecodedFrame> {
  const { rows, columns, samples, bytesPerSample } = expect;
  const ycc = expect.photometric.startsWith('YBR');
  switch (transferSyntaxUID) {
    case TS.Rle:
      return {
        bytes: decodeRle(input, rows, columns, samples, bytesPerSample),
        width: columns,
        height: rows,
        components: samples,
        planar: samples > 1,
        colourConvertedToRgb: false,
      };
    case TS.JpegBaseline:
    case TS.JpegExtended: {
      if (bytesPerSample !== 1) throw new Error('12-bit JPEG extended is not supported');
      const out = await decodeWasm('@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs', 'JPEGDecoder', input);
      // libjpeg-turbo outputs RGB for 3-component JPEG (it undoes the YCbCr transform).
      return { ...out, colourConvertedToRgb: samples === 3 && ycc };
    }
    case TS.J2kLossless:
    case TS.J2k: {
      const out = await decodeWasm('@cornerstonejs/codec-openjpeg/decodewasmjs', 'J2KDecoder', input);
      // OpenJPEG applies the inverse multiple-component transform (RCT/ICT) itself.
      return {
        ...out,
        colourConvertedToRgb: samples === 3 && (expect.photometric === 'YBR_RCT' || expect.photometric === 'YBR_ICT'),
      };
    }
    case TS.JpegLsLossless:
    case TS.JpegLsNearLossless:
      return decodeWasm('@cornerstonejs/codec-charls/decodewasmjs', 'JpegLSDecoder', input);
    case TS.JpegLossless:
    case TS.JpegLosslessSV1: {
      const decoder = new JpegLosslessDecoder();
      // A fresh, unshared ArrayBuffer: the decoder reads `buffer` from offset 0 (and Buffer#slice would not copy).
      const copy = new Uint8Array(input);
      const out = decoder.decode(copy.buffer, 0, copy.byteLength, bytesPerSample);
      const bytes = out instanceof ArrayBuffer ? new Uint8Array(out) : new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
      return { bytes, width: columns, height: rows, components: samples, planar: false, colourConvertedToRgb: false };
    }
    default:
      throw new Error(`transfer syntax ${transferSyntaxUID} is not supported`);
  }
}
