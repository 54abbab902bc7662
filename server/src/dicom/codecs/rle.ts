/**
 * RLE Lossless (PS3.5 Annex G): a 64-byte header of segment offsets, each segment one PackBits-coded
 * byte plane, most significant byte first, sample after sample. Output is planar (all of sample 0,
 * then sample 1, ...), as the standard lays RLE colour out.
 */
export function decodeRle(input: Uint8Array, rows: number, columns: number, samples: number, bytesPerSample: number): Uint8Array {
  if (input.length < 64) throw new Error(`RLE frame of ${input.length} bytes is shorter than its 64-byte header`);
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
  const segments = view.getUint32(0, true);
  const expected = samples * bytesPerSample;
  if (segments !== expected) throw new Error(`RLE frame has ${segments} segments, expected ${expected}`);
  const pixels = rows * columns;
  // PackBits turns 2 bytes into at most 128: refuse a header size the data cannot hold before
  // allocating for it (a damaged Rows/Columns would otherwise cost up to 1 GB for a tiny frame).
  const minimum = 64 + segments * 2 * Math.ceil(pixels / 128);
  if (input.length < minimum) {
    throw new Error(`RLE frame of ${input.length} bytes cannot hold ${rows} x ${columns} x ${expected} bytes (truncated)`);
  }
  const out = new Uint8Array(pixels * expected);
  for (let s = 0; s < segments; s++) {
    const start = view.getUint32(4 + 4 * s, true);
    const end = s + 1 < segments ? view.getUint32(8 + 4 * s, true) : input.length;
    if (start < 64 || end > input.length || start > end)
      throw new Error(`RLE segment ${s + 1} offsets ${start}..${end} lie outside the frame`);
    const sample = Math.floor(s / bytesPerSample);
    const byteIndex = s % bytesPerSample; // 0 = most significant
    // Little-endian output: byte k of a sample sits at k from its start; MSB segment comes first.
    const littleEndianByte = bytesPerSample - 1 - byteIndex;
    unpackBits(input, start, end, out, sample * pixels * bytesPerSample + littleEndianByte, bytesPerSample, pixels);
  }
  return out;
}

function unpackBits(
  src: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
  base: number,
  stride: number,
  count: number,
): void {
  let i = start;
  let n = 0;
  while (i < end && n < count) {
    const header = src[i++]!;
    if (header < 128) {
      const run = header + 1;
      if (i + run > end) throw new Error('RLE literal run runs past its segment');
      for (let k = 0; k < run && n < count; k++) out[base + stride * n++] = src[i + k]!;
      i += run;
    } else if (header > 128) {
      if (i >= end) throw new Error('RLE replicate run runs past its segment');
      const value = src[i++]!;
      const run = 257 - header;
      for (let k = 0; k < run && n < count; k++) out[base + stride * n++] = value;
    }
  }
  if (n < count) throw new Error(`RLE segment holds ${n} of ${count} pixels (truncated)`);
}
