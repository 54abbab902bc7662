/**
 * Closed contours of a binary mask along pixel edges, for RT Structure Sets.
 *
 * Every boundary between a mask pixel and a non-mask pixel (or the image border) is one unit edge
 * between two pixel corners; the edges are linked into closed rings, each outer boundary and each
 * hole its own ring. Vertices are pixel corners: corner (x, y) is the top-left corner of pixel
 * (column x, row y), so pixel centres sit at (x + 0.5, y + 0.5) and never on a ring. Filling the
 * rings with the even-odd rule at pixel centres gives back exactly the mask.
 *
 * Why our own tracer: the contour libraries on npm (d3-contour, marchingsquares) run marching
 * squares over pixel centres, which cuts every corner (a one-pixel structure becomes a diamond of
 * half its area) and does not reproduce the mask; potrace fits curves whose deviation is not bounded
 * by half a pixel. None follows pixel edges.
 *
 * Orientation (image coordinates, y down): edges run with the mask on their right, so outer rings
 * are clockwise on screen (positive shoelace area) and holes counter-clockwise (negative). Where two
 * mask pixels touch only at a corner (a saddle), the ring turns right and keeps them apart
 * (4-connected mask): rings never cross themselves; two rings may share that one corner.
 */

export interface Ring {
  /** x0, y0, x1, y1, ...: pixel-corner coordinates of the vertices, not repeating the first. */
  points: number[];
  /** True for a hole (counter-clockwise on screen). */
  hole: boolean;
}

// Directions: 0 = +x (right), 1 = +y (down), 2 = -x (left), 3 = -y (up).
const DX = [1, 0, -1, 0];
const DY = [0, 1, 0, -1];
const NONE = 255;

/** The rings of a bit-packed (LSB first) rows x columns mask. */
export function traceRings(bits: Uint8Array, rows: number, columns: number): Ring[] {
  const at = (x: number, y: number): boolean => {
    if (x < 0 || y < 0 || x >= columns || y >= rows) return false;
    const i = y * columns + x;
    return ((bits[i >> 3]! >> (i & 7)) & 1) === 1;
  };
  const stride = columns + 1;
  // Up to two outgoing edges per corner (two only at a saddle): their directions.
  const out0 = new Uint8Array(stride * (rows + 1)).fill(NONE);
  const out1 = new Uint8Array(stride * (rows + 1)).fill(NONE);
  let edges = 0;
  const add = (x: number, y: number, dir: number) => {
    const v = y * stride + x;
    if (out0[v] === NONE) out0[v] = dir;
    else out1[v] = dir;
    edges++;
  };
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < columns; x++) {
      if (!at(x, y)) continue;
      if (!at(x, y - 1)) add(x, y, 0); // top: top-left -> top-right
      if (!at(x + 1, y)) add(x + 1, y, 1); // right: top-right -> bottom-right
      if (!at(x, y + 1)) add(x + 1, y + 1, 2); // bottom: bottom-right -> bottom-left
      if (!at(x - 1, y)) add(x, y + 1, 3); // left: bottom-left -> top-left
    }
  }
  const rings: Ring[] = [];
  if (edges === 0) return rings;
  for (let start = 0; start < out0.length; start++) {
    while (out0[start] !== NONE) {
      for (const loop of splitAtRepeats(walk(start, out0, out1, stride))) rings.push(ringOf(loop, stride));
    }
  }
  return rings;
}

/**
 * Follows unused edges from `start` until none is left at the current corner, which (every corner
 * having as many edges in as out) happens only back at the start. At a saddle it takes the right
 * turn. Returns the corners passed, the start repeated at the end.
 */
function walk(start: number, out0: Uint8Array, out1: Uint8Array, stride: number): number[] {
  const path = [start];
  let v = start;
  let incoming = -1;
  while (out0[v] !== NONE) {
    const dir = take(v, incoming, out0, out1);
    v += DY[dir]! * stride + DX[dir]!;
    path.push(v);
    incoming = dir;
  }
  return path;
}

/** Removes and returns an outgoing edge of corner v: at a saddle, the right turn from `incoming`. */
function take(v: number, incoming: number, out0: Uint8Array, out1: Uint8Array): number {
  const right = (incoming + 1) & 3;
  if (out1[v] !== NONE && incoming >= 0 && out1[v] === right) {
    out1[v] = NONE;
    return right;
  }
  const dir = out0[v]!;
  out0[v] = out1[v]!;
  out1[v] = NONE;
  return dir;
}

/**
 * A closed corner path that passes a corner twice (two parts touching at one corner) split into
 * loops that pass every corner once: simple polygons, each with the mask on its right all along.
 */
function splitAtRepeats(path: number[]): number[][] {
  const loops: number[][] = [];
  const stack: number[] = [];
  const index = new Map<number, number>();
  for (const c of path) {
    const i = index.get(c);
    if (i === undefined) {
      index.set(c, stack.length);
      stack.push(c);
      continue;
    }
    const loop = stack.splice(i + 1);
    for (const d of loop) index.delete(d);
    loops.push([c, ...loop]);
  }
  return loops;
}

/** A loop of corners as a ring: only the corners where it turns, and hole or not by its orientation. */
function ringOf(loop: number[], stride: number): Ring {
  const n = loop.length;
  const xy = (k: number): [number, number] => {
    const c = loop[(k + n) % n]!;
    const x = c % stride;
    return [x, (c - x) / stride];
  };
  const points: number[] = [];
  let area2 = 0;
  for (let k = 0; k < n; k++) {
    const [px, py] = xy(k - 1);
    const [x, y] = xy(k);
    const [nx, ny] = xy(k + 1);
    area2 += x * ny - nx * y;
    // Collinear corners (straight through) are not vertices.
    if ((x - px) * (ny - y) - (y - py) * (nx - x) !== 0) points.push(x, y);
  }
  return { points, hole: area2 < 0 };
}

/** An outer ring with its holes joined in (keyhole), and the vertices where they join. */
export interface KeyholePolygon {
  /** x0, y0, x1, y1, ...: the outer ring, each hole entered and left along the same zero-width cut. */
  points: number[];
  /** Vertex indices at the ends of the cuts: simplification keeps them, so a cut stays a cut. */
  anchors: number[];
}

/**
 * Joins every hole to the ring around it by a zero-width cut (PS3.3 C.8.8.6.3's "keyhole"), so that
 * a structure with holes is one CLOSED_PLANAR contour per outer boundary: a receiver that combines an
 * ROI's contours by union fills it right, as one that combines them by even-odd does. Holes are taken
 * top to bottom; each is cut upwards from its top-left corner along that pixel-corner line to the
 * first ring edge above it (within a 4-connected mask, an edge of its own component's outer ring or
 * of a hole of it already joined), so no cut crosses a ring. Cuts lie on pixel-corner lines: no pixel
 * centre is on one, and filling at pixel centres still gives back the mask exactly.
 *
 * The rings' horizontal edges are indexed by the pixel-corner columns they span, so each hole finds
 * its edge in one column's list; the rings are linked lists, so a cut is spliced in place: a mask
 * with thousands of holes costs about its perimeter.
 */
export function keyholes(rings: readonly Ring[]): KeyholePolygon[] {
  const loops = rings.map((r) => linked(r.points));
  const columns = horizontalEdges(loops);
  const joined = rings.map((r) => !r.hole);
  const holes = loops
    .map((loop, ring) => ({ ring, ...topLeft(loop) }))
    .filter(({ ring }) => rings[ring]!.hole)
    .sort((a, b) => a.corner.y - b.corner.y || a.corner.x - b.corner.x);
  for (const { ring, corner, before } of holes) {
    let hit: HorizontalEdge | undefined;
    for (const e of columns.get(corner.x) ?? []) if (e.ring !== ring && e.y <= corner.y && (!hit || e.y > hit.y)) hit = e;
    if (!hit || !joined[hit.ring]) continue; // not reached in a traced mask: the hole stays a contour of its own
    cut(vertexAt(hit.from, corner.x, hit.y), corner, before);
    joined[ring] = true;
  }
  return loops.filter((_, ring) => !rings[ring]!.hole || !joined[ring]).map(polygonOf);
}

interface Vertex {
  x: number;
  y: number;
  next: Vertex;
  /** An end of a cut: simplification keeps it. */
  anchor: boolean;
  /** Where this cut's way back up arrives (the same point): the ring's own edge goes on from there. */
  back?: Vertex;
}

interface HorizontalEdge {
  y: number;
  ring: number;
  /** The edge's first vertex (the edge may have been split since, at cuts). */
  from: Vertex;
}

/** A ring as a circular list of vertices; returns its first. */
function linked(points: readonly number[]): Vertex {
  const vertices: Vertex[] = [];
  for (let i = 0; i < points.length; i += 2)
    vertices.push({ x: points[i]!, y: points[i + 1]!, next: undefined as unknown as Vertex, anchor: false });
  vertices.forEach((v, i) => (v.next = vertices[(i + 1) % vertices.length]!));
  return vertices[0]!;
}

/** Pixel-corner column -> the horizontal ring edges spanning it (ends included). */
function horizontalEdges(loops: readonly Vertex[]): Map<number, HorizontalEdge[]> {
  const columns = new Map<number, HorizontalEdge[]>();
  loops.forEach((start, ring) => {
    let v = start;
    do {
      if (v.y === v.next.y) {
        for (let x = Math.min(v.x, v.next.x); x <= Math.max(v.x, v.next.x); x++) {
          let list = columns.get(x);
          if (!list) columns.set(x, (list = []));
          list.push({ y: v.y, ring, from: v });
        }
      }
      v = v.next;
    } while (v !== start);
  });
  return columns;
}

/** A ring's top-left vertex (smallest y, then x) and the vertex before it. */
function topLeft(start: Vertex): { corner: Vertex; before: Vertex } {
  let before = start;
  let v = start;
  do {
    const c = v.next;
    if (c.y < before.next.y || (c.y === before.next.y && c.x < before.next.x)) before = v;
    v = c;
  } while (v !== start);
  return { corner: before.next, before };
}

/** The vertex at (x, y) on the horizontal edge that started at `from`: found, or inserted where it falls. */
function vertexAt(from: Vertex, x: number, y: number): Vertex {
  let a = from;
  for (;;) {
    if (a.x === x) return a;
    while (a.back) a = a.back; // past the cuts already made here, to where the edge goes on
    const b = a.next;
    if (b.y === y && Math.min(a.x, b.x) < x && x < Math.max(a.x, b.x)) {
      const v: Vertex = { x, y, next: b, anchor: false };
      a.next = v;
      return v;
    }
    a = b;
  }
}

/** Splices the hole in at `q`: down the cut to its corner, around it, back to the corner and up to q. */
function cut(q: Vertex, corner: Vertex, before: Vertex): void {
  let at = q;
  while (at.back) at = at.back;
  const back: Vertex = { x: q.x, y: q.y, next: at.next, anchor: true };
  before.next = { x: corner.x, y: corner.y, next: back, anchor: true };
  at.next = corner;
  at.back = back;
  at.anchor = corner.anchor = true;
}

/** A linked ring (its holes joined) as points, without repeating a point twice in a row (a zero-length cut). */
function polygonOf(start: Vertex): KeyholePolygon {
  const points: number[] = [];
  const anchors: number[] = [];
  let v = start;
  do {
    const n = points.length;
    const same = n > 0 && points[n - 2] === v.x && points[n - 1] === v.y;
    if (!same) points.push(v.x, v.y);
    if (v.anchor && anchors.at(-1) !== points.length / 2 - 1) anchors.push(points.length / 2 - 1);
    v = v.next;
  } while (v !== start);
  if (points.length > 2 && points[0] === points.at(-2) && points[1] === points.at(-1)) {
    points.length -= 2; // the last point is the first again
    if (anchors.at(-1) === points.length / 2) anchors[anchors.length - 1] = 0;
  }
  return { points, anchors: [...new Set(anchors)] };
}

/**
 * Douglas-Peucker on a closed ring: drops vertices closer than `tolerance` (pixels) to the segment
 * that replaces them. With a tolerance below half a pixel the ring stays within that distance of the
 * pixel edges it came from. 0 keeps the ring as it is (exact).
 */
export function simplifyRing(points: number[], tolerance: number, anchors: readonly number[] = []): number[] {
  const n = points.length / 2;
  if (tolerance <= 0 || n <= 4) return points;
  // Kept: the anchors, or else vertex 0 and the vertex farthest from it; each stretch between is simplified.
  let kept = [...new Set(anchors)].sort((a, b) => a - b);
  if (kept.length === 0) {
    let far = 0;
    let best = -1;
    for (let i = 1; i < n; i++) {
      const d = (points[2 * i]! - points[0]!) ** 2 + (points[2 * i + 1]! - points[1]!) ** 2;
      if (d > best) [best, far] = [d, i];
    }
    kept = [0, far];
  }
  const keep = new Uint8Array(n);
  for (const k of kept) keep[k] = 1;
  const stack: [number, number][] = kept.map((k, i) => [k, i + 1 < kept.length ? kept[i + 1]! : kept[0]! + n]);
  const px = (i: number) => points[2 * (i % n)]!;
  const py = (i: number) => points[2 * (i % n) + 1]!;
  while (stack.length > 0) {
    const [a, b] = stack.pop()!;
    if (b - a < 2) continue;
    const ax = px(a);
    const ay = py(a);
    const dx = px(b) - ax;
    const dy = py(b) - ay;
    const len = Math.hypot(dx, dy);
    let worst = -1;
    let at = -1;
    for (let i = a + 1; i < b; i++) {
      const d = len === 0 ? Math.hypot(px(i) - ax, py(i) - ay) : Math.abs(dx * (py(i) - ay) - dy * (px(i) - ax)) / len;
      if (d > worst) [worst, at] = [d, i];
    }
    if (worst >= tolerance) {
      keep[at % n] = 1;
      stack.push([a, at], [at, b]);
    }
  }
  const out: number[] = [];
  for (let i = 0; i < n; i++) if (keep[i]) out.push(points[2 * i]!, points[2 * i + 1]!);
  return out;
}

/** Fills rings with the even-odd rule, sampling pixel centres: the inverse of traceRings (tests, checks). */
export function fillRings(rings: readonly { points: readonly number[] }[], rows: number, columns: number): Uint8Array {
  const mask = new Uint8Array(rows * columns);
  for (const { points } of rings) {
    const n = points.length / 2;
    for (let y = 0; y < rows; y++) {
      const cy = y + 0.5;
      const xs: number[] = [];
      for (let i = 0; i < n; i++) {
        const x0 = points[2 * i]!;
        const y0 = points[2 * i + 1]!;
        const x1 = points[2 * ((i + 1) % n)]!;
        const y1 = points[2 * ((i + 1) % n) + 1]!;
        if (y0 <= cy === y1 <= cy) continue;
        xs.push(x0 + ((cy - y0) * (x1 - x0)) / (y1 - y0));
      }
      xs.sort((a, b) => a - b);
      for (let k = 0; k + 1 < xs.length; k += 2) {
        const from = Math.max(0, Math.ceil(xs[k]! - 0.5));
        const to = Math.min(columns - 1, Math.floor(xs[k + 1]! - 0.5));
        for (let x = from; x <= to; x++) mask[y * columns + x]! ^= 1;
      }
    }
  }
  return mask;
}
