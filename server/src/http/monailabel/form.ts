/**
 * multipart/form-data as MONAI Label's clients speak it: requests carry a `params` field (JSON) and
 * files (`file`, `label`); answers carry `params` (no file name) and one file part, which the
 * clients key by its file name (the Slicer module parses the answer with Python's cgi.FieldStorage,
 * so the answer has a Content-Length and no chunking).
 */
import { randomUUID } from 'node:crypto';
import { mediaTypeParam, parseMultipart } from '../../dicomweb/multipart.js';
import { LdfsamError } from '../../errors.js';

export interface FormData {
  fields: Record<string, string>;
  files: Record<string, { filename: string; data: Buffer }>;
}

export function parseForm(body: unknown, contentType: string | undefined): FormData {
  const out: FormData = { fields: {}, files: {} };
  if (!Buffer.isBuffer(body) || body.length === 0) return out;
  if (!contentType?.toLowerCase().startsWith('multipart/form-data') || !mediaTypeParam(contentType, 'boundary'))
    throw new LdfsamError('INVALID_INPUT', 'send multipart/form-data with a boundary');
  let parts;
  try {
    parts = parseMultipart(body, contentType);
  } catch (err) {
    throw new LdfsamError('INVALID_INPUT', `the multipart/form-data body is malformed: ${(err as Error).message}`);
  }
  for (const part of parts) {
    const disposition = part.headers['content-disposition'] ?? '';
    const name = mediaTypeParam(disposition, 'name');
    if (!name) continue;
    const filename = mediaTypeParam(disposition, 'filename');
    if (filename !== undefined) out.files[name] = { filename, data: part.body };
    else out.fields[name] = part.body.toString('utf8');
  }
  return out;
}

/** The `params` field (JSON object), or {} when absent. */
export function paramsOf(form: FormData): Record<string, unknown> {
  const text = form.fields.params;
  if (text === undefined || text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new LdfsamError('INVALID_INPUT', 'the params field is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new LdfsamError('INVALID_INPUT', 'the params field must be a JSON object');
  return value as Record<string, unknown>;
}

/** The answer of an inference: params (JSON) and the label file. */
export function buildFormAnswer(
  params: unknown,
  file: { name: string; data: Buffer; type: string },
): { body: Buffer; contentType: string } {
  const boundary = `ldfsam-${randomUUID()}`;
  const body = Buffer.concat([
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="params"\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(params)}\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="${file.name}"\r\nContent-Type: ${file.type}\r\n\r\n`,
      'utf8',
    ),
    file.data,
    Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1'),
  ]);
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
}
