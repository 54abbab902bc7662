/** `ldfsam gpu setup` (= npm run setup:gpu) and `ldfsam gpu check`: onnxruntime-node's CUDA provider. */
import { join } from 'node:path';
import type { Command } from 'commander';
import { gpuReport, setupGpu, type GpuReport } from '../../inference/gpu-setup.js';
import { action, configFrom, printJson, type CommonFlags } from '../context.js';

interface GpuFlags extends CommonFlags {
  dir?: string;
  cache?: string;
  keepWheels?: boolean;
  python?: string;
}

export function registerGpu(program: Command): void {
  const gpu = program
    .command('gpu')
    .description("onnxruntime-node's CUDA provider: install it (opt-in) and check what this machine has");

  gpu
    .command('setup')
    .description(
      "install onnxruntime-node's CUDA provider from PyPI (onnxruntime-gpu of the same ORT version + NVIDIA's CUDA and cuDNN wheels), " +
        'check versions and that every library resolves, and say what this machine lacks (exit 3 when it lacks something)',
    )
    .option(
      '--dir <folder>',
      "where the libraries go (default: onnxruntime-node's native folder, where onnxruntime loads providers)",
    )
    .option('--cache <folder>', 'download folder (default <data dir>/gpu)')
    .option('--keep-wheels', 'keep the downloaded wheels (about 1.5 GB) for a re-run')
    .option('--python <exe>', 'the Python whose pip downloads (default models/.venv/bin/python, else python3)')
    .option('--json', 'print the final check as JSON')
    .action(
      action(async (flags: GpuFlags) => {
        const config = configFrom(flags);
        const report = await setupGpu({
          libraryDir: flags.dir,
          cacheDir: flags.cache ?? join(config.dataDir, 'gpu'),
          keepWheels: flags.keepWheels,
          python: flags.python,
          log: (line) => process.stderr.write(`${line}\n`),
        });
        show(report, flags.json === true);
      }),
    );

  gpu
    .command('check')
    .description(
      'report the driver, the GPUs, the CUDA provider libraries and whether onnxruntime runs on CUDA here (exit 3 when it does not)',
    )
    .option('--dir <folder>', "the libraries' folder (default: onnxruntime-node's native folder)")
    .option('--json', 'print the report as JSON')
    .action(action(async (flags: GpuFlags) => show(await gpuReport(flags.dir), flags.json === true)));
}

function show(report: GpuReport, json: boolean): void {
  if (json) printJson(report);
  else {
    const d = report.driver;
    const lines = [
      `onnxruntime-node ${report.ortNodeVersion}, libraries in ${report.libraryDir}`,
      `driver: ${d ? `${d.driverVersion} (CUDA ${d.cudaVersion})` : 'none (no nvidia-smi)'}`,
      `GPUs: ${d && d.gpus.length ? d.gpus.map((g) => `${g.index}: ${g.name}, ${g.memoryMiB} MiB`).join('; ') : 'none'}`,
      `CUDA provider library: ${report.providerLibrary ? 'installed' : 'not installed'}${report.installed ? ` (ORT ${report.installed.ortVersion}, CUDA ${report.installed.cudaVersion}, ${report.installed.files} libraries)` : ''}`,
      ...(report.unresolved.length ? [`unresolved libraries: ${report.unresolved.join(', ')}`] : []),
      report.cudaUnavailable === null
        ? 'onnxruntime runs on CUDA here'
        : `onnxruntime cannot run on CUDA here: ${report.cudaUnavailable}`,
      ...(report.lacks.length ? ['this machine lacks:', ...report.lacks.map((l) => `  - ${l}`)] : []),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  if (report.cudaUnavailable !== null) process.exitCode = 3;
}
