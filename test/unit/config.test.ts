import { mkdirSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/src/config.js';

describe('config', () => {
  it('has documented defaults and derives the DICOMweb URL from the PACS port', () => {
    const config = loadConfig({ env: {} });
    expect(config).toMatchObject({ pacsHttpPort: 8042, pacsDicomPort: 4242, host: '127.0.0.1', port: 5080 });
    expect(config.dicomwebUrl).toBe('http://127.0.0.1:8042/dicom-web');
    expect(loadConfig({ env: { LDFSAM_PACS_HTTP_PORT: '9000' } }).dicomwebUrl).toBe('http://127.0.0.1:9000/dicom-web');
  });

  it('takes flags over env over file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ pacsHttpPort: 1000, pacsDicomPort: 1001, dataDir: '/from/file' }));
    const config = loadConfig({
      env: { LDFSAM_CONFIG: file, LDFSAM_PACS_DICOM_PORT: '2001', LDFSAM_DATA_DIR: '/from/env' },
      flags: { dataDir: '/from/flag' },
    });
    expect(config).toMatchObject({ pacsHttpPort: 1000, pacsDicomPort: 2001, dataDir: '/from/flag' });
  });

  it('strips a trailing slash from the DICOMweb URL and refuses a non-HTTP one', () => {
    expect(loadConfig({ env: { LDFSAM_DICOMWEB_URL: 'http://pacs:8080/dcm4chee/rs/' } }).dicomwebUrl).toBe(
      'http://pacs:8080/dcm4chee/rs',
    );
    expect(() => loadConfig({ env: { LDFSAM_DICOMWEB_URL: 'file:///etc/passwd' } })).toThrow(
      /dicomwebUrl \(LDFSAM_DICOMWEB_URL\)/,
    );
  });

  it('refuses unknown keys in the file and bad ports, naming them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ pacsHttpPrt: 1 }));
    expect(() => loadConfig({ file })).toThrow(/CONFIG_INVALID|invalid configuration/);
    expect(() => loadConfig({ env: { LDFSAM_PORT: '70000' } })).toThrow(/port \(LDFSAM_PORT\)/);
    writeFileSync(file, '[1,2]');
    expect(() => loadConfig({ file })).toThrow(/is not a JSON object/);
  });

  it('reads the DICOM node as AET@host:port, sends to it besides STOW-RS by default, and refuses what cannot work', () => {
    expect(loadConfig({ env: {} })).toMatchObject({ storeVia: 'stow', storeAet: 'LDFSAM', rtstructTolerance: 0 });
    expect(loadConfig({ env: {} }).storeDimse).toBeUndefined();
    const c = loadConfig({ env: { LDFSAM_STORE_DIMSE: 'TPS_SCP@planning.example.org:11112' } });
    expect(c.storeDimse).toEqual({ aet: 'TPS_SCP', host: 'planning.example.org', port: 11112 });
    expect(c.storeVia).toBe('both');
    expect(loadConfig({ env: { LDFSAM_STORE_DIMSE: 'A@[::1]:104', LDFSAM_STORE_VIA: 'dimse' } })).toMatchObject({
      storeDimse: { aet: 'A', host: '::1', port: 104 },
      storeVia: 'dimse',
    });
    for (const bad of ['host:104', 'A@host', 'A@host:0', 'A@host:70000', 'THIS_AE_IS_TOO_LONG@h:1', 'A\\B@h:1', '@h:1']) {
      expect(() => loadConfig({ env: { LDFSAM_STORE_DIMSE: bad } }), bad).toThrow(
        /storeDimse \(LDFSAM_STORE_DIMSE\).*AET@host:port/,
      );
    }
    expect(() => loadConfig({ env: { LDFSAM_STORE_VIA: 'dimse' } })).toThrow(/storeVia \(LDFSAM_STORE_VIA\).*needs a DICOM node/);
    expect(() => loadConfig({ env: { LDFSAM_STORE_VIA: 'ftp' } })).toThrow(/LDFSAM_STORE_VIA/);
    expect(() => loadConfig({ env: { LDFSAM_RTSTRUCT_TOLERANCE: '0.5' } })).toThrow(/LDFSAM_RTSTRUCT_TOLERANCE/);
    expect(loadConfig({ env: { LDFSAM_RTSTRUCT_TOLERANCE: '0.45' } }).rtstructTolerance).toBe(0.45);
    expect(() => loadConfig({ env: { LDFSAM_STORE_AET: 'A'.repeat(17) } })).toThrow(/LDFSAM_STORE_AET/);
  });

  it('LDFSAM_ALLOWED_HOSTS: names and name:port, lower-cased; no wildcard, scheme or path', () => {
    expect(
      loadConfig({ env: { LDFSAM_ALLOWED_HOSTS: 'Viewer.Hospital.Example, pacs-gw:8443,10.0.0.5,[fd00::2]:5080,ldfsam_server' } })
        .allowedHosts,
    ).toEqual(['viewer.hospital.example', 'pacs-gw:8443', '10.0.0.5', '[fd00::2]:5080', 'ldfsam_server']);
    expect(loadConfig({ env: {} }).allowedHosts).toEqual([]);
    for (const bad of ['*', '*.hospital.example', 'http://viewer.example', 'viewer.example/path', 'user@viewer.example', 'a b']) {
      expect(() => loadConfig({ env: { LDFSAM_ALLOWED_HOSTS: bad } }), bad).toThrow(/allowedHosts \(LDFSAM_ALLOWED_HOSTS\)/);
    }
  });

  it('LDFSAM_PACS_DICOM_PEERS: AET@ipv4[:port] (port 104 by default), anything else refused', () => {
    expect(
      loadConfig({ env: { LDFSAM_PACS_DICOM_PEERS: 'CT_SCANNER@10.1.2.3:104, STORESCU@127.0.0.1' } }).pacsDicomPeers,
    ).toEqual([
      { aet: 'CT_SCANNER', host: '10.1.2.3', port: 104 },
      { aet: 'STORESCU', host: '127.0.0.1', port: 104 },
    ]);
    expect(loadConfig({ env: {} }).pacsDicomPeers).toEqual([]);
    for (const bad of [
      'STORESCU',
      '@127.0.0.1',
      'A_TITLE_LONGER_THAN_16@127.0.0.1',
      'ANY@*',
      'X@scanner.local',
      'X@300.1.1.1',
      'X@127.0.0.1:0',
      'A\\B@127.0.0.1',
    ]) {
      expect(() => loadConfig({ env: { LDFSAM_PACS_DICOM_PEERS: bad } }), bad).toThrow(
        /pacsDicomPeers \(LDFSAM_PACS_DICOM_PEERS\)/,
      );
    }
  });

  it("uses the embedded PACS's stored credentials for the embedded PACS only, and LDFSAM_DICOMWEB_AUTHORIZATION over them", () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cfg-'));
    expect(loadConfig({ env: { LDFSAM_DATA_DIR: dataDir } }).dicomwebAuthorization).toBeUndefined();
    mkdirSync(join(dataDir, 'orthanc'));
    const file = join(dataDir, 'orthanc', 'credentials.json');
    writeFileSync(file, JSON.stringify({ username: 'ldfsam', password: 'p'.repeat(32) }), { mode: 0o644 });
    const basic = `Basic ${Buffer.from(`ldfsam:${'p'.repeat(32)}`).toString('base64')}`;
    expect(loadConfig({ env: { LDFSAM_DATA_DIR: dataDir } }).dicomwebAuthorization).toBe(basic);
    // A copy readable by others is tightened to the owner.
    expect(statSync(file).mode & 0o777).toBe(0o600);
    for (const url of ['http://localhost:8042/dicom-web', 'http://127.0.0.1:8042/dicom-web/'])
      expect(loadConfig({ env: { LDFSAM_DATA_DIR: dataDir, LDFSAM_DICOMWEB_URL: url } }).dicomwebAuthorization, url).toBe(basic);
    // Another port or host is a PACS the user configured: untouched.
    for (const url of [
      'http://127.0.0.1:9042/dicom-web',
      'http://pacs.example.org:8042/dicom-web',
      'https://127.0.0.1:8042/dicom-web',
    ])
      expect(
        loadConfig({ env: { LDFSAM_DATA_DIR: dataDir, LDFSAM_DICOMWEB_URL: url } }).dicomwebAuthorization,
        url,
      ).toBeUndefined();
    expect(
      loadConfig({ env: { LDFSAM_DATA_DIR: dataDir, LDFSAM_DICOMWEB_AUTHORIZATION: 'Bearer mine' } }).dicomwebAuthorization,
    ).toBe('Bearer mine');
    writeFileSync(file, '{"username": "a:b", "password": "short"}');
    expect(() => loadConfig({ env: { LDFSAM_DATA_DIR: dataDir } })).toThrow(/credentials\.json is not valid/);
  });
});
