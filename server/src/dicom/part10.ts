/** Reading DICOM Part 10 files (the header, not the pixels) with dcmjs. */
import dcmjs from 'dcmjs';
import { LdfsamError } from '../errors.js';
import { checkElementBounds } from './element-bounds.js';

// dcmjs reports recoverable oddities (e.g. "Invalid vr type xs") on its validation logger; the
// callers check what they need themselves and keep CLI output clean.
dcmjs.log.getLogger('validation.dcmjs').setLevel('silent');

export const DICOMDIR_SOP_CLASS = '1.2.840.10008.1.3.10';

/** A Part 10 file starts with a 128-byte preamble and "DICM". */
export function isPart10(bytes: Uint8Array): boolean {
  return bytes.length >= 132 && bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 && bytes[131] === 0x4d;
}

export interface Part10Header {
  transferSyntaxUID: string | undefined;
  mediaStorageSOPClassUID: string | undefined;
  /** dcmjs' naturalized data set, up to (not including) the pixel data. */
  dataset: Record<string, unknown>;
}

/**
 * dcmjs' readFile after checking every length in the file (element-bounds.ts: dcmjs zero-fills and
 * allocates by a length that runs past the data). `header`: up to, not including, the pixel data.
 */
export function readDicomFile(bytes: Uint8Array, options: { header?: boolean } = {}) {
  checkElementBounds(bytes, { untilPixelData: options.header });
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  return options.header
    ? dcmjs.data.DicomMessage.readFile(buffer, { untilTag: '7FE00010', includeUntilTagValue: false })
    : dcmjs.data.DicomMessage.readFile(buffer);
}

/** Parses everything before the pixel data. Throws on a file dcmjs cannot read. */
export function readPart10Header(bytes: Uint8Array): Part10Header {
  const file = readDicomFile(bytes, { header: true });
  const meta = file.meta as Record<string, { Value?: unknown[] }>;
  return {
    transferSyntaxUID: meta['00020010']?.Value?.[0] as string | undefined,
    mediaStorageSOPClassUID: meta['00020002']?.Value?.[0] as string | undefined,
    dataset: dcmjs.data.DicomMetaDictionary.naturalizeDataset(file.dict),
  };
}

/** Transfer syntax, Number of Frames and Pixel Data of a whole Part 10 file (one buffer per frame when encapsulated). */
export function readPart10Pixels(bytes: Uint8Array): {
  transferSyntaxUID: string;
  numberOfFrames: number;
  pixelData: Uint8Array[];
} {
  let file;
  try {
    file = readDicomFile(bytes);
  } catch (err) {
    if (err instanceof LdfsamError) throw err;
    throw new LdfsamError('UNSUPPORTED_DICOM', `unreadable DICOM file: ${(err as Error).message}`);
  }
  const meta = file.meta as Record<string, { Value?: unknown[] }>;
  const dict = file.dict as Record<string, { Value?: unknown[] }>;
  const transferSyntaxUID = meta['00020010']?.Value?.[0];
  const values = dict['7FE00010']?.Value;
  if (typeof transferSyntaxUID !== 'string' || !values)
    throw new LdfsamError('UNSUPPORTED_DICOM', 'no transfer syntax or no pixel data');
  const frames = Number(dict['00280008']?.Value?.[0] ?? 1);
  return {
    transferSyntaxUID,
    numberOfFrames: Number.isInteger(frames) && frames > 0 ? frames : 1,
    pixelData: values.map((v) => new Uint8Array(v as ArrayBuffer)),
  };
}
