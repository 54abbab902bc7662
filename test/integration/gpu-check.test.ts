/** bench/gpu-check.sh on a machine without a GPU: it says what is missing and stops at once, exit 3. */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { projectPath } from '../../server/src/util/paths.js';

it('gpu-check.sh without a GPU: names the missing driver and provider library, writes its report, exits 3 within seconds', async () => {
  const out = mkdtempSync(join(tmpdir(), 'gpu-check-'));
  const t0 = performance.now();
  const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(
      'bash',
      [projectPath('bench', 'gpu-check.sh'), out],
      { cwd: projectPath(), timeout: 120_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    ),
  );
  const seconds = (performance.now() - t0) / 1000;
  expect(r.code, r.stderr).toBe(3);
  expect(seconds).toBeLessThan(60); // a few seconds idle; generous for a loaded machine
  expect(r.stderr).toContain('GPU check not run: this machine lacks');
  expect(r.stderr).toContain("onnxruntime-node's CUDA provider library (run npm run setup:gpu)");
  expect(r.stderr).toContain('an NVIDIA driver (nvidia-smi is not installed or does not answer)');
  const report = JSON.parse(readFileSync(join(out, 'gpu-check.json'), 'utf8')) as {
    ran: boolean;
    lacks: string[];
    machine: { driver: unknown; providerLibrary: boolean; cudaUnavailable: string };
  };
  expect(report.ran).toBe(false);
  expect(report.machine).toMatchObject({ driver: null, providerLibrary: false });
  expect(report.machine.cudaUnavailable).toMatch(/CUDA provider library is not installed/);
  expect(readFileSync(join(out, 'gpu-check.md'), 'utf8')).toMatch(
    /Not run: this machine lacks\n\n- onnxruntime-node's CUDA provider library/,
  );
});
