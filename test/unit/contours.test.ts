/** Pixel-edge contours: rings filled back at pixel centres give the mask exactly; simplification stays within its tolerance. */
import { describe, expect, it } from 'vitest';
import { packBits } from '../../server/src/seg/bits.js';
import { fillRings, simplifyRing, traceRings, type Ring } from '../../server/src/seg/contours.js';

function maskOf(rows: string[]): { mask: Uint8Array; rows: number; columns: number } {
  const columns = rows[0]!.length;
  const mask = new Uint8Array(rows.length * columns);
  rows.forEach((r, y) => [...r].forEach((c, x) => (mask[y * columns + x] = c === '#' ? 1 : 0)));
  return { mask, rows: rows.length, columns };
}

function area(points: number[]): number {
  let a = 0;
  const n = points.length / 2;
  for (let i = 0; i < n; i++) {
    const j = (i + 1) % n;
    a += points[2 * i]! * points[2 * j + 1]! - points[2 * j]! * points[2 * i + 1]!;
  }
  return a / 2;
}

/** No corner twice in a ring: the rings are simple polygons. */
function simple(ring: Ring): boolean {
  const seen = new Set<string>();
  for (let i = 0; i < ring.points.length; i += 2) {
    const k = `${ring.points[i]},${ring.points[i + 1]}`;
    if (seen.has(k)) return false;
    seen.add(k);
  }
  return true;
}

function roundTrip(mask: Uint8Array, rows: number, columns: number): Ring[] {
  const rings = traceRings(packBits(mask), rows, columns);
  expect(fillRings(rings, rows, columns)).toEqual(mask);
  for (const r of rings) expect(simple(r)).toBe(true);
  return rings;
}

/** Seeded xorshift: the same masks every run. */
function random(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

describe('traceRings', () => {
  it('one pixel: a unit square, clockwise on screen, its area one pixel', () => {
    const { mask, rows, columns } = maskOf(['...', '.#.', '...']);
    const rings = roundTrip(mask, rows, columns);
    expect(rings).toEqual([{ points: [1, 1, 2, 1, 2, 2, 1, 2], hole: false }]);
    expect(area(rings[0]!.points)).toBe(1);
  });

  it('a mask touching every border of the image', () => {
    const { mask, rows, columns } = maskOf(['####', '#..#', '####']);
    const rings = roundTrip(mask, rows, columns);
    expect(rings.map((r) => r.hole).sort()).toEqual([false, true]);
    expect(rings.find((r) => !r.hole)!.points).toEqual([0, 0, 4, 0, 4, 3, 0, 3]);
    expect(rings.find((r) => r.hole)!.points.length).toBe(8);
  });

  it('holes and islands: one ring each, holes with negative area; the areas add up to the pixel count', () => {
    const { mask, rows, columns } = maskOf([
      '#######..##',
      '#.....#..##',
      '#.###.#....',
      '#.#.#.#..#.',
      '#.###.#....',
      '#.....#.#.#',
      '#######....',
    ]);
    const rings = roundTrip(mask, rows, columns);
    const holes = rings.filter((r) => r.hole);
    expect(holes.length).toBe(2);
    for (const r of rings) expect(Math.sign(area(r.points))).toBe(r.hole ? -1 : 1);
    const total = rings.reduce((s, r) => s + area(r.points), 0);
    expect(total).toBe(mask.reduce((s, v) => s + v, 0));
    // Outer rings: the frame, the block inside it, and 4 islands on the right; holes: the frame's and the block's.
    expect(rings.length).toBe(6 + 2);
  });

  it('pixels touching only at a corner are separate rings (no ring crosses or touches itself)', () => {
    const { mask, rows, columns } = maskOf(['#.', '.#']);
    const rings = roundTrip(mask, rows, columns);
    expect(rings.length).toBe(2);
    const ring = maskOf(['.#.', '#.#', '.#.']);
    expect(roundTrip(ring.mask, ring.rows, ring.columns).length).toBe(4);
  });

  it('a component that touches itself diagonally is split into simple rings', () => {
    const { mask, rows, columns } = maskOf(['####.', '#..#.', '#.#..', '#...#', '#####']);
    roundTrip(mask, rows, columns);
  });

  it('empty and full masks', () => {
    expect(traceRings(new Uint8Array(2), 4, 4)).toEqual([]);
    const full = new Uint8Array(12).fill(1);
    expect(roundTrip(full, 3, 4)).toEqual([{ points: [0, 0, 4, 0, 4, 3, 0, 3], hole: false }]);
  });

  it('random masks of every density, including odd sizes, come back exactly', () => {
    const next = random(21);
    for (let t = 0; t < 200; t++) {
      const rows = 1 + Math.floor(next() * 23);
      const columns = 1 + Math.floor(next() * 29);
      const density = next();
      const mask = new Uint8Array(rows * columns).map(() => (next() < density ? 1 : 0));
      roundTrip(mask, rows, columns);
    }
  });
});

describe('simplifyRing', () => {
  it('tolerance 0 keeps every vertex', () => {
    const pts = [0, 0, 5, 0, 5, 1, 10, 1, 10, 5, 0, 5];
    expect(simplifyRing(pts, 0)).toEqual(pts);
  });

  it('keeps every kept and dropped vertex within the tolerance of the result', () => {
    const next = random(7);
    for (let t = 0; t < 50; t++) {
      const { mask, rows, columns } = {
        rows: 40,
        columns: 40,
        mask: new Uint8Array(1600).map((_, i) => {
          const x = (i % 40) - 20 + next() * 2;
          const y = Math.floor(i / 40) - 20 + next() * 2;
          return x * x + (y * y) / 2 < 150 ? 1 : 0;
        }),
      };
      for (const ring of traceRings(packBits(mask), rows, columns)) {
        const tolerance = 0.45;
        const simplified = simplifyRing(ring.points, tolerance);
        expect(simplified.length).toBeLessThanOrEqual(ring.points.length);
        expect(simplified.length).toBeGreaterThanOrEqual(6);
        for (let i = 0; i < ring.points.length; i += 2) {
          expect(distanceToRing(ring.points[i]!, ring.points[i + 1]!, simplified)).toBeLessThan(tolerance);
        }
      }
    }
  });
});

function distanceToRing(x: number, y: number, pts: number[]): number {
  let best = Infinity;
  const n = pts.length / 2;
  for (let i = 0; i < n; i++) {
    const ax = pts[2 * i]!;
    const ay = pts[2 * i + 1]!;
    const bx = pts[2 * ((i + 1) % n)]!;
    const by = pts[2 * ((i + 1) % n) + 1]!;
    const l2 = (bx - ax) ** 2 + (by - ay) ** 2;
    const t = l2 === 0 ? 0 : Math.max(0, Math.min(1, ((x - ax) * (bx - ax) + (y - ay) * (by - ay)) / l2));
    best = Math.min(best, Math.hypot(x - ax - t * (bx - ax), y - ay - t * (by - ay)));
  }
  return best;
}
