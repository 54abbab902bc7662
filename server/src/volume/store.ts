/**
 * The MONAI Label datastore's local part: volumes uploaded by clients (3D Slicer saves the volume it
 * shows and uploads it), with the labels saved for them. Bounded and expiring: an entry unused for
 * `ttlMs` is removed, and when a new file would pass `maxBytes` the least recently used entries go
 * first (a file larger than the whole store is refused). One folder per entry, named by a hash of
 * the client's id (ids are free text, such as a Slicer node name); `entry.json` holds the id.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { LdfsamError } from '../errors.js';

export interface StoredLabel {
  file: string;
  bytes: number;
  savedAt: string;
  info: Record<string, unknown>;
}

export interface StoreEntry {
  id: string;
  /** File name of the image inside the entry's folder (image.nii.gz, image.nrrd ...). */
  file: string;
  bytes: number;
  uploadedAt: string;
  lastUsedAt: string;
  /** The client's `params` at upload (client_id, modality ...). */
  params: Record<string, unknown>;
  labels: Record<string, StoredLabel>;
}

export interface StoreLimits {
  maxBytes: number;
  ttlMs: number;
}

export class VolumeStore {
  private readonly entries = new Map<string, StoreEntry>();

  constructor(
    readonly dir: string,
    private readonly limits: StoreLimits,
    private readonly now: () => number = Date.now,
  ) {
    mkdirSync(dir, { recursive: true });
    for (const name of readdirSync(dir)) {
      try {
        const entry = JSON.parse(readFileSync(join(dir, name, 'entry.json'), 'utf8')) as StoreEntry;
        if (folderOf(entry.id) === name) this.entries.set(entry.id, entry);
        else rmSync(join(dir, name), { recursive: true, force: true });
      } catch {
        rmSync(join(dir, name), { recursive: true, force: true }); // half-written: nothing to keep
      }
    }
    this.expire();
  }

  /** Stores (or replaces) an image; the file is written whole before the entry points at it. */
  addImage(id: string, bytes: Uint8Array, extension: string, params: Record<string, unknown>): StoreEntry {
    checkId(id);
    this.expire();
    this.makeRoom(bytes.length, id);
    const folder = join(this.dir, folderOf(id));
    rmSync(folder, { recursive: true, force: true });
    mkdirSync(folder, { recursive: true });
    const file = `image${extension}`;
    writeFileSync(join(folder, `${file}.part`), bytes);
    renameSync(join(folder, `${file}.part`), join(folder, file));
    const at = new Date(this.now()).toISOString();
    const entry: StoreEntry = { id, file, bytes: bytes.length, uploadedAt: at, lastUsedAt: at, params, labels: {} };
    this.save(entry);
    return entry;
  }

  saveLabel(id: string, tag: string, bytes: Uint8Array, extension: string, info: Record<string, unknown>): StoreEntry {
    const entry = this.get(id);
    if (!entry) throw new LdfsamError('NOT_FOUND', `no image ${JSON.stringify(id)} in the datastore`);
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(tag))
      throw new LdfsamError('INVALID_INPUT', `label tag ${JSON.stringify(tag)} is not a short word`);
    this.makeRoom(bytes.length, id);
    const file = `label-${tag}${extension}`;
    const folder = join(this.dir, folderOf(id));
    writeFileSync(join(folder, `${file}.part`), bytes);
    renameSync(join(folder, `${file}.part`), join(folder, file));
    entry.labels[tag] = { file, bytes: bytes.length, savedAt: new Date(this.now()).toISOString(), info };
    this.save(entry);
    return entry;
  }

  /** The entry, marked as used now; undefined when absent or expired. */
  get(id: string): StoreEntry | undefined {
    this.expire();
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    entry.lastUsedAt = new Date(this.now()).toISOString();
    this.save(entry);
    return entry;
  }

  /** The entry's label of this tag (own keys only: a tag such as "__proto__" names none). */
  label(entry: StoreEntry, tag: string): StoredLabel | undefined {
    return Object.hasOwn(entry.labels, tag) ? entry.labels[tag] : undefined;
  }

  path(entry: StoreEntry, file = entry.file): string {
    return join(this.dir, folderOf(entry.id), file);
  }

  list(): StoreEntry[] {
    this.expire();
    return [...this.entries.values()];
  }

  totalBytes(): number {
    let sum = 0;
    for (const e of this.entries.values()) sum += entryBytes(e);
    return sum;
  }

  /** Removes entries unused for longer than the time to live. */
  expire(): void {
    const cutoff = this.now() - this.limits.ttlMs;
    for (const e of [...this.entries.values()]) if (Date.parse(e.lastUsedAt) < cutoff) this.remove(e.id);
  }

  remove(id: string): void {
    this.entries.delete(id);
    rmSync(join(this.dir, folderOf(id)), { recursive: true, force: true });
  }

  private makeRoom(bytes: number, keep: string): void {
    if (bytes > this.limits.maxBytes)
      throw new LdfsamError(
        'PAYLOAD_TOO_LARGE',
        `the file (${bytes} bytes) is larger than the whole datastore (${this.limits.maxBytes} bytes)`,
      );
    const others = [...this.entries.values()]
      .filter((e) => e.id !== keep)
      .sort((a, b) => a.lastUsedAt.localeCompare(b.lastUsedAt));
    const kept = this.entries.get(keep);
    let used = others.reduce((s, e) => s + entryBytes(e), 0) + (kept ? entryBytes(kept) : 0);
    while (used + bytes > this.limits.maxBytes && others.length > 0) {
      const oldest = others.shift()!;
      used -= entryBytes(oldest);
      this.remove(oldest.id);
    }
  }

  private save(entry: StoreEntry): void {
    this.entries.set(entry.id, entry);
    const folder = join(this.dir, folderOf(entry.id));
    writeFileSync(join(folder, 'entry.json.part'), JSON.stringify(entry));
    renameSync(join(folder, 'entry.json.part'), join(folder, 'entry.json'));
  }
}

function entryBytes(e: StoreEntry): number {
  return e.bytes + Object.values(e.labels).reduce((s, l) => s + l.bytes, 0);
}

function folderOf(id: string): string {
  return createHash('sha256').update(id).digest('hex').slice(0, 32);
}

/** Ids are free text (Slicer sends node names such as "2: CT Head"), but short and printable. */
export function checkId(id: string): void {
  // eslint-disable-next-line no-control-regex
  if (id.length === 0 || id.length > 256 || /[\u0000-\u001f\u007f]/.test(id))
    throw new LdfsamError('INVALID_INPUT', 'image ids are 1 to 256 printable characters');
}

export function fileExists(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
