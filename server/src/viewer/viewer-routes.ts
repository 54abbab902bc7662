/**
 * Serves the viewer on the API's origin: the prebuilt OHIF PWA from the pinned @ohif/app dist (as
 * is, but for our generated app-config.js), our extension and mode bundles under /ldfsam/, and
 * index.html for every other path, since OHIF routes on the client (/segmentation?StudyInstanceUIDs=…).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import express from 'express';
import { LdfsamError } from '../errors.js';
import { projectPath } from '../util/paths.js';
import { EXTENSION_URL, MODE_URL, renderAppConfig, type ViewerOptions } from './app-config.js';

export interface ViewerFiles {
  /** The OHIF dist folder (index.html, app.bundle.*.js, …). */
  ohifDist: string;
  ohifVersion: string;
  /** Our bundles (npm run build writes them to dist/extension/). */
  extensionFile: string;
  modeFile: string;
}

/** Finds the viewer's files; undefined with the reason when something is not installed. */
export function locateViewer(viewerDir?: string): { files: ViewerFiles } | { missing: string } {
  const ohifDist = viewerDir ?? projectPath('vendor', 'ohif-app', 'dist');
  if (!existsSync(join(ohifDist, 'index.html'))) {
    return { missing: `no OHIF viewer at ${ohifDist} (run npm run setup, or set LDFSAM_VIEWER_DIR)` };
  }
  const pkg = join(ohifDist, '..', 'package.json');
  const ohifVersion = existsSync(pkg) ? ((JSON.parse(readFileSync(pkg, 'utf8')) as { version?: string }).version ?? '?') : '?';
  const extensionFile = projectPath('dist', 'extension', 'ldfsam-extension.js');
  const modeFile = projectPath('dist', 'extension', 'ldfsam-mode.js');
  for (const f of [extensionFile, modeFile]) {
    if (!existsSync(f)) return { missing: `the OHIF extension is not built: ${f} is missing (run npm run build)` };
  }
  return { files: { ohifDist, ohifVersion, extensionFile, modeFile } };
}

export function viewerRouter(files: ViewerFiles, options: ViewerOptions): express.Router {
  const router = express.Router();
  const appConfig = renderAppConfig(options);
  const noStore = { 'cache-control': 'no-store' };
  router.get('/app-config.js', (_req, res) => void res.set(noStore).type('application/javascript').send(appConfig));
  router.get(EXTENSION_URL, (_req, res) => void res.set(noStore).type('application/javascript').sendFile(files.extensionFile));
  router.get(MODE_URL, (_req, res) => void res.set(noStore).type('application/javascript').sendFile(files.modeFile));
  // OHIF's hashed bundles may be cached for long; index.html must not be (it names the bundles).
  router.use(express.static(files.ohifDist, { index: false, maxAge: '1h', fallthrough: true }));
  const index = join(files.ohifDist, 'index.html');
  router.get(/^\/(?!api\/|api$|dicom-web\/|dicom-web$|health$).*/, (req, res, next) => {
    // A missing asset (a path with a file extension) is a 404, not the app's HTML.
    if (/\.[a-z0-9]{1,8}$/i.test(req.path) && !req.path.endsWith('.html'))
      return next(new LdfsamError('NOT_FOUND', 'no such file'));
    res.set(noStore).sendFile(index);
  });
  return router;
}
