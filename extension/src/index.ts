/**
 * The LDFSAM OHIF extension: the "LDFSAM auto-segment" panel. Loaded at run time by the published
 * OHIF viewer from the URL in window.config.extensions (the server's generated app-config.js);
 * OHIF imports the module and takes its default export.
 */
import type { OutputFormat } from './api-client.js';
import { LdfsamApi } from './api-client.js';
import { AutoSegmentController } from './controller.js';
import { InteractiveController } from './interactive-controller.js';
import type { PreRegistrationArgs, LdfsamSettings } from './ohif-types.js';
import { movesWithClock } from './panel-state.js';
import { bindActions, renderPanel } from './panel-view.js';
import { domComponent } from './react-host.js';
import { EXTENSION_ID, PANEL_NAME } from './ids.js';

let controller: AutoSegmentController | undefined;
let interactive: InteractiveController | undefined;

const extension = {
  id: EXTENSION_ID,
  version: '0.1.0',

  preRegistration({ servicesManager, commandsManager, extensionManager, appConfig }: PreRegistrationArgs): void {
    const settings: LdfsamSettings = appConfig.ldfsam ?? { apiBase: '/api', version: '?', dataSourceName: '' };
    const auth = servicesManager.services.userAuthenticationService;
    if (settings.token) {
      // Static-token deployments: the server put the viewer's token in app-config.js; OHIF's data
      // source and image loader ask this service for the header of every request. With OIDC, OHIF
      // replaces this implementation with the signed-in user's token.
      const header = { Authorization: `Bearer ${settings.token}` };
      auth.setServiceImplementation({ getAuthorizationHeader: () => header });
    }
    const api = new LdfsamApi({
      apiBase: settings.apiBase,
      authorization: () => auth.getAuthorizationHeader()?.Authorization,
    });
    const ctx = { services: servicesManager.services, commandsManager, extensionManager };
    controller = new AutoSegmentController(api, ctx);
    interactive = new InteractiveController(api, ctx, controller.store);
    Object.assign(globalThis as object, { ldfsamPanel: controller, ldfsamInteractive: interactive });
  },

  getPanelModule() {
    return [
      {
        name: PANEL_NAME,
        iconName: 'tab-segmentation',
        iconLabel: 'Auto-segment',
        label: 'LDFSAM auto-segment',
        component: domComponent((container) => {
          const c = controller!;
          const ia = interactive!;
          c.start();
          ia.start();
          const root = document.createElement('div');
          root.className = 'ldfsam-panel';
          root.setAttribute('data-cy', 'ldfsam-panel');
          container.append(root);
          const actions = {
            segment: (force: boolean) => void c.segment(force),
            cancel: (jobId: string) => void c.cancel(jobId),
            chooseModel: (modality: string, name: string) => c.chooseModel(modality, name),
            chooseOutputs: (outputs: OutputFormat) => c.chooseOutputs(outputs),
            segmentStudy: () => void c.segmentStudy(),
            dismissRerun: () => c.dismissRerun(),
            showResult: (key: string) => void c.showResult(key),
            interactive: {
              tool: (t: 'box' | 'point') => ia.setTool(t),
              undo: () => ia.undo(),
              clear: () => ia.clear(),
              propagate: () => void ia.propagate(),
              cancelPropagation: () => ia.cancelPropagation(),
              accept: () => void ia.accept(),
              chooseModel: (modality: string, name: string) => ia.chooseModel(modality, name),
              label: (key: string, text?: string) => ia.setLabel(key, text),
            },
          };
          const unbind = bindActions(root, actions);
          const draw = () => renderPanel(root, c.store.get(), Date.now(), ia.store.get());
          const unsubscribers = [c.store.subscribe(draw), ia.store.subscribe(draw)];
          // Elapsed and remaining times move between server events; an idle panel is not redrawn.
          const clock = setInterval(() => movesWithClock(c.store.get()) && draw(), 1000);
          draw();
          return () => {
            clearInterval(clock);
            for (const u of unsubscribers) u();
            unbind();
            root.remove();
          };
        }, 'LdfsamAutoSegmentPanel'),
      },
    ];
  },
};

export default extension;
