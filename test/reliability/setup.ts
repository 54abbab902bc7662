/** Global set-up of the reliability project: a results folder, and one summary table at the end. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { FULL, formatTable, type Row } from './summary.js';

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
      process.stdout.write(`\nReliability (${FULL ? 'full' : 'short'} mode):\n${table}\n`);
      // The long run leaves its table where test/RELIABILITY.md's author can copy it from.
      if (process.env.LDFSAM_RELIABILITY_TABLE) writeFileSync(process.env.LDFSAM_RELIABILITY_TABLE, `${table}\n`);
    }
    await rm(dir, { recursive: true, force: true });
  };
}
