/**
 * multipart/related encoding and decoding for WADO-RS and STOW-RS (PS3.18 8.6.1). Works on whole
 * buffers: one WADO-RS answer holds the frames of one request, which the caller keeps small.
 */
import { randomUUID } from 'node:crypto';

export interface MultipartPart {
  headers: Record<string, string>;
  body: Buffer;
}

/** Reads a media-type parameter (`boundary`, `type`, `transfer-syntax`), with or without quotes. */
export function mediaTypeParam(contentType: string, name: string): string | undefined {
  const re = new RegExp(`(?:^|;)\\s*${name}\\s*=\\s*(?:"([^"]*)"|([^;\\s]*))`, 'i');
  const match = re.exec(contentType);
  return match ? (match[1] ?? match[2]) : undefined;
}

export function parseMultipart(body: Buffer, contentType: string): MultipartPart[] {
  const boundary = mediaTypeParam(contentType, 'boundary');
  if (!boundary) throw new Error(`multipart answer without a boundary (Content-Type: ${contentType})`);
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: MultipartPart[] = [];
  let start = body.indexOf(delimiter);
  if (start < 0) throw new Error('multipart answer holds no part');
  for (;;) {
    let cursor = start + delimiter.length;
    if (body[cursor] === 0x2d && body[cursor + 1] === 0x2d) break; // closing "--boundary--"
    cursor = skipLineEnd(body, cursor);
    const headerEnd = body.indexOf('\r\n\r\n', cursor);
    if (headerEnd < 0) throw new Error('multipart part without a header end');
    const headers: Record<string, string> = {};
    for (const line of body.subarray(cursor, headerEnd).toString('latin1').split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const bodyStart = headerEnd + 4;
    const next = body.indexOf(delimiter, bodyStart);
    if (next < 0) throw new Error('multipart answer is truncated (no closing boundary)');
    // The CRLF before the delimiter belongs to the delimiter, not to the part.
    let bodyEnd = next;
    if (body[bodyEnd - 2] === 0x0d && body[bodyEnd - 1] === 0x0a) bodyEnd -= 2;
    parts.push({ headers, body: body.subarray(bodyStart, bodyEnd) });
    start = next;
  }
  return parts;
}

function skipLineEnd(body: Buffer, cursor: number): number {
  if (body[cursor] === 0x0d && body[cursor + 1] === 0x0a) return cursor + 2;
  if (body[cursor] === 0x0a) return cursor + 1;
  return cursor;
}

/** Encodes Part 10 files as one multipart/related body of type application/dicom. */
export function buildMultipart(payloads: Uint8Array[], partType = 'application/dicom'): { body: Buffer; contentType: string } {
  const boundary = `ldfsam-${randomUUID()}`;
  const chunks: Buffer[] = [];
  for (const payload of payloads) {
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Type: ${partType}\r\n\r\n`, 'latin1'));
    chunks.push(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength));
    chunks.push(Buffer.from('\r\n', 'latin1'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`, 'latin1'));
  return {
    body: Buffer.concat(chunks),
    contentType: `multipart/related; type="${partType}"; boundary=${boundary}`,
  };
}
