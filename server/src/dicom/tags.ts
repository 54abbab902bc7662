/** Tags used by the server, and typed readers for DICOM JSON data sets. */
import type { DicomJson } from '../dicomweb/types.js';

export const TAG = {
  TransferSyntaxUID: '00020010',
  SOPClassUID: '00080016',
  SOPInstanceUID: '00080018',
  Modality: '00080060',
  AvailableTransferSyntaxUID: '00083002',
  SeriesDescription: '0008103E',
  StudyInstanceUID: '0020000D',
  SeriesInstanceUID: '0020000E',
  SeriesNumber: '00200011',
  InstanceNumber: '00200013',
  ImagePositionPatient: '00200032',
  ImageOrientationPatient: '00200037',
  FrameOfReferenceUID: '00200052',
  SliceThickness: '00180050',
  SpacingBetweenSlices: '00180088',
  SequenceOfUltrasoundRegions: '00186011',
  PhysicalUnitsXDirection: '00186024',
  PhysicalUnitsYDirection: '00186026',
  PhysicalDeltaX: '0018602C',
  PhysicalDeltaY: '0018602E',
  SamplesPerPixel: '00280002',
  PhotometricInterpretation: '00280004',
  PlanarConfiguration: '00280006',
  NumberOfFrames: '00280008',
  Rows: '00280010',
  Columns: '00280011',
  PixelSpacing: '00280030',
  BitsAllocated: '00280100',
  BitsStored: '00280101',
  HighBit: '00280102',
  PixelRepresentation: '00280103',
  RescaleIntercept: '00281052',
  RescaleSlope: '00281053',
  RedPaletteDescriptor: '00281101',
  GreenPaletteDescriptor: '00281102',
  BluePaletteDescriptor: '00281103',
  RedPaletteData: '00281201',
  GreenPaletteData: '00281202',
  BluePaletteData: '00281203',
  SegmentedRedPaletteData: '00281221',
  SegmentedGreenPaletteData: '00281222',
  SegmentedBluePaletteData: '00281223',
  SharedFunctionalGroupsSequence: '52009229',
  PerFrameFunctionalGroupsSequence: '52009230',
  FrameContentSequence: '00209111',
  PlanePositionSequence: '00209113',
  PlaneOrientationSequence: '00209116',
  PixelMeasuresSequence: '00289110',
  PixelValueTransformationSequence: '00289145',
  FloatPixelData: '7FE00008',
  DoubleFloatPixelData: '7FE00009',
  PixelData: '7FE00010',
} as const;

export function has(ds: DicomJson | undefined, tag: string): boolean {
  const el = ds?.[tag];
  return el !== undefined && (el.Value !== undefined || el.BulkDataURI !== undefined || el.InlineBinary !== undefined);
}

export function str(ds: DicomJson | undefined, tag: string): string | undefined {
  const v = ds?.[tag]?.Value?.[0];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'object' && 'Alphabetic' in (v as object)) return String((v as { Alphabetic: unknown }).Alphabetic);
  return String(v).trim();
}

export function num(ds: DicomJson | undefined, tag: string): number | undefined {
  const v = ds?.[tag]?.Value?.[0];
  if (v === undefined || v === null || v === '') return undefined;
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? n : undefined;
}

/** All values as numbers; undefined when absent or when any value is not a finite number. */
export function nums(ds: DicomJson | undefined, tag: string): number[] | undefined {
  const values = ds?.[tag]?.Value;
  if (!values || values.length === 0) return undefined;
  const out = values.map((v) => (typeof v === 'number' ? v : Number(v)));
  return out.every(Number.isFinite) ? out : undefined;
}

export function seq(ds: DicomJson | undefined, tag: string): DicomJson[] {
  const values = ds?.[tag]?.Value;
  return Array.isArray(values) ? (values as DicomJson[]) : [];
}

/** First item of a functional group macro, looked up per frame first, then in the shared groups. */
export function functionalGroup(
  perFrame: DicomJson | undefined,
  shared: DicomJson | undefined,
  macroTag: string,
): DicomJson | undefined {
  return seq(perFrame, macroTag)[0] ?? seq(shared, macroTag)[0];
}
