/** Building the DICOM JSON elements (PS3.18 F.2) of the data sets we write. */
import type { DicomJson, DicomJsonElement } from '../dicomweb/types.js';
import { TAG } from './tags.js';

export interface CodedConcept {
  code: string;
  scheme: string;
  meaning: string;
}

export const element = (vr: string, ...values: unknown[]): DicomJsonElement => ({ vr, Value: values });

/** Present without a value: how a Type 2 attribute says "unknown". */
export const empty = (vr: string): DicomJsonElement => ({ vr, Value: [] });

export const sequence = (...items: DicomJson[]): DicomJsonElement => ({ vr: 'SQ', Value: items });

/** A Code Sequence item (PS3.3 8.8). */
export const codeItem = (c: CodedConcept): DicomJson => ({
  [TAG.CodeValue]: element('SH', c.code),
  [TAG.CodingSchemeDesignator]: element('SH', c.scheme),
  [TAG.CodeMeaning]: element('LO', c.meaning),
});

/** The Image Pixel module (PS3.3 C.7.6.3) of unsigned pixels that use all their allocated bits. */
export function imagePixelModule(p: {
  samplesPerPixel: number;
  photometricInterpretation: string;
  rows: number;
  columns: number;
  bitsAllocated: number;
}): DicomJson {
  return {
    [TAG.SamplesPerPixel]: element('US', p.samplesPerPixel),
    [TAG.PhotometricInterpretation]: element('CS', p.photometricInterpretation),
    [TAG.Rows]: element('US', p.rows),
    [TAG.Columns]: element('US', p.columns),
    [TAG.BitsAllocated]: element('US', p.bitsAllocated),
    [TAG.BitsStored]: element('US', p.bitsAllocated),
    [TAG.HighBit]: element('US', p.bitsAllocated - 1),
    [TAG.PixelRepresentation]: element('US', 0),
  };
}

/** DS values hold at most 16 characters: 10 significant digits fit with sign, point and exponent. */
export function dsNumber(v: number): number {
  return Number(v.toPrecision(10));
}

/** Attributes copied as they are from the source (Patient, General Study), with their VR and whether they are Type 2. */
const PATIENT_AND_STUDY: { tag: string; vr: string; type2: boolean }[] = [
  { tag: TAG.PatientName, vr: 'PN', type2: true },
  { tag: TAG.PatientID, vr: 'LO', type2: true },
  { tag: TAG.PatientBirthDate, vr: 'DA', type2: true },
  { tag: TAG.PatientSex, vr: 'CS', type2: true },
  { tag: TAG.StudyInstanceUID, vr: 'UI', type2: false },
  { tag: TAG.StudyDate, vr: 'DA', type2: true },
  { tag: TAG.StudyTime, vr: 'TM', type2: true },
  { tag: TAG.ReferringPhysicianName, vr: 'PN', type2: true },
  { tag: TAG.StudyID, vr: 'SH', type2: true },
  { tag: TAG.AccessionNumber, vr: 'SH', type2: true },
];

/**
 * The Patient and General Study modules of an object derived from `source` (SEG, RTSTRUCT): each
 * attribute copied as it is; a Type 2 one the source lacks is present and empty.
 */
export function patientAndStudy(source: DicomJson): DicomJson {
  const ds: DicomJson = {};
  for (const { tag, vr, type2 } of PATIENT_AND_STUDY) {
    const value = source[tag];
    if (value?.Value && value.Value.length > 0) ds[tag] = { vr: value.vr, Value: value.Value };
    else if (type2) ds[tag] = { vr: value?.vr ?? vr, Value: [] };
  }
  return ds;
}

/**
 * The DA and TM of an instant for an object derived from `source`. DICOM reads DA and TM without a
 * Timezone Offset From UTC (0008,0201) as local time, and that attribute covers every date and time
 * in the object, the source's study date and time copied into it included: so in the source's
 * offset when it names one (copied into `zone`), else in this machine's local time, no offset.
 */
export function creationDateTime(source: DicomJson, now: Date): { date: string; time: string; zone: DicomJson } {
  const offset = source[TAG.TimezoneOffsetFromUTC]?.Value?.[0];
  const m = typeof offset === 'string' ? /^([+-])(\d\d)(\d\d)$/.exec(offset.trim()) : null;
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  if (!m) {
    const date = `${pad(now.getFullYear(), 4)}${pad(now.getMonth() + 1)}${pad(now.getDate())}`;
    return { date, time: `${pad(now.getHours())}${pad(now.getMinutes())}${pad(now.getSeconds())}`, zone: {} };
  }
  const minutes = (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
  const iso = new Date(now.getTime() + minutes * 60_000).toISOString();
  return {
    date: iso.slice(0, 10).replace(/-/g, ''),
    time: iso.slice(11, 19).replace(/:/g, ''),
    zone: { [TAG.TimezoneOffsetFromUTC]: element('SH', m[0]) },
  };
}
