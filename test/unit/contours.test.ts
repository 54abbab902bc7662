/** Pixel-edge contours: rings filled back at pixel centres give the mask exactly; holes joined as keyholes read the same by union; simplification stays within its tolerance. */
import { describe, expect, it } from 'vitest';
import { packBits } from '../../server/src/seg/bits.js';
import { fillRings, keyholes, simplifyRing, traceRings, type Ring } from '../../server/src/seg/contours.js';

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

/** Winding-number fill at pixel centres: what a receiver that combines contours by union sees of one polygon. */
function fillNonZero(points: readonly number[], rows: number, columns: number): Uint8Array {
  const mask = new Uint8Array(rows * columns);
  const n = points.length / 2;
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < columns; x++) {
      const [cx, cy] = [x + 0.5, y + 0.5];
      let winding = 0;
      for (let i = 0; i < n; i++) {
        const [ax, ay] = [points[2 * i]!, points[2 * i + 1]!];
        const [bx, by] = [points[2 * ((i + 1) % n)]!, points[2 * ((i + 1) % n) + 1]!];
        if (ay <= cy !== by <= cy && ax + ((cy - ay) * (bx - ax)) / (by - ay) > cx) winding += by > ay ? 1 : -1;
      }
      mask[y * columns + x] = winding !== 0 ? 1 : 0;
    }
  }
  return mask;
}

/** Whether two segments cross at a point inside both (touching at an end or running along each other is not crossing). */
function cross(a: number[], b: number[], c: number[], d: number[]): boolean {
  const o = (p: number[], q: number[], r: number[]) =>
    Math.sign((q[0]! - p[0]!) * (r[1]! - p[1]!) - (q[1]! - p[1]!) * (r[0]! - p[0]!));
  return o(a, b, c) * o(a, b, d) < 0 && o(c, d, a) * o(c, d, b) < 0;
}

function segments(points: readonly number[]): number[][][] {
  const n = points.length / 2;
  return Array.from({ length: n }, (_, i) => [
    [points[2 * i]!, points[2 * i + 1]!],
    [points[2 * ((i + 1) % n)]!, points[2 * ((i + 1) % n) + 1]!],
  ]);
}

describe('keyholes', () => {
  /** One polygon per outer ring; by union of the polygons (winding rule) and by even-odd, the mask exactly; no crossing. */
  function checkKeyholes(mask: Uint8Array, rows: number, columns: number) {
    const rings = traceRings(packBits(mask), rows, columns);
    const polygons = keyholes(rings);
    expect(polygons).toHaveLength(rings.filter((r) => !r.hole).length);
    const union = new Uint8Array(rows * columns);
    for (const p of polygons) {
      const filled = fillNonZero(p.points, rows, columns);
      expect(fillRings([p], rows, columns)).toEqual(filled); // the same region by either rule
      filled.forEach((v, i) => (union[i] = union[i]! + v));
    }
    expect(union).toEqual(mask); // and the polygons do not overlap
    const all = polygons.flatMap((p) => segments(p.points));
    let crossings = 0;
    for (let i = 0; i < all.length; i++)
      for (let j = i + 1; j < all.length; j++) if (cross(all[i]![0]!, all[i]![1]!, all[j]![0]!, all[j]![1]!)) crossings++;
    expect(crossings).toBe(0);
    return polygons;
  }

  it('a ring with two holes and an island in one is two contours, the holes cut in from above', () => {
    const { mask, rows, columns } = maskOf(['##########', '#..#######', '#..##...##', '#####.#.##', '#####...##', '##########']);
    const polygons = checkKeyholes(mask, rows, columns);
    expect(polygons).toHaveLength(2); // the ring, and the one-pixel island in the second hole
    // The first hole's cut: from (1, 0) on the outer ring down to the hole's top-left corner (1, 1) and back.
    const main = polygons.find((p) => p.points.length > 8)!;
    const at = (k: number) => `${main.points[2 * k]},${main.points[2 * k + 1]}`;
    expect(main.anchors.map(at)).toContain('1,1');
    expect(main.anchors.map(at).filter((v) => v === '1,0')).toHaveLength(2);
  });

  it('holes touching the outer ring or each other at a corner, and holes in a column', () => {
    checkKeyholes(maskOf(['.####', '#.###', '##.##', '#####']).mask, 4, 5);
    const stacked = maskOf(['#####', '#.#.#', '#####', '#.#.#', '#####', '#..##', '#####']);
    checkKeyholes(stacked.mask, stacked.rows, stacked.columns);
  });

  it('random masks of every density: the same mask by union and by even-odd, no contour crossing another', () => {
    const next = random(33);
    for (let t = 0; t < 150; t++) {
      const rows = 1 + Math.floor(next() * 17);
      const columns = 1 + Math.floor(next() * 19);
      const density = 0.3 + next() * 0.65; // dense enough for holes
      checkKeyholes(
        new Uint8Array(rows * columns).map(() => (next() < density ? 1 : 0)),
        rows,
        columns,
      );
    }
  });

  it('simplification keeps the cuts: every anchor stays a vertex', () => {
    const { mask, rows, columns } = maskOf(['########', '#......#', '#.####.#', '#.#..#.#', '#.####.#', '#......#', '########']);
    for (const p of keyholes(traceRings(packBits(mask), rows, columns))) {
      const simplified = simplifyRing(p.points, 0.45, p.anchors);
      const vertices = new Set(segments(simplified).map(([a]) => `${a![0]},${a![1]}`));
      for (const a of p.anchors) expect(vertices.has(`${p.points[2 * a]},${p.points[2 * a + 1]}`)).toBe(true);
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
