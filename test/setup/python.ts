/** The project's Python venv (models/.venv), used by tests for independent checks with pydicom. */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { projectPath } from '../../server/src/util/paths.js';

const run = promisify(execFile);

export function venvPython(): string {
  const python = projectPath('models', '.venv', 'bin', 'python');
  if (!existsSync(python)) throw new Error(`${python} is missing: run "npm run setup:python" first`);
  return python;
}

export async function runPython(script: string, args: string[]): Promise<string> {
  const { stdout } = await run(venvPython(), [projectPath(script), ...args], { maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}
