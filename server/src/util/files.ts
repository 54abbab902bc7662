/** Finding the files a command was given (files and folders, walked recursively). */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LdfsamError } from '../errors.js';

/** Every regular file under the paths (folders walked recursively, in sorted order). */
export async function listFiles(paths: string[]): Promise<string[]> {
  const out: string[] = [];
  const walk = async (p: string): Promise<void> => {
    let info;
    try {
      info = await stat(p);
    } catch {
      throw new LdfsamError('NOT_FOUND', `no such file or folder: ${p}`);
    }
    if (info.isDirectory()) {
      const entries = (await readdir(p)).sort();
      for (const e of entries) await walk(join(p, e));
    } else if (info.isFile()) {
      out.push(p);
    }
  };
  for (const p of paths) await walk(p);
  return out;
}
