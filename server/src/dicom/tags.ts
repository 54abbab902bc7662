/** Tags by keyword, and typed readers for DICOM JSON data sets. */
import type { DicomJson } from '../dicomweb/types.js';

/**
 * Tags by their keyword (PS3.6), in tag order. Every module names a tag through this table rather
 * than by its number, so a reader can search for a keyword.
 */
export const TAG = {
  // File meta information (group 0002)
  FileMetaInformationVersion: '00020001',
  MediaStorageSOPClassUID: '00020002',
  MediaStorageSOPInstanceUID: '00020003',
  TransferSyntaxUID: '00020010',
  ImplementationClassUID: '00020012',
  ImplementationVersionName: '00020013',
  // SOP Common, General Study / Series / Image / Equipment
  SpecificCharacterSet: '00080005',
  ImageType: '00080008',
  InstanceCreationDate: '00080012',
  InstanceCreationTime: '00080013',
  TimezoneOffsetFromUTC: '00080201',
  SOPClassUID: '00080016',
  SOPInstanceUID: '00080018',
  StudyDate: '00080020',
  ContentDate: '00080023',
  StudyTime: '00080030',
  ContentTime: '00080033',
  AccessionNumber: '00080050',
  Modality: '00080060',
  ConversionType: '00080064',
  Manufacturer: '00080070',
  ReferringPhysicianName: '00080090',
  CodeValue: '00080100',
  CodingSchemeDesignator: '00080102',
  CodeMeaning: '00080104',
  AvailableTransferSyntaxUID: '00083002',
  StudyDescription: '00081030',
  SeriesDescription: '0008103E',
  ManufacturerModelName: '00081090',
  OperatorsName: '00081070',
  ReferencedSeriesSequence: '00081115',
  ReferencedInstanceSequence: '0008114A',
  ReferencedSOPClassUID: '00081150',
  ReferencedSOPInstanceUID: '00081155',
  ReferencedFrameNumber: '00081160',
  DerivationDescription: '00082111',
  SourceImageSequence: '00082112',
  AnatomicRegionSequence: '00082218',
  DerivationImageSequence: '00089124',
  DerivationCodeSequence: '00089215',
  // Patient
  PatientName: '00100010',
  PatientID: '00100020',
  PatientBirthDate: '00100030',
  PatientSex: '00100040',
  PatientIdentityRemoved: '00120062',
  DeidentificationMethod: '00120063',
  // Acquisition, equipment, ultrasound regions
  SliceThickness: '00180050',
  SpacingBetweenSlices: '00180088',
  DeviceSerialNumber: '00181000',
  SecondaryCaptureDeviceManufacturer: '00181016',
  SecondaryCaptureDeviceManufacturerModelName: '00181018',
  SecondaryCaptureDeviceSoftwareVersions: '00181019',
  SoftwareVersions: '00181020',
  SequenceOfUltrasoundRegions: '00186011',
  RegionSpatialFormat: '00186012',
  RegionDataType: '00186014',
  RegionFlags: '00186016',
  RegionLocationMinX0: '00186018',
  RegionLocationMinY0: '0018601A',
  RegionLocationMaxX1: '0018601C',
  RegionLocationMaxY1: '0018601E',
  PhysicalUnitsXDirection: '00186024',
  PhysicalUnitsYDirection: '00186026',
  PhysicalDeltaX: '0018602C',
  PhysicalDeltaY: '0018602E',
  // Relationship, image plane, multi-frame dimensions
  StudyInstanceUID: '0020000D',
  SeriesInstanceUID: '0020000E',
  StudyID: '00200010',
  SeriesNumber: '00200011',
  InstanceNumber: '00200013',
  PatientOrientation: '00200020',
  ImagePositionPatient: '00200032',
  ImageOrientationPatient: '00200037',
  FrameOfReferenceUID: '00200052',
  Laterality: '00200060',
  ImageLaterality: '00200062',
  PositionReferenceIndicator: '00201040',
  StackID: '00209056',
  InStackPositionNumber: '00209057',
  FrameContentSequence: '00209111',
  PlanePositionSequence: '00209113',
  PlaneOrientationSequence: '00209116',
  DimensionIndexValues: '00209157',
  FrameComments: '00209158',
  DimensionOrganizationUID: '00209164',
  DimensionIndexPointer: '00209165',
  FunctionalGroupPointer: '00209167',
  DimensionOrganizationSequence: '00209221',
  DimensionIndexSequence: '00209222',
  DimensionDescriptionLabel: '00209421',
  // Image pixel
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
  LossyImageCompression: '00282110',
  LossyImageCompressionRatio: '00282112',
  LossyImageCompressionMethod: '00282114',
  PixelMeasuresSequence: '00289110',
  PixelValueTransformationSequence: '00289145',
  AcquisitionContextSequence: '00400555',
  PurposeOfReferenceCodeSequence: '0040A170',
  // Segmentation (PS3.3 C.8.20)
  SegmentationType: '00620001',
  SegmentSequence: '00620002',
  SegmentedPropertyCategoryCodeSequence: '00620003',
  SegmentNumber: '00620004',
  SegmentLabel: '00620005',
  SegmentDescription: '00620006',
  SegmentationAlgorithmIdentificationSequence: '00620007',
  SegmentAlgorithmType: '00620008',
  SegmentAlgorithmName: '00620009',
  SegmentIdentificationSequence: '0062000A',
  ReferencedSegmentNumber: '0062000B',
  RecommendedDisplayCIELabValue: '0062000D',
  SegmentedPropertyTypeCodeSequence: '0062000F',
  AlgorithmFamilyCodeSequence: '0066002F',
  AlgorithmVersion: '00660031',
  AlgorithmName: '00660036',
  ContentLabel: '00700080',
  ContentDescription: '00700081',
  ContentCreatorName: '00700084',
  // RT Structure Set, ROI Contour, RT ROI Observations, Approval (PS3.3 C.8.8.5, C.8.8.6, C.8.8.8, C.8.8.16)
  StructureSetLabel: '30060002',
  StructureSetName: '30060004',
  StructureSetDate: '30060008',
  StructureSetTime: '30060009',
  ReferencedFrameOfReferenceSequence: '30060010',
  RTReferencedStudySequence: '30060012',
  RTReferencedSeriesSequence: '30060014',
  ContourImageSequence: '30060016',
  StructureSetROISequence: '30060020',
  ROINumber: '30060022',
  ReferencedFrameOfReferenceUID: '30060024',
  ROIName: '30060026',
  ROIDisplayColor: '3006002A',
  ROIGenerationAlgorithm: '30060036',
  ROIGenerationDescription: '30060038',
  ROIContourSequence: '30060039',
  ContourSequence: '30060040',
  ContourGeometricType: '30060042',
  NumberOfContourPoints: '30060046',
  ContourNumber: '30060048',
  ContourData: '30060050',
  RTROIObservationsSequence: '30060080',
  ObservationNumber: '30060082',
  ReferencedROINumber: '30060084',
  RTROIIdentificationCodeSequence: '30060086',
  RTROIInterpretedType: '300600A4',
  ROIInterpreter: '300600A6',
  ApprovalStatus: '300E0002',
  // Functional groups and pixel data
  SharedFunctionalGroupsSequence: '52009229',
  PerFrameFunctionalGroupsSequence: '52009230',
  FloatPixelData: '7FE00008',
  DoubleFloatPixelData: '7FE00009',
  PixelData: '7FE00010',
} as const;

/** A tag as the value of an AT element (Dimension Index Pointer, Functional Group Pointer). */
export function tagNumber(tag: string): number {
  return parseInt(tag, 16);
}

export function has(ds: DicomJson | undefined, tag: string): boolean {
  const el = ds?.[tag];
  return el !== undefined && (el.Value !== undefined || el.BulkDataURI !== undefined || el.InlineBinary !== undefined);
}

export function str(ds: DicomJson | undefined, tag: string): string | undefined {
  const v = ds?.[tag]?.Value?.[0];
  if (typeof v === 'string') return v.trim();
  if (typeof v === 'number') return String(v);
  // A person name ({Alphabetic: ...}); any other object (a sequence item) is not a string value.
  if (typeof v === 'object' && v !== null && 'Alphabetic' in v) return String(v.Alphabetic);
  return undefined;
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
