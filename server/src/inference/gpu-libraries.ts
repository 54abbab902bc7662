/**
 * What `npm run setup:gpu` (ldfsam gpu setup) and `ldfsam gpu check` decide, as pure functions over
 * the texts they read: a wheel's METADATA, `ldd` output, `nvidia-smi` output.
 *
 * onnxruntime-node ships only the CPU library; its CUDA provider (libonnxruntime_providers_cuda.so
 * and libonnxruntime_providers_shared.so) must be the same ORT version, and PyPI's onnxruntime-gpu
 * wheel of that version carries both. The wheel's METADATA names, as its `cuda` and `cudnn` extras,
 * the NVIDIA wheels of the CUDA runtime, cuFFT, cuRAND, NVRTC and cuDNN it was built against (cuBLAS
 * comes with cuDNN). onnxruntime-gpu 1.30.0 on PyPI is built for CUDA 13.0, so it needs a driver
 * for CUDA 13 (R580 or newer).
 */

export interface WheelMetadata {
  name: string;
  version: string;
  /** Requirements of an extra, as written (e.g. "nvidia-curand~=10.0"). */
  extras: Record<string, string[]>;
}

/** Parses a wheel's METADATA (RFC 822 headers up to the first blank line). */
export function parseWheelMetadata(text: string): WheelMetadata {
  const header = text.split(/\r?\n\r?\n/, 1)[0] ?? '';
  const meta: WheelMetadata = { name: '', version: '', extras: {} };
  for (const line of header.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const key = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (key === 'name') meta.name = value;
    else if (key === 'version') meta.version = value;
    else if (key === 'provides-extra') meta.extras[value] ??= [];
    else if (key === 'requires-dist') {
      const m = /^(.*?)\s*;\s*extra\s*==\s*["']([^"']+)["']\s*$/.exec(value);
      if (m) (meta.extras[m[2]!] ??= []).push(m[1]!.replace(/\s+/g, ''));
    }
  }
  return meta;
}

/** The CUDA version a wheel was built for, from onnxruntime/capi/build_and_package_info.py. */
export function parseBuildInfo(text: string): { version?: string; cudaVersion?: string } {
  const get = (key: string) => new RegExp(`^${key}\\s*=\\s*['"]([^'"]+)['"]`, 'm').exec(text)?.[1];
  return { version: get('__version__'), cudaVersion: get('cuda_version') };
}

export interface GpuWheelPlan {
  /** Requirements to download (with their dependencies) for the CUDA and cuDNN libraries. */
  requirements: string[];
  cudaVersion: string;
}

/**
 * Checks that the onnxruntime-gpu wheel is the ORT version onnxruntime-node runs (the provider
 * libraries are built against one exact version of libonnxruntime) and says which NVIDIA wheels it
 * needs. Throws with both versions when they differ.
 */
export function planGpuWheels(
  ortNodeVersion: string,
  metadata: WheelMetadata,
  buildInfo: { version?: string; cudaVersion?: string },
): GpuWheelPlan {
  if (metadata.name.toLowerCase().replace(/_/g, '-') !== 'onnxruntime-gpu')
    throw new Error(`the wheel is ${metadata.name || 'unnamed'}, not onnxruntime-gpu`);
  if (metadata.version !== ortNodeVersion)
    throw new Error(
      `onnxruntime-gpu ${metadata.version} does not match onnxruntime-node ${ortNodeVersion}: the CUDA provider must be the same ORT version`,
    );
  if (buildInfo.version !== undefined && buildInfo.version !== ortNodeVersion)
    throw new Error(`the wheel's libraries are ORT ${buildInfo.version}, onnxruntime-node is ${ortNodeVersion}`);
  if (!buildInfo.cudaVersion) throw new Error('the wheel does not say which CUDA version it was built for');
  const requirements = [...(metadata.extras.cuda ?? []), ...(metadata.extras.cudnn ?? [])];
  if (requirements.length === 0) throw new Error('the wheel names no CUDA or cuDNN wheels (extras "cuda", "cudnn")');
  return { requirements, cudaVersion: buildInfo.cudaVersion };
}

export interface LddLine {
  soname: string;
  /** The file it resolves to, or null for "not found". */
  path: string | null;
}

/** `ldd` output lines: "libx.so.1 => /path/libx.so.1 (0x…)", "libx.so.1 => not found", "/lib64/ld-linux… (0x…)". */
export function parseLdd(text: string): LddLine[] {
  const out: LddLine[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const arrow = /^(\S+)\s+=>\s+(not found|\S+)/.exec(line);
    if (arrow) out.push({ soname: arrow[1]!, path: arrow[2] === 'not found' ? null : arrow[2]! });
    else if (/^\S+\s+\(0x[0-9a-f]+\)$/.test(line) && !line.startsWith('linux-vdso'))
      out.push({ soname: line.split(/\s+/)[0]!, path: line.split(/\s+/)[0]! });
  }
  return out;
}

/** The NVIDIA driver's own library: not installable from a registry, it comes with the driver. */
export const DRIVER_LIBRARY = 'libcuda.so.1';

/** Unresolved libraries, the driver's apart (its absence means "no driver", not a broken install). */
export function unresolved(lines: LddLine[]): { missing: string[]; driverMissing: boolean } {
  const notFound = lines.filter((l) => l.path === null).map((l) => l.soname);
  return { missing: notFound.filter((s) => s !== DRIVER_LIBRARY), driverMissing: notFound.includes(DRIVER_LIBRARY) };
}

export interface DriverInfo {
  driverVersion: string;
  /** The newest CUDA version the driver supports (nvidia-smi's header). */
  cudaVersion: string;
  gpus: { index: number; name: string; memoryMiB: number }[];
}

/**
 * From `nvidia-smi` (header: "Driver Version: 580.65.06  CUDA Version: 13.0") and
 * `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits`.
 */
export function parseNvidiaSmi(header: string, query: string): DriverInfo {
  const driverVersion = /Driver Version:\s*([0-9.]+)/.exec(header)?.[1] ?? '';
  const cudaVersion = /CUDA Version:\s*([0-9.]+)/.exec(header)?.[1] ?? '';
  const gpus = query
    .split('\n')
    .map((l) => l.split(',').map((c) => c.trim()))
    .filter((c) => c.length >= 3 && /^\d+$/.test(c[0]!))
    .map((c) => ({ index: Number(c[0]), name: c[1]!, memoryMiB: Number(c[2]) }));
  return { driverVersion, cudaVersion, gpus };
}

/** True when a driver supporting CUDA `have` runs a runtime built for CUDA `need` (same major, minor compatibility). */
export function driverSupports(have: string, need: string): boolean {
  const [hMajor = 0] = have.split('.').map(Number);
  const [nMajor = 0] = need.split('.').map(Number);
  return hMajor >= nMajor;
}

/** What this machine lacks for the CUDA provider, in plain words; empty when nothing. */
export function machineLacks(
  driver: DriverInfo | null,
  wheelCuda: string,
  libraries: { missing: string[]; driverMissing: boolean },
): string[] {
  const lacks: string[] = [];
  if (!driver) lacks.push('an NVIDIA driver (nvidia-smi is not installed or does not answer)');
  else {
    if (!driverSupports(driver.cudaVersion, wheelCuda))
      lacks.push(
        `a driver for CUDA ${wheelCuda}: driver ${driver.driverVersion} supports CUDA ${driver.cudaVersion} (CUDA 13 needs R580 or newer)`,
      );
    if (driver.gpus.length === 0) lacks.push('a GPU (nvidia-smi lists none)');
  }
  if (libraries.driverMissing && driver) lacks.push(`the driver's ${DRIVER_LIBRARY} on the library path`);
  if (libraries.driverMissing && !driver) lacks.push(`${DRIVER_LIBRARY} (installed with the driver)`);
  for (const m of libraries.missing) lacks.push(`${m} (a library the CUDA provider needs)`);
  return lacks;
}
