/**
 * The server's layers: an import may only point down this list (a helper two layers need lives in
 * the lower one). Folders of one rank may import each other (http/ and viewer/; jobs/ and interactive/,
 * and pacs/, seg/ and volume/ may not, being side by side: that is checked too).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectPath } from '../../server/src/util/paths.js';

/** Top-level folders and files of server/src, highest first; `bench/` is the `ldfsam bench` command's body. */
const LAYERS: string[][] = [
  ['cli', 'bench'],
  ['http', 'viewer'],
  ['jobs', 'interactive'],
  ['pipeline'],
  ['pacs', 'seg', 'volume'],
  ['dicom'],
  ['dicomweb', 'inference'],
  ['models', 'config.ts'],
  ['util', 'errors.ts', 'log.ts', 'types'],
];
/** Side by side in one rank, but neither uses the other. */
const APART = [
  ['jobs', 'interactive'],
  ['pacs', 'seg'],
  ['pacs', 'volume'],
  ['seg', 'volume'],
  ['dicomweb', 'inference'],
  ['models', 'config.ts'],
];

const SRC = projectPath('server', 'src');
const rank = (top: string) => LAYERS.findIndex((l) => l.includes(top));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+'(\.[^']+)'|import\('(\.[^']+)'\)/g)].map(
    (m) => (m[1] ?? m[2])!,
  );
}

describe('server layers', () => {
  const files = sources(SRC);

  it('every top-level folder and file of server/src has a layer', () => {
    const tops = [...new Set(files.map((f) => relative(SRC, f).split('/')[0]!))];
    expect(tops.filter((t) => rank(t) < 0)).toEqual([]);
  });

  it('no import points up, or across to a neighbour it must not use', () => {
    const wrong: string[] = [];
    for (const file of files) {
      const from = relative(SRC, file).split('/')[0]!;
      for (const spec of imports(file)) {
        const to = relative(SRC, resolve(dirname(file), spec))
          .split('/')[0]!
          .replace(/\.js$/, '.ts');
        if (to === from) continue;
        const apart = APART.some((pair) => pair.includes(from) && pair.includes(to));
        if (rank(to) < rank(from) || apart) wrong.push(`${relative(SRC, file)} imports ${spec}`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
