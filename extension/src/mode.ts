/**
 * The "LDFSAM auto-segment" mode: OHIF's stock segmentation mode (its layout, tools and SEG
 * handling) with our panel first in the right-hand panels. Loaded by URL from
 * window.config.modes; OHIF awaits modeFactory and takes the mode instance it returns.
 */
import { PANEL_ID } from './ids.js';

interface LoadedMode {
  modeFactory(this: LoadedMode, args: { modeConfiguration?: unknown }): Record<string, unknown>;
}

const mode = {
  id: 'ldfsam-mode',
  async modeFactory({ loadModules }: { loadModules: (ids: string[]) => Promise<LoadedMode[]> }) {
    const [segmentation] = await loadModules(['@ohif/mode-segmentation']);
    if (!segmentation) throw new Error('LDFSAM mode: the segmentation mode is not part of this OHIF build');
    // The stock modeFactory applies immutability-helper commands to its own instance.
    const instance = segmentation.modeFactory.call(segmentation, {
      modeConfiguration: {
        id: { $set: 'ldfsam' },
        routeName: { $set: 'ldfsam' },
        displayName: { $set: 'LDFSAM auto-segment' },
        routes: { 0: { layoutInstance: { props: { rightPanels: { $unshift: [PANEL_ID] } } } } },
      },
    });
    return instance;
  },
};

export default mode;
