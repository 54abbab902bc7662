/** `ldfsam inspect`: the geometry and pixel format of a study's series, as the pipeline sees them. */
import type { Command } from 'commander';
import { inspectStudy, type SeriesSummary } from '../../dicom/inspect.js';
import { uidPath } from '../../dicomweb/client.js';
import { action, clientFrom, configFrom, printJson, table, withPacsOptions, type CommonFlags } from '../context.js';

export function registerInspect(program: Command): void {
  withPacsOptions(program.command('inspect'))
    .description('print per series: modality, slices, size, spacing, orientation, slice order and transfer syntaxes')
    .requiredOption('--study <uid>', 'Study Instance UID')
    .option('--series <uid>', 'only this Series Instance UID')
    .option('--json', 'print {"series": [...]} as JSON, with per-slice positions and sources')
    .action(
      action(async (flags: CommonFlags & { study: string; series?: string }) => {
        const config = configFrom(flags);
        uidPath(flags.study);
        if (flags.series) uidPath(flags.series);
        const result = await inspectStudy(clientFrom(config), { studyInstanceUID: flags.study, seriesInstanceUID: flags.series });
        if (flags.json) {
          printJson(result);
          return;
        }
        const rows = [['SERIES', 'MOD', 'SLICES', 'SIZE', 'SPACING (mm)', 'ORIENTATION', 'EVEN', 'ORDER', 'TRANSFER SYNTAXES']];
        const failures: string[] = [];
        for (const s of result.series) {
          if ('error' in s) {
            failures.push(`${s.seriesInstanceUID} (${s.modality}): [${s.error.code}] ${s.error.message}`);
            continue;
          }
          rows.push(summaryRow(s));
        }
        process.stdout.write(`Study ${result.studyInstanceUID}\n${table(rows)}\n`);
        for (const f of failures) process.stdout.write(`cannot be segmented: ${f}\n`);
      }),
    );
}

function summaryRow(s: SeriesSummary): string[] {
  const spacing = s.pixelSpacing ? s.pixelSpacing.map((v) => round(v)).join(' x ') : '-';
  const slice = s.sliceSpacing ? `, ${round(s.sliceSpacing.mean)} between` : '';
  return [
    s.seriesInstanceUID,
    s.modality,
    String(s.sliceCount),
    `${s.rows}x${s.columns}${s.samplesPerPixel === 3 ? ' RGB' : ''}`,
    spacing + slice,
    s.orientation ? s.orientation.map((v) => round(v)).join(',') : '2D (none)',
    s.evenlySpaced ? 'yes' : 'NO',
    s.orderedBy,
    s.transferSyntaxes.join(' '),
  ];
}

function round(v: number): string {
  return String(Number(v.toFixed(4)));
}
