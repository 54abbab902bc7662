/**
 * A small DICOM Part 10 element walker for the fuzzer: splits a file into its top-level elements
 * (raw bytes kept, so an unchanged element is written back byte for byte) and writes them again.
 * Little endian only (explicit or implicit VR data set; the meta group is always explicit), which is
 * every file the fuzzer starts from. Our own code rather than dcmjs: the fuzzer must be able to write
 * what dcmjs would refuse to (wrong lengths, broken sequences, values of the wrong size).
 */

export interface Element {
  /** 'ggggeeee', upper case. */
  tag: string;
  vr: string;
  /** The whole element as read: header and value (nested items included). */
  raw: Buffer;
  /** Offset of the value inside `raw`. */
  valueOffset: number;
  undefinedLength: boolean;
  meta: boolean;
}

export interface DicomFile {
  preamble: Buffer;
  explicit: boolean;
  elements: Element[];
}

const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
/** VRs of the elements the fuzzer edits in implicit-VR files (which carry no VR). */
const KNOWN_VR: Record<string, string> = {
  '00280002': 'US',
  '00280004': 'CS',
  '00280006': 'US',
  '00280008': 'IS',
  '00280010': 'US',
  '00280011': 'US',
  '00280030': 'DS',
  '00280100': 'US',
  '00280101': 'US',
  '00280102': 'US',
  '00280103': 'US',
  '00281052': 'DS',
  '00281053': 'DS',
  '00200032': 'DS',
  '00200037': 'DS',
  '00200013': 'IS',
  '00080018': 'UI',
  '0020000E': 'UI',
  '00080060': 'CS',
  '7FE00010': 'OW',
};

const hex4 = (n: number) => n.toString(16).toUpperCase().padStart(4, '0');

export function parseDicom(bytes: Buffer): DicomFile {
  if (bytes.length < 132 || bytes.toString('latin1', 128, 132) !== 'DICM') throw new Error('not a Part 10 file');
  const elements: Element[] = [];
  let offset = 132;
  let explicit = true;
  let inMeta = true;
  while (offset < bytes.length) {
    const group = bytes.readUInt16LE(offset);
    if (inMeta && group !== 0x0002) {
      inMeta = false;
      const ts = elements.find((e) => e.tag === '00020010');
      explicit = ts ? valueString(ts) !== '1.2.840.10008.1.2' : true;
    }
    const el = readElement(bytes, offset, inMeta || explicit);
    el.meta = inMeta;
    elements.push(el);
    offset += el.raw.length;
  }
  return { preamble: bytes.subarray(0, 132), explicit, elements };
}

function readElement(bytes: Buffer, offset: number, explicit: boolean): Element {
  const tag = hex4(bytes.readUInt16LE(offset)) + hex4(bytes.readUInt16LE(offset + 2));
  let vr: string;
  let length: number;
  let header: number;
  if (tag.startsWith('FFFE')) {
    vr = 'na';
    length = bytes.readUInt32LE(offset + 4);
    header = 8;
  } else if (explicit) {
    vr = bytes.toString('latin1', offset + 4, offset + 6);
    if (LONG_VRS.has(vr)) {
      length = bytes.readUInt32LE(offset + 8);
      header = 12;
    } else {
      length = bytes.readUInt16LE(offset + 6);
      header = 8;
    }
  } else {
    vr = KNOWN_VR[tag] ?? 'UN';
    length = bytes.readUInt32LE(offset + 4);
    header = 8;
  }
  const undefinedLength = length === 0xffffffff;
  let end: number;
  if (undefinedLength) end = skipUndefined(bytes, offset + header, explicit);
  else end = offset + header + length;
  if (end > bytes.length) throw new Error(`element ${tag} runs past the end of the file`);
  return { tag, vr, raw: bytes.subarray(offset, end), valueOffset: header, undefinedLength, meta: false };
}

/** End of an undefined-length value: nested items and elements until the sequence delimiter. */
function skipUndefined(bytes: Buffer, offset: number, explicit: boolean): number {
  while (offset + 8 <= bytes.length) {
    const el = readElement(bytes, offset, explicit);
    offset += el.raw.length;
    if (el.tag === 'FFFEE0DD' || el.tag === 'FFFEE00D') return offset;
  }
  throw new Error('undefined length without a delimiter');
}

export function serialize(file: DicomFile): Buffer {
  // The meta group's length (0002,0000) follows the meta elements actually written.
  const meta = file.elements.filter((e) => e.meta && e.tag !== '00020000');
  const metaLength = meta.reduce((n, e) => n + e.raw.length, 0);
  const groupLength = file.elements.find((e) => e.tag === '00020000');
  const parts: Buffer[] = [file.preamble];
  if (groupLength) parts.push(encodeElement('00020000', 'UL', u32(metaLength), true));
  for (const e of file.elements) if (e.tag !== '00020000') parts.push(e.raw);
  return Buffer.concat(parts);
}

export function find(file: DicomFile, tag: string): Element | undefined {
  return file.elements.find((e) => e.tag === tag);
}

export function value(el: Element): Buffer {
  return el.raw.subarray(el.valueOffset);
}

export function valueString(el: Element): string {
  return value(el)
    .toString('latin1')
    .replace(/[\0 ]+$/, '');
}

/** Replaces (or inserts, in tag order) an element with this value. */
export function setElement(file: DicomFile, tag: string, vr: string, val: Buffer): void {
  const meta = tag.startsWith('0002');
  const raw = encodeElement(tag, vr, val, meta || file.explicit);
  const el: Element = { tag, vr, raw, valueOffset: raw.length - val.length, undefinedLength: false, meta };
  const at = file.elements.findIndex((e) => e.tag === tag);
  if (at >= 0) {
    file.elements[at] = el;
    return;
  }
  const after = file.elements.findIndex((e) => e.meta === meta && e.tag > tag);
  if (after >= 0) file.elements.splice(after, 0, el);
  else {
    const lastOfKind = file.elements.map((e) => e.meta).lastIndexOf(meta);
    file.elements.splice(lastOfKind + 1, 0, el);
  }
}

export function setString(file: DicomFile, tag: string, text: string, vr?: string): void {
  const padded = text.length % 2 === 1 ? text + (vr === 'UI' || KNOWN_VR[tag] === 'UI' ? '\0' : ' ') : text;
  setElement(file, tag, vr ?? find(file, tag)?.vr ?? KNOWN_VR[tag] ?? 'LO', Buffer.from(padded, 'latin1'));
}

export function setUS(file: DicomFile, tag: string, n: number): void {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n & 0xffff);
  setElement(file, tag, 'US', b);
}

export function remove(file: DicomFile, tag: string): void {
  file.elements = file.elements.filter((e) => e.tag !== tag);
}

/** An element with whatever value bytes (even a length its VR does not allow). */
export function encodeElement(tag: string, vr: string, val: Buffer, explicit: boolean): Buffer {
  const t = Buffer.alloc(4);
  t.writeUInt16LE(parseInt(tag.slice(0, 4), 16));
  t.writeUInt16LE(parseInt(tag.slice(4), 16), 2);
  if (!explicit) return Buffer.concat([t, u32(val.length), val]);
  if (LONG_VRS.has(vr)) return Buffer.concat([t, Buffer.from(vr, 'latin1'), Buffer.alloc(2), u32(val.length), val]);
  const l = Buffer.alloc(2);
  l.writeUInt16LE(Math.min(val.length, 0xffff));
  return Buffer.concat([t, Buffer.from(vr, 'latin1'), l, val]);
}

/** The raw header of an element with a given length field (which may lie about what follows). */
export function headerWithLength(tag: string, vr: string, length: number, explicit: boolean): Buffer {
  const t = Buffer.alloc(4);
  t.writeUInt16LE(parseInt(tag.slice(0, 4), 16));
  t.writeUInt16LE(parseInt(tag.slice(4), 16), 2);
  if (tag.startsWith('FFFE') || !explicit) return Buffer.concat([t, u32(length)]);
  if (LONG_VRS.has(vr)) return Buffer.concat([t, Buffer.from(vr, 'latin1'), Buffer.alloc(2), u32(length)]);
  const l = Buffer.alloc(2);
  l.writeUInt16LE(length & 0xffff);
  return Buffer.concat([t, Buffer.from(vr, 'latin1'), l]);
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

export function cloneFile(file: DicomFile): DicomFile {
  return { preamble: file.preamble, explicit: file.explicit, elements: file.elements.map((e) => ({ ...e })) };
}
