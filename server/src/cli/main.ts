#!/usr/bin/env node
/** The `ldfsam` command line. Each command lives in ./commands and has its own --help. */
import { Command } from 'commander';
import { growHeapLimit } from '../util/heap-growth.js';
import { packageVersion } from '../util/paths.js';
import { registerBench } from './commands/bench.js';
import { registerBenchInteractive } from './commands/bench-interactive.js';
import { registerEvalInteractive } from './commands/eval-interactive.js';
import { registerGpu } from './commands/gpu.js';
import { registerImportImages } from './commands/import-images.js';
import { registerInspect } from './commands/inspect.js';
import { registerPacs } from './commands/pacs.js';
import { registerSegment } from './commands/segment.js';
import { registerServe } from './commands/serve.js';
import { registerStart } from './commands/start.js';
import { registerWorker } from './commands/worker.js';

growHeapLimit();

const program = new Command('ldfsam')
  .description('LDFSAM auto-segmentation: reads studies from a DICOMweb PACS, writes DICOM SEG back')
  .version(packageVersion())
  .showHelpAfterError()
  .addHelpText(
    'after',
    '\nEnvironment: LDFSAM_DICOMWEB_URL, LDFSAM_PACS_HTTP_PORT, LDFSAM_PACS_DICOM_PORT, LDFSAM_PACS_DICOM_PEERS, ' +
      'LDFSAM_DATA_DIR, LDFSAM_ORTHANC_BIN, LDFSAM_ORTHANC_PLUGINS_DIR, LDFSAM_ALLOWED_HOSTS, LDFSAM_QUEUE, ' +
      'LDFSAM_STOP_TIMEOUT_MS, LDFSAM_PROVIDER, LDFSAM_CONFIG (see README.md).',
  );

registerStart(program);
registerPacs(program);
registerInspect(program);
registerSegment(program);
registerServe(program);
registerWorker(program);
registerBench(program);
registerBenchInteractive(program);
registerEvalInteractive(program);
registerImportImages(program);
registerGpu(program);

await program.parseAsync(process.argv);
