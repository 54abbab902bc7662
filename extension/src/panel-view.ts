/**
 * The panel's DOM, rendered from the state on every change while mounted. Plain DOM, no React of
 * our own: OHIF's bundle exposes no React, and a second copy would be 130 kB for a few buttons.
 * Colours and fonts come from OHIF's theme variables (hsl(var(--primary)) …), so the panel follows
 * OHIF's look and its theme; every control is a native button/select, so keyboard use works.
 */
import type { ModelInfo } from './api-client.js';
import {
  acceptingModels,
  batchCounts,
  foundNothing,
  elapsedMs,
  formatDuration,
  fractionDone,
  isFinal,
  remainingMs,
  selectedModel,
  OUTPUT_LABELS,
  seriesKey,
  type PanelState,
  type SeriesRun,
} from './panel-state.js';
import { describeError } from './messages.js';
import { h, type Child } from './dom.js';
import { promptableModels, type InteractiveState } from './interactive-state.js';
import { renderInteractive, type InteractiveActions } from './interactive-view.js';
import type { OutputFormat } from './api-client.js';

export interface PanelActions {
  segment(force: boolean): void;
  cancel(jobId: string): void;
  chooseModel(modality: string, name: string): void;
  chooseOutputs(outputs: OutputFormat): void;
  segmentStudy(): void;
  dismissRerun(): void;
  showResult(key: string): void;
  interactive?: InteractiveActions;
}

const STYLE = `
.ldfsam-panel { font-family: Inter, system-ui, sans-serif; font-size: 13px; color: hsl(var(--foreground, 0 0% 96%)); padding: 8px 10px; display: flex; flex-direction: column; gap: 10px; }
.ldfsam-panel h3 { font-size: 12px; font-weight: 600; text-transform: uppercase; letter-spacing: .04em; color: hsl(var(--muted-foreground, 215 18% 60%)); margin: 0 0 4px; }
.ldfsam-panel .ldfsam-section { background: hsl(var(--card, 218 25% 5%)); border: 1px solid hsl(var(--border, 218 22% 10%)); border-radius: 6px; padding: 8px; }
.ldfsam-panel .ldfsam-row { display: flex; justify-content: space-between; gap: 8px; line-height: 20px; }
.ldfsam-panel .ldfsam-muted { color: hsl(var(--muted-foreground, 215 18% 60%)); }
.ldfsam-panel button { font: inherit; border-radius: 4px; padding: 5px 12px; cursor: pointer; border: 1px solid transparent; }
.ldfsam-panel button:focus-visible, .ldfsam-panel select:focus-visible { outline: 2px solid hsl(var(--ring, var(--primary, 214 98% 60%))); outline-offset: 1px; }
.ldfsam-panel button.ldfsam-primary { background: hsl(var(--primary, 214 98% 60%)); color: hsl(var(--primary-foreground, 0 0% 98%)); font-weight: 600; }
.ldfsam-panel button.ldfsam-secondary { background: transparent; color: hsl(var(--foreground, 0 0% 96%)); border-color: hsl(var(--input, 216 28% 15%)); }
.ldfsam-panel button:disabled { opacity: .5; cursor: default; }
.ldfsam-panel select { font: inherit; width: 100%; background: hsl(var(--background, 240 15% 3%)); color: inherit; border: 1px solid hsl(var(--input, 216 28% 15%)); border-radius: 4px; padding: 4px; }
.ldfsam-panel progress { width: 100%; height: 8px; accent-color: hsl(var(--primary, 214 98% 60%)); appearance: none; border: none; border-radius: 4px; background: hsl(var(--muted, 214 28% 12%)); }
.ldfsam-panel progress::-webkit-progress-bar { background: hsl(var(--muted, 214 28% 12%)); border-radius: 4px; }
.ldfsam-panel progress::-webkit-progress-value { background: hsl(var(--primary, 214 98% 60%)); border-radius: 4px; }
.ldfsam-panel progress::-moz-progress-bar { background: hsl(var(--primary, 214 98% 60%)); border-radius: 4px; }
.ldfsam-panel .ldfsam-error { border-color: hsl(var(--destructive, 0 62.8% 30.6%)); color: hsl(var(--destructive-foreground, 0 0% 98%)); background: hsl(var(--destructive, 0 62.8% 30.6%) / .25); }
.ldfsam-panel .ldfsam-actions { display: flex; gap: 8px; margin-top: 6px; flex-wrap: wrap; }
.ldfsam-panel button[aria-pressed="true"] { background: hsl(var(--primary, 214 98% 60%) / .35); border-color: hsl(var(--primary, 214 98% 60%)); }
.ldfsam-panel input[type="text"] { font: inherit; width: 100%; box-sizing: border-box; margin-top: 4px; background: hsl(var(--background, 240 15% 3%)); color: inherit; border: 1px solid hsl(var(--input, 216 28% 15%)); border-radius: 4px; padding: 4px; }
.ldfsam-panel .ldfsam-label-choice { display: flex; flex-direction: column; gap: 2px; margin-top: 6px; }
.ldfsam-panel code { font-family: Menlo, Consolas, monospace; font-size: 11px; }
`;

function diceText(m: ModelInfo): string {
  const d = m.metrics?.dice;
  if (d?.mean === undefined) return 'no held-out metrics';
  const ci = d.ci95 && d.ci95.length === 2 ? ` [${d.ci95[0]!.toFixed(3)}, ${d.ci95[1]!.toFixed(3)}]` : '';
  return `Dice ${d.mean.toFixed(3)}${ci} on ${m.metrics?.dataset ?? '?'} ${m.metrics?.split ?? ''}`.trim();
}

/** "Found on 3 of 6 slices · confidence 0.91", "Nothing found: nothing was stored", or (older results) "Done: 6 slices". */
function succeededText(run: SeriesRun): string {
  const found = run.found;
  if (!found) return `Done: ${run.total} slice${run.total === 1 ? '' : 's'}`;
  if (found.slicesFound === 0) return 'Nothing found; nothing was stored';
  const confidence = found.confidence !== undefined ? ` · confidence ${found.confidence.toFixed(2)}` : '';
  return `Found on ${found.slicesFound} of ${found.slices} slice${found.slices === 1 ? '' : 's'}${confidence}`;
}

function progressBlock(run: SeriesRun, now: number, label?: string): HTMLElement {
  const pct = Math.round(fractionDone(run) * 100);
  const running = !isFinal(run);
  const stateText =
    run.state === 'submitting'
      ? 'Submitting…'
      : run.state === 'queued'
        ? 'Waiting in the queue…'
        : run.state === 'running'
          ? `${run.stage ?? 'working'}: ${run.done} / ${run.total || '?'} slices`
          : run.state === 'succeeded'
            ? `${succeededText(run)}${run.earlier ? ' (earlier result)' : ''}`
            : run.state === 'cancelled'
              ? 'Cancelled; nothing stored'
              : 'Failed';
  return h(
    'div',
    {
      'data-cy': 'ldfsam-progress',
      'data-state': run.state,
      'data-percent': String(pct),
      ...(run.found ? { 'data-outcome': foundNothing(run) ? 'nothing-found' : 'found' } : {}),
    },
    label ? h('div', { class: 'ldfsam-row' }, h('span', {}, label)) : null,
    h('progress', { max: '100', value: String(pct), 'aria-label': `segmentation progress ${pct}%` }),
    h(
      'div',
      { class: 'ldfsam-row' },
      h('span', { 'data-cy': 'ldfsam-stage', role: 'status' }, stateText),
      h('span', {}, `${pct}%`),
    ),
    run.state === 'succeeded' && run.found?.message
      ? h('div', { class: 'ldfsam-muted', 'data-cy': 'ldfsam-outcome' }, run.found.message)
      : null,
    h(
      'div',
      { class: 'ldfsam-row ldfsam-muted' },
      h('span', {}, `elapsed ${formatDuration(elapsedMs(run, now))}`),
      running ? h('span', {}, `about ${formatDuration(remainingMs(run, now))} left`) : null,
    ),
    run.error
      ? h(
          'div',
          { class: 'ldfsam-section ldfsam-error', role: 'alert', 'data-cy': 'ldfsam-error' },
          h('div', {}, describeError(run.error.code)),
          h('div', { class: 'ldfsam-muted' }, run.error.message),
          h('code', {}, `error code ${run.error.code}`),
        )
      : null,
    running && run.jobId
      ? h(
          'div',
          { class: 'ldfsam-actions' },
          h(
            'button',
            { class: 'ldfsam-secondary', 'data-cy': 'ldfsam-cancel', 'data-action': 'cancel', 'data-job-id': run.jobId },
            'Cancel',
          ),
        )
      : null,
  );
}

/**
 * Attaches the panel's behaviour to its root once: one click and one change listener dispatching on
 * data-action, so that re-rendering never has to move listeners (and a click whose mousedown and
 * mouseup straddle a progress update still lands).
 */
export function bindActions(root: HTMLElement, actions: PanelActions): () => void {
  const onClick = (e: Event) => {
    const el = (e.target as Element | null)?.closest<HTMLElement>('[data-action]');
    if (!el || !root.contains(el) || (el as HTMLButtonElement).disabled) return;
    switch (el.dataset.action) {
      case 'segment':
        return actions.segment(false);
      case 'rerun':
        return actions.segment(true);
      case 'cancel':
        return el.dataset.jobId ? actions.cancel(el.dataset.jobId) : undefined;
      case 'segment-study':
        return actions.segmentStudy();
      case 'dismiss-rerun':
        return actions.dismissRerun();
      case 'show-result':
        return el.dataset.key ? actions.showResult(el.dataset.key) : undefined;
    }
    const ia = actions.interactive;
    switch (ia && el.dataset.action) {
      case 'ia-box':
        return ia!.tool('box');
      case 'ia-point':
        return ia!.tool('point');
      case 'ia-undo':
        return ia!.undo();
      case 'ia-clear':
        return ia!.clear();
      case 'ia-propagate':
        return ia!.propagate();
      case 'ia-cancel':
        return ia!.cancelPropagation();
      case 'ia-accept':
        return ia!.accept();
    }
  };
  // OHIF's hotkeys cancel the default action of Enter on the way up, so a focused button would
  // never be activated by the keyboard: activate ours here, before the event leaves the panel.
  const onKey = (e: KeyboardEvent) => {
    if (e.key !== 'Enter' && e.key !== ' ') return;
    const el = e.target as HTMLElement;
    if (el.tagName !== 'BUTTON' || !el.dataset.action) return;
    e.preventDefault();
    e.stopPropagation();
    onClick(e);
  };
  const onChange = (e: Event) => {
    const el = e.target as HTMLSelectElement;
    if (el.dataset.action === 'choose-model' && el.dataset.modality) actions.chooseModel(el.dataset.modality, el.value);
    if (el.dataset.action === 'ia-model' && el.dataset.modality) actions.interactive?.chooseModel(el.dataset.modality, el.value);
    if (el.dataset.action === 'ia-label') actions.interactive?.label(el.value);
    if (el.dataset.action === 'choose-outputs') actions.chooseOutputs(el.value as OutputFormat);
  };
  const onInput = (e: Event) => {
    const el = e.target as HTMLInputElement;
    if (el.dataset.action === 'ia-label-text') actions.interactive?.label('free', el.value);
  };
  root.addEventListener('click', onClick);
  root.addEventListener('keydown', onKey);
  root.addEventListener('change', onChange);
  root.addEventListener('input', onInput);
  return () => {
    root.removeEventListener('click', onClick);
    root.removeEventListener('keydown', onKey);
    root.removeEventListener('change', onChange);
    root.removeEventListener('input', onInput);
  };
}

/**
 * Brings `target` to look like `source` while keeping every node that can stay: focus, hover and a
 * pressed mouse button survive the progress updates that arrive many times a second.
 */
export function morph(target: Element, source: Element): void {
  for (const a of [...target.attributes]) if (!source.hasAttribute(a.name)) target.removeAttribute(a.name);
  for (const a of [...source.attributes]) if (target.getAttribute(a.name) !== a.value) target.setAttribute(a.name, a.value);
  const from = [...target.childNodes];
  const to = [...source.childNodes];
  to.forEach((next, i) => {
    const current = from[i];
    if (!current) target.append(next);
    else if (
      current.nodeType !== next.nodeType ||
      (current instanceof Element &&
        next instanceof Element &&
        (current.tagName !== next.tagName || current.getAttribute('data-cy') !== next.getAttribute('data-cy')))
    )
      target.replaceChild(next, current);
    else if (current instanceof Element) morph(current, next as Element);
    else if (current.textContent !== next.textContent) current.textContent = next.textContent;
  });
  for (const extra of from.slice(to.length)) extra.remove();
  // Properties that attributes do not drive once the user has touched the control.
  if (target instanceof HTMLSelectElement && target.dataset.value && target.value !== target.dataset.value)
    target.value = target.dataset.value;
  // A text field the user is typing in keeps what is typed; otherwise it shows the state's text.
  if (target instanceof HTMLInputElement && target.dataset.value !== undefined && document.activeElement !== target)
    target.value = target.dataset.value;
  if (target instanceof HTMLProgressElement) target.value = Number(source.getAttribute('value') ?? 0);
}

export function renderPanel(root: HTMLElement, state: PanelState, now: number, interactive?: InteractiveState): void {
  const nodes: Child[] = [h('style', {}, STYLE)];
  const active = state.active;
  nodes.push(
    h(
      'div',
      { class: 'ldfsam-section', 'data-cy': 'ldfsam-series' },
      h('h3', {}, 'Active series'),
      active
        ? h(
            'div',
            {},
            h(
              'div',
              { class: 'ldfsam-row' },
              h('span', {}, active.description || '(no description)'),
              h('span', {}, active.modality),
            ),
            h(
              'div',
              { class: 'ldfsam-row ldfsam-muted' },
              h('span', {}, `${active.sliceCount} slice${active.sliceCount === 1 ? '' : 's'}`),
            ),
          )
        : h('div', { class: 'ldfsam-muted' }, 'Select a viewport showing an image series.'),
    ),
  );

  if (state.modelsError) {
    nodes.push(
      h(
        'div',
        { class: 'ldfsam-section ldfsam-error', role: 'alert', 'data-cy': 'ldfsam-error' },
        h('div', {}, describeError(state.modelsError.code)),
        h('code', {}, `error code ${state.modelsError.code}`),
      ),
    );
  }

  const accepting = active && state.models ? acceptingModels(state.models, active.modality) : [];
  const model = selectedModel(state);
  const key = active ? seriesKey(active.studyInstanceUID, active.seriesInstanceUID) : undefined;
  const run = key ? state.runs[key] : undefined;
  if (active && state.models) {
    const section = h('div', { class: 'ldfsam-section', 'data-cy': 'ldfsam-models' }, h('h3', {}, 'Model'));
    if (accepting.length === 0) {
      const prompted = promptableModels(state.models, active.modality).length > 0;
      section.append(
        h(
          'div',
          { class: 'ldfsam-muted', 'data-cy': 'ldfsam-no-auto' },
          `No installed model segments ${active.modality} images automatically.${prompted ? ' Use Interactive below: draw a box around a structure.' : ''}`,
        ),
      );
    } else {
      const select = h(
        'select',
        {
          'aria-label': 'segmentation model',
          'data-cy': 'ldfsam-model',
          'data-action': 'choose-model',
          'data-modality': active.modality,
          'data-value': model?.name ?? '',
        },
        ...accepting.map((m) => h('option', { value: m.name }, `${m.name} ${m.version}`)),
      );
      section.append(select);
      // The result format: a setting for every run from this browser (SEG unless changed).
      section.append(
        h('label', { class: 'ldfsam-muted', for: 'ldfsam-outputs' }, 'Result format'),
        h(
          'select',
          {
            id: 'ldfsam-outputs',
            'aria-label': 'result format',
            'data-cy': 'ldfsam-outputs',
            'data-action': 'choose-outputs',
            'data-value': state.outputs,
          },
          ...(Object.entries(OUTPUT_LABELS) as [OutputFormat, string][]).map(([value, label]) => h('option', { value }, label)),
        ),
      );
      if (model) {
        section.append(
          h(
            'div',
            { class: 'ldfsam-muted', 'data-cy': 'ldfsam-model-info' },
            `${model.segments.map((s) => s.label).join(', ')} · ${diceText(model)}`,
          ),
        );
      }
      const busy = run !== undefined && !isFinal(run);
      section.append(
        h(
          'div',
          { class: 'ldfsam-actions' },
          h(
            'button',
            {
              class: 'ldfsam-primary',
              'data-cy': 'ldfsam-segment',
              disabled: busy || !model,
              'data-action': 'segment',
            },
            'Auto-segment',
          ),
        ),
      );
    }
    nodes.push(section);
  } else if (active && !state.modelsError) {
    nodes.push(h('div', { class: 'ldfsam-muted' }, 'Loading models…'));
  }

  if (key && state.confirmRerun === key && run?.state === 'succeeded') {
    nodes.push(
      h(
        'div',
        { class: 'ldfsam-section', role: 'alertdialog', 'aria-label': 'result exists', 'data-cy': 'ldfsam-rerun' },
        h('div', {}, `This series already has a ${run.model} result.`),
        h(
          'div',
          { class: 'ldfsam-actions' },
          h('button', { class: 'ldfsam-secondary', 'data-action': 'show-result', 'data-key': key }, 'Show it'),
          h('button', { class: 'ldfsam-primary', 'data-cy': 'ldfsam-rerun-confirm', 'data-action': 'rerun' }, 'Run again'),
          h('button', { class: 'ldfsam-secondary', 'data-action': 'dismiss-rerun' }, 'Close'),
        ),
      ),
    );
  }

  if (run) nodes.push(h('div', { class: 'ldfsam-section' }, h('h3', {}, 'Progress'), progressBlock(run, now)));
  if (interactive) nodes.push(renderInteractive(interactive, state));

  if (active) {
    const batch = state.batch?.studyInstanceUID === active.studyInstanceUID ? state.batch : undefined;
    const batchRuns = batch ? batch.keys.map((k) => [k, state.runs[k]] as const) : [];
    const batchBusy = batchRuns.some(([, r]) => r && !isFinal(r));
    const section = h(
      'div',
      { class: 'ldfsam-section', 'data-cy': 'ldfsam-batch' },
      h('h3', {}, 'Whole study'),
      h(
        'div',
        { class: 'ldfsam-actions' },
        h(
          'button',
          {
            class: 'ldfsam-secondary',
            'data-cy': 'ldfsam-segment-study',
            disabled: batchBusy,
            'data-action': 'segment-study',
          },
          'Segment every series of this study',
        ),
      ),
    );
    if (batch?.error) {
      section.append(
        h(
          'div',
          { class: 'ldfsam-section ldfsam-error', role: 'alert' },
          h('div', {}, describeError(batch.error.code)),
          h('code', {}, `error code ${batch.error.code}`),
        ),
      );
    }
    if (batchRuns.length > 0) {
      const c = batchCounts(batchRuns.map(([, r]) => r));
      const parts = [`${c.segmented} segmented`, `${c.nothingFound} nothing found`, `${c.failed} failed`];
      if (c.cancelled) parts.push(`${c.cancelled} cancelled`);
      if (c.running) parts.push(`${c.running} running`);
      section.append(h('div', { class: 'ldfsam-muted', 'data-cy': 'ldfsam-batch-counts' }, parts.join(' · ')));
    }
    for (const [k, r] of batchRuns) {
      if (r) section.append(progressBlock(r, now, `series …${k.split('|')[1]!.slice(-12)} (${r.model})`));
    }
    nodes.push(section);
  }
  const next = document.createElement(root.tagName);
  for (const a of [...root.attributes]) next.setAttribute(a.name, a.value);
  next.append(...nodes.filter((n): n is Node | string => Boolean(n)));
  morph(root, next);
}
