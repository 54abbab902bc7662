/**
 * What the interactive section does: opens a session on the active series with a promptable model,
 * turns Box and Point tool input into prompts, shows each answer as a preview at once, undoes,
 * clears, propagates through the series (progress, cancel), and stores the structure as DICOM SEG
 * (then shown by OHIF as after an auto run). Enter accepts, Escape clears. One per viewer page,
 * outliving panel unmounts, like the auto-segment controller.
 */
import { ApiError, type Box, type InteractiveSession, type LdfsamApi, type PromptPoint } from './api-client.js';
import { describeError } from './messages.js';
import { fetchSeriesIntoViewer, showSegmentation, type OhifContext } from './ohif-results.js';
import {
  acceptSlices,
  chosenLabel,
  chosenPromptable,
  cleared,
  clicksNeedBox,
  decodeBits,
  initialInteractive,
  isEmptyMask,
  maskedSlices,
  nextPrompt,
  setMask,
  sliceOf,
  sliceToEncodeAhead,
  aheadUnwanted,
  undo,
  withPrompt,
  type InteractiveState,
  type SlicePrompt,
  type Tool,
} from './interactive-state.js';
import { Store, type PanelState } from './panel-state.js';
import { ViewportTools, type ImageRef } from './viewport-tools.js';
import { FREE_TEXT_COLOR, STRUCTURES } from './codes.js';

/**
 * How long a prompt's marks and the panel wait for a quick answer (a slice the server has encoded)
 * before they are drawn without it: twice the target for a cached slice, so only a loaded machine
 * reaches it.
 */
const QUICK_ANSWER_MS = 300;

/**
 * How long the user stays on a slice, with a tool on, before the server is asked to encode it: the
 * encoder pass (most of a first prompt's time) then runs while the user aims, not after the click.
 * Long enough that scrolling through a series asks for nothing.
 */
const ENCODE_AHEAD_DWELL_MS = 250;

export class InteractiveController {
  readonly store = new Store<InteractiveState>(initialInteractive);
  readonly tools: ViewportTools;
  private opening: Promise<InteractiveSession | undefined> | undefined;
  private propagation: AbortController | undefined;
  private readonly latest = new Map<number, number>();
  /** Slices the session's server has encoded (answered, or propagated through): a prompt there is a decoder run. */
  private readonly encoded = new Set<number>();
  /** The slice the server was asked to encode ahead of a prompt (encodeAhead) and has not answered for yet. */
  private ahead: { slice: number; abort: AbortController } | undefined;
  private order = 0;
  private started = false;
  private dwell: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly api: LdfsamApi,
    private readonly ctx: OhifContext,
    private readonly panel: Store<PanelState>,
  ) {
    this.tools = new ViewportTools(
      ctx,
      {
        onBox: (ref, box, t0) => void this.prompt(ref, { box }, t0),
        onPoint: (ref, point, t0) => void this.prompt(ref, { point }, t0),
        onImage: (ref) => this.onImage(ref),
      },
      (ref) => this.overlay(ref),
    );
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.panel.subscribe(() => this.followSeries());
    const { viewportGridService } = this.ctx.services;
    for (const name of ['ACTIVE_VIEWPORT_ID_CHANGED', 'GRID_STATE_CHANGED', 'VIEWPORTS_READY']) {
      const event = viewportGridService.EVENTS[name];
      if (event) viewportGridService.subscribe(event, () => setTimeout(() => this.tools.attach(), 0));
    }
    window.addEventListener('keydown', (e) => this.onKey(e), true);
    this.tools.attach();
  }

  setTool(tool: Tool): void {
    const next = this.store.get().tool === tool ? 'none' : tool;
    this.store.update((s) => ({ ...s, tool: next, error: undefined }));
    this.tools.setTool(next);
    if (next !== 'none') void this.ensureSession();
    this.encodeAhead();
  }

  chooseModel(modality: string, name: string): void {
    this.store.update((s) => ({ ...s, chosenModel: { ...s.chosenModel, [modality]: name } }));
    void this.reset();
  }

  setLabel(key: string, text?: string): void {
    this.store.update((s) => ({ ...s, label: { key, text: text ?? s.label.text } }));
  }

  undo(): void {
    if (this.afterPrompt(() => this.undo())) return;
    const before = this.store.get();
    const last = before.undo.at(-1);
    if (!last || before.busy) return;
    this.store.update(undo);
    this.tools.refresh();
    // A restored prompt is sent again (the slice is cached: a decoder run) so that the server's mask is the one shown.
    for (const key of Object.keys(last.before)) {
      const slice = Number(key);
      const prompt = this.store.get().prompts[slice];
      if (prompt) void this.send(slice, prompt, performance.now(), { resync: true });
    }
  }

  clear(): void {
    if (this.store.get().busy === 'propagate') this.cancelPropagation();
    this.latest.clear();
    this.store.update(cleared);
    this.tools.refresh();
  }

  /** Carries the shown slice's mask through the series, both ways. */
  async propagate(): Promise<void> {
    if (this.afterPrompt(() => void this.propagate())) return;
    const s = this.store.get();
    const session = s.session;
    const from = s.slice;
    if (!session || from === undefined || !s.masks[from] || isEmptyMask(s.masks[from].bits) || s.busy) return;
    if (s.masks[from].dirty && s.prompts[from]) await this.send(from, s.prompts[from], performance.now(), { resync: true });
    const abort = new AbortController();
    this.propagation = abort;
    const before: Record<number, { prompt?: SlicePrompt; mask?: InteractiveState['masks'][number] }> = {};
    this.store.update((x) => ({
      ...x,
      busy: 'propagate',
      error: undefined,
      propagation: { running: true, done: 0, total: 0, stopped: [] },
      undo: [...x.undo, { what: 'propagation', before }],
    }));
    try {
      const end = await this.api.propagate(
        session.sessionId,
        { fromSlice: from, direction: 'both' },
        (e) => {
          if (e.name === 'slice') {
            const d = e.data as { slice: number; iou: number | null; done: number; total: number; mask: { bits: string } };
            const cur = this.store.get();
            if (!(d.slice in before)) before[d.slice] = { prompt: cur.prompts[d.slice], mask: cur.masks[d.slice] };
            this.encoded.add(d.slice);
            this.store.update((x) => ({
              ...setMask(x, d.slice, { bits: decodeBits(d.mask.bits), iou: d.iou, dirty: false }),
              propagation: { ...x.propagation!, done: d.done, total: d.total },
            }));
            if (d.slice === this.store.get().slice) this.tools.refresh();
          } else if (e.name === 'stopped') {
            const d = e.data as { direction: string; reason: string; atSlice: number | null };
            this.store.update((x) => ({ ...x, propagation: { ...x.propagation!, stopped: [...x.propagation!.stopped, d] } }));
          }
        },
        abort.signal,
      );
      if (end.name === 'error') {
        const err = (end.data as { error: { code: string; message: string } }).error;
        this.fail(err);
      }
      const cancelled = end.name === 'final' && Boolean((end.data as { cancelled?: boolean }).cancelled);
      this.store.update((x) => ({ ...x, propagation: { ...x.propagation!, running: false, cancelled } }));
    } catch (err) {
      const e = toErrorInfo(err);
      this.store.update((x) => ({ ...x, propagation: { ...x.propagation!, running: false, cancelled: e.code === 'CANCELLED' } }));
      if (e.code !== 'CANCELLED') this.fail(e);
    } finally {
      this.propagation = undefined;
      this.store.update((x) => ({ ...x, busy: undefined }));
      this.tools.refresh();
    }
  }

  cancelPropagation(): void {
    const session = this.store.get().session;
    this.propagation?.abort();
    if (session) void this.api.cancelPropagation(session.sessionId).catch(() => undefined);
  }

  /** Stores the structure (every slice with a mask) as DICOM SEG and shows it. */
  async accept(): Promise<void> {
    if (this.afterPrompt(() => void this.accept())) return;
    const s = this.store.get();
    const label = chosenLabel(s);
    const slices = acceptSlices(s);
    if (!s.session || s.busy || slices.length === 0) return;
    if (!label) {
      this.store.update((x) => ({ ...x, error: { code: 'INVALID_INPUT', message: 'Name the structure before storing it.' } }));
      return;
    }
    this.store.update((x) => ({ ...x, busy: 'accept', error: undefined }));
    try {
      const body = { ...label, color: 'color' in label ? label.color : FREE_TEXT_COLOR, slices };
      const accepted = await this.api.accept(s.session.sessionId, body);
      this.store.update((x) => ({ ...cleared(x), accepted: { ...accepted, label: label.label } }));
      this.tools.refresh();
      this.ctx.services.uiNotificationService.show({
        title: 'Structure stored',
        message: `${label.label}: ${accepted.frames} slice${accepted.frames === 1 ? '' : 's'} stored in the PACS as DICOM SEG.`,
        type: 'success',
        duration: 5000,
      });
      await this.display(s.session, accepted.segSeriesInstanceUID, accepted.segSopInstanceUID);
    } catch (err) {
      this.fail(toErrorInfo(err));
    } finally {
      this.store.update((x) => ({ ...x, busy: undefined }));
    }
  }

  private async display(session: InteractiveSession, segSeries: string, segSop: string): Promise<void> {
    try {
      const seg = await fetchSeriesIntoViewer(this.ctx, session.studyInstanceUID, segSeries, segSop);
      await showSegmentation(this.ctx, seg, session.seriesInstanceUID);
    } catch (err) {
      this.ctx.services.uiNotificationService.show({
        title: 'Structure stored, but not shown',
        message: `It is in the PACS (series ${segSeries}) but the viewer could not display it: ${(err as Error).message}. Reload the study to see it.`,
        type: 'warning',
        duration: 10000,
      });
    }
  }

  private async prompt(ref: ImageRef, change: { box: Box } | { point: PromptPoint }, t0: number): Promise<void> {
    const session = await this.ensureSession();
    if (!session) return;
    const slice = sliceOf(session, ref.sopInstanceUID, ref.frameNumber);
    if (slice === undefined) {
      this.fail({ code: 'INVALID_INPUT', message: 'The image shown is not part of the series the session was opened for.' });
      return;
    }
    const clamp = (v: number, max: number) => Math.min(Math.max(0, v), max - 1);
    const fit =
      'box' in change
        ? {
            box: [
              clamp(change.box[0], session.columns),
              clamp(change.box[1], session.rows),
              clamp(change.box[2], session.columns),
              clamp(change.box[3], session.rows),
            ] as Box,
          }
        : { point: { ...change.point, x: clamp(change.point.x, session.columns), y: clamp(change.point.y, session.rows) } };
    const prompt = nextPrompt(this.store.get().prompts[slice], fit);
    if (prompt.points.length > session.maxPoints) {
      this.fail({ code: 'INVALID_INPUT', message: `At most ${session.maxPoints} points per slice: undo one, or clear.` });
      return;
    }
    await this.send(slice, prompt, t0, { before: (s) => ({ ...withPrompt(s, slice, prompt), slice, error: undefined }) });
  }

  /**
   * Sends a slice's prompt; the answer is shown unless a newer prompt on the slice went out
   * meanwhile. The click-to-preview time is the request and the drawing of the preview. The request
   * goes out first. On a slice the server has encoded nothing else is drawn until the answer: the
   * prompt's marks and the panel come with the preview (or after QUICK_ANSWER_MS when it is late),
   * since drawing them meanwhile (the panel, the overlay, the browser's frame) takes cores that
   * the decoder needs where browser and server share a small machine. On a slice not yet encoded
   * (the encoder's time), and for a resync, they are drawn at once.
   */
  private async send(
    slice: number,
    prompt: SlicePrompt,
    t0: number,
    options: { resync?: boolean; before?: (s: InteractiveState) => InteractiveState } = {},
  ): Promise<void> {
    const order = ++this.order;
    this.latest.set(slice, order);
    let waiting: ReturnType<typeof setTimeout> | undefined;
    let drawn = false;
    try {
      const session = this.store.get().session ?? (await this.ensureSession());
      if (!session) return;
      const body = {
        slice,
        ...(prompt.box ? { box: prompt.box } : {}),
        ...(prompt.points.length ? { points: prompt.points } : {}),
      };
      const request = this.withSession((id) => this.api.prompt(id, body));
      this.store.update((s) => {
        const next = options.before ? options.before(s) : s;
        return { ...next, busy: next.busy ?? 'prompt' };
      }, false);
      const draw = () => {
        this.store.notify();
        this.tools.refresh();
      };
      // A prompt on an encoded slice: a quick answer. An undo's resync is drawn at once (its
      // disabled buttons: a second Undo must wait for it, as the user sees).
      if (!options.resync && this.encoded.has(slice)) waiting = setTimeout(draw, QUICK_ANSWER_MS);
      else draw();
      const answer = await request;
      this.encoded.add(slice);
      if (this.latest.get(slice) !== order) return;
      const bits = decodeBits(answer.mask.bits);
      this.store.update((s) => setMask(s, slice, { bits, iou: answer.iou, dirty: false }), false);
      this.tools.refresh();
      drawn = true;
      const shown = performance.now();
      this.store.update(
        (s) => ({
          ...s,
          serverMs: answer.timingsMs?.server,
          ...(options.resync ? {} : { previewMs: shown - t0, hint: this.hintFor(prompt, bits) }),
        }),
        false,
      );
    } catch (err) {
      this.fail(toErrorInfo(err));
    } finally {
      clearTimeout(waiting);
      // The panel after the preview; the marks too where no preview was drawn (an error, a newer prompt).
      this.store.update((s) => ({ ...s, busy: s.busy === 'prompt' ? undefined : s.busy }));
      if (!drawn) this.tools.refresh();
    }
  }

  private hintFor(prompt: SlicePrompt, bits: Uint8Array): string | undefined {
    if (prompt.box) return undefined;
    const active = this.panel.get().active;
    const model = active ? chosenPromptable(this.panel.get().models, active.modality, this.store.get().chosenModel) : undefined;
    if (clicksNeedBox(model) || isEmptyMask(bits))
      return 'This model segments from a box: draw a box around the structure first; clicks then refine it (Shift-click removes).';
    return undefined;
  }

  /**
   * An action asked for while a prompt's answer is out runs once the answer is in, instead of being
   * dropped: on an encoded slice the panel is not redrawn for up to QUICK_ANSWER_MS, so its buttons
   * (and Enter) still look usable then. Returns whether the action was put off.
   */
  private afterPrompt(action: () => void): boolean {
    if (this.store.get().busy !== 'prompt') return false;
    const off = this.store.subscribe((s) => {
      if (s.busy !== undefined) return;
      off();
      action();
    });
    return true;
  }

  /** Runs a call with the session's id, opening a new session once if the server forgot this one (expired). */
  private async withSession<T>(call: (id: string) => Promise<T>): Promise<T> {
    const session = this.store.get().session!;
    try {
      return await call(session.sessionId);
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 'NOT_FOUND' && /session/.test(err.message))) throw err;
      this.store.update((s) => ({
        ...s,
        session: undefined,
        masks: Object.fromEntries(Object.entries(s.masks).map(([k, m]) => [k, { ...m, dirty: true }])),
      }));
      this.encoded.clear();
      this.dropAhead();
      const fresh = await this.ensureSession();
      if (!fresh) throw err;
      return call(fresh.sessionId);
    }
  }

  /** The session on the active series with the chosen promptable model, opened on first need. */
  private ensureSession(): Promise<InteractiveSession | undefined> {
    const s = this.store.get();
    const active = this.panel.get().active;
    if (s.session && active && s.session.seriesInstanceUID === active.seriesInstanceUID) return Promise.resolve(s.session);
    if (this.opening) return this.opening;
    if (!active) return Promise.resolve(undefined);
    const model = chosenPromptable(this.panel.get().models, active.modality, s.chosenModel);
    if (!model) {
      this.fail({ code: 'NOT_FOUND', message: `No installed model takes prompts on ${active.modality} images.` });
      return Promise.resolve(undefined);
    }
    this.store.update((x) => ({ ...x, opening: true }));
    this.opening = this.api
      .openSession({ studyInstanceUID: active.studyInstanceUID, seriesInstanceUID: active.seriesInstanceUID, model: model.name })
      .then((session) => {
        this.store.update((x) => ({ ...x, session, opening: false }));
        this.onImage(this.tools.currentImage());
        return session;
      })
      .catch((err: unknown) => {
        this.store.update((x) => ({ ...x, opening: false }));
        this.fail(toErrorInfo(err));
        return undefined;
      })
      .finally(() => {
        this.opening = undefined;
      });
    return this.opening;
  }

  /** A new active series (or model): the structure being drawn belongs to the old one; close its session. */
  private followSeries(): void {
    const s = this.store.get();
    const active = this.panel.get().active;
    if (s.session && s.session.seriesInstanceUID !== active?.seriesInstanceUID) void this.reset();
  }

  private async reset(): Promise<void> {
    const old = this.store.get().session;
    this.cancelPropagation();
    this.latest.clear();
    this.encoded.clear();
    this.dropAhead();
    clearTimeout(this.dwell);
    this.store.update((s) => ({ ...cleared(s), session: undefined, slice: undefined, accepted: undefined }));
    this.tools.refresh();
    if (old) await this.api.closeSession(old.sessionId).catch(() => undefined);
    if (this.store.get().tool !== 'none') void this.ensureSession();
  }

  private onImage(ref: ImageRef | undefined): void {
    const slice = ref ? sliceOf(this.store.get().session, ref.sopInstanceUID, ref.frameNumber) : undefined;
    if (slice !== this.store.get().slice) this.store.update((s) => ({ ...s, slice }));
    this.encodeAhead();
  }

  /**
   * Once the user has stayed ENCODE_AHEAD_DWELL_MS on the slice shown, the server encodes it
   * (sliceToEncodeAhead); the request is cancelled when the user moves on (aheadUnwanted).
   */
  private encodeAhead(): void {
    clearTimeout(this.dwell);
    const s = this.store.get();
    if (this.ahead && aheadUnwanted(s, this.ahead.slice)) this.dropAhead();
    const slice = sliceToEncodeAhead(s, this.encoded, this.askedAhead());
    if (slice === undefined || !s.session) return;
    const session = s.session;
    this.dwell = setTimeout(() => {
      const now = this.store.get();
      if (now.session !== session || sliceToEncodeAhead(now, this.encoded, this.askedAhead()) !== slice) return;
      const ahead = { slice, abort: new AbortController() };
      this.ahead = ahead;
      this.api
        .encode(session.sessionId, slice, ahead.abort.signal)
        .then(() => this.store.get().session === session && this.encoded.add(slice))
        .catch(() => undefined) // cancelled, or the first prompt there encodes it and says what failed
        .finally(() => {
          if (this.ahead === ahead) this.ahead = undefined;
        });
    }, ENCODE_AHEAD_DWELL_MS);
  }

  private askedAhead(): ReadonlySet<number> {
    return new Set(this.ahead ? [this.ahead.slice] : []);
  }

  private dropAhead(): void {
    this.ahead?.abort.abort();
    this.ahead = undefined;
  }

  private overlay(ref: ImageRef) {
    const s = this.store.get();
    const slice = sliceOf(s.session, ref.sopInstanceUID, ref.frameNumber);
    if (slice === undefined || !s.session) return {};
    const mask = s.masks[slice];
    const choice = STRUCTURES.find((c) => c.key === s.label.key);
    return {
      mask: mask
        ? { bits: mask.bits, rows: s.session.rows, columns: s.session.columns, color: choice?.color ?? FREE_TEXT_COLOR }
        : undefined,
      prompt: s.prompts[slice],
    };
  }

  /** Enter stores, Escape clears, while the section has something (a tool on, or masks). */
  private onKey(e: KeyboardEvent): void {
    const s = this.store.get();
    if (s.tool === 'none' && maskedSlices(s).length === 0) return;
    const target = e.target as HTMLElement | null;
    const typing = target?.tagName === 'INPUT' && target.getAttribute('data-cy') !== 'ldfsam-label-text';
    // A focused button, list or other field handles its own keys.
    if (typing || ['TEXTAREA', 'SELECT', 'BUTTON'].includes(target?.tagName ?? '')) return;
    if (e.key === 'Enter' && maskedSlices(s).length > 0) {
      e.preventDefault();
      e.stopPropagation();
      void this.accept();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      this.clear();
    }
  }

  private fail(error: { code: string; message: string }): void {
    this.store.update((s) => ({ ...s, error }));
    this.ctx.services.uiNotificationService.show({
      title: `Interactive segmentation: ${error.code}`,
      message: `${describeError(error.code)} ${error.message}`.trim(),
      type: 'error',
      duration: 8000,
    });
  }
}

function toErrorInfo(err: unknown): { code: string; message: string } {
  if (err instanceof ApiError) return { code: err.code, message: err.message };
  return { code: 'INTERNAL', message: (err as Error)?.message ?? String(err) };
}
