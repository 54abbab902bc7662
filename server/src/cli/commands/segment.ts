/** `ldfsam segment`: one series (or every accepted series of a study) from the PACS, or a folder of files. */
import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { readFileSeries, readFileSlices } from '../../dicom/file-series.js';
import { uidPath } from '../../dicomweb/client.js';
import { LdfsamError, toLdfsamError } from '../../errors.js';
import { resolveProvider } from '../../inference/providers.js';
import { accepts, ModelRegistry } from '../../inference/registry.js';
import { OUTPUT_FORMATS, segmentPlan, segmentSeries, type OutputFormat, type SegmentResult } from '../../pipeline/segment.js';
import { storeTargetsFrom } from '../../pipeline/store-results.js';
import { str, TAG } from '../../dicom/tags.js';
import { action, clientFrom, configFrom, printJson, table, withPacsOptions, type CommonFlags } from '../context.js';

interface SegmentFlags extends CommonFlags {
  study?: string;
  series?: string;
  model?: string;
  input?: string;
  output?: string;
  batchSize?: string;
  minComponentVoxels?: string;
  storeEmpty?: boolean;
  outputFormat?: string;
  storeVia?: string;
  storeDimse?: string;
  rtstructTolerance?: string;
  provider?: string;
}

export function registerSegment(program: Command): void {
  withPacsOptions(program.command('segment'))
    .description(
      'segment a series with LDFSAM and store the DICOM SEG and/or RT Structure Set in the PACS (STOW-RS) and/or a DICOM node (C-STORE), or write them to files with --input/--output',
    )
    .option('--study <uid>', 'Study Instance UID (PACS mode)')
    .option('--series <uid>', 'Series Instance UID; without it every image series of the study that the model accepts')
    .option(
      '--model <name|folder>',
      'a registered model name or a model folder (default: the first model accepting the modality)',
    )
    .option('--input <folder>', 'segment DICOM files from this folder instead of the PACS')
    .option(
      '--output <file>',
      'with --input: where to write the SEG (or the RTSTRUCT; with both, the RTSTRUCT goes beside it as <name>.rtstruct.dcm)',
    )
    .option('--output-format <seg|rtstruct|both>', 'results to write: DICOM SEG (default), RT Structure Set, or both')
    .option(
      '--store-via <stow|dimse|both>',
      'where results go (env LDFSAM_STORE_VIA; default stow, both when a DICOM node is set)',
    )
    .option('--store-dimse <AET@host:port>', 'DICOM node that receives the results by C-STORE (env LDFSAM_STORE_DIMSE)')
    .option(
      '--rtstruct-tolerance <pixels>',
      'RTSTRUCT contour simplification below 0.5 pixel; 0 = along the pixel edges (env LDFSAM_RTSTRUCT_TOLERANCE)',
    )
    .option('--batch-size <n>', 'slices per inference call (env LDFSAM_BATCH_SIZE; default 4 on the CPU, 16 on CUDA)')
    .option('--provider <provider>', 'onnxruntime execution provider: auto, cpu or cuda (env LDFSAM_PROVIDER, default auto)')
    .option('--min-component-voxels <n>', '3D clean-up: drop components smaller than this (env LDFSAM_MIN_COMPONENT_VOXELS)')
    .option(
      '--store-empty',
      'store (or write) a SEG even when no voxel was segmented or, for a model with a presence gate, no slice passed it',
    )
    .option('--json', 'print the result as JSON')
    .action(
      action(async (flags: SegmentFlags) => {
        const config = configFrom(flags, {
          storeVia: flags.storeVia,
          storeDimse: flags.storeDimse,
          rtstructTolerance: flags.rtstructTolerance,
          provider: flags.provider,
          batchSize: flags.batchSize,
        });
        const outputs = (flags.outputFormat ?? 'seg') as OutputFormat;
        if (!OUTPUT_FORMATS.includes(outputs))
          throw new LdfsamError(
            'INVALID_INPUT',
            `--output-format must be one of ${OUTPUT_FORMATS.join(', ')}, not ${flags.outputFormat}`,
          );
        const minComponentVoxels =
          flags.minComponentVoxels !== undefined ? Number(flags.minComponentVoxels) : config.minComponentVoxels || undefined;
        const log = (m: string) => {
          if (!flags.json) process.stderr.write(`${m}\n`);
        };
        const { provider } = await resolveProvider(config.provider, { log: (m) => process.stderr.write(`${m}\n`) });
        log(`inference: onnxruntime ${provider.toUpperCase()} execution provider`);
        const registry = await ModelRegistry.load(
          config.modelDirs,
          { executionProvider: provider },
          { info: () => undefined, warn: log },
        );
        const options = {
          batchSize: config.batchSize,
          minComponentVoxels,
          storeEmpty: flags.storeEmpty === true,
          outputs,
          rtstructTolerance: config.rtstructTolerance,
          store: storeTargetsFrom(config),
          onProgress: progressPrinter(flags.json === true),
        };
        try {
          if (flags.input) {
            if (!flags.output) throw new LdfsamError('INVALID_INPUT', '--input needs --output <seg.dcm>');
            const series = await readFileSeries([flags.input], flags.series);
            const model = flags.model ? await registry.resolve(flags.model) : registry.forModality(series.plan.modality);
            if (!model)
              throw new LdfsamError(
                'NOT_FOUND',
                `no registered model accepts modality ${series.plan.modality}; name one with --model`,
              );
            const result = await segmentPlan(series.plan, series.instances[0]!, readFileSlices(series), registry, model, options);
            const files = outputFiles(flags.output, result);
            for (const [file, bytes] of files) await writeFile(file, bytes);
            report([result], flags, provider, files.map(([file]) => file).join(', '));
            return;
          }
          if (!flags.study)
            throw new LdfsamError('INVALID_INPUT', 'give --study <uid> (PACS) or --input <folder> --output <file>');
          uidPath(flags.study);
          const client = clientFrom(config);
          let seriesList: string[];
          if (flags.series) seriesList = [uidPath(flags.series)];
          else {
            const found = await client.searchForSeries({ studyInstanceUID: flags.study });
            if (found.length === 0) throw new LdfsamError('NOT_FOUND', `study ${flags.study} is not in the PACS`);
            const named = flags.model ? await registry.resolve(flags.model) : undefined;
            seriesList = found
              .filter((s) => {
                const modality = str(s, TAG.Modality) ?? '';
                return (
                  !['SEG', 'RTSTRUCT'].includes(modality) &&
                  (named ? accepts(named.manifest, modality) : registry.forModality(modality) !== undefined)
                );
              })
              .map((s) => str(s, TAG.SeriesInstanceUID)!);
            if (seriesList.length === 0)
              throw new LdfsamError(
                'NOT_FOUND',
                `no series of study ${flags.study} is accepted by ${flags.model ?? 'any registered model'}`,
              );
          }
          const results: (SegmentResult | { sourceSeriesInstanceUID: string; error: { code: string; message: string } })[] = [];
          for (const seriesInstanceUID of seriesList) {
            try {
              results.push(
                await segmentSeries(
                  client,
                  registry,
                  { studyInstanceUID: flags.study, seriesInstanceUID, model: flags.model },
                  options,
                ),
              );
            } catch (err) {
              const e = toLdfsamError(err);
              if (seriesList.length === 1) throw e;
              results.push({ sourceSeriesInstanceUID: seriesInstanceUID, error: { code: e.code, message: e.message } });
            }
          }
          report(results, flags, provider);
          if (results.some((r) => 'error' in r)) process.exitCode = 1;
        } finally {
          await registry.close();
        }
      }),
    );
}

/** File mode: the SEG at --output, the RTSTRUCT there too (alone) or beside it (both). */
function outputFiles(output: string, r: SegmentResult): [string, Uint8Array][] {
  const files: [string, Uint8Array][] = [];
  if (r.segBytes) files.push([output, r.segBytes]);
  if (r.rtstructBytes) files.push([r.segBytes ? `${output.replace(/\.dcm$/i, '')}.rtstruct.dcm` : output, r.rtstructBytes]);
  return files;
}

function progressPrinter(json: boolean) {
  return (p: { stage: string; done: number; total: number }) => {
    if (!json && process.stderr.isTTY) process.stderr.write(`\r${p.stage.padEnd(10)} ${p.done}/${p.total}   `);
  };
}

type Reported = SegmentResult | { sourceSeriesInstanceUID: string; error: { code: string; message: string } };

function summary(r: SegmentResult, provider: string, output?: string) {
  return {
    status: r.status,
    segSeriesInstanceUID: r.segSeriesInstanceUID ?? null,
    segSopInstanceUID: r.segSopInstanceUID ?? null,
    rtstructSeriesInstanceUID: r.rtstructSeriesInstanceUID ?? null,
    rtstructSopInstanceUID: r.rtstructSopInstanceUID ?? null,
    rtstructRois: r.rtstructRois ?? null,
    outputs: r.outputs,
    storedIn: r.storedIn ?? [],
    notes: r.notes,
    sourceStudyInstanceUID: r.sourceStudyInstanceUID,
    sourceSeriesInstanceUID: r.sourceSeriesInstanceUID,
    modality: r.modality,
    model: r.model,
    /** The onnxruntime execution provider that ran the model. */
    provider,
    slices: r.slices,
    frames: r.frames,
    slicesFound: r.slicesFound,
    scores: r.scores,
    presenceThreshold: r.presenceThreshold,
    confidence: r.confidence,
    slicesUnlikeTraining: r.slicesUnlikeTraining,
    message: r.message,
    segments: r.segments,
    removedVoxels: r.removedVoxels,
    timingsMs: Object.fromEntries(Object.entries(r.timingsMs).map(([k, v]) => [k, Math.round(v * 10) / 10])),
    elapsedMs: r.elapsedMs === undefined ? null : Math.round(r.elapsedMs),
    // Peak resident memory of this process so far (the benchmark reads it).
    peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
    ...(output && r.status === 'written' ? { output } : {}),
  };
}

/** What an output choice writes, in words. */
const WHAT: Record<OutputFormat, string> = { seg: 'SEG', rtstruct: 'RTSTRUCT', both: 'SEG or RTSTRUCT' };

function report(results: Reported[], flags: SegmentFlags, provider: string, output?: string): void {
  if (!flags.json && process.stderr.isTTY) process.stderr.write('\n');
  const out = results.map((r) => ('error' in r ? r : summary(r, provider, output)));
  if (flags.json) {
    printJson(out.length === 1 ? out[0] : { results: out });
    return;
  }
  for (const r of out) {
    if ('error' in r) {
      process.stdout.write(`series ${r.sourceSeriesInstanceUID}: FAILED [${r.error.code}] ${r.error.message}\n`);
      continue;
    }
    const stored = [
      r.segSeriesInstanceUID && `SEG series ${r.segSeriesInstanceUID}, instance ${r.segSopInstanceUID}`,
      r.rtstructSeriesInstanceUID && `RTSTRUCT series ${r.rtstructSeriesInstanceUID}, instance ${r.rtstructSopInstanceUID}`,
    ].filter(Boolean);
    const what =
      r.frames === 0
        ? r.status === 'not-found'
          ? `no ${WHAT[r.outputs]} stored (use --store-empty to store an empty one)`
          : `nothing segmented: every frame is empty, no ${WHAT[r.outputs]} stored (use --store-empty to store one)`
        : output
          ? `written to ${output}`
          : `stored (${r.storedIn.join(', ')}): ${stored.join('; ')}`;
    process.stdout.write(
      `series ${r.sourceSeriesInstanceUID} (${r.modality}, ${r.slices} slices) with ${r.model.name} ${r.model.version} on ${r.provider.toUpperCase()}: ${r.frames} frame(s); ${what}\n`,
    );
    if (r.scores) process.stdout.write(`${r.message}\n`);
    for (const note of r.notes) process.stdout.write(`  note: ${note}\n`);
    process.stdout.write(
      `${table([Object.keys(r.timingsMs).map((k) => k.toUpperCase()), Object.values(r.timingsMs).map((v) => `${v} ms`)])}\n`,
    );
  }
}
