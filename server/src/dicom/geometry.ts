/** Patient-space geometry of image planes: pure vector arithmetic over DICOM's LPS coordinates. */
export type Vec3 = [number, number, number];

export function cross(a: Vec3, b: Vec3): Vec3 {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

export function dot(a: Vec3, b: Vec3): number {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

export function norm(a: Vec3): number {
  return Math.hypot(a[0], a[1], a[2]);
}

/** Slice normal from Image Orientation (Patient): row cosines x column cosines. */
export function sliceNormal(orientation: readonly number[]): Vec3 {
  const row: Vec3 = [orientation[0]!, orientation[1]!, orientation[2]!];
  const col: Vec3 = [orientation[3]!, orientation[4]!, orientation[5]!];
  const n = cross(row, col);
  const len = norm(n);
  return [n[0] / len, n[1] / len, n[2] / len];
}

/** A usable orientation: two unit vectors (within 1e-3) that are orthogonal (within 1e-3). */
export function isValidOrientation(orientation: readonly number[] | undefined): orientation is number[] {
  if (!orientation || orientation.length !== 6) return false;
  const row: Vec3 = [orientation[0]!, orientation[1]!, orientation[2]!];
  const col: Vec3 = [orientation[3]!, orientation[4]!, orientation[5]!];
  return Math.abs(norm(row) - 1) < 1e-3 && Math.abs(norm(col) - 1) < 1e-3 && Math.abs(dot(row, col)) < 1e-3;
}

export function sameOrientation(a: readonly number[], b: readonly number[], tolerance = 1e-4): boolean {
  return a.length === 6 && b.length === 6 && a.every((v, i) => Math.abs(v - b[i]!) <= tolerance);
}

export interface SpacingSummary {
  /** Mean distance between neighbouring slices along the normal, mm (undefined for < 2 slices). */
  meanSpacing: number | undefined;
  minSpacing: number | undefined;
  maxSpacing: number | undefined;
  evenlySpaced: boolean;
}

/**
 * Spacing of slices already sorted by their projection on the normal. Even means every gap is
 * within 1% (at least 0.01 mm) of the mean gap.
 */
export function spacingOf(projections: readonly number[]): SpacingSummary {
  if (projections.length < 2) {
    return { meanSpacing: undefined, minSpacing: undefined, maxSpacing: undefined, evenlySpaced: true };
  }
  const gaps = projections.slice(1).map((p, i) => p - projections[i]!);
  const mean = gaps.reduce((s, g) => s + g, 0) / gaps.length;
  const tolerance = Math.max(0.01, Math.abs(mean) * 0.01);
  return {
    meanSpacing: mean,
    minSpacing: Math.min(...gaps),
    maxSpacing: Math.max(...gaps),
    evenlySpaced: gaps.every((g) => Math.abs(g - mean) <= tolerance),
  };
}
