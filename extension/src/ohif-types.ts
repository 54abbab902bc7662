/**
 * The parts of OHIF's services this extension touches, typed after @ohif/core 3.13's own
 * declarations (platform/core/src/services/*). The npm package @ohif/core publishes no type
 * declarations (its `types` field names src/types/index.ts, which is not in the package; checked
 * for 3.11.0 and 3.13.2), so these narrow interfaces stand in for them. Keep them to what we call.
 */

export interface DisplaySet {
  displaySetInstanceUID: string;
  StudyInstanceUID: string;
  SeriesInstanceUID: string;
  /** A SEG display set's own instance. */
  SOPInstanceUID?: string;
  Modality: string;
  SeriesDescription?: string;
  SeriesNumber?: number | string;
  numImageFrames?: number;
  instances?: unknown[];
  isLoaded?: boolean;
  referencedDisplaySetInstanceUID?: string;
  load?: (options: { headers?: Record<string, string> }) => Promise<unknown>;
}

export interface Subscription {
  unsubscribe(): void;
}

export interface PubSubService {
  subscribe(event: string, callback: (payload: unknown) => void): Subscription;
  EVENTS: Record<string, string>;
}

export interface DisplaySetService extends PubSubService {
  getDisplaySetByUID(uid: string): DisplaySet | undefined;
  getActiveDisplaySets(): DisplaySet[];
  getDisplaySetsForSeries(seriesInstanceUID: string): DisplaySet[];
}

export interface ViewportGridService extends PubSubService {
  getActiveViewportId(): string;
  getDisplaySetsUIDsForViewport(viewportId: string): string[];
}

export interface UINotificationService {
  show(options: { title: string; message: string; type?: 'info' | 'success' | 'warning' | 'error'; duration?: number }): unknown;
}

export interface SegmentationService extends PubSubService {
  getSegmentations(): { segmentationId: string; label?: string; segments?: Record<string, unknown> }[];
  getSegmentationRepresentations(viewportId: string, filter?: { segmentationId?: string }): { segmentationId: string }[];
  addSegmentationRepresentation(
    viewportId: string,
    options: { segmentationId: string; type: 'Labelmap' | 'Contour' },
  ): Promise<void> | void;
}

export interface UserAuthenticationService {
  getAuthorizationHeader(): { Authorization?: string } | undefined;
  setServiceImplementation(impl: { getAuthorizationHeader?: () => { Authorization?: string } | undefined }): void;
}

/** OHIF's cornerstone viewport service: the cornerstone viewport (StackViewport, VolumeViewport) of a viewport id. */
export interface CornerstoneViewportService {
  getCornerstoneViewport(viewportId: string): unknown;
}

export interface Services {
  displaySetService: DisplaySetService;
  viewportGridService: ViewportGridService;
  uiNotificationService: UINotificationService;
  segmentationService: SegmentationService;
  userAuthenticationService: UserAuthenticationService;
  /** From @ohif/extension-cornerstone (present in the modes we run in). */
  cornerstoneViewportService?: CornerstoneViewportService;
}

export interface ServicesManager {
  services: Services;
}

export interface CommandsManager {
  runCommand(name: string, options?: Record<string, unknown>, context?: string): unknown;
}

/** A data source as OHIF's extension manager returns it (extension-default's DicomWebDataSource). */
export interface DataSource {
  retrieve: {
    series: {
      metadata(options: {
        StudyInstanceUID: string;
        filters?: { seriesInstanceUID?: string[] };
        madeInClient?: boolean;
        returnPromises?: boolean;
      }): Promise<unknown>;
    };
  };
  query: {
    series: { search(studyInstanceUID: string): Promise<unknown[]> };
  };
}

export interface ExtensionManager {
  getActiveDataSource(): DataSource[];
  getModuleEntry(id: string): unknown;
}

export interface PreRegistrationArgs {
  servicesManager: ServicesManager;
  commandsManager: CommandsManager;
  extensionManager: ExtensionManager;
  appConfig: { ldfsam?: LdfsamSettings } & Record<string, unknown>;
}

/** What the server puts in app-config.js as window.config.ldfsam (server/src/viewer/app-config.ts). */
export interface LdfsamSettings {
  apiBase: string;
  version: string;
  token?: string;
  dataSourceName: string;
}
