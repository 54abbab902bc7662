/**
 * Runs of set (or clear) bits in a row of a bit-packed mask (bit i = pixel i, least significant bit
 * first, rows not byte-aligned), found a byte at a time: whole bytes of 0x00 or 0xFF are skipped, so
 * the cost follows the mask's outline rather than its pixel count. The clean-ups work on these runs.
 */

/** Index of the lowest set bit of each byte (8 for 0). */
const LOWEST = new Uint8Array(256);
for (let b = 0; b < 256; b++) {
  let k = 0;
  while (k < 8 && !((b >> k) & 1)) k++;
  LOWEST[b] = k;
}

/** The first i in [from, end) whose bit is `value` (1 or 0), or `end`. */
export function nextBit(bits: Uint8Array, from: number, end: number, value: 0 | 1): number {
  const flip = value ? 0 : 0xff;
  let i = from;
  while (i < end) {
    const byte = (bits[i >> 3]! ^ flip) >> (i & 7);
    if (byte !== 0) {
      const at = i + LOWEST[byte]!;
      return at < end ? at : end;
    }
    i = (i | 7) + 1;
  }
  return end;
}

/** Calls `run(x0, x1)` (inclusive) for each run of `value` bits in row `y`, left to right. */
export function forEachRun(
  bits: Uint8Array,
  y: number,
  columns: number,
  value: 0 | 1,
  run: (x0: number, x1: number) => void,
): void {
  const start = y * columns;
  const end = start + columns;
  let i = nextBit(bits, start, end, value);
  while (i < end) {
    const stop = nextBit(bits, i, end, value ? 0 : 1);
    run(i - start, stop - 1 - start);
    i = nextBit(bits, stop, end, value);
  }
}

/** Sets (value 1) or clears (value 0) bits [from, to) of a packed mask, whole bytes at once. */
export function fillBits(bits: Uint8Array, from: number, to: number, value: 0 | 1): void {
  let i = from;
  while (i < to && i & 7) {
    if (value) bits[i >> 3]! |= 1 << (i & 7);
    else bits[i >> 3]! &= ~(1 << (i & 7));
    i++;
  }
  const wholeEnd = to & ~7;
  if (i < wholeEnd) {
    bits.fill(value ? 0xff : 0, i >> 3, wholeEnd >> 3);
    i = wholeEnd;
  }
  for (; i < to; i++) {
    if (value) bits[i >> 3]! |= 1 << (i & 7);
    else bits[i >> 3]! &= ~(1 << (i & 7));
  }
}

/** Set bits in [from, to). */
export function countBits(bits: Uint8Array, from: number, to: number): number {
  let n = 0;
  let i = nextBit(bits, from, to, 1);
  while (i < to) {
    const stop = nextBit(bits, i, to, 0);
    n += stop - i;
    i = nextBit(bits, stop, to, 1);
  }
  return n;
}
