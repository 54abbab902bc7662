/**
 * Writing DICOM Part 10 files (PS3.10 7.1) with dcmjs' encoder: the file meta information with
 * ldfsam's implementation identity, the data set in tag order, and the pixel data either native
 * (appended after the data set, copied once) or as one encapsulated fragment. The one writer of
 * `import-images` and the SEG writer.
 */
import dcmjs from 'dcmjs';
import type { DicomJson } from '../dicomweb/types.js';
import { TAG } from './tags.js';

export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
export const IMPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2';
/** Our implementation class UID (2.25 UUID-derived root) and version name, as PS3.7 D.3.3 asks. */
export const IMPLEMENTATION_CLASS_UID = '2.25.182947165207716355290880317744591306493';
export const IMPLEMENTATION_VERSION_NAME = 'LDFSAM_0_1';

export interface Part10Identity {
  sopClassUID: string;
  sopInstanceUID: string;
  transferSyntaxUID: string;
}

/**
 * Native pixel data (explicit VR little endian; an odd length is padded) or one encapsulated frame
 * kept in one fragment (dcmjs would otherwise cut it into 20 kB fragments).
 */
export type PixelDataPart = { native: Uint8Array } | { encapsulated: Uint8Array };

export function writePart10(dataset: DicomJson, id: Part10Identity, pixelData?: PixelDataPart): Uint8Array {
  if (pixelData && 'native' in pixelData && id.transferSyntaxUID !== EXPLICIT_VR_LITTLE_ENDIAN)
    throw new Error(`native pixel data is written in explicit VR little endian only, not ${id.transferSyntaxUID}`);
  const meta: DicomJson = {
    [TAG.FileMetaInformationVersion]: { vr: 'OB', Value: [new Uint8Array([0, 1]).buffer] },
    [TAG.MediaStorageSOPClassUID]: { vr: 'UI', Value: [id.sopClassUID] },
    [TAG.MediaStorageSOPInstanceUID]: { vr: 'UI', Value: [id.sopInstanceUID] },
    [TAG.TransferSyntaxUID]: { vr: 'UI', Value: [id.transferSyntaxUID] },
    [TAG.ImplementationClassUID]: { vr: 'UI', Value: [IMPLEMENTATION_CLASS_UID] },
    [TAG.ImplementationVersionName]: { vr: 'SH', Value: [IMPLEMENTATION_VERSION_NAME] },
  };
  const dict = new dcmjs.data.DicomDict(meta);
  dict.dict = sortTags(dataset);
  if (pixelData && 'encapsulated' in pixelData)
    dict.dict[TAG.PixelData] = { vr: 'OB', Value: [toArrayBuffer(pixelData.encapsulated)] };
  // dcmjs' typings lack write's options; fragmentMultiframe: false keeps one fragment per frame.
  const writer = dict as unknown as {
    write(options: { allowInvalidVRLength: boolean; fragmentMultiframe: boolean }): ArrayBuffer;
  };
  const head = new Uint8Array(writer.write({ allowInvalidVRLength: false, fragmentMultiframe: false }));
  return pixelData && 'native' in pixelData ? withNativePixelData(head, pixelData.native) : head;
}

/**
 * Appends Pixel Data (7FE0,0010), the last top-level element, to the file dcmjs wrote without it:
 * one allocation of the final size and one copy of the pixels. Handing large pixel data to dcmjs
 * copied it three times (a detached copy, its growing write stream, the returned buffer): for a
 * SEG, about 4x the frames' size in flight while the model's memory is still held, the peak of a
 * long series.
 */
function withNativePixelData(head: Uint8Array, pixels: Uint8Array): Uint8Array {
  const length = pixels.length + (pixels.length % 2); // values have an even length (PS3.5 7.1.1)
  const out = new Uint8Array(head.length + 12 + length);
  out.set(head);
  const view = new DataView(out.buffer, head.length, 12);
  view.setUint16(0, 0x7fe0, true);
  view.setUint16(2, 0x0010, true);
  out[head.length + 4] = 0x4f; // 'O'
  out[head.length + 5] = 0x42; // 'B'
  view.setUint32(8, length, true); // explicit VR little endian OB: 2 reserved bytes, 32-bit length
  out.set(pixels, head.length + 12);
  return out;
}

function sortTags(ds: DicomJson): DicomJson {
  return Object.fromEntries(Object.entries(ds).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function toArrayBuffer(data: Uint8Array): ArrayBuffer {
  return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
}
