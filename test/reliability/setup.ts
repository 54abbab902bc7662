/**
 * Global set-up of the reliability project: a results folder, and one summary table at the end,
 * written to test/artifacts/reliability-table.md (or LDFSAM_RELIABILITY_TABLE). The long run prints
 * it; `npm test` prints its totals and any row with a failed case, so that the end of a CI log
 * (which this teardown writes after vitest's own summary) still shows which tests failed.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { projectPath } from '../../server/src/util/paths.js';
import type { TestProject } from 'vitest/node';
import { FULL, formatTable, shortSummary, type Row } from './summary.js';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(join(tmpdir(), 'ldfsam-reliability-'));
  (project.provide as unknown as (k: string, v: string) => void)('reliabilityDir', dir);
  return async () => {
    const file = join(dir, 'rows.jsonl');
    if (existsSync(file)) {
      const rows = readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Row);
      const table = formatTable(rows);
      const out = process.env.LDFSAM_RELIABILITY_TABLE ?? projectPath('test', 'artifacts', 'reliability-table.md');
      mkdirSync(dirname(out), { recursive: true });
      writeFileSync(out, `${table}\n`);
      if (FULL) process.stdout.write(`\nReliability (full mode):\n${table}\n`);
      else process.stdout.write(`\n${shortSummary(rows)}; the table: ${out}\n`);
    }
    await rm(dir, { recursive: true, force: true });
  };
}
