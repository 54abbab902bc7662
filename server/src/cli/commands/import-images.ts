/** `ldfsam import-images`: PNG / baseline JPEG files to DICOM Part 10 files, optionally stored in the PACS. */
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import type { Command } from 'commander';
import {
  importImage,
  IMPORT_MODALITIES,
  type ImportedImage,
  type ImportModality,
  type ImportRequest,
} from '../../dicom/import-images.js';
import type { DicomWebClient } from '../../dicomweb/client.js';
import { isJpeg } from '../../dicom/jpeg-header.js';
import { isPng } from '../../dicom/png-image.js';
import { LdfsamError, toLdfsamError, type ErrorCode } from '../../errors.js';
import { loadFiles, type LoadReport } from '../../pacs/load.js';
import { listFiles } from '../../util/files.js';
import { packageVersion } from '../../util/paths.js';
import { action, clientFrom, configFrom, printJson, table, withPacsOptions, type CommonFlags } from '../context.js';
import {
  genericRequest,
  hc18Request,
  parseHc18Index,
  ph2Request,
  PRESETS,
  type Hc18Entry,
  type Preset,
} from './import-presets.js';

export interface ImportFlags extends CommonFlags {
  out: string;
  preset?: string;
  modality?: string;
  pixelSpacing?: string;
  patientId?: string;
  index?: string;
  limit?: string;
  store?: boolean;
}

export interface ImportReport {
  out: string;
  images: (Omit<ImportedImage, 'bytes' | 'sourceSha256' | 'sourceFormat'> & { source: string; path: string })[];
  skipped: { path: string; reason: string }[];
  failed: { path: string; code: ErrorCode; message: string }[];
  store?: LoadReport;
}

export function registerImportImages(program: Command): void {
  withPacsOptions(program.command('import-images'))
    .description(
      'wrap PNG / baseline JPEG images as DICOM (US, VL Photographic or Secondary Capture) files; --store sends them to the PACS',
    )
    .argument(
      '<paths...>',
      'image files or folders (walked recursively; inside folders, files under a "masks" folder are skipped)',
    )
    .requiredOption('--out <folder>', 'write the DICOM files here, as <out>/<patient id>/<image name>.dcm')
    .option('--preset <name>', 'a known public data set: hc18 (US, pixel size from index.csv) or ph2 (XC dermoscopy)')
    .option('--modality <US|XC|OT>', 'without --preset (required then): US Image, VL Photographic (XC) or Secondary Capture (OT)')
    .option(
      '--pixel-spacing <mm>',
      'without --preset: square pixel size in mm (US: as an ultrasound region in cm; XC, OT: Pixel Spacing)',
    )
    .option(
      '--patient-id <id>',
      'without --preset: put every image in one study of this patient (default: one per file, named after it)',
    )
    .option('--index <csv>', 'with --preset hc18: the index.csv (default: index.csv in or above the images folder)')
    .option('--limit <n>', 'convert at most N images (in path order)')
    .option('--store', 'store the written files in the PACS through STOW-RS, as `ldfsam pacs load` does')
    .option('--json', 'print the report as JSON')
    .addHelpText(
      'after',
      `
IODs: US -> Ultrasound Image Storage (spacing as a Sequence of Ultrasound Regions item in cm), XC -> VL
Photographic Image Storage, OT -> Secondary Capture Image Storage. PNG (8-bit grey or RGB) is stored
uncompressed with its values unchanged; baseline JPEG is encapsulated unchanged (JPEG Baseline transfer
syntax, YBR_FULL_422 when chroma is subsampled). Progressive, 12-bit, CMYK JPEG and 16-bit or
transparent PNG are refused.

UIDs are derived from the patient and the file contents: importing the same file again gives the same
instance, which the PACS keeps once. One series per image; one study per patient.

Presets:
  hc18  HC18 fetal head ultrasound (NNN_HC.png, NNN_2HC.png, ...): patient HC18-<subject>, pixel
        size from index.csv (columns file, subject, pixel_size_mm)
  ph2   PH2 dermoscopy (IMDnnn.jpg): patient PH2-IMDnnn, modality XC, no pixel spacing (unknown)

Examples:
  ldfsam import-images ../shared/data/hc18/images --preset hc18 --limit 10 --out /tmp/hc18-dicom --store
  ldfsam import-images photo.jpg --modality XC --out /tmp/dicom
  ldfsam import-images scan.png --modality US --pixel-spacing 0.1 --patient-id P001 --out /tmp/dicom`,
    )
    .action(
      action(async (paths: string[], flags: ImportFlags) => {
        const report = await importImages(paths, flags);
        if (flags.json) printJson(report);
        else printReport(report, flags);
        if (report.failed.length > 0 || (report.store && report.store.failed.length > 0)) process.exitCode = 1;
      }),
    );
}

interface Settings {
  preset: Preset | undefined;
  modality: ImportModality | undefined;
  pixelSpacingMm: number | undefined;
  patientID: string | undefined;
  limit: number;
}

function settingsOf(flags: ImportFlags): Settings {
  const bad = (message: string) => new LdfsamError('INVALID_INPUT', message);
  const preset = flags.preset?.toLowerCase();
  if (preset !== undefined && !(PRESETS as readonly string[]).includes(preset))
    throw bad(`--preset ${flags.preset} is not one of ${PRESETS.join(', ')}`);
  const modality = flags.modality?.toUpperCase();
  if (modality !== undefined && !(IMPORT_MODALITIES as string[]).includes(modality))
    throw bad(`--modality ${flags.modality} is not one of ${IMPORT_MODALITIES.join(', ')}`);
  if (preset) {
    const clash = (['modality', 'pixelSpacing', 'patientId'] as const).filter((k) => flags[k] !== undefined);
    if (clash.length > 0) {
      throw bad(
        `--preset ${preset} sets the modality, pixel spacing and patient itself: leave out ${clash.map((k) => `--${kebab(k)}`).join(', ')}`,
      );
    }
  } else if (!modality) throw bad('say what the images are: --modality US|XC|OT, or --preset hc18|ph2');
  if (flags.index !== undefined && preset !== 'hc18') throw bad('--index is for --preset hc18');
  let pixelSpacingMm: number | undefined;
  if (flags.pixelSpacing !== undefined) {
    pixelSpacingMm = Number(flags.pixelSpacing);
    if (!(Number.isFinite(pixelSpacingMm) && pixelSpacingMm > 0))
      throw bad(`--pixel-spacing ${flags.pixelSpacing} is not a positive number of mm`);
  }
  const limit = flags.limit === undefined ? Infinity : Number(flags.limit);
  if (flags.limit !== undefined && !(Number.isInteger(limit) && limit > 0))
    throw bad(`--limit ${flags.limit} is not a positive integer`);
  return {
    preset: preset as Preset | undefined,
    modality: modality as ImportModality | undefined,
    pixelSpacingMm,
    patientID: flags.patientId,
    limit,
  };
}

/** `pacs`: the PACS to store into with `store` (default: the configured one). */
export async function importImages(paths: string[], flags: ImportFlags, pacs?: DicomWebClient): Promise<ImportReport> {
  const settings = settingsOf(flags);
  const client = flags.store ? (pacs ?? clientFrom(configFrom(flags))) : undefined; // a bad config stops us before any file is written
  const report: ImportReport = { out: flags.out, images: [], skipped: [], failed: [] };
  const candidates = await imageCandidates(paths);
  const indexes = new Map<string, Map<string, Hc18Entry>>();
  const written = new Set<string>(); // output paths
  const seen = new Map<string, string>(); // SOP Instance UID -> output path

  for (const { path, mask } of candidates) {
    if (report.images.length >= settings.limit) break;
    if (mask) {
      report.skipped.push({ path, reason: 'in a "masks" folder (segmentation masks of the data set, not images)' });
      continue;
    }
    const bytes = await readFile(path);
    if (!isPng(bytes) && !isJpeg(bytes)) {
      report.skipped.push({ path, reason: 'not a PNG or JPEG image' });
      continue;
    }
    try {
      const request = await requestFor(path, bytes, settings, flags.index, indexes);
      request.softwareVersion = packageVersion();
      const image = importImage(request);
      const out = join(flags.out, safeName(image.patientID), `${safeName(basename(path).replace(/\.[^.]*$/, ''))}.dcm`);
      const twin = seen.get(image.sopInstanceUID);
      if (twin) {
        report.skipped.push({ path, reason: `the same image as an earlier file (written to ${twin})` });
        continue;
      }
      if (written.has(out))
        throw new LdfsamError('INVALID_INPUT', `another image of this run was already written to ${out}; rename one of them`);
      await mkdir(dirname(out), { recursive: true });
      await writeFile(out, image.bytes);
      written.add(out);
      seen.set(image.sopInstanceUID, out);
      const { bytes: _b, sourceSha256: _s, sourceFormat: _f, ...summary } = image;
      report.images.push({ source: path, path: out, ...summary });
    } catch (err) {
      const e = toLdfsamError(err);
      report.failed.push({ path, code: e.code, message: e.message });
    }
  }

  if (client && report.images.length > 0) {
    report.store = await loadFiles(
      client,
      report.images.map((i) => i.path),
    );
  }
  return report;
}

/** Every file under the paths, with whether it sits in a "masks" folder below a folder given on the command line. */
async function imageCandidates(paths: string[]): Promise<{ path: string; mask: boolean }[]> {
  const out: { path: string; mask: boolean }[] = [];
  for (const root of paths) {
    const walked = (await stat(root).catch(() => undefined))?.isDirectory() ?? false;
    for (const path of await listFiles([root])) {
      out.push({ path, mask: walked && relative(root, path).split(sep).slice(0, -1).includes('masks') });
    }
  }
  return out;
}

async function requestFor(
  path: string,
  bytes: Buffer,
  settings: Settings,
  indexFlag: string | undefined,
  indexes: Map<string, Map<string, Hc18Entry>>,
): Promise<ImportRequest> {
  const name = basename(path);
  if (settings.preset === 'ph2') return ph2Request(bytes, name);
  if (settings.preset === 'hc18') {
    const indexPath =
      indexFlag ?? [join(dirname(path), 'index.csv'), join(dirname(path), '..', 'index.csv')].find((p) => existsSync(p));
    if (!indexPath) throw new LdfsamError('NOT_FOUND', `no HC18 index.csv in or above ${dirname(path)} (give it with --index)`);
    let index = indexes.get(indexPath);
    if (!index) {
      index = parseHc18Index(
        await readFile(indexPath, 'utf8').catch(() => {
          throw new LdfsamError('NOT_FOUND', `cannot read the HC18 index ${indexPath}`);
        }),
      );
      indexes.set(indexPath, index);
    }
    const entry = index.get(name);
    if (!entry) throw new LdfsamError('INVALID_INPUT', `${name} is not listed in the HC18 index ${indexPath}`);
    return hc18Request(bytes, entry);
  }
  return genericRequest(bytes, name, {
    modality: settings.modality!,
    pixelSpacingMm: settings.pixelSpacingMm,
    patientID: settings.patientID,
  });
}

function printReport(report: ImportReport, flags: ImportFlags): void {
  const rows = [['IMAGE', 'PATIENT', 'MOD', 'SIZE', 'SPACING (mm)', 'PHOTOMETRIC', 'TRANSFER SYNTAX']];
  for (const i of report.images) {
    rows.push([
      basename(i.source),
      i.patientID,
      i.modality,
      `${i.rows}x${i.columns}`,
      i.pixelSpacingMm === null ? '-' : String(Number(i.pixelSpacingMm.toPrecision(6))),
      i.photometricInterpretation,
      i.transferSyntaxUID,
    ]);
  }
  process.stdout.write(`Wrote ${report.images.length} DICOM file(s) to ${report.out}\n`);
  if (report.images.length > 0) process.stdout.write(`${table(rows)}\n`);
  // Folders of a data set hold many files of one kind (masks, an index): one line per reason beyond a few.
  const byReason = new Map<string, string[]>();
  for (const s of report.skipped) byReason.set(s.reason, [...(byReason.get(s.reason) ?? []), s.path]);
  for (const [reason, files] of byReason) {
    if (files.length <= 3) for (const f of files) process.stdout.write(`skipped ${f}: ${reason}\n`);
    else process.stdout.write(`skipped ${files.length} files (${files[0]}, ...): ${reason}\n`);
  }
  for (const f of report.failed) process.stdout.write(`FAILED  ${f.path}: [${f.code}] ${f.message}\n`);
  if (report.store) {
    const s = report.store;
    process.stdout.write(
      `Stored ${s.stored.length} instance(s) in ${configFrom(flags).dicomwebUrl} (${s.series.length} series)\n`,
    );
    for (const f of s.failed) process.stdout.write(`FAILED  ${f.path}: ${f.reason}\n`);
    for (const w of s.warnings) process.stdout.write(`warning: ${w}\n`);
  }
}

/** A patient id or file stem as a folder / file name. */
function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^\.+/, '_') || 'image';
}

function kebab(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
