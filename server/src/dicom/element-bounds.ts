/**
 * Checks, before dcmjs parses a Part 10 file, that every element, item and fragment length fits
 * inside what contains it. Why: dcmjs reads a value that runs past the end of its buffer by
 * allocating the declared length and zero-filling what is missing, so a damaged length field made
 * it allocate up to 4 GB, and truncated pixel data came back full length, zero-padded, and was
 * segmented as if whole (found by the fuzzer, test/reliability). Walks the bytes without copying.
 */
import dcmjs from 'dcmjs';
import { LdfsamError } from '../errors.js';

const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
/** Every VR of PS3.5 table 6.2-1. dcmjs reads an unknown one with a 4-byte length: refused instead. */
const VRS = new Set([
  ...LONG_VRS,
  ...[
    'AE',
    'AS',
    'AT',
    'CS',
    'DA',
    'DS',
    'DT',
    'FL',
    'FD',
    'IS',
    'LO',
    'LT',
    'PN',
    'SH',
    'SL',
    'SS',
    'ST',
    'TM',
    'UI',
    'UL',
    'US',
  ],
]);
const UNDEFINED = 0xffffffff;
/** Nesting deeper than this is refused (dcmjs recurses once per level). */
const MAX_DEPTH = 64;
const IMPLICIT_LE = '1.2.840.10008.1.2';
const EXPLICIT_BE = '1.2.840.10008.1.2.2';
const DEFLATED = new Set(['1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.8.1']);

interface Walk {
  view: DataView;
  explicit: boolean;
  little: boolean;
}

/**
 * Throws UNSUPPORTED_DICOM when a length in the file lies. `untilPixelData`: stop at the top-level
 * Pixel Data element, as a header-only read does (its value is not read then).
 */
export function checkElementBounds(bytes: Uint8Array, options: { untilPixelData?: boolean } = {}): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 132) throw bad('the file is shorter than the Part 10 preamble');
  // File meta information: always explicit VR little endian.
  const meta: Walk = { view, explicit: true, little: true };
  let offset = 132;
  let transferSyntax = '';
  while (offset + 4 <= bytes.length && view.getUint16(offset, true) === 0x0002) {
    const el = header(meta, offset, bytes.length);
    if (el.tag === 0x00020010 && el.length !== UNDEFINED) {
      transferSyntax = new TextDecoder('latin1').decode(bytes.subarray(el.valueStart, el.valueStart + el.length));
      transferSyntax = transferSyntax.replace(/[\0 ]+$/, '');
    }
    offset = entry(meta, el, bytes.length, 0, 'elements');
  }
  if (DEFLATED.has(transferSyntax)) return; // the data set is compressed; its inflated size is not in these bytes
  const body: Walk = { view, explicit: transferSyntax !== IMPLICIT_LE, little: transferSyntax !== EXPLICIT_BE };
  while (offset < bytes.length) {
    const el = header(body, offset, bytes.length);
    if (options.untilPixelData && el.tag === 0x7fe00010) return;
    offset = entry(body, el, bytes.length, 0, 'elements');
  }
}

interface Header {
  tag: number;
  vr: string;
  length: number;
  valueStart: number;
}

function header(w: Walk, offset: number, end: number): Header {
  if (offset + 8 > end) throw bad(`an element header at byte ${offset} runs past the end of its container`);
  const group = w.view.getUint16(offset, w.little);
  const element = w.view.getUint16(offset + 2, w.little);
  const tag = ((group << 16) | element) >>> 0;
  if (group === 0xfffe) return { tag, vr: 'na', length: w.view.getUint32(offset + 4, w.little), valueStart: offset + 8 };
  if (!w.explicit) return { tag, vr: implicitVr(tag), length: w.view.getUint32(offset + 4, w.little), valueStart: offset + 8 };
  const vr = String.fromCharCode(w.view.getUint8(offset + 4), w.view.getUint8(offset + 5));
  if (!VRS.has(vr)) throw bad(`element ${tagName(tag)} at byte ${offset} has no valid VR (${JSON.stringify(vr)})`);
  if (LONG_VRS.has(vr)) {
    if (offset + 12 > end) throw bad(`an element header at byte ${offset} runs past the end of its container`);
    return { tag, vr, length: w.view.getUint32(offset + 8, w.little), valueStart: offset + 12 };
  }
  return { tag, vr, length: w.view.getUint16(offset + 6, w.little), valueStart: offset + 8 };
}

/** What a value may hold: data elements, sequence items, or pixel data fragments (opaque bytes). */
type Content = 'elements' | 'items' | 'fragments';

/** Offset after the element, having checked its value (and what it nests) lies within `end`. */
function skip(w: Walk, el: Header, end: number, depth: number): number {
  const name = tagName(el.tag);
  const isItem = el.tag === 0xfffee000;
  if (el.length !== UNDEFINED) {
    const after = el.valueStart + el.length;
    if (after > end) {
      throw bad(
        `element ${name} says ${el.length} bytes, but only ${Math.max(0, end - el.valueStart)} follow (truncated or damaged)`,
      );
    }
    if (el.vr === 'SQ') walk(w, el.valueStart, after, depth + 1, 'items');
    return after;
  }
  // Undefined length: a sequence, an item, or encapsulated pixel data; read up to its delimiter.
  if (depth >= MAX_DEPTH) throw bad(`sequences nested deeper than ${MAX_DEPTH} levels`);
  const closing = isItem ? 0xfffee00d : 0xfffee0dd;
  const content: Content = isItem ? 'elements' : el.tag === 0x7fe00010 ? 'fragments' : 'items';
  // A sequence sent as UN is implicit VR little endian inside (PS3.5 6.2.2).
  const inner: Walk = el.vr === 'UN' ? { view: w.view, explicit: false, little: true } : w;
  let offset = el.valueStart;
  for (;;) {
    const next = header(inner, offset, end);
    if (next.tag === closing) return next.valueStart;
    offset = entry(inner, next, end, depth + 1, content);
  }
}

/** One entry of a value: an item where items belong (its content checked), an element elsewhere. */
function entry(w: Walk, el: Header, end: number, depth: number, content: Content): number {
  const isItem = el.tag === 0xfffee000;
  const delimiterOrItem = el.tag >>> 16 === 0xfffe;
  // dcmjs misreads an item or delimiter where an element belongs (and the reverse), allocating by
  // whatever bytes it then takes for a length.
  if (content === 'elements' ? delimiterOrItem : !isItem) {
    throw bad(`${tagName(el.tag)} where ${content === 'elements' ? 'a data element' : 'an item'} belongs`);
  }
  if (!isItem) return skip(w, el, end, depth);
  if (el.length === UNDEFINED) {
    if (content === 'fragments') throw bad('a pixel data fragment of undefined length');
    return skip(w, el, end, depth);
  }
  const after = el.valueStart + el.length;
  if (after > end) throw bad(`an item says ${el.length} bytes, but only ${Math.max(0, end - el.valueStart)} follow`);
  if (content === 'items') walk(w, el.valueStart, after, depth + 1, 'elements');
  return after;
}

function walk(w: Walk, start: number, end: number, depth: number, content: Content): void {
  if (depth >= MAX_DEPTH) throw bad(`sequences nested deeper than ${MAX_DEPTH} levels`);
  let offset = start;
  while (offset < end) offset = entry(w, header(w, offset, end), end, depth, content);
}

function implicitVr(tag: number): string {
  const hex = tag.toString(16).toUpperCase().padStart(8, '0');
  const entry = (dcmjs.data.DicomMetaDictionary as unknown as { dictionary: Record<string, { vr?: string }> }).dictionary[
    `(${hex.slice(0, 4)},${hex.slice(4)})`
  ];
  return entry?.vr ?? 'UN';
}

function tagName(tag: number): string {
  const hex = tag.toString(16).toUpperCase().padStart(8, '0');
  return `(${hex.slice(0, 4)},${hex.slice(4)})`;
}

function bad(what: string): LdfsamError {
  return new LdfsamError('UNSUPPORTED_DICOM', `damaged DICOM file: ${what}`);
}
