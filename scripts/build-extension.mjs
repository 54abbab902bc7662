// Bundles the OHIF extension and mode (extension/src, TypeScript) into two ES modules that the
// published OHIF viewer imports at run time: dist/extension/ldfsam-extension.js and ldfsam-mode.js.
// Type-checking is tsc's job (npm run typecheck); esbuild only strips types and bundles.
import { build } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const common = {
  bundle: true,
  format: 'esm',
  platform: 'browser',
  // OHIF 3.13 supports evergreen browsers only.
  target: ['chrome110', 'firefox115', 'safari16'],
  sourcemap: true,
  legalComments: 'none',
  logLevel: 'warning',
};
await Promise.all([
  build({
    ...common,
    entryPoints: [join(root, 'extension/src/index.ts')],
    outfile: join(root, 'dist/extension/ldfsam-extension.js'),
  }),
  build({ ...common, entryPoints: [join(root, 'extension/src/mode.ts')], outfile: join(root, 'dist/extension/ldfsam-mode.js') }),
]);
