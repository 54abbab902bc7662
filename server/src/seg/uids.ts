/** The SEG's deterministic UIDs (util/uid.ts): the same inputs give the same UID. */
import { uidFrom } from '../util/uid.js';

/** The SEG series of a source series and a model: a re-run lands in the same series. */
export function segSeriesUid(sourceSeriesInstanceUID: string, modelName: string, modelVersion: string): string {
  return uidFrom('ldfsam-seg-series', sourceSeriesInstanceUID, modelName, modelVersion);
}

/** The SEG instance: same series and same content give the same instance (a repeat store is a no-op). */
export function segInstanceUid(segSeriesInstanceUID: string, contentHash: string): string {
  return uidFrom('ldfsam-seg-instance', segSeriesInstanceUID, contentHash);
}

/** The RT Structure Set series of a source series and a model, apart from the SEG's (a series holds one modality). */
export function rtstructSeriesUid(sourceSeriesInstanceUID: string, modelName: string, modelVersion: string): string {
  return uidFrom('ldfsam-rtstruct-series', sourceSeriesInstanceUID, modelName, modelVersion);
}

/** The RT Structure Set instance: same series and same contours give the same instance. */
export function rtstructInstanceUid(rtstructSeriesInstanceUID: string, contentHash: string): string {
  return uidFrom('ldfsam-rtstruct-instance', rtstructSeriesInstanceUID, contentHash);
}
