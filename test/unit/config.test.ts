import { mkdtempSync, writeFileSync } from 'node:fs';
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
});
