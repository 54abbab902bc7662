/**
 * What the panel does, outside any component so that it outlives panel unmounts: follows the
 * active viewport, loads the models, submits jobs, follows their progress, and shows results.
 * One controller per viewer page (created in the extension's preRegistration).
 */
import { ApiError, type LdfsamApi, type Job, type OutputFormat } from './api-client.js';
import { describeError } from './messages.js';
import { fetchSeriesIntoViewer, showSegmentation, type OhifContext } from './ohif-results.js';
import {
  applyJob,
  initialState,
  isFinal,
  selectedModel,
  seriesKey,
  Store,
  type ActiveSeries,
  type PanelState,
} from './panel-state.js';

const OUTPUTS_KEY = 'ldfsam.outputs';

export class AutoSegmentController {
  readonly store = new Store<PanelState>({ ...initialState, outputs: savedOutputs() });
  private readonly following = new Map<string, AbortController>();
  private started = false;

  constructor(
    private readonly api: LdfsamApi,
    private readonly ctx: OhifContext,
  ) {}

  /** Starts watching the viewer (idempotent; called when the panel first mounts). */
  start(): void {
    if (this.started) return;
    this.started = true;
    const { viewportGridService, displaySetService } = this.ctx.services;
    const refresh = () => this.refreshActive();
    for (const [service, events] of [
      [viewportGridService, ['ACTIVE_VIEWPORT_ID_CHANGED', 'GRID_STATE_CHANGED', 'VIEWPORTS_READY']],
      [displaySetService, ['DISPLAY_SETS_ADDED', 'DISPLAY_SETS_CHANGED']],
    ] as const) {
      for (const name of events) {
        const event = service.EVENTS[name];
        if (event) service.subscribe(event, refresh);
      }
    }
    this.refreshActive();
    void this.loadModels();
  }

  async loadModels(): Promise<void> {
    try {
      const models = await this.api.models();
      this.store.update((s) => ({ ...s, models, modelsError: undefined }));
    } catch (err) {
      const e = toErrorInfo(err);
      this.store.update((s) => ({ ...s, modelsError: e }));
      this.notifyError(e);
    }
  }

  /** The image series in the active viewport (a SEG shown there counts as its source series). */
  refreshActive(): void {
    const { viewportGridService, displaySetService } = this.ctx.services;
    const viewportId = viewportGridService.getActiveViewportId();
    let active: ActiveSeries | undefined;
    if (viewportId) {
      for (const uid of viewportGridService.getDisplaySetsUIDsForViewport(viewportId) ?? []) {
        let ds = displaySetService.getDisplaySetByUID(uid);
        if (ds?.Modality === 'SEG' && ds.referencedDisplaySetInstanceUID)
          ds = displaySetService.getDisplaySetByUID(ds.referencedDisplaySetInstanceUID);
        if (!ds || ['SEG', 'SR', 'RTSTRUCT', 'PR'].includes(ds.Modality)) continue;
        active = {
          studyInstanceUID: ds.StudyInstanceUID,
          seriesInstanceUID: ds.SeriesInstanceUID,
          modality: ds.Modality,
          description: ds.SeriesDescription ?? '',
          sliceCount: ds.numImageFrames ?? ds.instances?.length ?? 0,
        };
        break;
      }
    }
    const prev = this.store.get().active;
    if (prev?.seriesInstanceUID === active?.seriesInstanceUID && prev?.sliceCount === active?.sliceCount) return;
    this.store.update((s) => ({ ...s, active, confirmRerun: undefined }));
  }

  chooseModel(modality: string, name: string): void {
    this.store.update((s) => ({ ...s, chosenModel: { ...s.chosenModel, [modality]: name } }));
  }

  /** The result format setting, kept in this browser. */
  chooseOutputs(outputs: OutputFormat): void {
    this.store.update((s) => ({ ...s, outputs }));
    try {
      globalThis.localStorage?.setItem(OUTPUTS_KEY, outputs);
    } catch {
      // storage disabled: the setting lasts for this page
    }
  }

  dismissRerun(): void {
    this.store.update((s) => ({ ...s, confirmRerun: undefined }));
  }

  /** Auto-segment the active series; `force` re-runs when a result exists. */
  async segment(force: boolean): Promise<void> {
    const state = this.store.get();
    const active = state.active;
    const model = selectedModel(state);
    if (!active || !model) return;
    const key = seriesKey(active.studyInstanceUID, active.seriesInstanceUID);
    if (state.runs[key] && !isFinal(state.runs[key])) return;
    this.setRun(key, { model: model.name, state: 'submitting', done: 0, total: active.sliceCount });
    this.store.update((s) => ({ ...s, confirmRerun: undefined }));
    try {
      const submitted = await this.api.submit({
        studyInstanceUID: active.studyInstanceUID,
        seriesInstanceUID: active.seriesInstanceUID,
        model: model.name,
        ...(force ? { force: true } : {}),
        ...(state.outputs !== 'seg' ? { outputs: state.outputs } : {}),
      });
      const job = await this.api.job(submitted.jobId);
      if (!submitted.created[0] && job.state === 'succeeded') {
        // The server already has this result: say so and offer to re-run instead of redoing it.
        this.setRun(key, { ...applyJob(undefined, job, Date.now()), earlier: true });
        this.store.update((s) => ({ ...s, confirmRerun: key }));
        return;
      }
      this.track(key, job);
    } catch (err) {
      this.failRun(key, toErrorInfo(err));
    }
  }

  /** Every series of the active study that a registered model accepts, each followed on its own. */
  async segmentStudy(): Promise<void> {
    const active = this.store.get().active;
    if (!active) return;
    const study = active.studyInstanceUID;
    this.store.update((s) => ({ ...s, batch: { studyInstanceUID: study, keys: [] } }));
    try {
      const outputs = this.store.get().outputs;
      const submitted = await this.api.submit({ studyInstanceUID: study, ...(outputs !== 'seg' ? { outputs } : {}) });
      const keys: string[] = [];
      for (const id of submitted.jobIds) {
        const job = await this.api.job(id);
        const key = seriesKey(study, job.request.seriesInstanceUID);
        keys.push(key);
        this.setRun(key, { ...applyJob(undefined, job, Date.now()), earlier: job.state === 'succeeded' });
        if (!isFinal(this.store.get().runs[key]!)) this.track(key, job, { show: false });
      }
      this.store.update((s) => ({ ...s, batch: { studyInstanceUID: study, keys } }));
    } catch (err) {
      const e = toErrorInfo(err);
      this.store.update((s) => ({ ...s, batch: { studyInstanceUID: study, keys: s.batch?.keys ?? [], error: e } }));
      this.notifyError(e);
    }
  }

  async cancel(jobId: string): Promise<void> {
    try {
      await this.api.cancel(jobId);
    } catch (err) {
      this.notifyError(toErrorInfo(err));
    }
  }

  /** Shows an existing result (from the re-run question). */
  async showResult(key: string): Promise<void> {
    this.dismissRerun();
    const run = this.store.get().runs[key];
    const [study, series] = key.split('|') as [string, string];
    for (const uid of [run?.segSeriesInstanceUID, run?.rtstructSeriesInstanceUID])
      if (uid) await this.display(study, series, uid);
  }

  private track(key: string, job: Job, options: { show?: boolean } = { show: true }): void {
    this.setRun(key, applyJob(this.store.get().runs[key], job, Date.now()));
    if (this.following.has(job.id)) return;
    const abort = new AbortController();
    this.following.set(job.id, abort);
    void this.api
      .follow(job.id, (j) => this.setRun(key, applyJob(this.store.get().runs[key], j, Date.now())), abort.signal)
      .then(async (final) => {
        const run = this.store.get().runs[key]!;
        const [study, series] = key.split('|') as [string, string];
        if (final.state === 'succeeded') {
          const stored = [final.result?.segSeriesInstanceUID, final.result?.rtstructSeriesInstanceUID].filter((u): u is string =>
            Boolean(u),
          );
          const words = final.result?.message ? ` ${final.result.message}` : '';
          const notes = final.result?.notes?.length ? ` ${final.result.notes.join(' ')}` : '';
          this.ctx.services.uiNotificationService.show({
            title: stored.length > 0 ? 'Auto-segmentation done' : 'Auto-segmentation: nothing found',
            message:
              stored.length > 0
                ? `${run.model}:${words || ` ${plural(final.result!.slices, 'slice')} segmented.`} The result is stored in the PACS.${notes}`
                : `${run.model}:${words || ` nothing was found on ${plural(final.result?.slices ?? 0, 'slice')}; no segmentation was stored.`}`,
            type: stored.length === 0 ? 'info' : notes ? 'warning' : 'success',
            duration: stored.length > 0 && !notes ? 5000 : 10000,
          });
          // The SEG first (drawn as a labelmap), then the RTSTRUCT (drawn as contours).
          for (const uid of stored) await this.display(study, series, uid, options.show !== false);
        } else if (final.state === 'failed' && final.error) {
          this.notifyError({ code: final.error.code, message: final.error.message });
        }
      })
      .catch((err: unknown) => this.failRun(key, toErrorInfo(err)))
      .finally(() => this.following.delete(job.id));
  }

  /** Brings a stored SEG into the study browser, and over the images when `draw`. */
  private async display(study: string, series: string, segSeries: string, draw = true): Promise<void> {
    try {
      const seg = await fetchSeriesIntoViewer(this.ctx, study, segSeries);
      if (draw) await showSegmentation(this.ctx, seg, series);
    } catch (err) {
      this.ctx.services.uiNotificationService.show({
        title: 'Segmentation stored, but not shown',
        message: `The result is in the PACS (series ${segSeries}) but the viewer could not display it: ${(err as Error).message}. Reload the study to see it.`,
        type: 'warning',
        duration: 10000,
      });
    }
  }

  private setRun(key: string, run: PanelState['runs'][string]): void {
    this.store.update((s) => ({ ...s, runs: { ...s.runs, [key]: run } }));
  }

  private failRun(key: string, error: { code: string; message: string }): void {
    const prev = this.store.get().runs[key];
    this.setRun(key, {
      model: prev?.model ?? '',
      done: prev?.done ?? 0,
      total: prev?.total ?? 0,
      ...prev,
      state: 'failed',
      error,
      finishedAt: Date.now(),
    });
    this.notifyError(error);
  }

  private notifyError(error: { code: string; message: string }): void {
    this.ctx.services.uiNotificationService.show({
      title: `Auto-segmentation: ${error.code}`,
      message: `${describeError(error.code)} ${error.message}`.trim(),
      type: 'error',
      duration: 10000,
    });
  }
}

function savedOutputs(): OutputFormat {
  try {
    const saved = globalThis.localStorage?.getItem(OUTPUTS_KEY);
    return saved === 'rtstruct' || saved === 'both' ? saved : 'seg';
  } catch {
    return 'seg';
  }
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function toErrorInfo(err: unknown): { code: string; message: string } {
  if (err instanceof ApiError) return { code: err.code, message: err.message };
  return { code: 'INTERNAL', message: (err as Error)?.message ?? String(err) };
}
