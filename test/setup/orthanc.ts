/** A test's own Orthanc: the project's start code, free ports, storage in the given folder. */
import type { DicomPeer } from '../../server/src/config.js';
import { startOrthanc, type OrthancHandle, type OrthancSettings } from '../../server/src/pacs/orthanc.js';
import { freePorts } from './ports.js';

export type TestOrthancSettings = Required<OrthancSettings>;

/**
 * Settings for startOrthanc on two free ports (for tests that stop and restart it). Its DICOM port
 * is open only with `dicomPeers` (and only to them), as for the embedded PACS.
 */
export async function testOrthancSettings(dataDir: string, dicomPeers: DicomPeer[] = []): Promise<TestOrthancSettings> {
  const [http, dicom] = await freePorts(2);
  return {
    orthancBin: process.env.LDFSAM_ORTHANC_BIN ?? '/usr/sbin/Orthanc',
    orthancPluginsDir: process.env.LDFSAM_ORTHANC_PLUGINS_DIR ?? '/usr/share/orthanc/plugins',
    dataDir,
    pacsHttpPort: http!,
    pacsDicomPort: dicom!,
    pacsDicomPeers: dicomPeers,
  };
}

/** Starts Orthanc as a child of this process (it dies with the test run), with authentication on. */
export async function startTestOrthanc(dataDir: string, dicomPeers: DicomPeer[] = []): Promise<OrthancHandle> {
  return startOrthanc(await testOrthancSettings(dataDir, dicomPeers), { detached: false });
}
