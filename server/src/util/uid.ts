/**
 * DICOM UIDs (PS3.5 9.1): checking them, and deriving them deterministically (2.25.<decimal of a
 * hash>, PS3.5 B.2). Pure helpers that the DICOMweb client, the DICOM and SEG writers and the HTTP
 * schemas all need, so they live below all of them.
 */
import { createHash } from 'node:crypto';

/** A dotted numeric of at most 64 characters, without leading zeros (so no path can be smuggled in one). */
export function isValidUid(uid: string): boolean {
  return uid.length > 0 && uid.length <= 64 && /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/.test(uid);
}

/** The same parts give the same UID. */
export function uidFrom(...parts: string[]): string {
  const digest = createHash('sha256').update(parts.join('\u0000')).digest();
  // 120 bits keep the UID within 64 characters (2.25. + at most 37 digits) and unique in practice.
  return `2.25.${BigInt(`0x${digest.subarray(0, 15).toString('hex')}`).toString()}`;
}
