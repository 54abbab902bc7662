/**
 * Length checks before dcmjs parses a file (server/src/dicom/element-bounds.ts): regressions of the
 * fuzzer's findings (test/reliability), on the shared CT slice with one element damaged.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readPart10Header, readPart10Pixels } from '../../server/src/dicom/part10.js';
import { LdfsamError } from '../../server/src/errors.js';
import { CT_DIR } from '../setup/data.js';
import { cloneFile, encodeElement, find, parseDicom, serialize, type Element } from '../reliability/fuzz/elements.js';

const original = readFileSync(join(CT_DIR, 'I10'));
const parsed = parseDicom(original);

function damaged(edit: (elements: Element[]) => void): Buffer {
  const f = cloneFile(parsed);
  edit(f.elements);
  return serialize(f);
}

function refusal(fn: () => unknown): LdfsamError {
  const before = process.memoryUsage().arrayBuffers;
  try {
    fn();
  } catch (err) {
    // Refused before dcmjs allocated by a damaged length.
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 2 ** 20);
    expect(err).toBeInstanceOf(LdfsamError);
    expect((err as LdfsamError).code).toBe('UNSUPPORTED_DICOM');
    return err as LdfsamError;
  }
  throw new Error('expected a refusal');
}

describe('element lengths checked before parsing', () => {
  it('reads the undamaged file', () => {
    expect(readPart10Pixels(original).pixelData[0]!.length).toBe(512 * 512 * 2);
    expect(readPart10Header(original).dataset.Rows).toBe(512);
  });

  it('refuses pixel data cut short under a length that says more (dcmjs zero-filled it to full size)', () => {
    const cut = original.subarray(0, original.length - 100_000);
    expect(refusal(() => readPart10Pixels(cut)).message).toMatch(/\(7FE0,0010\) says 524288 bytes, but only 424288 follow/);
    // A header-only read stops before the pixel data, as dcmjs does.
    expect(readPart10Header(cut).dataset.Rows).toBe(512);
  });

  it('refuses a length field of 4 GB without allocating it', () => {
    const bytes = damaged((els) => {
      const el = els.find((e) => e.tag === '00081030') ?? els.find((e) => e.tag === '0008103E')!;
      el.raw = Buffer.concat([el.raw.subarray(0, 4), Buffer.from('UT'), Buffer.alloc(2), Buffer.from([0xf0, 0xff, 0xff, 0xff])]);
    });
    expect(refusal(() => readPart10Header(bytes)).message).toMatch(/says 4294967280 bytes/);
  });

  it('refuses an item or a delimiter where a data element belongs, and an element with no valid VR', () => {
    const item: Element = {
      tag: 'FFFEE000',
      vr: 'na',
      raw: Buffer.from([0xfe, 0xff, 0x00, 0xe0, 8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
      valueOffset: 8,
      undefinedLength: false,
      meta: false,
    };
    const at = parsed.elements.findIndex((e) => e.tag === '00200032');
    expect(refusal(() => readPart10Header(damaged((els) => els.splice(at, 0, item)))).message).toMatch(
      /\(FFFE,E000\) where a data element belongs/,
    );
    const badVr = damaged((els) => {
      const el = find({ ...parsed, elements: els }, '00080060')!;
      el.raw = Buffer.concat([el.raw.subarray(0, 4), Buffer.from('rI'), el.raw.subarray(6)]);
    });
    expect(refusal(() => readPart10Header(badVr)).message).toMatch(/\(0008,0060\) at byte \d+ has no valid VR \("rI"\)/);
  });

  it('refuses a sequence never closed and sequences nested without end', () => {
    const open = encodeElement('00081140', 'SQ', Buffer.alloc(0), true);
    open.writeUInt32LE(0xffffffff, 8);
    const at = parsed.elements.findIndex((e) => e.tag === '00200032');
    const never = damaged((els) => els.splice(at, 0, { ...els[at]!, raw: open }));
    expect(refusal(() => readPart10Header(never)).message).toMatch(/where an item belongs|runs past the end/);
    const item = Buffer.from([0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff]);
    const deep = Buffer.concat(Array.from({ length: 100 }, () => Buffer.concat([open, item])));
    expect(refusal(() => readPart10Header(damaged((els) => els.splice(at, 0, { ...els[at]!, raw: deep })))).message).toMatch(
      /nested deeper than 64 levels/,
    );
  });
});
