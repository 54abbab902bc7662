/**
 * Seeded, reproducible damaged inputs derived from the real test files: each case is a folder's
 * worth of files (a series, or one image) with one kind of damage. Same seed, same cases, byte for
 * byte, so a failing case can be rebuilt from its id alone.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CT_DIR, MR_DIR, SINGLE_DIR } from '../../setup/data.js';
import {
  cloneFile,
  encodeElement,
  find,
  headerWithLength,
  parseDicom,
  remove,
  serialize,
  setElement,
  setString,
  setUS,
  value,
  valueString,
  type DicomFile,
} from './elements.js';

export const CATEGORIES = [
  'truncated-file',
  'truncated-pixels',
  'wrong-size',
  'wrong-bits',
  'samples-photometric',
  'geometry',
  'absurd-size',
  'transfer-syntax',
  'sequence',
  'length-lie',
  'non-dicom',
  'duplicate-sop',
  'byte-flip',
] as const;
export type Category = (typeof CATEGORIES)[number];

export interface FuzzCase {
  id: string;
  category: Category;
  base: string;
  what: string;
  files: { name: string; bytes: Buffer }[];
  /** Success would be wrong (the input cannot be segmented faithfully): it must end in a coded error. */
  mustFail: boolean;
}

interface Base {
  name: string;
  raw: Buffer[];
  parsed: DicomFile[];
  encapsulated: boolean;
}

/** mulberry32: small, fast, and the same on every machine. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let bases: Base[] | undefined;
/** The starting inputs: three-slice CT and MR series (real slices) and every single image. */
export function loadBases(): Base[] {
  if (bases) return bases;
  const make = (name: string, paths: string[]): Base => {
    const raw = paths.map((p) => readFileSync(p));
    const parsed = raw.map(parseDicom);
    return { name, raw, parsed, encapsulated: find(parsed[0]!, '7FE00010')!.undefinedLength };
  };
  bases = [
    make(
      'ct3',
      ['I10', 'I20', 'I30'].map((f) => join(CT_DIR, f)),
    ),
    make(
      'mr3',
      ['brain_001.dcm', 'brain_002.dcm', 'brain_003.dcm'].map((f) => join(MR_DIR, f)),
    ),
    ...['693_J2KR.dcm', 'OBXXXX1A.dcm', 'OBXXXX1A_rle_2frame.dcm', 'US1_J2KR.dcm', 'US1_UNCR.dcm', 'gdcm-US-ALOKA-16.dcm'].map(
      (f) => make(f.replace(/\.dcm$/, ''), [join(SINGLE_DIR, f)]),
    ),
  ];
  return bases;
}

type Pick = <T>(xs: readonly T[]) => T;
type Mutation = { what: string; files: Buffer[]; mustFail?: boolean };
type Mutator = (b: Base, r: () => number, pick: Pick) => Mutation;

const nums = (...v: (number | string)[]) => v.join('\\');
/** Edits one file (index `i`) of the base with `edit`, leaving the others as they are. */
function editOne(b: Base, i: number, edit: (f: DicomFile) => void): Buffer[] {
  return b.raw.map((raw, k) => {
    if (k !== i) return raw;
    const f = cloneFile(b.parsed[k]!);
    edit(f);
    return serialize(f);
  });
}
const anyIndex = (b: Base, r: () => number) => Math.floor(r() * b.raw.length);

function pixelValueBounds(f: DicomFile): { start: number; length: number } {
  const bytes = serialize(f);
  const pd = find(f, '7FE00010')!;
  const start = bytes.indexOf(pd.raw) + pd.valueOffset;
  return { start, length: pd.raw.length - pd.valueOffset };
}

const MUTATORS: Record<Category, Mutator> = {
  'truncated-file': (b, r) => {
    const i = anyIndex(b, r);
    const raw = b.raw[i]!;
    // Half the cuts in the header (where the parser is), half anywhere.
    const cut = r() < 0.5 ? Math.floor(r() * Math.min(raw.length, 4000)) : Math.floor(r() * raw.length);
    return {
      what: `file ${i} cut at byte ${cut} of ${raw.length}`,
      files: b.raw.map((x, k) => (k === i ? x.subarray(0, cut) : x)),
    };
  },
  'truncated-pixels': (b, r) => {
    const i = anyIndex(b, r);
    const keepFraction = r() * 0.95;
    const consistent = r() < 0.6;
    if (b.encapsulated) {
      const f = cloneFile(b.parsed[i]!);
      const pd = find(f, '7FE00010')!;
      const full = value(pd);
      // Keep the offset table item and a cut first fragment, with or without a closing delimiter.
      const keep = Math.floor(full.length * keepFraction);
      const body = full.subarray(0, keep);
      const tail = consistent ? Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]) : Buffer.alloc(0);
      pd.raw = Buffer.concat([pd.raw.subarray(0, pd.valueOffset), body, tail]);
      const bytes = serialize(f);
      return {
        what: `file ${i}: encapsulated pixel data cut to ${keep} of ${full.length} bytes${consistent ? ' (delimited)' : ''}`,
        files: b.raw.map((x, k) => (k === i ? bytes : x)),
        mustFail: true,
      };
    }
    const f = cloneFile(b.parsed[i]!);
    const pd = find(f, '7FE00010')!;
    const full = value(pd);
    const keep = Math.floor((full.length * keepFraction) / 2) * 2;
    if (consistent) setElement(f, '7FE00010', pd.vr, full.subarray(0, keep));
    const bytes = consistent
      ? serialize(f)
      : (() => {
          const { start } = pixelValueBounds(f);
          return serialize(f).subarray(0, start + keep); // the length field still says the full size
        })();
    return {
      what: `file ${i}: native pixel data cut to ${keep} of ${full.length} bytes (${consistent ? 'length updated' : 'length lies'})`,
      files: b.raw.map((x, k) => (k === i ? bytes : x)),
      mustFail: true,
    };
  },
  'wrong-size': (b, r, pick) => {
    const i = anyIndex(b, r);
    const f0 = b.parsed[i]!;
    const rows = value(find(f0, '00280010')!).readUInt16LE();
    const cols = value(find(f0, '00280011')!).readUInt16LE();
    const tag = pick(['00280010', '00280011', 'both']);
    const v = pick([0, 1, 2, 3, rows + 1, rows * 2, Math.floor(rows / 2), cols, cols - 1, 4096]);
    return {
      what: `file ${i}: ${tag === 'both' ? 'Rows and Columns' : tag === '00280010' ? 'Rows' : 'Columns'} = ${v}`,
      files: editOne(b, i, (f) => {
        if (tag === 'both') {
          setUS(f, '00280010', v);
          setUS(f, '00280011', v);
        } else setUS(f, tag, v);
      }),
    };
  },
  'wrong-bits': (b, r, pick) => {
    const i = anyIndex(b, r);
    const tag = pick(['00280100', '00280101', '00280102', '00280103']);
    const v = pick([0, 1, 7, 8, 12, 15, 16, 17, 24, 31, 32, 33, 64, 65535]);
    return { what: `file ${i}: (${tag.slice(0, 4)},${tag.slice(4)}) = ${v}`, files: editOne(b, i, (f) => setUS(f, tag, v)) };
  },
  'samples-photometric': (b, r, pick) => {
    const i = anyIndex(b, r);
    const which = pick(['samples', 'photometric', 'planar', 'remove-photometric']);
    if (which === 'samples') {
      const v = pick([0, 2, 3, 4, 1, 65535]);
      return { what: `file ${i}: Samples per Pixel = ${v}`, files: editOne(b, i, (f) => setUS(f, '00280002', v)) };
    }
    if (which === 'planar') {
      const v = pick([1, 2, 65535]);
      return { what: `file ${i}: Planar Configuration = ${v}`, files: editOne(b, i, (f) => setUS(f, '00280006', v)) };
    }
    if (which === 'remove-photometric') {
      return { what: `file ${i}: no Photometric Interpretation`, files: editOne(b, i, (f) => remove(f, '00280004')) };
    }
    const v = pick([
      'MONOCHROME1',
      'MONOCHROME2',
      'RGB',
      'YBR_FULL',
      'YBR_FULL_422',
      'PALETTE COLOR',
      'HSV',
      'ARGB',
      'CMYK',
      'YBR_ICT',
      '',
      'Ä\u0001x',
    ]);
    return {
      what: `file ${i}: Photometric Interpretation = '${v}'`,
      files: editOne(b, i, (f) => setString(f, '00280004', v, 'CS')),
    };
  },
  geometry: (b, r, pick) => {
    const all = r() < 0.4;
    const i = anyIndex(b, r);
    const variants: [string, (f: DicomFile) => void][] = [
      ['no Image Position', (f) => remove(f, '00200032')],
      ['no Image Orientation', (f) => remove(f, '00200037')],
      ['no Pixel Spacing', (f) => remove(f, '00280030')],
      ['no position, orientation or spacing', (f) => ['00200032', '00200037', '00280030'].forEach((t) => remove(f, t))],
      ['orientation of zero vectors', (f) => setString(f, '00200037', nums(0, 0, 0, 0, 0, 0), 'DS')],
      ['parallel row and column cosines', (f) => setString(f, '00200037', nums(1, 0, 0, 1, 0, 0), 'DS')],
      ['orientation NaN', (f) => setString(f, '00200037', nums('NaN', 0, 0, 0, 1, 0), 'DS')],
      ['orientation text', (f) => setString(f, '00200037', 'left\\right', 'DS')],
      ['orientation with 5 values', (f) => setString(f, '00200037', nums(1, 0, 0, 0, 1), 'DS')],
      ['orientation tilted 30 degrees', (f) => setString(f, '00200037', nums(1, 0, 0, 0, 0.866025, 0.5), 'DS')],
      ['position with 2 values', (f) => setString(f, '00200032', nums(10, 20), 'DS')],
      ['position text', (f) => setString(f, '00200032', 'here', 'DS')],
      ['position Infinity', (f) => setString(f, '00200032', nums('1e999', 0, 0), 'DS')],
      [
        'position of the first slice',
        (f) => {
          const first = find(b.parsed[0]!, '00200032');
          if (first) setElement(f, '00200032', 'DS', value(first));
          else setString(f, '00200032', nums(0, 0, 0), 'DS');
        },
      ],
      ['pixel spacing 0', (f) => setString(f, '00280030', nums(0, 0), 'DS')],
      ['pixel spacing negative', (f) => setString(f, '00280030', nums(-1, -1), 'DS')],
      ['pixel spacing one value', (f) => setString(f, '00280030', '0.5', 'DS')],
      ['pixel spacing differs', (f) => setString(f, '00280030', nums(0.123, 0.456), 'DS')],
      ['rescale slope 0', (f) => setString(f, '00281053', '0', 'DS')],
      ['rescale slope text', (f) => setString(f, '00281053', 'x', 'DS')],
      ['rescale intercept huge', (f) => setString(f, '00281052', '1e300', 'DS')],
      ['modality CT on an image without geometry', (f) => setString(f, '00080060', 'CT', 'CS')],
      ['other frame of reference', (f) => setString(f, '00200052', '1.2.3.4.5.6.7', 'UI')],
    ];
    const [what, edit] = pick(variants);
    const files = all ? b.raw.map((_, k) => editOne(b, k, edit)[k]!) : editOne(b, i, edit);
    return { what: `${all ? 'every file' : `file ${i}`}: ${what}`, files };
  },
  'absurd-size': (b, r, pick) => {
    const i = anyIndex(b, r);
    const v = pick([
      ['Rows x Columns 65535 x 65535', (f: DicomFile) => (setUS(f, '00280010', 65535), setUS(f, '00280011', 65535))],
      ['Rows x Columns 16384 x 16384', (f: DicomFile) => (setUS(f, '00280010', 16384), setUS(f, '00280011', 16384))],
      [
        '65535 x 65535, 32 bits, 3 samples',
        (f: DicomFile) => {
          setUS(f, '00280010', 65535);
          setUS(f, '00280011', 65535);
          setUS(f, '00280100', 32);
          setUS(f, '00280002', 3);
        },
      ],
      ['Number of Frames 2147483647', (f: DicomFile) => setString(f, '00280008', '2147483647', 'IS')],
      ['Number of Frames 99999', (f: DicomFile) => setString(f, '00280008', '99999', 'IS')],
      ['Number of Frames 1e12', (f: DicomFile) => setString(f, '00280008', '999999999999', 'IS')],
      ['Number of Frames -1', (f: DicomFile) => setString(f, '00280008', '-1', 'IS')],
      ['Number of Frames 0', (f: DicomFile) => setString(f, '00280008', '0', 'IS')],
      ['Number of Frames text', (f: DicomFile) => setString(f, '00280008', 'many', 'IS')],
      [
        'Rows x Columns 8192 x 8192 and 5000 frames',
        (f: DicomFile) => (setUS(f, '00280010', 8192), setUS(f, '00280011', 8192), setString(f, '00280008', '5000', 'IS')),
      ],
    ] as const);
    return { what: `file ${i}: ${v[0]}`, files: editOne(b, i, v[1]), mustFail: true };
  },
  'transfer-syntax': (b, r, pick) => {
    const i = anyIndex(b, r);
    const v = pick([
      '',
      '1.2.3.4',
      'not a uid',
      '1.2.840.10008.1.2.4.50',
      '1.2.840.10008.1.2.5',
      '1.2.840.10008.1.2.4.90',
      '1.2.840.10008.1.2.4.80',
      '1.2.840.10008.1.2.4.57',
      '1.2.840.10008.1.2',
      '1.2.840.10008.1.2.1',
      '1.2.840.10008.1.2.2',
      '1.2.840.10008.1.2.1.99',
      '1.2.840.10008.1.2.4.100',
      '1.2.840.10008.1.2.4.201',
      '1.2.840.10008.1.2.4.999',
    ]);
    const meta = pick(['set', 'remove']);
    return {
      what: `file ${i}: transfer syntax ${meta === 'remove' ? 'removed' : `'${v}'`}`,
      files: editOne(b, i, (f) => (meta === 'remove' ? remove(f, '00020010') : setString(f, '00020010', v, 'UI'))),
      // A bogus UID cannot be decoded; a real but wrong one may or may not decode (then it fails or is caught).
      mustFail: meta === 'set' && ['', '1.2.3.4', 'not a uid', '1.2.840.10008.1.2.4.999'].includes(v),
    };
  },
  sequence: (b, r, pick) => {
    const i = anyIndex(b, r);
    const explicit = b.parsed[i]!.explicit;
    const item = (len: number) => headerWithLength('FFFEE000', 'na', len, explicit);
    const seqHeader = (len: number) => headerWithLength('00081140', 'SQ', len, explicit);
    const elem = encodeElement('00081150', 'UI', Buffer.from('1.2.3\0', 'latin1'), explicit);
    const itemDelim = Buffer.from([0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0]);
    const seqDelim = Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
    const v = pick([
      ['undefined-length sequence never closed', Buffer.concat([seqHeader(0xffffffff), item(0xffffffff), elem])],
      ['item length past the sequence', Buffer.concat([seqHeader(8 + elem.length), item(elem.length + 5000), elem])],
      ['sequence length past the end of the file', Buffer.concat([seqHeader(0x7ffffff0), item(elem.length), elem])],
      ['item without its delimiter', Buffer.concat([seqHeader(0xffffffff), item(0xffffffff), elem, seqDelim])],
      ['sequence of garbage items', Buffer.concat([seqHeader(16), Buffer.from('garbage!garbage!')])],
      [
        'deeply nested undefined lengths',
        Buffer.concat([
          ...Array.from({ length: 200 }, () => Buffer.concat([seqHeader(0xffffffff), item(0xffffffff)])),
          elem,
          ...Array.from({ length: 200 }, () => Buffer.concat([itemDelim, seqDelim])),
        ]),
      ],
      ['delimiter outside any sequence', seqDelim],
      ['item outside any sequence', Buffer.concat([item(elem.length), elem])],
    ] as const);
    // Inserted right before the pixel data, or in the middle of the header.
    return {
      what: `file ${i}: ${v[0]}`,
      files: editOne(b, i, (f) => {
        const at =
          r() < 0.5
            ? f.elements.findIndex((e) => e.tag === '7FE00010')
            : f.elements.findIndex((e) => !e.meta && e.tag > '00080000');
        f.elements.splice(at, 0, { tag: '00081140', vr: 'SQ', raw: v[1], valueOffset: 0, undefinedLength: true, meta: false });
      }),
    };
  },
  'length-lie': (b, r, pick) => {
    const i = anyIndex(b, r);
    const f = cloneFile(b.parsed[i]!);
    const candidates = f.elements.filter((e) => !e.meta);
    const el = candidates[Math.floor(r() * candidates.length)]!;
    const long = el.valueOffset === 12 || !f.explicit;
    const len = pick(long ? [0xffffffff, 0xfffffff0, 0x7fffffff, 1, 3, el.raw.length * 4] : [0xffff, 0xfffe, 1, 3, 0]);
    const header = Buffer.from(el.raw.subarray(0, el.valueOffset));
    if (long) header.writeUInt32LE(len >>> 0, el.valueOffset - 4);
    else header.writeUInt16LE(len, 6);
    el.raw = Buffer.concat([header, el.raw.subarray(el.valueOffset)]);
    const bytes = serialize(f);
    return {
      what: `file ${i}: (${el.tag.slice(0, 4)},${el.tag.slice(4)}) length field says ${len}`,
      files: b.raw.map((x, k) => (k === i ? bytes : x)),
    };
  },
  'non-dicom': (b, r, pick) => {
    const n = Math.floor(r() * 4000);
    const random = Buffer.from(Array.from({ length: n }, () => Math.floor(r() * 256)));
    const v = pick([
      ['random bytes', random],
      ['empty file', Buffer.alloc(0)],
      ['preamble and DICM only', Buffer.concat([Buffer.alloc(128), Buffer.from('DICM')])],
      ['preamble, DICM and random bytes', Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), random])],
      ['a PNG signature', Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), random])],
      ['text', Buffer.from('this is not DICOM\n'.repeat(20))],
      ['a raw data set without preamble', b.raw[0]!.subarray(132)],
    ] as const);
    // Alone, or next to the good files (which must then still be segmented).
    const alone = r() < 0.5;
    return {
      what: `${v[0]} (${v[1].length} bytes)${alone ? ' alone' : ' next to the good files'}`,
      files: alone ? [v[1]] : [...b.raw, v[1]],
      mustFail: alone,
    };
  },
  'duplicate-sop': (b, r, pick) => {
    const sop = valueString(find(b.parsed[0]!, '00080018')!);
    const twin = cloneFile(b.parsed[0]!);
    const how = pick(['pixels changed', 'position changed', 'instance number changed']);
    if (how === 'pixels changed') {
      const pd = find(twin, '7FE00010')!;
      const v = Buffer.from(value(pd));
      for (let k = 0; k < 64; k++) {
        const at = Math.floor(r() * (v.length - 16)) + 8;
        v[at] = v[at]! ^ 0xff;
      }
      pd.raw = Buffer.concat([pd.raw.subarray(0, pd.valueOffset), v]);
    } else if (how === 'position changed') setString(twin, '00200032', nums(0, 0, 777), 'DS');
    else setString(twin, '00200013', '999', 'IS');
    // The twin is another file of the same series with the first file's SOP Instance UID.
    const files = b.raw.length > 1 ? [...b.raw.slice(0, -1), serialize(withSop(twin, sop))] : [...b.raw, serialize(twin)];
    return { what: `two files with SOP Instance UID ${sop}, ${how}`, files, mustFail: true };
  },
  'byte-flip': (b, r) => {
    const i = anyIndex(b, r);
    const raw = Buffer.from(b.raw[i]!);
    const { start } = pixelValueBounds(b.parsed[i]!);
    const flips = 1 + Math.floor(r() * 8);
    const at: number[] = [];
    for (let k = 0; k < flips; k++) {
      const p = 132 + Math.floor(r() * Math.max(1, start - 132));
      raw[p] = Math.floor(r() * 256);
      at.push(p);
    }
    return { what: `file ${i}: ${flips} header byte(s) set at ${at.join(',')}`, files: b.raw.map((x, k) => (k === i ? raw : x)) };
  },
};

function withSop(f: DicomFile, sop: string): DicomFile {
  setString(f, '00080018', sop, 'UI');
  if (find(f, '00020003')) setString(f, '00020003', sop, 'UI');
  return f;
}

/** `count` cases, categories in turn, bases and details from the seed. */
export function makeCases(seed: number, count: number): FuzzCase[] {
  const all = loadBases();
  const out: FuzzCase[] = [];
  for (let n = 0; n < count; n++) {
    const category = CATEGORIES[n % CATEGORIES.length]!;
    const r = rng(seed * 1_000_003 + n);
    const pick: Pick = (xs) => xs[Math.floor(r() * xs.length)]!;
    const base = all[Math.floor(r() * all.length)]!;
    const m = MUTATORS[category](base, r, pick);
    out.push({
      id: `${seed}-${n}`,
      category,
      base: base.name,
      what: m.what,
      files: m.files.map((bytes, k) => ({ name: `f${String(k).padStart(3, '0')}.dcm`, bytes })),
      mustFail: m.mustFail ?? false,
    });
  }
  return out;
}
