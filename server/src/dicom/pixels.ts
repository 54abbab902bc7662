/**
 * Frame bytes (native or decompressed) to the pixel values the pipeline uses. Pure functions over
 * typed arrays.
 *
 * Grey images become modality values (stored value, masked to Bits Stored, sign-extended when
 * Pixel Representation is 1, then Rescale Slope/Intercept), with `invert` set for MONOCHROME1 so
 * that later stages can show "bright = high" without changing the values' meaning (HU stay HU).
 * Colour images become interleaved RGB: YBR_FULL/YBR_FULL_422 are converted, PALETTE COLOR is
 * looked up, planar configuration is undone.
 */
import type { PixelFormat } from './series-plan.js';

export type SlicePixels = GreyPixels | { kind: 'rgb'; data: Uint8Array | Uint16Array; maxValue: number };

export interface GreyPixels {
  kind: 'grey';
  /** Modality values (computed on first read when `stored` is given). */
  values: Float32Array;
  invert: boolean;
  /**
   * The frame's stored values in place, when they are little-endian 8- or 16-bit (not enumerable):
   * a consumer that needs only some pixels (the preprocessing's resize taps) computes their modality
   * values from these, as `storedToModality` says, and `values` is never made.
   */
  stored?: StoredGrey;
}

/** Stored values read in place; modality value of word w = fround(((w << shift) >> shift or >>> shift) * slope + intercept). */
export interface StoredGrey {
  /**
   * The stored words, always 16-bit: 8-bit frames are widened once (a copy of a few hundred kB), so
   * every loop over words sees one array type. A server sees both (US, CT), and V8's code for a loop
   * that has seen Uint8Array and Uint16Array is slower on either: with mixed types a 512x512 CT slice
   * took 0.64-1.05 ms (window) and 1.31 ms (min-max) instead of 0.56 and 0.99, an 800x600 8-bit
   * frame 1.87 ms (min-max) instead of 1.33 (`npm run bench:preprocess`, bench/RESULTS.md).
   */
  words: Uint16Array;
  /** Bits Allocated of the frame (8 or 16): how many distinct words it can hold (2^wordBits). */
  wordBits: 8 | 16;
  shift: number;
  signed: boolean;
  slope: number;
  intercept: number;
}

/** The modality value of one stored word, exactly as modalityValues() writes it into its Float32Array. */
export function storedToModality(stored: StoredGrey): (word: number) => number {
  const { shift, slope, intercept } = stored;
  const f = Math.fround;
  return stored.signed
    ? (w) => f(((w << shift) >> shift) * slope + intercept)
    : (w) => f(((w << shift) >>> shift) * slope + intercept);
}

/**
 * Grey pixels whose modality values are made only when read: little-endian 8- and 16-bit frames
 * keep their stored words in place (`stored`), so preprocessing that needs only the resize's taps
 * never converts the whole frame (2.7 MB of floats and a pass over 672,400 pixels per 820x820 slice).
 */
function greyPixels(
  frame: FrameBytes,
  format: PixelFormat,
  rescale: { slope: number; intercept: number },
  invert: boolean,
): GreyPixels {
  const n = format.rows * format.columns;
  const bytesPer = format.bitsAllocated / 8;
  if (!((bytesPer === 1 || bytesPer === 2) && !frame.bigEndian))
    return { kind: 'grey', values: modalityValues(frame, format, rescale), invert };
  const { bytes } = frame;
  let words: Uint16Array;
  if (bytesPer === 1) {
    words = new Uint16Array(n);
    words.set(bytes.subarray(0, n));
  } else {
    // A frame at an odd offset of a multipart body is copied once to align it (as modalityValues does).
    const aligned = bytes.byteOffset % 2 === 0 ? bytes : new Uint8Array(bytes.subarray(0, n * 2));
    words = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
  }
  let values: Float32Array | undefined;
  const pixels = { kind: 'grey', invert } as GreyPixels;
  Object.defineProperty(pixels, 'values', {
    enumerable: true,
    configurable: true,
    get: () => (values ??= modalityValues(frame, format, rescale)),
  });
  Object.defineProperty(pixels, 'stored', {
    enumerable: false,
    value: {
      words,
      wordBits: bytesPer === 1 ? 8 : 16,
      shift: 32 - format.bitsStored,
      signed: format.pixelRepresentation === 1,
      ...rescale,
    } satisfies StoredGrey,
  });
  return pixels;
}

export interface Palette {
  firstMapped: number;
  red: Uint16Array | Uint8Array;
  green: Uint16Array | Uint8Array;
  blue: Uint16Array | Uint8Array;
  bits: 8 | 16;
}

export interface FrameBytes {
  /** Little-endian samples. */
  bytes: Uint8Array;
  planar: boolean;
  /** Photometric interpretation of these bytes (RGB when a codec undid a colour transform). */
  photometric: string;
  /** True when the bytes are big-endian (retired Explicit VR Big Endian). */
  bigEndian?: boolean;
}

/** Bytes one native frame occupies. */
export function nativeFrameLength(format: PixelFormat): number {
  const pixels = format.rows * format.columns;
  if (format.photometricInterpretation === 'YBR_FULL_422') return pixels * 2;
  return pixels * format.samplesPerPixel * (format.bitsAllocated / 8);
}

/** Stored values of a grey frame as integers, masked to Bits Stored and sign-extended. */
export function storedValues(frame: FrameBytes, format: PixelFormat): Int32Array {
  const n = format.rows * format.columns;
  const bytesPer = format.bitsAllocated / 8;
  const out = new Int32Array(n);
  const { bytes } = frame;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const little = !frame.bigEndian;
  const shift = 32 - format.bitsStored;
  const signed = format.pixelRepresentation === 1;
  for (let i = 0; i < n; i++) {
    let raw: number;
    if (bytesPer === 1) raw = bytes[i]!;
    else if (bytesPer === 2) raw = view.getUint16(i * 2, little);
    else raw = view.getUint32(i * 4, little);
    // Keep only the stored bits (higher bits may hold overlays), then sign-extend when signed.
    out[i] = signed ? (raw << shift) >> shift : shift === 0 ? raw >>> 0 : (raw << shift) >>> shift;
  }
  return out;
}

/**
 * Modality values of a grey frame in one pass into the one array the pipeline keeps: the frame's
 * bytes are read in place (a typed-array view for little-endian 8- and 16-bit frames; big-endian and
 * 32-bit through a DataView), with no intermediate copy of the stored values. Same values as
 * storedValues() * slope + intercept.
 */
export function modalityValues(
  frame: FrameBytes,
  format: PixelFormat,
  rescale: { slope: number; intercept: number },
): Float32Array {
  const n = format.rows * format.columns;
  const bytesPer = format.bitsAllocated / 8;
  const out = new Float32Array(n);
  const { bytes } = frame;
  const { slope, intercept } = rescale;
  const shift = 32 - format.bitsStored;
  const signed = format.pixelRepresentation === 1;
  if (bytesPer === 1) {
    for (let i = 0; i < n; i++) {
      const raw = bytes[i]!;
      out[i] = (signed ? (raw << shift) >> shift : (raw << shift) >>> shift) * slope + intercept;
    }
    return out;
  }
  if (bytesPer === 2 && !frame.bigEndian) {
    // A view over the frame's own bytes; the shifts keep Bits Stored and sign-extend (as storedValues).
    // A frame at an odd offset of a multipart body is copied once to align it: one memcpy costs far
    // less than a DataView read per pixel.
    // (new Uint8Array(view) copies; Buffer#slice would not.)
    const aligned = bytes.byteOffset % 2 === 0 ? bytes : new Uint8Array(bytes.subarray(0, n * 2));
    const words = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
    if (signed) for (let i = 0; i < n; i++) out[i] = ((words[i]! << shift) >> shift) * slope + intercept;
    else for (let i = 0; i < n; i++) out[i] = ((words[i]! << shift) >>> shift) * slope + intercept;
    return out;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const little = !frame.bigEndian;
  for (let i = 0; i < n; i++) {
    let raw: number;
    if (bytesPer === 1) raw = bytes[i]!;
    else if (bytesPer === 2) raw = view.getUint16(i * 2, little);
    else raw = view.getUint32(i * 4, little);
    const stored = signed ? (raw << shift) >> shift : shift === 0 ? raw >>> 0 : (raw << shift) >>> shift;
    out[i] = stored * slope + intercept;
  }
  return out;
}

export function toSlicePixels(
  frame: FrameBytes,
  format: PixelFormat,
  rescale: { slope: number; intercept: number },
  palette?: Palette,
): SlicePixels {
  const photometric = frame.photometric;
  if (photometric === 'MONOCHROME1' || photometric === 'MONOCHROME2') {
    return greyPixels(frame, format, rescale, photometric === 'MONOCHROME1');
  }
  if (photometric === 'PALETTE COLOR') {
    if (!palette) throw new Error('PALETTE COLOR frame without its lookup tables');
    return applyPalette(storedValues(frame, format), palette);
  }
  const pixels = format.rows * format.columns;
  const rgb = new Uint8Array(pixels * 3);
  const src = frame.bytes;
  if (photometric === 'YBR_FULL_422') {
    // Pairs of pixels share chroma: Y1 Y2 Cb Cr.
    for (let p = 0; p < pixels; p += 2) {
      const o = p * 2;
      const cb = src[o + 2]!;
      const cr = src[o + 3]!;
      ybrToRgb(src[o]!, cb, cr, rgb, p * 3);
      if (p + 1 < pixels) ybrToRgb(src[o + 1]!, cb, cr, rgb, (p + 1) * 3);
    }
    return { kind: 'rgb', data: rgb, maxValue: 255 };
  }
  const planar = frame.planar;
  const at = (p: number, c: number) => (planar ? src[c * pixels + p]! : src[p * 3 + c]!);
  if (photometric === 'RGB') {
    if (!planar) return { kind: 'rgb', data: new Uint8Array(src.buffer, src.byteOffset, pixels * 3), maxValue: 255 };
    for (let p = 0; p < pixels; p++) for (let c = 0; c < 3; c++) rgb[p * 3 + c] = at(p, c);
    return { kind: 'rgb', data: rgb, maxValue: 255 };
  }
  if (photometric === 'YBR_FULL') {
    for (let p = 0; p < pixels; p++) ybrToRgb(at(p, 0), at(p, 1), at(p, 2), rgb, p * 3);
    return { kind: 'rgb', data: rgb, maxValue: 255 };
  }
  throw new Error(`photometric interpretation ${photometric} cannot be converted to RGB here`);
}

/** YBR_FULL to RGB, the ITU-R BT.601 full-range equations of PS3.3 C.7.6.3.1.2. */
function ybrToRgb(y: number, cb: number, cr: number, out: Uint8Array, o: number): void {
  out[o] = clamp255(Math.round(y + 1.402 * (cr - 128)));
  out[o + 1] = clamp255(Math.round(y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128)));
  out[o + 2] = clamp255(Math.round(y + 1.772 * (cb - 128)));
}

function clamp255(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

function applyPalette(stored: Int32Array, palette: Palette): SlicePixels {
  const out = palette.bits === 16 ? new Uint16Array(stored.length * 3) : new Uint8Array(stored.length * 3);
  const last = palette.red.length - 1;
  for (let i = 0; i < stored.length; i++) {
    let index = stored[i]! - palette.firstMapped;
    index = index < 0 ? 0 : index > last ? last : index;
    out[i * 3] = palette.red[index]!;
    out[i * 3 + 1] = palette.green[index]!;
    out[i * 3 + 2] = palette.blue[index]!;
  }
  return { kind: 'rgb', data: out, maxValue: palette.bits === 16 ? 65535 : 255 };
}

/**
 * Palette lookup tables from their data elements (PS3.3 C.7.6.3.1.5-6), expanding segmented
 * tables (C.7.9.2). `descriptor` is [entries (0 = 65536), first mapped value, bits per entry].
 */
export function buildPalette(
  descriptor: [number, number, number],
  data: { red: Uint8Array; green: Uint8Array; blue: Uint8Array },
  segmented: boolean,
): Palette {
  const entries = descriptor[0] === 0 ? 65536 : descriptor[0];
  const firstMapped = descriptor[1];
  const nominalBits = descriptor[2];
  if (segmented) {
    const bits = nominalBits as 8 | 16;
    const expand = (bytes: Uint8Array) => {
      const words = bits === 16 ? readUint16(bytes) : bytes;
      const values = expandSegmentedLut(words);
      return bits === 16 ? Uint16Array.from(values) : Uint8Array.from(values);
    };
    const red = expand(data.red);
    const green = expand(data.green);
    const blue = expand(data.blue);
    if (red.length !== green.length || red.length !== blue.length) throw new Error('segmented palette channels differ in length');
    return { firstMapped, red, green, blue, bits };
  }
  // 8-bit entries may be stored in 16-bit words: the data length tells the real entry size.
  const actualBits = Math.round((data.red.length / entries) * 8);
  if (actualBits !== 8 && actualBits !== 16) {
    throw new Error(`palette data of ${data.red.length} bytes does not hold ${entries} entries of 8 or 16 bits`);
  }
  const read = (bytes: Uint8Array) => (actualBits === 16 ? readUint16(bytes) : Uint8Array.from(bytes));
  return { firstMapped, red: read(data.red), green: read(data.green), blue: read(data.blue), bits: actualBits };
}

function readUint16(bytes: Uint8Array): Uint16Array {
  const out = new Uint16Array(bytes.length >> 1);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint16(i * 2, true);
  return out;
}

/** Expands a segmented lookup table: discrete (0), linear (1) and indirect (2) segments. */
export function expandSegmentedLut(words: ArrayLike<number>, maxSegments = Infinity, lastValue?: number): number[] {
  const lut: number[] = [];
  let offset = 0;
  let segments = 0;
  while (offset + 1 < words.length) {
    const opcode = words[offset]!;
    const length = words[offset + 1]!;
    offset += 2;
    if (opcode === 0) {
      if (offset + length > words.length) throw new Error('segmented palette: discrete segment runs past the data');
      for (let i = 0; i < length; i++) lut.push(words[offset + i]!);
      offset += length;
    } else if (opcode === 1) {
      const y0 = lut.length > 0 ? lut[lut.length - 1]! : lastValue;
      if (y0 === undefined) throw new Error('segmented palette: the first segment cannot be linear');
      const y1 = words[offset++]!;
      if (y0 === y1) for (let i = 0; i < length; i++) lut.push(y1);
      else {
        // Same arithmetic as numpy.linspace(y0 + step, y1, length) rounded half to even.
        const start = y0 + (y1 - y0) / length;
        const step = length > 1 ? (y1 - start) / (length - 1) : 0;
        for (let i = 0; i < length; i++) lut.push(roundHalfEven(i === length - 1 ? y1 : start + i * step));
      }
    } else if (opcode === 2) {
      if (lut.length === 0) throw new Error('segmented palette: the first segment cannot be indirect');
      const wordOffset = (words[offset + 1]! << 16) | words[offset]!;
      offset += 2;
      const sub = Array.prototype.slice.call(words, wordOffset) as number[];
      lut.push(...expandSegmentedLut(sub, length, lut[lut.length - 1]));
    } else {
      throw new Error(`segmented palette: unknown segment type ${opcode}`);
    }
    segments++;
    if (segments === maxSegments) break;
  }
  return lut;
}

function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
