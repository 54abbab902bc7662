/**
 * MONAI Label's `/info/` from the model registry. Automatic models are of type "segmentation"
 * (3D Slicer lists them under Auto-segmentation), promptable ones "deepgrow" (SmartEdit: points and
 * an ROI). A model with both modes appears twice: `<name>` (automatic) and `<name>:prompt` (":" is
 * not allowed in model names, so the two never collide with another model). Every entry is
 * `dimension` 3: whatever the model sees, the answer is a label on the whole volume's grid (Slicer's
 * 2-D handling would place ROI prompts on the wrong slice).
 */
import { hasAutoMode, type ModelManifest } from '../../models/manifest.js';
import type { ModelRegistry, RegisteredModel } from '../../inference/registry.js';
import type { VolumeStore } from '../../volume/store.js';
import { STRATEGIES } from './next-sample.js';

export const PROMPT_SUFFIX = ':prompt';

export type ModelMode = 'auto' | 'promptable';

/** The registry entries under their MONAI Label names. */
export function monaiModels(registry: ModelRegistry): Map<string, { model: RegisteredModel; mode: ModelMode }> {
  const out = new Map<string, { model: RegisteredModel; mode: ModelMode }>();
  for (const model of registry.list()) {
    const m = model.manifest;
    if (hasAutoMode(m)) out.set(m.name, { model, mode: 'auto' });
    if (m.promptable) out.set(hasAutoMode(m) ? `${m.name}${PROMPT_SUFFIX}` : m.name, { model, mode: 'promptable' });
  }
  return out;
}

/** The modality choices shown in Slicer's options table (the first is sent unless changed). */
export function modalityChoices(m: ModelManifest): string[] {
  const named = m.modalities.filter((x) => x !== '*');
  const policies = Object.keys(m.preprocessing.intensity).filter((k) => k !== 'default');
  const choices = [...new Set([...named, ...(m.modalities.includes('*') ? [...policies, 'OT'] : [])])];
  return choices.length > 0 ? choices : ['OT'];
}

export function datastoreStats(store: VolumeStore) {
  const entries = store.list().filter((e) => !e.id.startsWith(SESSION_PREFIX));
  const labelTags: Record<string, number> = {};
  for (const e of entries) for (const tag of Object.keys(e.labels)) labelTags[tag] = (labelTags[tag] ?? 0) + 1;
  return { total: entries.length, completed: entries.filter((e) => e.labels.final).length, label_tags: labelTags };
}

export const SESSION_PREFIX = 'session:';

export function info(registry: ModelRegistry, store: VolumeStore, version: string) {
  const models: Record<string, unknown> = {};
  const labels: string[] = [];
  const entries = [...monaiModels(registry)].sort(([, a], [, b]) => (a.mode === b.mode ? 0 : a.mode === 'auto' ? -1 : 1));
  for (const [name, { model, mode }] of entries) {
    const m = model.manifest;
    for (const s of m.segments) if (!labels.includes(s.label)) labels.push(s.label);
    models[name] = {
      type: mode === 'auto' ? 'segmentation' : 'deepgrow',
      labels: Object.fromEntries(m.segments.map((s) => [s.label, s.number])),
      dimension: 3,
      description:
        `${m.description ?? m.name} (${m.name} ${m.version}; modalities ${m.modalities.join(', ')})` +
        (mode === 'promptable' ? '; prompts: foreground/background points and an ROI' : ''),
      config: { modality: modalityChoices(m) },
    };
  }
  const autoNames = entries.filter(([, e]) => e.mode === 'auto').map(([name]) => name);
  return {
    name: 'LDFSAM',
    description: 'LDFSAM segmentation models and the PACS, through the part of the MONAI Label API that its clients use',
    version,
    labels,
    models,
    trainers: {},
    strategies: Object.fromEntries(
      Object.entries(STRATEGIES).map(([name, description]) => [name, { description, config: { model: ['any', ...autoNames] } }]),
    ),
    scoring: {},
    train_stats: {},
    datastore: datastoreStats(store),
  };
}
