/**
 * Showing a SEG that the server stored in the PACS while the viewer is open on its study: make
 * OHIF fetch the new series (so it appears in the study browser), load it, and draw it over the
 * images in the viewport, without the "open this segmentation?" prompt.
 */
import type { CommandsManager, DataSource, DisplaySet, ExtensionManager, Services } from './ohif-types.js';

export interface OhifContext {
  services: Services;
  commandsManager: CommandsManager;
  extensionManager: ExtensionManager;
}

interface WadoDataSource extends DataSource {
  getConfig?: () => { name?: string };
  deleteStudyMetadataPromise?: (key: string) => void;
}

/**
 * Fetches one series' metadata into OHIF through its own data source (so OHIF makes the display
 * sets). With `sopInstanceUID`, the display set of that instance: an interactive SEG series gains an
 * instance per stored structure, and OHIF makes a display set per SEG instance.
 */
export async function fetchSeriesIntoViewer(
  ctx: OhifContext,
  studyInstanceUID: string,
  seriesInstanceUID: string,
  sopInstanceUID?: string,
): Promise<DisplaySet> {
  const find = () =>
    ctx.services.displaySetService
      .getDisplaySetsForSeries(seriesInstanceUID)
      .find(
        (ds) =>
          !sopInstanceUID ||
          ds.SOPInstanceUID === sopInstanceUID ||
          ds.instances?.some((i) => (i as { SOPInstanceUID?: string }).SOPInstanceUID === sopInstanceUID),
      );
  const existing = find();
  if (existing) return existing;
  const dataSource = ctx.extensionManager.getActiveDataSource()[0] as WadoDataSource;
  // OHIF 3.13 caches study metadata under "<data source name>:<study UID>" but its
  // deleteStudyMetadataPromise(study) deletes the key "<study UID>", so a second retrieve would
  // return the cached study without the new series. Delete the key it really uses, before and after.
  const cacheKey = `${dataSource.getConfig?.().name}:${studyInstanceUID}`;
  dataSource.deleteStudyMetadataPromise?.(cacheKey);
  const added = waitForDisplaySet(ctx, find, seriesInstanceUID, 30_000);
  try {
    await dataSource.retrieve.series.metadata({
      StudyInstanceUID: studyInstanceUID,
      filters: { seriesInstanceUID: [seriesInstanceUID] },
    });
  } finally {
    dataSource.deleteStudyMetadataPromise?.(cacheKey);
  }
  return added;
}

function waitForDisplaySet(
  ctx: OhifContext,
  check: () => DisplaySet | undefined,
  seriesInstanceUID: string,
  timeoutMs: number,
): Promise<DisplaySet> {
  const service = ctx.services.displaySetService;
  return new Promise((resolve, reject) => {
    const found = check();
    if (found) return resolve(found);
    const subs = ['DISPLAY_SETS_ADDED', 'DISPLAY_SETS_CHANGED']
      .map((name) => service.EVENTS[name])
      .filter((e): e is string => Boolean(e))
      .map((event) =>
        service.subscribe(event, () => {
          const ds = check();
          if (!ds) return;
          clearTimeout(timer);
          for (const s of subs) s.unsubscribe();
          resolve(ds);
        }),
      );
    const timer = setTimeout(() => {
      for (const s of subs) s.unsubscribe();
      reject(new Error(`the viewer did not receive series ${seriesInstanceUID} within ${timeoutMs / 1000} s`));
    }, timeoutMs);
  });
}

/** The viewport showing a series (the active one first), if any. */
export function viewportShowing(ctx: OhifContext, seriesInstanceUID: string): string | undefined {
  const grid = ctx.services.viewportGridService;
  const active = grid.getActiveViewportId();
  const shows = (viewportId: string) =>
    grid
      .getDisplaySetsUIDsForViewport(viewportId)
      .some((uid) => ctx.services.displaySetService.getDisplaySetByUID(uid)?.SeriesInstanceUID === seriesInstanceUID);
  if (active && shows(active)) return active;
  const state = (grid as unknown as { getState?: () => { viewports?: Map<string, unknown> } }).getState?.();
  for (const id of state?.viewports?.keys() ?? []) if (shows(id)) return id;
  return undefined;
}

/** Loads a SEG or RTSTRUCT display set and draws it (labelmap or contours) in the viewport showing its source series. */
export async function showSegmentation(ctx: OhifContext, seg: DisplaySet, sourceSeriesInstanceUID: string): Promise<boolean> {
  const viewportId = viewportShowing(ctx, sourceSeriesInstanceUID) ?? ctx.services.viewportGridService.getActiveViewportId();
  if (!viewportId) return false;
  if (!seg.isLoaded && seg.load) {
    const auth = ctx.services.userAuthenticationService.getAuthorizationHeader()?.Authorization;
    await seg.load({ headers: auth ? { Authorization: auth } : {} });
  }
  // OHIF's own "load this SEG" (what its viewport badge runs): remembers the presentation for the
  // source series, so the overlay comes back when the user returns to it.
  await ctx.commandsManager.runCommand('hydrateSecondaryDisplaySet', { displaySet: seg, viewportId });
  // When the viewport already shows the source series, OHIF 3.13 does not re-render it with the
  // stored presentation; add the representation to it directly (OHIF draws an RTSTRUCT as
  // contours). The segmentation's id is the display set's UID
  // (segmentationService.createSegmentationForSEGDisplaySet / ForRTDisplaySet).
  const segmentationId = seg.displaySetInstanceUID;
  const service = ctx.services.segmentationService;
  if (service.getSegmentationRepresentations(viewportId, { segmentationId }).length === 0) {
    const type = seg.Modality === 'RTSTRUCT' ? 'Contour' : 'Labelmap';
    await service.addSegmentationRepresentation(viewportId, { segmentationId, type });
  }
  return true;
}
