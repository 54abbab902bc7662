/**
 * The embedded Orthanc's HTTP credentials: generated once by `ldfsam pacs start` (random, 192 bits),
 * kept in <data dir>/orthanc/credentials.json with mode 0600, and read by every command that talks
 * to the embedded PACS. They travel only as the server's own Authorization header to Orthanc; no
 * browser ever sees them.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { LdfsamError } from '../errors.js';

export interface PacsCredentials {
  username: string;
  password: string;
}

export const PACS_USERNAME = 'ldfsam';

export function pacsCredentialsFile(dataDir: string): string {
  return join(dataDir, 'orthanc', 'credentials.json');
}

/** The `Authorization` header value for HTTP basic authentication. */
export function basicAuthorization(c: PacsCredentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}

/** The stored credentials, or undefined when none were generated yet (the PACS never started). */
export function readPacsCredentials(dataDir: string): PacsCredentials | undefined {
  const file = pacsCredentialsFile(dataDir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return undefined;
    throw new LdfsamError('CONFIG_INVALID', `cannot read the embedded PACS's credentials ${file}: ${(err as Error).message}`);
  }
  let value: Partial<PacsCredentials>;
  try {
    value = JSON.parse(text) as Partial<PacsCredentials>;
  } catch {
    value = {};
  }
  // Orthanc's basic authentication splits at the first ':', so a user name cannot hold one.
  if (
    typeof value.username !== 'string' ||
    !/^[A-Za-z0-9._-]{1,64}$/.test(value.username) ||
    typeof value.password !== 'string' ||
    value.password.length < 16
  ) {
    throw new LdfsamError(
      'CONFIG_INVALID',
      `${file} is not valid ({"username", "password"} with a password of at least 16 characters); delete it and restart the PACS to generate new credentials`,
    );
  }
  // Written 0600; anything looser (a copy, a restored backup) is tightened again.
  if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  return { username: value.username, password: value.password };
}

/** The stored credentials, generated (and stored, mode 0600) on first use. */
export function ensurePacsCredentials(dataDir: string): PacsCredentials {
  const existing = readPacsCredentials(dataDir);
  if (existing) return existing;
  const file = pacsCredentialsFile(dataDir);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const created = { username: PACS_USERNAME, password: randomBytes(24).toString('base64url') };
  try {
    // 'wx': never overwrite credentials that another process wrote meanwhile.
    writeFileSync(file, `${JSON.stringify(created, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as { code?: string }).code === 'EEXIST') return readPacsCredentials(dataDir)!;
    throw new LdfsamError('CONFIG_INVALID', `cannot write the embedded PACS's credentials ${file}: ${(err as Error).message}`);
  }
  return created;
}
