/** A test's own Orthanc: the project's start code, free ports, storage in the given folder. */
import { startOrthanc, type OrthancHandle } from '../../server/src/pacs/orthanc.js';
import { freePorts } from './ports.js';

export interface TestOrthancSettings {
  orthancBin: string;
  orthancPluginsDir: string;
  dataDir: string;
  pacsHttpPort: number;
  pacsDicomPort: number;
}

/** Settings for startOrthanc on two free ports (for tests that stop and restart it). */
export async function testOrthancSettings(dataDir: string): Promise<TestOrthancSettings> {
  const [http, dicom] = await freePorts(2);
  return {
    orthancBin: process.env.LDFSAM_ORTHANC_BIN ?? '/usr/sbin/Orthanc',
    orthancPluginsDir: process.env.LDFSAM_ORTHANC_PLUGINS_DIR ?? '/usr/share/orthanc/plugins',
    dataDir,
    pacsHttpPort: http!,
    pacsDicomPort: dicom!,
  };
}

/** Starts Orthanc as a child of this process (it dies with the test run). */
export async function startTestOrthanc(dataDir: string): Promise<OrthancHandle> {
  return startOrthanc(await testOrthancSettings(dataDir), { detached: false });
}
