/** Request bodies and parameters, validated at the edge: UIDs are dotted numerics of <= 64 chars, unknown fields are refused. */
import { z } from 'zod';
import { isValidUid } from '../util/uid.js';
import { LdfsamError } from '../errors.js';

export const uid = z.string().refine(isValidUid, 'must be a DICOM UID (dotted numerics, at most 64 characters)');
const modelName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'must be a registered model name');
/** The results a job writes (default seg). */
const outputs = z.enum(['seg', 'rtstruct', 'both']);
const dicomDate = z.string().regex(/^(\d{8})?(-(\d{8})?)?$/, 'must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD');

export const jobRequestSchema = z
  .object({
    studyInstanceUID: uid,
    seriesInstanceUID: uid.optional(),
    model: modelName.optional(),
    force: z.boolean().optional(),
    /** Viewer clicks are interactive and go before batch work. */
    priority: z.enum(['interactive', 'batch']).optional(),
    outputs: outputs.optional(),
  })
  .strict();

export const batchRequestSchema = z
  .object({
    studies: z.array(uid).min(1).max(10_000).optional(),
    query: z
      .object({
        ModalitiesInStudy: z
          .string()
          .regex(/^[A-Z]{2,16}$/)
          .optional(),
        StudyDate: dicomDate.optional(),
        PatientID: z
          .string()
          .min(1)
          .max(64)
          .regex(/^[^\\*?]+$/, 'must not contain wildcards or backslashes')
          .optional(),
        AccessionNumber: z
          .string()
          .min(1)
          .max(16)
          .regex(/^[^\\*?]+$/)
          .optional(),
      })
      .strict()
      .optional(),
    model: modelName.optional(),
    force: z.boolean().optional(),
    outputs: outputs.optional(),
  })
  .strict()
  .refine((b) => (b.studies ? 1 : 0) + (b.query ? 1 : 0) === 1, 'give either "studies" or "query"');

export const idParam = z.string().uuid('must be a job or batch id (UUID)');

/** `?limit=` of listings: absent = 50; anything but an integer 1..500 is refused, not guessed. */
export const limitParam = z
  .string()
  .regex(/^[1-9][0-9]{0,2}$/, 'must be an integer from 1 to 500')
  .transform(Number)
  .refine((n) => n <= 500, 'must be an integer from 1 to 500')
  .optional();

export function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.') || what}: ${i.message}`).join('; ');
    throw new LdfsamError('INVALID_INPUT', `invalid ${what}: ${problems}`);
  }
  return result.data;
}

// Interactive segmentation (http/interactive.ts). Coordinates are slice pixels (x = column, y = row);
// their range is checked against the series once it is known (interactive/prompts.ts).
const coordinate = z.number().finite();
const point = z.object({ x: coordinate, y: coordinate, positive: z.boolean() }).strict();

export const sessionRequestSchema = z
  .object({ studyInstanceUID: uid, seriesInstanceUID: uid, model: modelName.optional() })
  .strict();

export const promptRequestSchema = z
  .object({
    slice: z.number().int().min(0),
    box: z.tuple([coordinate, coordinate, coordinate, coordinate]).optional(),
    points: z.array(point).max(256).optional(),
    usePreviousMask: z.boolean().optional(),
  })
  .strict();

export const encodeRequestSchema = z.object({ slice: z.number().int().min(0) }).strict();

export const propagateRequestSchema = z
  .object({
    fromSlice: z.number().int().min(0),
    direction: z.enum(['both', 'up', 'down']).default('both'),
    minIou: z.number().min(0).max(1).optional(),
    useMask: z.boolean().optional(),
    maxSlices: z.number().int().min(1).optional(),
  })
  .strict();

/** One DICOM LO value: 1-64 printable characters, no backslash (it would split the value in two). */
function loText() {
  return (
    z
      .string()
      .trim()
      .min(1)
      .max(64)
      // eslint-disable-next-line no-control-regex -- control characters are what it refuses (a DICOM LO holds none)
      .regex(/^[^\\\u0000-\u001f]+$/, 'must be printable text without backslashes')
  );
}

const code = z
  .object({
    // SNOMED CT, DICOM, or a local scheme (PS3.3 8.2: designators starting with 99 are private).
    scheme: z.string().regex(/^(SCT|DCM|99[A-Z0-9_]{1,14})$/, 'must be SCT, DCM or a local scheme 99…'),
    code: z.string().regex(/^[A-Za-z0-9._-]{1,16}$/, 'must be 1-16 letters, digits, . _ -'),
    meaning: loText(),
  })
  .strict();

export const acceptRequestSchema = z
  .object({
    label: loText(),
    category: code.optional(),
    type: code.optional(),
    color: z
      .tuple([z.number().int().min(0).max(255), z.number().int().min(0).max(255), z.number().int().min(0).max(255)])
      .optional(),
    slices: z
      .array(z.object({ slice: z.number().int().min(0), bits: z.string().base64().optional() }).strict())
      .min(1)
      .max(100_000),
  })
  .strict();

export const sessionIdParam = z.string().uuid('must be an interactive session id (UUID)');
