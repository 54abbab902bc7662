/**
 * The structures a user can name an accepted mask with: common ones with their SNOMED CT codes
 * (segmented property category and type as DICOM CID 7150 / 7151 use them), and a colour each.
 * Anything else is free text: the server gives it a local code (scheme 99LDFSAM).
 */
import type { Code } from './api-client.js';

export interface StructureChoice {
  key: string;
  label: string;
  category: Code;
  type: Code;
  color: [number, number, number];
}

const ANATOMY: Code = { scheme: 'SCT', code: '91723000', meaning: 'Anatomical Structure' };
const ABNORMAL: Code = { scheme: 'SCT', code: '49755003', meaning: 'Morphologically Abnormal Structure' };
const sct = (code: string, meaning: string): Code => ({ scheme: 'SCT', code, meaning });

export const STRUCTURES: StructureChoice[] = [
  { key: 'lesion', label: 'Lesion', category: ABNORMAL, type: sct('52988006', 'Lesion'), color: [230, 159, 0] },
  { key: 'mass', label: 'Mass', category: ABNORMAL, type: sct('4147007', 'Mass'), color: [213, 94, 0] },
  { key: 'neoplasm', label: 'Neoplasm', category: ABNORMAL, type: sct('108369006', 'Neoplasm'), color: [204, 121, 167] },
  { key: 'cyst', label: 'Cyst', category: ABNORMAL, type: sct('441457006', 'Cyst'), color: [86, 180, 233] },
  { key: 'nodule', label: 'Nodule', category: ABNORMAL, type: sct('27925004', 'Nodule'), color: [240, 228, 66] },
  { key: 'liver', label: 'Liver', category: ANATOMY, type: sct('10200004', 'Liver'), color: [221, 130, 101] },
  { key: 'kidney', label: 'Kidney', category: ANATOMY, type: sct('64033007', 'Kidney'), color: [185, 102, 83] },
  { key: 'spleen', label: 'Spleen', category: ANATOMY, type: sct('78961009', 'Spleen'), color: [157, 108, 162] },
  { key: 'pancreas', label: 'Pancreas', category: ANATOMY, type: sct('15776009', 'Pancreas'), color: [249, 180, 111] },
  { key: 'lung', label: 'Lung', category: ANATOMY, type: sct('39607008', 'Lung'), color: [197, 165, 145] },
  { key: 'heart', label: 'Heart', category: ANATOMY, type: sct('80891009', 'Heart'), color: [206, 110, 84] },
  { key: 'aorta', label: 'Aorta', category: ANATOMY, type: sct('15825003', 'Aorta'), color: [224, 97, 76] },
  { key: 'brain', label: 'Brain', category: ANATOMY, type: sct('12738006', 'Brain'), color: [250, 250, 225] },
  {
    key: 'bladder',
    label: 'Urinary bladder',
    category: ANATOMY,
    type: sct('89837001', 'Urinary bladder'),
    color: [222, 154, 132],
  },
  { key: 'prostate', label: 'Prostate', category: ANATOMY, type: sct('41216001', 'Prostate'), color: [230, 158, 140] },
  { key: 'bone', label: 'Bone', category: ANATOMY, type: sct('272673000', 'Bone structure'), color: [241, 214, 145] },
  { key: 'fetal-head', label: 'Fetal head', category: ANATOMY, type: sct('69536005', 'Head'), color: [230, 159, 0] },
  { key: 'skin-lesion', label: 'Skin lesion', category: ABNORMAL, type: sct('95324001', 'Skin lesion'), color: [86, 180, 233] },
];

/** The colour of a free-text structure. */
export const FREE_TEXT_COLOR: [number, number, number] = [0, 158, 115];
