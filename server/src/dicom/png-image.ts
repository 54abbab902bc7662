/**
 * 8-bit grey or RGB PNG files to interleaved samples (pngjs), refusing what DICOM would store
 * differently: other bit depths (pngjs would silently rescale them to 8 bits) and real transparency.
 */
import { PNG } from 'pngjs';
import { LdfsamError } from '../errors.js';

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const COLOUR_TYPES: Record<number, string> = { 0: 'grey', 2: 'RGB', 3: 'palette', 4: 'grey + alpha', 6: 'RGB + alpha' };

export interface PngImage {
  rows: number;
  columns: number;
  samplesPerPixel: 1 | 3;
  /** rows x columns x samples, interleaved (R1 G1 B1 R2 ...). */
  pixels: Uint8Array;
  /** The PNG colour type (0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGB + alpha). */
  colourType: number;
}

export function isPng(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && SIGNATURE.every((b, i) => bytes[i] === b);
}

/** The IHDR fields, read before decoding so that refusals name the real bit depth. */
export function readPngHeader(bytes: Uint8Array): { columns: number; rows: number; bitDepth: number; colourType: number } {
  if (!isPng(bytes)) throw new LdfsamError('INVALID_INPUT', 'not a PNG file (no PNG signature)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 33 || String.fromCharCode(...bytes.subarray(12, 16)) !== 'IHDR')
    throw new LdfsamError('INVALID_INPUT', 'not a readable PNG file: no IHDR chunk');
  return { columns: view.getUint32(16), rows: view.getUint32(20), bitDepth: bytes[24]!, colourType: bytes[25]! };
}

export function decodePng(bytes: Uint8Array): PngImage {
  const header = readPngHeader(bytes);
  const kind = COLOUR_TYPES[header.colourType] ?? `colour type ${header.colourType}`;
  if (header.bitDepth !== 8) {
    throw new LdfsamError(
      'INVALID_INPUT',
      `${header.bitDepth}-bit ${kind} PNG is not supported: only 8-bit grey or RGB PNG are converted (no rescaling of values)`,
    );
  }
  if (header.columns < 1 || header.rows < 1 || header.columns > 0xffff || header.rows > 0xffff) {
    throw new LdfsamError('INVALID_INPUT', `PNG of ${header.columns} x ${header.rows} pixels: DICOM holds 1 to 65535 per side`);
  }
  let png;
  try {
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (err) {
    throw new LdfsamError('INVALID_INPUT', `not a readable PNG file: ${(err as Error).message}`, {}, { cause: err });
  }
  // pngjs hands out RGBA for every colour type (grey replicated, palette looked up, tRNS as alpha).
  const { width: columns, height: rows, data } = png;
  const n = rows * columns;
  for (let i = 0; i < n; i++) {
    if (data[i * 4 + 3] !== 255) {
      throw new LdfsamError(
        'INVALID_INPUT',
        `${kind} PNG with transparent pixels (first at pixel ${i}): DICOM images have no alpha; flatten it first`,
      );
    }
  }
  const grey = header.colourType === 0 || header.colourType === 4;
  const samplesPerPixel = grey ? 1 : 3;
  const pixels = new Uint8Array(n * samplesPerPixel);
  if (grey) for (let i = 0; i < n; i++) pixels[i] = data[i * 4]!;
  else {
    for (let i = 0; i < n; i++) {
      pixels[i * 3] = data[i * 4]!;
      pixels[i * 3 + 1] = data[i * 4 + 1]!;
      pixels[i * 3 + 2] = data[i * 4 + 2]!;
    }
  }
  return { rows, columns, samplesPerPixel, pixels, colourType: header.colourType };
}
