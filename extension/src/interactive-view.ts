/**
 * The panel's "Interactive" section: tools, undo / clear, propagation with its progress, the
 * structure's name and code, Accept. Plain DOM from the state (see panel-view.ts); its buttons carry
 * data-action names that bindActions dispatches to InteractiveActions.
 */
import { STRUCTURES } from './codes.js';
import { chosenPromptable, clicksNeedBox, maskedSlices, promptableModels, type InteractiveState } from './interactive-state.js';
import { describeError } from './messages.js';
import type { PanelState } from './panel-state.js';
import { h, type Child } from './dom.js';

export interface InteractiveActions {
  tool(tool: 'box' | 'point'): void;
  undo(): void;
  clear(): void;
  propagate(): void;
  cancelPropagation(): void;
  accept(): void;
  chooseModel(modality: string, name: string): void;
  label(key: string, text?: string): void;
}

const REASONS: Record<string, string> = {
  empty: 'the structure ended',
  'low-iou': 'the model was unsure',
  'end-of-series': 'the series ended',
  limit: 'the slice limit',
  cancelled: 'cancelled',
};

export function renderInteractive(s: InteractiveState, panel: PanelState): HTMLElement | undefined {
  const active = panel.active;
  if (!active || !panel.models) return undefined;
  const section = h('div', { class: 'ldfsam-section', 'data-cy': 'ldfsam-interactive' }, h('h3', {}, 'Interactive'));
  const models = promptableModels(panel.models, active.modality);
  if (models.length === 0) {
    section.append(h('div', { class: 'ldfsam-muted' }, `No installed model takes prompts on ${active.modality} images.`));
    return section;
  }
  const model = chosenPromptable(panel.models, active.modality, s.chosenModel);
  if (models.length > 1) {
    section.append(
      h(
        'select',
        {
          'aria-label': 'interactive model',
          'data-cy': 'ldfsam-interactive-model',
          'data-action': 'ia-model',
          'data-modality': active.modality,
          'data-value': model?.name ?? '',
        },
        ...models.map((m) => h('option', { value: m.name }, `${m.name} ${m.version}`)),
      ),
    );
  } else section.append(h('div', { class: 'ldfsam-muted' }, `${model!.name} ${model!.version}`));
  const busy = s.busy !== undefined;
  const pressed = (t: string) => (s.tool === t ? 'true' : 'false');
  section.append(
    h(
      'div',
      { class: 'ldfsam-actions', role: 'toolbar', 'aria-label': 'prompt tools' },
      h(
        'button',
        { class: 'ldfsam-secondary', 'data-cy': 'ldfsam-tool-box', 'data-action': 'ia-box', 'aria-pressed': pressed('box') },
        'Box',
      ),
      h(
        'button',
        {
          class: 'ldfsam-secondary',
          'data-cy': 'ldfsam-tool-point',
          'data-action': 'ia-point',
          'aria-pressed': pressed('point'),
        },
        'Point',
      ),
      h(
        'button',
        { class: 'ldfsam-secondary', 'data-cy': 'ldfsam-undo', 'data-action': 'ia-undo', disabled: busy || s.undo.length === 0 },
        'Undo',
      ),
      h(
        'button',
        {
          class: 'ldfsam-secondary',
          'data-cy': 'ldfsam-clear',
          'data-action': 'ia-clear',
          disabled: Object.keys(s.masks).length === 0 && Object.keys(s.prompts).length === 0,
        },
        'Clear',
      ),
    ),
    h('div', { class: 'ldfsam-muted', 'data-cy': 'ldfsam-tool-help' }, toolHelp(s, clicksNeedBox(model))),
  );
  section.append(status(s));
  if (s.hint) section.append(h('div', { class: 'ldfsam-section', role: 'status', 'data-cy': 'ldfsam-hint' }, s.hint));
  section.append(propagation(s, active.sliceCount));
  section.append(labelChoice(s));
  const masked = maskedSlices(s);
  section.append(
    h(
      'div',
      { class: 'ldfsam-actions' },
      h(
        'button',
        {
          class: 'ldfsam-primary',
          'data-cy': 'ldfsam-accept',
          'data-action': 'ia-accept',
          disabled: busy || masked.length === 0,
        },
        s.busy === 'accept'
          ? 'Storing…'
          : `Accept and store${masked.length ? ` (${masked.length} slice${masked.length === 1 ? '' : 's'})` : ''}`,
      ),
    ),
  );
  if (s.accepted)
    section.append(
      h(
        'div',
        { class: 'ldfsam-muted', 'data-cy': 'ldfsam-accepted', role: 'status' },
        `Stored "${s.accepted.label}": ${s.accepted.frames} slice${s.accepted.frames === 1 ? '' : 's'} in the series "LDFSAM interactive" (structure ${s.accepted.instanceNumber}).`,
      ),
    );
  if (s.error)
    section.append(
      h(
        'div',
        { class: 'ldfsam-section ldfsam-error', role: 'alert', 'data-cy': 'ldfsam-interactive-error' },
        h('div', {}, describeError(s.error.code)),
        h('div', { class: 'ldfsam-muted' }, s.error.message),
        h('code', {}, `error code ${s.error.code}`),
      ),
    );
  return section;
}

function toolHelp(s: InteractiveState, needBox: boolean | undefined): string {
  const keys = ' Enter stores, Escape clears.';
  if (s.tool === 'box') return `Drag a box around the structure on any slice.${keys}`;
  if (s.tool === 'point')
    return `${needBox ? 'With this model clicks refine a box: draw the box first. ' : ''}Click inside the structure; Shift-click outside it.${keys}`;
  return 'Choose Box or Point, then prompt on the image.';
}

function status(s: InteractiveState): HTMLElement {
  const parts: string[] = [];
  if (s.opening) parts.push('Opening the series…');
  else if (s.session) {
    parts.push(s.slice !== undefined ? `Slice ${s.slice + 1} of ${s.session.slices.length}` : 'This image is not in the session');
    const n = maskedSlices(s).length;
    if (n > 0) parts.push(`mask on ${n} slice${n === 1 ? '' : 's'}`);
    const iou = s.slice !== undefined ? s.masks[s.slice]?.iou : undefined;
    if (iou !== undefined && iou !== null) parts.push(`predicted IoU ${iou.toFixed(2)}`);
  }
  if (s.busy === 'prompt') parts.push('segmenting…');
  return h(
    'div',
    { class: 'ldfsam-row ldfsam-muted', 'data-cy': 'ldfsam-interactive-status', role: 'status' },
    h('span', {}, parts.join(' · ')),
    s.previewMs !== undefined
      ? h('span', { 'data-cy': 'ldfsam-preview-ms', 'data-ms': String(Math.round(s.previewMs)) }, `${Math.round(s.previewMs)} ms`)
      : null,
  );
}

function propagation(s: InteractiveState, sliceCount: number): HTMLElement {
  const p = s.propagation;
  const canPropagate =
    sliceCount > 1 &&
    s.slice !== undefined &&
    s.masks[s.slice] !== undefined &&
    maskedSlices(s).includes(s.slice) &&
    s.busy === undefined;
  const children: Child[] = [
    h(
      'div',
      { class: 'ldfsam-actions' },
      p?.running
        ? h('button', { class: 'ldfsam-secondary', 'data-cy': 'ldfsam-propagate-cancel', 'data-action': 'ia-cancel' }, 'Cancel')
        : h(
            'button',
            { class: 'ldfsam-secondary', 'data-cy': 'ldfsam-propagate', 'data-action': 'ia-propagate', disabled: !canPropagate },
            'Propagate through the series',
          ),
    ),
  ];
  if (p) {
    const pct = p.total > 0 ? Math.round((100 * p.done) / p.total) : p.running ? 0 : 100;
    const ends = p.stopped.map((x) => `${x.direction}: ${REASONS[x.reason] ?? x.reason}`).join('; ');
    children.push(
      h('progress', { max: '100', value: String(pct), 'aria-label': `propagation ${pct}%` }),
      h(
        'div',
        {
          class: 'ldfsam-row ldfsam-muted',
          'data-cy': 'ldfsam-propagation',
          'data-running': String(p.running),
          'data-done': String(p.done),
        },
        h(
          'span',
          {},
          p.running
            ? `Propagating: ${p.done} slice${p.done === 1 ? '' : 's'}`
            : `${p.cancelled ? 'Cancelled' : 'Done'}: ${p.done} slice${p.done === 1 ? '' : 's'}${ends ? ` (${ends})` : ''}`,
        ),
      ),
    );
  }
  return h('div', { 'data-cy': 'ldfsam-propagation-block' }, ...children);
}

function labelChoice(s: InteractiveState): HTMLElement {
  const select = h(
    'select',
    { 'aria-label': 'structure', 'data-cy': 'ldfsam-label', 'data-action': 'ia-label', 'data-value': s.label.key },
    ...STRUCTURES.map((c) => h('option', { value: c.key }, `${c.label} (SCT ${c.type.code})`)),
    h('option', { value: 'free' }, 'Other (free text)…'),
  );
  return h(
    'div',
    { class: 'ldfsam-label-choice' },
    h('label', { class: 'ldfsam-muted' }, 'Store as'),
    select,
    s.label.key === 'free'
      ? h('input', {
          type: 'text',
          maxlength: '64',
          placeholder: 'name of the structure',
          'aria-label': 'structure name',
          'data-cy': 'ldfsam-label-text',
          'data-action': 'ia-label-text',
          'data-value': s.label.text,
        })
      : null,
  );
}
