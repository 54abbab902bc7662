/** 1-bit frames as DICOM packs them: little-endian bit order, frames contiguous (no padding between). */

/** Packs a 0/1 mask into bits, LSB first. */
export function packBits(mask: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(mask.length / 8));
  for (let i = 0; i < mask.length; i++) if (mask[i]) out[i >> 3]! |= 1 << (i & 7);
  return out;
}

export function unpackBits(bits: Uint8Array, bitOffset: number, count: number): Uint8Array {
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const b = bitOffset + i;
    out[i] = (bits[b >> 3]! >> (b & 7)) & 1;
  }
  return out;
}

/** Concatenates frames of `pixels` bits each into one bit stream, padded to an even byte count. */
export function concatFrames(frames: Uint8Array[], pixels: number): Uint8Array {
  const totalBits = frames.length * pixels;
  const out = new Uint8Array(Math.ceil(Math.ceil(totalBits / 8) / 2) * 2);
  if (pixels % 8 === 0) {
    frames.forEach((f, i) => out.set(f.subarray(0, pixels / 8), (i * pixels) / 8));
    return out;
  }
  let bit = 0;
  for (const f of frames) {
    for (let i = 0; i < pixels; i++, bit++) if ((f[i >> 3]! >> (i & 7)) & 1) out[bit >> 3]! |= 1 << (bit & 7);
  }
  return out;
}

/** No bit set. Reads 4 bytes at a time where the bytes are 4-aligned (a mask's own buffer is). */
export function isEmpty(bits: Uint8Array): boolean {
  let i = 0;
  if (bits.byteOffset % 4 === 0) {
    const words = new Uint32Array(bits.buffer, bits.byteOffset, bits.length >> 2);
    for (let w = 0; w < words.length; w++) if (words[w]) return false;
    i = words.length * 4;
  }
  for (; i < bits.length; i++) if (bits[i]) return false;
  return true;
}
