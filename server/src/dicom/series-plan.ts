/**
 * From a series' WADO-RS metadata to the ordered list of slices the pipeline will process, with
 * the geometry and pixel format of each. Pure: no I/O. Everything a later stage relies on is
 * checked here, so that a bad series fails before any pixel is fetched.
 *
 * Ordering: by Image Position (Patient) projected on the slice normal when every slice has a
 * position (never by Instance Number or file order; per-slice positions are kept, so gantry tilt
 * and uneven spacing survive); by Instance Number then frame number for 2D images that have no
 * patient geometry (ultrasound, photographs). CT, MR and PET must carry geometry.
 */
import type { DicomJson } from '../dicomweb/types.js';
import { LdfsamError } from '../errors.js';
import { dot, isValidOrientation, sameOrientation, sliceNormal, spacingOf, type SpacingSummary, type Vec3 } from './geometry.js';
import { functionalGroup, has, num, nums, seq, str, TAG } from './tags.js';

/** Modalities whose images must have patient geometry (Image Plane module or its functional groups). */
const GEOMETRY_REQUIRED = new Set(['CT', 'MR', 'PT']);
/** SOP classes with pixel data that are not images to segment. */
const NON_IMAGE_SOP_CLASSES = new Map([
  ['1.2.840.10008.5.1.4.1.1.66.4', 'Segmentation'],
  ['1.2.840.10008.5.1.4.1.1.66.7', 'Label Map Segmentation'],
  ['1.2.840.10008.5.1.4.1.1.481.2', 'RT Dose'],
]);
/** Largest frame accepted, in samples (rows x columns x samples per pixel): ~16k x 16k grey. */
export const MAX_FRAME_SAMPLES = 16384 * 16384;
const PHOTOMETRICS = new Set([
  'MONOCHROME1',
  'MONOCHROME2',
  'RGB',
  'YBR_FULL',
  'YBR_FULL_422',
  'YBR_RCT',
  'YBR_ICT',
  'YBR_PARTIAL_420',
  'PALETTE COLOR',
]);

export interface PixelFormat {
  rows: number;
  columns: number;
  samplesPerPixel: 1 | 3;
  bitsAllocated: number;
  bitsStored: number;
  highBit: number;
  /** 0 unsigned, 1 two's complement. */
  pixelRepresentation: 0 | 1;
  photometricInterpretation: string;
  /** 0 interleaved (R1G1B1R2...), 1 planar (RRR...GGG...BBB). */
  planarConfiguration: 0 | 1;
}

export interface PaletteSource {
  /** [entries (0 means 65536), first mapped value, bits per entry]; absent when the PACS omitted it. */
  descriptor: [number, number, number] | undefined;
  segmented: boolean;
  red: DicomJson[string];
  green: DicomJson[string];
  blue: DicomJson[string];
}

export interface SlicePlan {
  /** Position of this slice in processing order, 0-based. */
  index: number;
  sopInstanceUID: string;
  sopClassUID: string;
  /** 1-based frame number inside its instance. */
  frameNumber: number;
  numberOfFrames: number;
  instanceNumber: number | undefined;
  /** Image Position (Patient) of the first transmitted pixel, mm; null for 2D images without geometry. */
  position: Vec3 | null;
  rescaleSlope: number;
  rescaleIntercept: number;
  format: PixelFormat;
  palette: PaletteSource | undefined;
  /** Transfer syntax when the metadata says (often it does not: frames then say it). */
  transferSyntaxUID: string | undefined;
}

export interface SeriesPlan {
  studyInstanceUID: string;
  seriesInstanceUID: string;
  modality: string;
  seriesDescription: string | undefined;
  frameOfReferenceUID: string | undefined;
  rows: number;
  columns: number;
  samplesPerPixel: 1 | 3;
  photometricInterpretation: string;
  /** [row spacing, column spacing] in mm, or null when unknown. */
  pixelSpacing: [number, number] | null;
  pixelSpacingSource: 'PixelSpacing' | 'UltrasoundRegion' | null;
  /** Slice Thickness (mm) of the first slice, when given. */
  sliceThickness: number | undefined;
  /** The 6 direction cosines shared by every slice, or null for 2D images without geometry. */
  orientation: number[] | null;
  normal: Vec3 | null;
  orderedBy: 'position' | 'instanceNumber';
  spacing: SpacingSummary;
  slices: SlicePlan[];
  /** Instances of the series that hold no image (e.g. a SEG stored in the same series), with why. */
  skippedInstances: { sopInstanceUID: string; reason: string }[];
}

interface FrameGeometry {
  position: Vec3 | undefined;
  orientation: number[] | undefined;
  pixelSpacing: number[] | undefined;
}

export function planSeries(instances: DicomJson[], ids?: { studyInstanceUID?: string; seriesInstanceUID?: string }): SeriesPlan {
  const first = instances[0];
  const seriesInstanceUID = ids?.seriesInstanceUID ?? str(first, TAG.SeriesInstanceUID) ?? '';
  const studyInstanceUID = ids?.studyInstanceUID ?? str(first, TAG.StudyInstanceUID) ?? '';
  if (!first) throw new LdfsamError('NOT_FOUND', `series ${seriesInstanceUID} has no instances`);
  const modality = str(first, TAG.Modality) ?? 'OT';
  const skippedInstances: SeriesPlan['skippedInstances'] = [];
  const images: DicomJson[] = [];
  for (const ds of instances) {
    const reason = notAnImage(ds);
    if (reason) skippedInstances.push({ sopInstanceUID: str(ds, TAG.SOPInstanceUID) ?? '?', reason });
    else images.push(ds);
  }
  if (images.length === 0) {
    const why = [...new Set(skippedInstances.map((s) => s.reason))].join('; ');
    throw new LdfsamError('UNSUPPORTED_DICOM', `series ${seriesInstanceUID} (${modality}) holds no image instances (${why})`);
  }

  const slices: (SlicePlan & { orientation: number[] | undefined; spacing: number[] | undefined })[] = [];
  const seenSop = new Set<string>();
  for (const ds of images) {
    const sopInstanceUID = str(ds, TAG.SOPInstanceUID);
    if (!sopInstanceUID)
      throw new LdfsamError('UNSUPPORTED_DICOM', `an instance of series ${seriesInstanceUID} has no SOP Instance UID`);
    if (seenSop.has(sopInstanceUID)) {
      throw new LdfsamError('UNSUPPORTED_DICOM', `series ${seriesInstanceUID} lists SOP instance ${sopInstanceUID} twice`);
    }
    seenSop.add(sopInstanceUID);
    const format = pixelFormatOf(ds, sopInstanceUID);
    // Absent or empty: one frame. A value that is not a number (dcmjs reads it as null, Orthanc sends an
    // empty Value) is damage, not "1": a 2-frame file read so lost its second frame (fuzzer finding).
    const framesElement = ds[TAG.NumberOfFrames];
    const numberOfFrames = framesElement?.Value === undefined ? 1 : Number(framesElement.Value[0] ?? NaN);
    if (!Number.isInteger(numberOfFrames) || numberOfFrames < 1 || numberOfFrames > 100_000) {
      throw new LdfsamError('UNSUPPORTED_DICOM', `instance ${sopInstanceUID}: Number of Frames ${numberOfFrames} is not valid`);
    }
    const shared = seq(ds, TAG.SharedFunctionalGroupsSequence)[0];
    const perFrame = seq(ds, TAG.PerFrameFunctionalGroupsSequence);
    const enhanced = shared !== undefined || perFrame.length > 0;
    if (enhanced && perFrame.length > 0 && perFrame.length !== numberOfFrames) {
      throw new LdfsamError(
        'UNSUPPORTED_DICOM',
        `instance ${sopInstanceUID}: ${perFrame.length} per-frame functional groups for ${numberOfFrames} frames`,
      );
    }
    const palette = paletteOf(ds, format);
    for (let f = 1; f <= numberOfFrames; f++) {
      const frameGroups = perFrame[f - 1];
      const geometry = enhanced ? enhancedGeometry(frameGroups, shared, ds) : classicGeometry(ds);
      const transform = enhanced ? functionalGroup(frameGroups, shared, TAG.PixelValueTransformationSequence) : undefined;
      const slope = num(transform, TAG.RescaleSlope) ?? num(ds, TAG.RescaleSlope) ?? 1;
      const intercept = num(transform, TAG.RescaleIntercept) ?? num(ds, TAG.RescaleIntercept) ?? 0;
      if (slope === 0) throw new LdfsamError('UNSUPPORTED_DICOM', `instance ${sopInstanceUID}: Rescale Slope is 0`);
      slices.push({
        index: 0,
        sopInstanceUID,
        sopClassUID: str(ds, TAG.SOPClassUID) ?? '',
        frameNumber: f,
        numberOfFrames,
        instanceNumber: num(ds, TAG.InstanceNumber),
        position: geometry.position ?? null,
        orientation: geometry.orientation,
        spacing: geometry.pixelSpacing,
        rescaleSlope: slope,
        rescaleIntercept: intercept,
        format,
        palette,
        transferSyntaxUID: str(ds, TAG.TransferSyntaxUID) ?? str(ds, TAG.AvailableTransferSyntaxUID),
      });
    }
  }

  checkUniform(slices, seriesInstanceUID);

  const withPosition = slices.filter((s) => s.position && s.orientation).length;
  const needsGeometry = GEOMETRY_REQUIRED.has(modality);
  let orderedBy: SeriesPlan['orderedBy'];
  let orientation: number[] | null = null;
  let normal: Vec3 | null = null;
  let spacing: SpacingSummary;
  if (withPosition === slices.length) {
    orientation = slices[0]!.orientation!;
    const mixed = slices.find((s) => !sameOrientation(s.orientation!, orientation!));
    if (mixed) {
      throw new LdfsamError(
        'UNSUPPORTED_DICOM',
        `series ${seriesInstanceUID} mixes image orientations ([${fmt(orientation)}] and [${fmt(mixed.orientation!)}] in ` +
          `instance ${mixed.sopInstanceUID}); LDFSAM refuses such series rather than guess: store each orientation as its own series`,
      );
    }
    normal = sliceNormal(orientation);
    const keyed = slices.map((s) => ({ s, d: dot(s.position!, normal!) }));
    keyed.sort((a, b) => a.d - b.d);
    for (let i = 1; i < keyed.length; i++) {
      if (Math.abs(keyed[i]!.d - keyed[i - 1]!.d) < 1e-3) {
        const a = keyed[i - 1]!.s;
        const b = keyed[i]!.s;
        throw new LdfsamError(
          'UNSUPPORTED_DICOM',
          `series ${seriesInstanceUID} has two slices at the same position (${describe(a)} and ${describe(b)} at ` +
            `${keyed[i]!.d.toFixed(3)} mm along the normal): several stacks, echoes or time points in one series are not supported`,
        );
      }
    }
    slices.splice(0, slices.length, ...keyed.map((k) => k.s));
    spacing = spacingOf(keyed.map((k) => k.d));
    orderedBy = 'position';
    const frames = new Set(
      slices.map((s) =>
        str(
          images.find((d) => str(d, TAG.SOPInstanceUID) === s.sopInstanceUID),
          TAG.FrameOfReferenceUID,
        ),
      ),
    );
    if (frames.size > 1) {
      throw new LdfsamError('UNSUPPORTED_DICOM', `series ${seriesInstanceUID} mixes ${frames.size} frames of reference`);
    }
  } else if (withPosition > 0 || needsGeometry) {
    const missing = slices.find((s) => !(s.position && s.orientation));
    throw new LdfsamError(
      'UNSUPPORTED_DICOM',
      `series ${seriesInstanceUID} (${modality}): ${slices.length - withPosition} of ${slices.length} slices lack a valid ` +
        `Image Position/Orientation (Patient) (first: ${describe(missing!)}); without them slices cannot be placed safely`,
    );
  } else {
    slices.sort(
      (a, b) =>
        (a.instanceNumber ?? Number.MAX_SAFE_INTEGER) - (b.instanceNumber ?? Number.MAX_SAFE_INTEGER) ||
        (a.sopInstanceUID < b.sopInstanceUID ? -1 : a.sopInstanceUID > b.sopInstanceUID ? 1 : 0) ||
        a.frameNumber - b.frameNumber,
    );
    spacing = { meanSpacing: undefined, minSpacing: undefined, maxSpacing: undefined, evenlySpaced: true };
    orderedBy = 'instanceNumber';
  }
  slices.forEach((s, i) => (s.index = i));

  const firstSlice = slices[0]!;
  const spacingSource = firstSlice.spacing ? 'PixelSpacing' : null;
  const usSpacing = spacingSource ? undefined : ultrasoundSpacing(images[0]!);
  const pixelSpacing = firstSlice.spacing
    ? ([firstSlice.spacing[0]!, firstSlice.spacing[1]!] as [number, number])
    : (usSpacing ?? null);
  return {
    studyInstanceUID,
    seriesInstanceUID,
    modality,
    seriesDescription: str(first, TAG.SeriesDescription),
    frameOfReferenceUID: str(images[0], TAG.FrameOfReferenceUID),
    rows: firstSlice.format.rows,
    columns: firstSlice.format.columns,
    samplesPerPixel: firstSlice.format.samplesPerPixel,
    photometricInterpretation: firstSlice.format.photometricInterpretation,
    pixelSpacing,
    pixelSpacingSource: spacingSource ?? (usSpacing ? 'UltrasoundRegion' : null),
    sliceThickness: sliceThicknessOf(images[0]!),
    orientation,
    normal,
    orderedBy,
    spacing,
    slices: slices.map(({ orientation: _o, spacing: _s, ...plan }) => plan),
    skippedInstances,
  };
}

function notAnImage(ds: DicomJson): string | undefined {
  const sopClass = str(ds, TAG.SOPClassUID) ?? '';
  const named = NON_IMAGE_SOP_CLASSES.get(sopClass);
  if (named) return `${named} object`;
  if (has(ds, TAG.FloatPixelData) || has(ds, TAG.DoubleFloatPixelData)) return 'float pixel data is not supported';
  // Some PACS (Orthanc) leave encapsulated Pixel Data out of the metadata: Rows/Columns decide.
  if (!has(ds, TAG.PixelData) && !has(ds, TAG.Rows)) return `no pixel data (SOP class ${sopClass || 'unknown'})`;
  return undefined;
}

function pixelFormatOf(ds: DicomJson, sop: string): PixelFormat {
  const need = (tag: string, name: string): number => {
    const v = num(ds, tag);
    if (v === undefined)
      throw new LdfsamError('UNSUPPORTED_DICOM', `instance ${sop} lacks ${name} (${tag.slice(0, 4)},${tag.slice(4)})`);
    return v;
  };
  const rows = need(TAG.Rows, 'Rows');
  const columns = need(TAG.Columns, 'Columns');
  const bitsAllocated = need(TAG.BitsAllocated, 'Bits Allocated');
  const samples = num(ds, TAG.SamplesPerPixel) ?? 1;
  const bitsStored = num(ds, TAG.BitsStored) ?? bitsAllocated;
  const highBit = num(ds, TAG.HighBit) ?? bitsStored - 1;
  const pixelRepresentation = num(ds, TAG.PixelRepresentation) ?? 0;
  const photometric = str(ds, TAG.PhotometricInterpretation) ?? (samples === 3 ? 'RGB' : 'MONOCHROME2');
  const problem = (what: string) => new LdfsamError('UNSUPPORTED_DICOM', `instance ${sop}: ${what}`);
  if (!Number.isInteger(rows) || !Number.isInteger(columns) || rows < 1 || columns < 1) {
    throw problem(`image size ${rows} x ${columns} is not valid`);
  }
  if (samples !== 1 && samples !== 3) throw problem(`Samples per Pixel ${samples} is not supported (1 or 3)`);
  if (rows * columns * samples > MAX_FRAME_SAMPLES) {
    throw problem(`frame of ${rows} x ${columns} x ${samples} samples exceeds the limit of ${MAX_FRAME_SAMPLES}`);
  }
  if (![8, 16, 32].includes(bitsAllocated)) throw problem(`Bits Allocated ${bitsAllocated} is not supported (8, 16 or 32)`);
  if (!(bitsStored >= 1 && bitsStored <= bitsAllocated))
    throw problem(`Bits Stored ${bitsStored} does not fit Bits Allocated ${bitsAllocated}`);
  if (highBit !== bitsStored - 1) throw problem(`High Bit ${highBit} is not Bits Stored - 1 (${bitsStored - 1})`);
  if (pixelRepresentation !== 0 && pixelRepresentation !== 1)
    throw problem(`Pixel Representation ${pixelRepresentation} is not valid`);
  if (!PHOTOMETRICS.has(photometric)) throw problem(`Photometric Interpretation ${photometric} is not supported`);
  const colour = photometric !== 'MONOCHROME1' && photometric !== 'MONOCHROME2' && photometric !== 'PALETTE COLOR';
  if (colour !== (samples === 3)) throw problem(`Photometric Interpretation ${photometric} with ${samples} sample(s) per pixel`);
  if (colour && bitsAllocated !== 8) throw problem(`${bitsAllocated}-bit colour is not supported (8 bits per sample)`);
  const planar = samples === 3 ? (num(ds, TAG.PlanarConfiguration) ?? 0) : 0;
  if (planar !== 0 && planar !== 1) throw problem(`Planar Configuration ${planar} is not valid`);
  return {
    rows,
    columns,
    samplesPerPixel: samples,
    bitsAllocated,
    bitsStored,
    highBit,
    pixelRepresentation: pixelRepresentation,
    photometricInterpretation: photometric,
    planarConfiguration: planar,
  };
}

function paletteOf(ds: DicomJson, format: PixelFormat): PaletteSource | undefined {
  if (format.photometricInterpretation !== 'PALETTE COLOR') return undefined;
  const segmented = has(ds, TAG.SegmentedRedPaletteData);
  const [r, g, b] = segmented
    ? [TAG.SegmentedRedPaletteData, TAG.SegmentedGreenPaletteData, TAG.SegmentedBluePaletteData]
    : [TAG.RedPaletteData, TAG.GreenPaletteData, TAG.BluePaletteData];
  const red = ds[r];
  const green = ds[g];
  const blue = ds[b];
  if (!red || !green || !blue) {
    throw new LdfsamError(
      'UNSUPPORTED_DICOM',
      `instance ${str(ds, TAG.SOPInstanceUID)}: PALETTE COLOR without lookup table data`,
    );
  }
  const d = nums(ds, TAG.RedPaletteDescriptor);
  const descriptor = d && d.length === 3 ? ([d[0]!, d[1]!, d[2]!] as [number, number, number]) : undefined;
  if (descriptor && descriptor[2] !== 8 && descriptor[2] !== 16) {
    throw new LdfsamError('UNSUPPORTED_DICOM', `palette entries of ${descriptor[2]} bits are not supported (8 or 16)`);
  }
  return { descriptor, segmented, red, green, blue };
}

function classicGeometry(ds: DicomJson): FrameGeometry {
  const ipp = nums(ds, TAG.ImagePositionPatient);
  const iop = nums(ds, TAG.ImageOrientationPatient);
  const ps = nums(ds, TAG.PixelSpacing);
  return {
    position: ipp?.length === 3 ? (ipp as Vec3) : undefined,
    orientation: isValidOrientation(iop) ? iop : undefined,
    pixelSpacing: validSpacing(ps),
  };
}

function enhancedGeometry(perFrame: DicomJson | undefined, shared: DicomJson | undefined, ds: DicomJson): FrameGeometry {
  const ipp = nums(functionalGroup(perFrame, shared, TAG.PlanePositionSequence), TAG.ImagePositionPatient);
  const iop = nums(functionalGroup(perFrame, shared, TAG.PlaneOrientationSequence), TAG.ImageOrientationPatient);
  const ps = nums(functionalGroup(perFrame, shared, TAG.PixelMeasuresSequence), TAG.PixelSpacing);
  const fallback = classicGeometry(ds);
  return {
    position: ipp?.length === 3 ? (ipp as Vec3) : fallback.position,
    orientation: isValidOrientation(iop) ? iop : fallback.orientation,
    pixelSpacing: validSpacing(ps) ?? fallback.pixelSpacing,
  };
}

function sliceThicknessOf(ds: DicomJson): number | undefined {
  const shared = seq(ds, TAG.SharedFunctionalGroupsSequence)[0];
  const perFrame = seq(ds, TAG.PerFrameFunctionalGroupsSequence)[0];
  const v = num(functionalGroup(perFrame, shared, TAG.PixelMeasuresSequence), TAG.SliceThickness) ?? num(ds, TAG.SliceThickness);
  return v !== undefined && v > 0 ? v : undefined;
}

function validSpacing(ps: number[] | undefined): number[] | undefined {
  return ps && ps.length === 2 && ps[0]! > 0 && ps[1]! > 0 ? ps : undefined;
}

/** Pixel spacing of a 2D ultrasound image from its largest calibrated (cm) region, in mm. */
function ultrasoundSpacing(ds: DicomJson): [number, number] | undefined {
  let best: [number, number] | undefined;
  let bestArea = -1;
  for (const region of seq(ds, TAG.SequenceOfUltrasoundRegions)) {
    if (num(region, TAG.PhysicalUnitsXDirection) !== 3 || num(region, TAG.PhysicalUnitsYDirection) !== 3) continue;
    const dx = num(region, TAG.PhysicalDeltaX);
    const dy = num(region, TAG.PhysicalDeltaY);
    if (!dx || !dy || dx <= 0 || dy <= 0) continue;
    const x0 = num(region, '00186018') ?? 0;
    const y0 = num(region, '0018601A') ?? 0;
    const x1 = num(region, '0018601C') ?? 0;
    const y1 = num(region, '0018601E') ?? 0;
    const area = Math.abs((x1 - x0) * (y1 - y0));
    if (area > bestArea) {
      bestArea = area;
      best = [dy * 10, dx * 10];
    }
  }
  return best;
}

function checkUniform(
  slices: { format: PixelFormat; spacing: number[] | undefined; sopInstanceUID: string }[],
  series: string,
): void {
  const key = (s: (typeof slices)[number]) => `${s.format.rows}x${s.format.columns}x${s.format.samplesPerPixel}`;
  const groups = new Map<string, number>();
  for (const s of slices) groups.set(key(s), (groups.get(key(s)) ?? 0) + 1);
  if (groups.size > 1) {
    const list = [...groups].map(([k, n]) => `${k.replace(/x(\d)$/, ' ($1 sample/px)')}: ${n} slice(s)`).join(', ');
    throw new LdfsamError(
      'UNSUPPORTED_DICOM',
      `series ${series} mixes image sizes (${list}); LDFSAM refuses such series rather than guess which to segment: store each size as its own series`,
    );
  }
  const ref = slices[0]!.spacing;
  const odd = slices.find(
    (s) =>
      (s.spacing === undefined) !== (ref === undefined) ||
      (s.spacing && ref && (Math.abs(s.spacing[0]! - ref[0]!) > 1e-4 || Math.abs(s.spacing[1]! - ref[1]!) > 1e-4)),
  );
  if (odd) {
    throw new LdfsamError(
      'UNSUPPORTED_DICOM',
      `series ${series} mixes pixel spacings ([${ref?.join(', ') ?? 'none'}] and [${odd.spacing?.join(', ') ?? 'none'}] in instance ${odd.sopInstanceUID})`,
    );
  }
}

function describe(s: { sopInstanceUID: string; frameNumber: number; numberOfFrames: number }): string {
  return s.numberOfFrames > 1 ? `instance ${s.sopInstanceUID} frame ${s.frameNumber}` : `instance ${s.sopInstanceUID}`;
}

function fmt(v: readonly number[]): string {
  return v.map((x) => Number(x.toFixed(4))).join(', ');
}
