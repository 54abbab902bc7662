/** Reading DICOM Part 10 files (the header, not the pixels) with dcmjs. */
import dcmjs from 'dcmjs';

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

/** Parses everything before the pixel data. Throws on a file dcmjs cannot read. */
export function readPart10Header(bytes: Uint8Array): Part10Header {
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const file = dcmjs.data.DicomMessage.readFile(buffer, { untilTag: '7FE00010', includeUntilTagValue: false });
  const meta = file.meta as Record<string, { Value?: unknown[] }>;
  return {
    transferSyntaxUID: meta['00020010']?.Value?.[0] as string | undefined,
    mediaStorageSOPClassUID: meta['00020002']?.Value?.[0] as string | undefined,
    dataset: dcmjs.data.DicomMetaDictionary.naturalizeDataset(file.dict) as Record<string, unknown>,
  };
}
