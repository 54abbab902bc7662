/**
 * dciodvfy (dicom3tools), the independent checker of a file against its IOD. It is an oracle: when
 * it is missing, crashes or cannot read the file, the check fails with that reason; it never reads
 * as "no errors".
 */
import { execFile } from 'node:child_process';

export interface DciodvfyReport {
  errors: string[];
  warnings: string[];
}

export function dciodvfy(file: string): Promise<DciodvfyReport> {
  return new Promise((resolve, reject) => {
    execFile('dciodvfy', [file], { maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const lines = `${stdout}\n${stderr}`.split('\n');
      const failed = (why: string) =>
        reject(new Error(`dciodvfy ${why}, so ${file} was not checked:\n${lines.slice(0, 20).join('\n')}`));
      const code = (error as NodeJS.ErrnoException | null)?.code;
      if (code === 'ENOENT') return failed('is not on the PATH (Debian package dicom3tools; npm run setup installs it)');
      if (error?.signal) return failed(`was killed by ${error.signal}`);
      // It exits 0, or 1 when it found errors; anything else, or an Abort line, is dciodvfy failing.
      if (error && typeof code === 'number' && code !== 1) return failed(`exited with status ${code}`);
      if (error && typeof code !== 'number') return failed(`could not run (${error.message})`);
      const aborted = lines.filter((l) => /^Abort/.test(l));
      if (aborted.length > 0) return failed(`gave up: ${aborted.join('; ')}`);
      resolve({ errors: lines.filter((l) => /^Error/.test(l)), warnings: lines.filter((l) => /^Warning/.test(l)) });
    });
  });
}
