/** Locating the project's own files, from both server/src (tests) and dist/server/src (built CLI). */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** The folder holding ldfsam's package.json. */
export function projectRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'ldfsam') return (root = dir);
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the ldfsam project root');
    dir = parent;
  }
}

export function projectPath(...parts: string[]): string {
  return join(projectRoot(), ...parts);
}

let version: string | undefined;

/** ldfsam's own version, from its package.json (read once). */
export function packageVersion(): string {
  version ??= (JSON.parse(readFileSync(projectPath('package.json'), 'utf8')) as { version: string }).version;
  return version;
}
