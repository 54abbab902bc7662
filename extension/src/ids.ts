/** Names OHIF knows our extension and panel by; shared by the extension and the mode bundles. */
export const EXTENSION_ID = 'ldfsam';
export const PANEL_NAME = 'ldfsamAutoSegment';
/** OHIF names a panel `${extension id}.panelModule.${name}`; the mode adds it by this id. */
export const PANEL_ID = `${EXTENSION_ID}.panelModule.${PANEL_NAME}`;
