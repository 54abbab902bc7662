/**
 * Reliability results: every test file records per category how many cases it checked (ran and
 * judged against what must happen) and how many passed, and the global teardown (setup.ts) prints
 * one table of them all. A case that ran but could not be judged (e.g. the PACS refused all its
 * files, so nothing of ours ran) is not counted as checked; the row's note says how many there were. `LDFSAM_RELIABILITY=full` is the long mode
 * (`npm run test:reliability`); the default is the short one that `npm test` runs.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { inject } from 'vitest';

export const FULL = process.env.LDFSAM_RELIABILITY === 'full';

export interface Row {
  suite: string;
  category: string;
  /** Cases judged against what must happen (each one an assertion of the test). */
  checked: number;
  passed: number;
  note?: string;
}

/** Appends rows (JSON lines) to the run's results folder. */
export function record(rows: Row[]): void {
  const dir = (inject as unknown as (k: string) => string)('reliabilityDir');
  mkdirSync(dir, { recursive: true });
  appendFileSync(join(dir, 'rows.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
}

/** Counts outcomes per category into rows; outcomes with `checked: false` are only named in the note. */
export function tally(suite: string, outcomes: { category: string; ok: boolean; checked?: boolean }[]): Row[] {
  const by = new Map<string, Row & { unchecked: number }>();
  for (const o of outcomes) {
    const row = by.get(o.category) ?? { suite, category: o.category, checked: 0, passed: 0, unchecked: 0 };
    if (o.checked === false) row.unchecked++;
    else {
      row.checked++;
      if (o.ok) row.passed++;
    }
    by.set(o.category, row);
  }
  return [...by.values()].map(({ unchecked, ...row }) =>
    unchecked > 0 ? { ...row, note: `${unchecked} more ran but could not be judged (not checked)` } : row,
  );
}

export function formatTable(rows: Row[]): string {
  const head = ['suite', 'category', 'checked', 'passed', 'note'];
  const body = rows.map((r) => [r.suite, r.category, String(r.checked), String(r.passed), r.note ?? '']);
  const total = rows.reduce((a, r) => [a[0]! + r.checked, a[1]! + r.passed], [0, 0]);
  body.push(['total', '', String(total[0]), String(total[1]), '']);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

/** One line for the short run: the totals, then each row with a failed case in full. */
export function shortSummary(rows: Row[]): string {
  const checked = rows.reduce((n, r) => n + r.checked, 0);
  const passed = rows.reduce((n, r) => n + r.passed, 0);
  const failing = rows.filter((r) => r.passed < r.checked);
  const head = `Reliability (short mode): ${passed} of ${checked} cases as they must be, in ${rows.length} categories`;
  return failing.length === 0 ? head : `${head}\n${formatTable(failing)}`;
}
