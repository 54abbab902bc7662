/**
 * The server's NIfTI and NRRD readers against ITK (SimpleITK 2.5, the reader 3D Slicer uses): every
 * one of the 48 axis orientations with the transform in qform, sform or both (sform codes 1 and 2),
 * an oblique one, qform and sform that disagree (sform code 2 and 1), a sheared sform, scaled values, and NRRD in LPS and RAS. Size, spacing,
 * origin, direction and the first values must be ITK's. Our NRRD writer's output read by ITK is
 * checked in monailabel.test.ts.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readVolume } from '../../server/src/volume/read.js';
import { runPython } from '../setup/python.js';

let work: string;
let cases: {
  file: string;
  size?: number[];
  spacing?: number[];
  origin?: number[];
  direction?: number[];
  values?: number[];
  error?: string;
}[];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ldfsam-volume-'));
  cases = JSON.parse(await runPython('test/tools/volume_geometry.py', [work]));
}, 120_000);

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('volume geometry as ITK reads it', () => {
  it('reads every case as SimpleITK does', () => {
    expect(cases.length).toBe(48 + 5 + 2);
    for (const c of cases) {
      const name = c.file.split('/').pop()!;
      if (c.error) throw new Error(`${name}: SimpleITK could not read it: ${c.error}`);
      const v = readVolume(readFileSync(c.file), 1 << 30, name);
      expect(v.size, name).toEqual(c.size);
      v.spacing.forEach((s, a) => expect(s, `${name} spacing ${a}`).toBeCloseTo(c.spacing![a]!, 4));
      v.origin.forEach((o, a) => expect(o, `${name} origin ${a}`).toBeCloseTo(c.origin![a]!, 3));
      // ITK's direction is row-major: row r, column a = component r of axis a.
      for (let a = 0; a < 3; a++)
        for (let r = 0; r < 3; r++)
          expect(v.directions[a]![r]!, `${name} direction axis ${a} component ${r}`).toBeCloseTo(c.direction![r * 3 + a]!, 4);
      const real = (i: number) => v.data[i]! * v.scale.slope + v.scale.intercept;
      expect([0, 1, 2, 3, v.data.length - 1].map(real), name).toEqual(c.values);
    }
  });
});
