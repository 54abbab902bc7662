/** gunzip with a ceiling on the output, so that a small upload cannot expand into all memory. */
import { gunzipSync } from 'node:zlib';
import { LdfsamError } from '../errors.js';

export function isGzip(bytes: Uint8Array): boolean {
  return bytes[0] === 0x1f && bytes[1] === 0x8b;
}

export function gunzipBounded(bytes: Uint8Array, maxBytes: number, what: string): Buffer {
  try {
    return gunzipSync(bytes, { maxOutputLength: maxBytes + 1 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError)
      throw new LdfsamError('PAYLOAD_TOO_LARGE', `${what} expands to more than ${maxBytes} bytes`);
    throw new LdfsamError('INVALID_INPUT', `${what}: its gzip data is damaged or truncated (${e.message})`);
  }
}
