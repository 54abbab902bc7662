/**
 * One error type for the whole server. Every failure a user can see carries a stable `code`; its
 * HTTP status is derived from it in exactly one place (this table, applied by http/app.ts's error
 * handler). The CLI does not map codes to exit statuses: every error prints one line with its code
 * and exits with status 1 (cli/context.ts, `action`); the code is the part a program should read
 * (`--json` prints it as `{"error": {"code", "message"}}`).
 */
export const ERROR_CODES = {
  INVALID_INPUT: { http: 400, retryable: false },
  UNAUTHORIZED: { http: 401, retryable: false },
  /** The request named a Host this server does not answer to (DNS rebinding guard). */
  HOST_NOT_ALLOWED: { http: 421, retryable: false },
  /** A state-changing request from a page of another origin. */
  ORIGIN_NOT_ALLOWED: { http: 403, retryable: false },
  PAYLOAD_TOO_LARGE: { http: 413, retryable: false },
  NOT_FOUND: { http: 404, retryable: false },
  /** The resource is busy with another request (an interactive session already propagating). */
  CONFLICT: { http: 409, retryable: false },
  /** A configured limit (interactive sessions per user, slices per propagation) would be exceeded. */
  LIMIT_REACHED: { http: 429, retryable: false },
  CONFIG_INVALID: { http: 500, retryable: false },
  PACS_UNAVAILABLE: { http: 503, retryable: true },
  /** The server runs but cannot take jobs yet (GET /api/ready: no model is loaded). */
  NOT_READY: { http: 503, retryable: false },
  PACS_REJECTED: { http: 502, retryable: false },
  PACS_NOT_INSTALLED: { http: 500, retryable: false },
  UNSUPPORTED_DICOM: { http: 422, retryable: false },
  MODEL_REJECTED: { http: 500, retryable: false },
  INFERENCE_FAILED: { http: 500, retryable: false },
  SEG_INVALID: { http: 500, retryable: false },
  CANCELLED: { http: 409, retryable: false },
  STORAGE_FULL: { http: 507, retryable: false },
  INTERNAL: { http: 500, retryable: false },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorDetails {
  /** HTTP status of a failed upstream (PACS) request. */
  status?: number;
  /** URL of a failed upstream request. */
  url?: string;
  [key: string]: unknown;
}

export class LdfsamError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LdfsamError';
    this.code = code;
    this.details = details;
  }

  get retryable(): boolean {
    return ERROR_CODES[this.code].retryable;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }

  toJSON(): { code: ErrorCode; message: string; details?: ErrorDetails } {
    return Object.keys(this.details).length > 0
      ? { code: this.code, message: this.message, details: this.details }
      : { code: this.code, message: this.message };
  }
}

/** Wraps anything thrown into an LdfsamError, keeping the original as `cause`. */
export function toLdfsamError(err: unknown): LdfsamError {
  if (err instanceof LdfsamError) return err;
  const message = err instanceof Error ? err.message : String(err);
  // A full disk under the job store or the data folder says so, rather than INTERNAL.
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'SQLITE_FULL' || code === 'ENOSPC') {
    return new LdfsamError(
      'STORAGE_FULL',
      `the server's disk is full (${message}): free space in its data folder`,
      {},
      { cause: err },
    );
  }
  return new LdfsamError('INTERNAL', message, {}, { cause: err });
}

export function isLdfsamError(err: unknown, code?: ErrorCode): err is LdfsamError {
  return err instanceof LdfsamError && (code === undefined || err.code === code);
}
