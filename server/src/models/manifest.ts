/**
 * The model contract: model.json beside the ONNX files, validated against models/model.schema.json
 * (the one schema, shared with the Python exporter), with every file's size and SHA-256 checked.
 * Nothing about a model is hard-coded here: inputs, preprocessing, labels and codes come from it.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { LdfsamError } from '../errors.js';
import { projectPath } from '../util/paths.js';

export interface TensorSpec {
  name: string;
  dtype: 'float32' | 'float16' | 'uint8' | 'int64';
  /** Positive integers, or names of dynamic axes (e.g. "batch"). */
  shape: (number | string)[];
}

export interface CodedConcept {
  scheme: 'SCT' | 'DCM';
  code: string;
  meaning: string;
}

export type IntensityPolicy =
  | { kind: 'window'; center: number; width: number }
  | { kind: 'percentile'; low: number; high: number }
  | { kind: 'minmax' }
  | { kind: 'fixed'; max: number };

export type ModelMode = 'auto' | 'promptable';

/** One ONNX graph of a promptable pair: its file and its inputs/outputs. */
export interface GraphSpec {
  file: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

/** The promptable pair (schema version 2): encoder once per slice, decoder once per prompt. */
export interface PromptableSpec {
  encoder: GraphSpec;
  decoder: GraphSpec;
  prompts: {
    frame?: string;
    labels: { positive: number; negative: number; boxTopLeft: number; boxBottomRight: number; padding: number };
    maxPoints: number;
    padWhenNoBox: boolean;
    order?: string;
    maskInput?: string;
    multimaskForSinglePoint: boolean;
  };
  maxAbsDiff?: Record<string, number>;
}

/** Whether the structure is on a slice: sigmoid(bias + weights . features) >= threshold. */
export interface PresenceSpec {
  output: string;
  features: string[];
  weights: number[];
  bias: number;
  threshold: number;
  /** Per named feature, the largest value a slice may have; above it the slice scores 0 (gated). */
  featureMax?: Record<string, number>;
  operatingPoint?: Record<string, unknown>;
  notes?: string;
}

export interface ModelManifest {
  schemaVersion: 1 | 2;
  /** Version 2; a version-1 manifest is an automatic model. */
  modes?: ModelMode[];
  name: string;
  version: string;
  description?: string;
  configuration: { name: string; [key: string]: unknown };
  files: { path: string; sha256: string; bytes: number; role: string }[];
  /** The automatic graph's (present in auto mode). */
  inputs?: TensorSpec[];
  outputs?: TensorSpec[];
  promptable?: PromptableSpec;
  preprocessing: {
    inputSize: number;
    resize: 'bilinear' | 'area';
    /** How a slice fills inputSize x inputSize: both axes stretched (default) or aspect kept + zero padding. */
    fit?: 'stretch' | 'longest-side-pad';
    channels: 'rgb';
    valueRange: [number, number];
    inGraph: string[];
    intensity: { default: IntensityPolicy; [modality: string]: IntensityPolicy };
  };
  postprocessing: {
    output: string;
    threshold: number;
    minComponentVoxels?: number;
    /** Keep only the largest 6-connected 3D component. */
    largestComponentOnly?: boolean;
    /** Fill each slice's holes (background not connected to the border). */
    fillHoles?: boolean;
    /** Replace each slice's mask by its moment ellipse (last): for structures that are ellipses. */
    fitEllipse?: boolean;
    presence?: PresenceSpec;
  };
  segments: {
    number: number;
    label: string;
    category: CodedConcept;
    type: CodedConcept;
    anatomicRegion?: CodedConcept;
    color: { rgb: [number, number, number]; cielab: [number, number, number] };
  }[];
  modalities: string[];
  training: Record<string, unknown>;
  metrics: Record<string, unknown> | null;
  export: { gflopsPerSlice?: number; [key: string]: unknown };
  notes?: string;
}

/** The modes a manifest offers (version 1: automatic only). */
export function modelModes(manifest: ModelManifest): ModelMode[] {
  return manifest.modes ?? ['auto'];
}

export function hasAutoMode(manifest: ModelManifest): boolean {
  return modelModes(manifest).includes('auto');
}

/** The file of the automatic graph (role "segmentation", else the first file of a version-1 manifest). */
export function autoGraphFile(manifest: ModelManifest): string {
  return (manifest.files.find((f) => f.role === 'segmentation') ?? manifest.files[0]!).path;
}

/** Checks beyond the schema: segment numbers, graph files listed, the promptable pair fitting together. */
function checkConsistency(manifest: ModelManifest, path: string): void {
  const numbers = manifest.segments.map((s) => s.number);
  if (numbers.some((n, i) => n !== i + 1)) {
    throw new LdfsamError('MODEL_REJECTED', `${path}: segment numbers must be 1..N in order, got ${numbers.join(',')}`);
  }
  const listed = new Set(manifest.files.map((f) => f.path));
  for (const graph of [manifest.promptable?.encoder, manifest.promptable?.decoder]) {
    if (graph && !listed.has(graph.file))
      throw new LdfsamError('MODEL_REJECTED', `${path}: ${graph.file} is described but not listed (with its SHA-256) in files`);
  }
  if (manifest.promptable) checkPromptablePair(manifest.promptable, path);
  if (manifest.postprocessing.presence) checkPresence(manifest, manifest.postprocessing.presence, path);
}

/** The presence block names an output of the automatic graph of shape (batch, features) and one weight per feature. */
function checkPresence(manifest: ModelManifest, presence: PresenceSpec, path: string): void {
  const n = presence.features.length;
  if (presence.weights.length !== n)
    throw new LdfsamError('MODEL_REJECTED', `${path}: presence has ${n} feature(s) but ${presence.weights.length} weight(s)`);
  for (const name of Object.keys(presence.featureMax ?? {}))
    if (!presence.features.includes(name))
      throw new LdfsamError('MODEL_REJECTED', `${path}: presence.featureMax names ${name}, which is not one of its features`);
  const output = manifest.outputs?.find((o) => o.name === presence.output);
  if (!output || output.shape.length !== 2 || output.shape[1] !== n) {
    const got = output ? `[${output.shape.join(', ')}]` : 'no such output of the automatic graph';
    throw new LdfsamError(
      'MODEL_REJECTED',
      `${path}: presence reads ${presence.output} as (batch, ${n}), but the model has ${got}`,
    );
  }
}

/** Every encoder output must be a decoder input of the same name, dtype and shape (batch 1 in the decoder). */
function checkPromptablePair(pair: PromptableSpec, path: string): void {
  const decoderInputs = new Map(pair.decoder.inputs.map((t) => [t.name, t]));
  for (const out of pair.encoder.outputs) {
    const input = decoderInputs.get(out.name);
    const fits =
      input !== undefined &&
      input.dtype === out.dtype &&
      input.shape[0] === 1 &&
      input.shape.length === out.shape.length &&
      input.shape.every((d, i) => i === 0 || d === out.shape[i]);
    if (!fits) {
      const got = input ? `decoder input ${input.dtype} [${input.shape.join(', ')}]` : 'no decoder input of that name';
      throw new LdfsamError(
        'MODEL_REJECTED',
        `${path}: the encoder's output ${out.name} ${out.dtype} [${out.shape.join(', ')}] does not fit the decoder (${got})`,
      );
    }
  }
}

let validator: ((data: unknown) => boolean) & { errors?: { instancePath: string; message?: string }[] | null };

async function validate(manifest: unknown): Promise<void> {
  if (!validator) {
    const schema = JSON.parse(await readFile(projectPath('models', 'model.schema.json'), 'utf8')) as object;
    validator = new Ajv2020({ allErrors: true, strict: false }).compile(schema);
  }
  if (!validator(manifest)) {
    const problems = (validator.errors ?? []).slice(0, 5).map((e) => `${e.instancePath || '(top level)'} ${e.message ?? ''}`);
    throw new LdfsamError('MODEL_REJECTED', `model.json is invalid: ${problems.join('; ')}`);
  }
}

function sha256(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** Reads, validates and hash-checks a model folder's manifest. */
export async function readManifest(folder: string): Promise<ModelManifest> {
  const path = join(folder, 'model.json');
  let manifest: ModelManifest;
  try {
    manifest = JSON.parse(await readFile(path, 'utf8')) as ModelManifest;
  } catch (err) {
    throw new LdfsamError('MODEL_REJECTED', `cannot read ${path}: ${(err as Error).message}`);
  }
  await validate(manifest);
  checkConsistency(manifest, path);
  for (const file of manifest.files) {
    const filePath = join(folder, file.path);
    const info = await stat(filePath).catch(() => undefined);
    if (!info?.isFile()) throw new LdfsamError('MODEL_REJECTED', `${filePath} is listed in model.json but missing`);
    if (info.size !== file.bytes || (await sha256(filePath)) !== file.sha256) {
      throw new LdfsamError(
        'MODEL_REJECTED',
        `${filePath} does not match model.json (size or SHA-256 differs): corrupted or replaced`,
      );
    }
  }
  return manifest;
}
