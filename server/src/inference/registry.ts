/**
 * The models the server can run: every folder with a model.json under models/ (the shipped
 * defaults) and the folders named in config. Manifests and hashes are checked at load; a model that
 * fails is refused with its reason and the others stay available. Inference workers (one session
 * each) are started on first use and reused.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LdfsamError, toLdfsamError } from '../errors.js';
import { InferenceWorker } from './inference-worker.js';
import { projectPath } from '../util/paths.js';
import { hasAutoMode, readManifest, type ModelManifest } from '../models/manifest.js';
import type { SessionSettings } from '../models/session.js';

export interface RegisteredModel {
  folder: string;
  manifest: ModelManifest;
}

export interface RegistryLog {
  info(message: string): void;
  warn(message: string): void;
}

/** Folders holding a model.json: `dir` itself, or its direct subfolders. */
export function modelFolders(dir: string): string[] {
  if (!existsSync(dir)) return [];
  if (existsSync(join(dir, 'model.json'))) return [dir];
  return readdirSync(dir)
    .map((name) => join(dir, name))
    .filter((p) => statSync(p).isDirectory() && existsSync(join(p, 'model.json')));
}

export class ModelRegistry {
  private readonly models = new Map<string, RegisteredModel>();
  private readonly workers = new Map<string, Promise<InferenceWorker>>();
  readonly rejected: { folder: string; reason: string }[] = [];

  constructor(
    readonly settings: SessionSettings,
    private readonly log: RegistryLog = { info: () => undefined, warn: () => undefined },
  ) {}

  static async load(extraDirs: string[], settings: SessionSettings, log?: RegistryLog): Promise<ModelRegistry> {
    const registry = new ModelRegistry(settings, log);
    const folders = [...modelFolders(projectPath('models')), ...extraDirs.flatMap((d) => modelFolders(resolve(d)))];
    for (const folder of folders) await registry.add(folder).catch(() => undefined);
    return registry;
  }

  /** Validates and registers a model folder; throws MODEL_REJECTED with the reason. */
  async add(folder: string): Promise<RegisteredModel> {
    try {
      const manifest = await readManifest(folder);
      const model = { folder: resolve(folder), manifest };
      this.models.set(manifest.name, model);
      this.log.info(`model ${manifest.name} ${manifest.version} (${manifest.configuration.name}) from ${folder}`);
      return model;
    } catch (err) {
      const e = toLdfsamError(err);
      this.rejected.push({ folder, reason: e.message });
      this.log.warn(`model folder ${folder} refused: ${e.message}`);
      throw e;
    }
  }

  /** The execution provider the sessions run on. */
  get provider(): 'cpu' | 'cuda' {
    return this.settings.executionProvider ?? 'cpu';
  }

  list(): RegisteredModel[] {
    return [...this.models.values()];
  }

  /** A registered name, or a model folder path (registered on the fly). */
  async resolve(nameOrPath: string): Promise<RegisteredModel> {
    const known = this.models.get(nameOrPath);
    if (known) return known;
    if (existsSync(join(nameOrPath, 'model.json'))) return this.add(nameOrPath);
    const names = [...this.models.keys()];
    throw new LdfsamError(
      'NOT_FOUND',
      `unknown model ${JSON.stringify(nameOrPath)}; available: ${names.length ? names.join(', ') : 'none'}`,
    );
  }

  /** A registered model by name only (the API never loads folders named in requests). */
  async resolveName(name: string): Promise<RegisteredModel> {
    const known = this.models.get(name);
    if (known) return known;
    const names = [...this.models.keys()];
    throw new LdfsamError(
      'NOT_FOUND',
      `unknown model ${JSON.stringify(name)}; available: ${names.length ? names.join(', ') : 'none'}`,
    );
  }

  /** The first automatic model accepting the modality (shipped order), for when none is named. */
  forModality(modality: string): RegisteredModel | undefined {
    return this.list().find((m) => accepts(m.manifest, modality));
  }

  /** Promptable models accepting the modality, trained ones (named modalities) before catch-alls. */
  promptableFor(modality: string): RegisteredModel[] {
    const fitting = this.list().filter((m) => m.manifest.promptable && acceptsModality(m.manifest, modality));
    return [
      ...fitting.filter((m) => !m.manifest.modalities.includes('*')),
      ...fitting.filter((m) => m.manifest.modalities.includes('*')),
    ];
  }

  worker(model: RegisteredModel): Promise<InferenceWorker> {
    let w = this.workers.get(model.folder);
    if (!w) {
      w = InferenceWorker.start(model.folder, this.settings);
      w.catch(() => this.workers.delete(model.folder));
      this.workers.set(model.folder, w);
    }
    return w;
  }

  async close(): Promise<void> {
    const workers = await Promise.allSettled([...this.workers.values()]);
    this.workers.clear();
    await Promise.all(workers.flatMap((w) => (w.status === 'fulfilled' ? [w.value.close()] : [])));
  }
}

/** Whether the model segments the modality automatically (a promptable-only model never does). */
export function accepts(manifest: ModelManifest, modality: string): boolean {
  return hasAutoMode(manifest) && acceptsModality(manifest, modality);
}

/** Why the model cannot segment the modality automatically, or undefined when it can. */
export function autoRefusal(manifest: ModelManifest, modality: string): string | undefined {
  if (!hasAutoMode(manifest)) return `model ${manifest.name} is promptable only (no automatic mode): use it interactively`;
  if (!acceptsModality(manifest, modality))
    return `model ${manifest.name} does not accept modality ${modality} (it accepts ${manifest.modalities.join(', ')})`;
  return undefined;
}

export function acceptsModality(manifest: ModelManifest, modality: string): boolean {
  return manifest.modalities.includes('*') || manifest.modalities.includes(modality);
}
