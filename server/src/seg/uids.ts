/** Deterministic UIDs (2.25.<decimal of a hash>, PS3.5 B.2): the same inputs give the same UID. */
import { createHash } from 'node:crypto';

export function uidFrom(...parts: string[]): string {
  const digest = createHash('sha256').update(parts.join('\u0000')).digest();
  // 120 bits keep the UID within 64 characters (2.25. + at most 37 digits) and unique in practice.
  return `2.25.${BigInt(`0x${digest.subarray(0, 15).toString('hex')}`).toString()}`;
}

/** The SEG series of a source series and a model: a re-run lands in the same series. */
export function segSeriesUid(sourceSeriesInstanceUID: string, modelName: string, modelVersion: string): string {
  return uidFrom('ldfsam-seg-series', sourceSeriesInstanceUID, modelName, modelVersion);
}

/** The SEG instance: same series and same content give the same instance (a repeat store is a no-op). */
export function segInstanceUid(segSeriesInstanceUID: string, contentHash: string): string {
  return uidFrom('ldfsam-seg-instance', segSeriesInstanceUID, contentHash);
}
