/**
 * The header of a JPEG (ISO 10918-1) file, read from its markers up to the first scan: frame size,
 * components with their sampling factors, and what colour space the components are in. Enough to
 * wrap the bitstream in DICOM unchanged, without decoding it.
 */
import { LdfsamError } from '../errors.js';

export interface JpegComponent {
  id: number;
  /** Horizontal and vertical sampling factors (1-4). */
  h: number;
  v: number;
}

export interface JpegHeader {
  /** Start-of-frame marker: 0xC0 baseline, 0xC1 extended, 0xC2 progressive, 0xC3 lossless, ... */
  sof: number;
  precision: number;
  rows: number;
  columns: number;
  components: JpegComponent[];
  /** JFIF APP0 present (components are YCbCr by definition). */
  jfif: boolean;
  /** Adobe APP14 transform flag (0: none, i.e. RGB/CMYK; 1: YCbCr; 2: YCCK), when present. */
  adobeTransform: number | undefined;
  /** Colour space of the coded components, as decoders (libjpeg) decide it. */
  colour: 'grey' | 'ycbcr' | 'rgb' | 'cmyk';
  /** Chroma coded at a lower resolution than luma (4:2:2, 4:2:0, ...). */
  chromaSubsampled: boolean;
}

const SOF_NAMES: Record<number, string> = {
  0xc0: 'baseline',
  0xc1: 'extended sequential',
  0xc2: 'progressive',
  0xc3: 'lossless',
  0xc5: 'differential sequential',
  0xc6: 'differential progressive',
  0xc7: 'differential lossless',
  0xc9: 'extended sequential (arithmetic)',
  0xca: 'progressive (arithmetic)',
  0xcb: 'lossless (arithmetic)',
  0xcd: 'differential sequential (arithmetic)',
  0xce: 'differential progressive (arithmetic)',
  0xcf: 'differential lossless (arithmetic)',
};

export function sofName(sof: number): string {
  return SOF_NAMES[sof] ?? `SOF 0x${sof.toString(16)}`;
}

export function isJpeg(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

/** Reads the markers before the first scan (SOS). Throws INVALID_INPUT on anything that is not a well-formed JPEG header. */
export function readJpegHeader(bytes: Uint8Array): JpegHeader {
  const bad = (why: string) => new LdfsamError('INVALID_INPUT', `not a readable JPEG file: ${why}`);
  if (!isJpeg(bytes)) throw bad('no SOI marker (FF D8) at the start');
  let frame: Omit<JpegHeader, 'jfif' | 'adobeTransform' | 'colour' | 'chromaSubsampled'> | undefined;
  let jfif = false;
  let adobeTransform: number | undefined;
  let i = 2;
  for (;;) {
    // Markers may be preceded by any number of FF fill bytes (B.1.1.2).
    if (i >= bytes.length || bytes[i] !== 0xff) throw bad(`expected a marker at byte ${i}`);
    while (i < bytes.length && bytes[i] === 0xff) i++;
    const marker = bytes[i++];
    if (marker === undefined) throw bad('ends inside a marker');
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue; // no length
    if (marker === 0xd9) throw bad('ends (EOI) before any scan');
    if (i + 2 > bytes.length) throw bad('truncated marker segment');
    const length = (bytes[i]! << 8) | bytes[i + 1]!;
    const end = i + length;
    if (length < 2 || end > bytes.length) throw bad(`marker FF ${hex(marker)} has a bad length ${length}`);
    const body = bytes.subarray(i + 2, end);
    if (marker === 0xda) {
      if (!frame) throw bad('a scan (SOS) comes before the frame header (SOF)');
      return { ...frame, jfif, adobeTransform, ...colourOf(frame.components, jfif, adobeTransform) };
    }
    if (SOF_NAMES[marker] !== undefined) {
      if (frame) throw bad('more than one frame header (SOF)');
      if (body.length < 6) throw bad('truncated frame header');
      const n = body[5]!;
      if (body.length < 6 + 3 * n) throw bad('truncated frame header components');
      const components: JpegComponent[] = [];
      for (let c = 0; c < n; c++) {
        const id = body[6 + 3 * c]!;
        const hv = body[7 + 3 * c]!;
        components.push({ id, h: hv >> 4, v: hv & 15 });
      }
      frame = {
        sof: marker,
        precision: body[0]!,
        rows: (body[1]! << 8) | body[2]!,
        columns: (body[3]! << 8) | body[4]!,
        components,
      };
    } else if (marker === 0xe0 && ascii(body, 0, 5) === 'JFIF\0') {
      jfif = true;
    } else if (marker === 0xee && ascii(body, 0, 5) === 'Adobe' && body.length >= 12) {
      adobeTransform = body[11];
    }
    i = end;
  }
}

/** libjpeg's rules (jdapimin.c default_decompress_parms): JFIF means YCbCr; else Adobe's flag; else component ids. */
function colourOf(
  components: JpegComponent[],
  jfif: boolean,
  adobeTransform: number | undefined,
): { colour: JpegHeader['colour']; chromaSubsampled: boolean } {
  const n = components.length;
  let colour: JpegHeader['colour'];
  if (n === 1) colour = 'grey';
  else if (n === 4) colour = 'cmyk';
  else if (jfif) colour = 'ycbcr';
  else if (adobeTransform !== undefined) colour = adobeTransform === 0 ? 'rgb' : 'ycbcr';
  else {
    const ids = components.map((c) => c.id);
    colour = ids[0] === 0x52 && ids[1] === 0x47 && ids[2] === 0x42 ? 'rgb' : 'ycbcr'; // 'R' 'G' 'B'
  }
  const [luma, ...chroma] = components;
  const chromaSubsampled = n === 3 && chroma.some((c) => c.h < luma!.h || c.v < luma!.v);
  return { colour, chromaSubsampled };
}

function ascii(bytes: Uint8Array, start: number, length: number): string {
  return String.fromCharCode(...bytes.subarray(start, start + length));
}

function hex(n: number): string {
  return n.toString(16).toUpperCase().padStart(2, '0');
}
