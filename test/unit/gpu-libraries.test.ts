/** npm run setup:gpu's decisions, on the real onnxruntime-gpu 1.30.0 METADATA and real ldd output. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  driverSupports,
  machineLacks,
  parseBuildInfo,
  parseLdd,
  parseNvidiaSmi,
  parseWheelMetadata,
  planGpuWheels,
  unresolved,
} from '../../server/src/inference/gpu-libraries.js';
import { pipSaved } from '../../server/src/inference/gpu-setup.js';
import { projectPath } from '../../server/src/util/paths.js';

const fixture = (name: string) => readFileSync(projectPath('test', 'fixtures', 'gpu', name), 'utf8');
const metadata = parseWheelMetadata(fixture('onnxruntime_gpu-1.30.0.METADATA'));
const build = parseBuildInfo("package_name = 'onnxruntime-gpu'\n__version__ = '1.30.0'\ncuda_version = '13.0'\n");

describe('the onnxruntime-gpu wheel against onnxruntime-node', () => {
  it('reads name, version and the CUDA / cuDNN extras from METADATA', () => {
    expect(metadata.name).toBe('onnxruntime-gpu');
    expect(metadata.version).toBe('1.30.0');
    expect(metadata.extras.cuda).toEqual([
      'nvidia-cuda-nvrtc~=13.0',
      'nvidia-cuda-runtime~=13.0',
      'nvidia-cufft~=12.0',
      'nvidia-curand~=10.0',
    ]);
    expect(metadata.extras.cudnn).toEqual(['nvidia-cudnn-cu13~=9.0']);
    expect(build).toEqual({ version: '1.30.0', cudaVersion: '13.0' });
  });

  it('plans the NVIDIA wheels when the ORT versions are equal', () => {
    expect(planGpuWheels('1.30.0', metadata, build)).toEqual({
      requirements: [...metadata.extras.cuda!, ...metadata.extras.cudnn!],
      cudaVersion: '13.0',
    });
  });

  it('refuses another ORT version, another package, or a wheel without its CUDA build', () => {
    expect(() => planGpuWheels('1.29.1', metadata, build)).toThrow(
      'onnxruntime-gpu 1.30.0 does not match onnxruntime-node 1.29.1: the CUDA provider must be the same ORT version',
    );
    expect(() => planGpuWheels('1.30.0', { ...metadata, name: 'onnxruntime' }, build)).toThrow(/not onnxruntime-gpu/);
    expect(() => planGpuWheels('1.30.0', metadata, { version: '1.30.1', cudaVersion: '13.0' })).toThrow(/ORT 1.30.1/);
    expect(() => planGpuWheels('1.30.0', metadata, { version: '1.30.0' })).toThrow(/which CUDA version/);
    expect(() => planGpuWheels('1.30.0', { ...metadata, extras: {} }, build)).toThrow(/names no CUDA or cuDNN wheels/);
  });
});

describe('ldd, nvidia-smi and what the machine lacks', () => {
  const ldd = parseLdd(fixture('ldd-providers-cuda-no-driver.txt'));

  it('reads ldd: resolved libraries, the missing driver apart from the rest', () => {
    expect(ldd.find((l) => l.soname === 'libcublas.so.13')?.path).toBe('/opt/ort/bin/libcublas.so.13');
    expect(ldd.find((l) => l.soname === 'libcuda.so.1')?.path).toBeNull();
    expect(unresolved(ldd)).toEqual({ missing: [], driverMissing: true });
    expect(unresolved(parseLdd('\tlibcudart.so.13 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n'))).toEqual({
      missing: ['libcudart.so.13'],
      driverMissing: false,
    });
  });

  it('reads nvidia-smi and compares the driver with the CUDA build', () => {
    const header = '| NVIDIA-SMI 580.65.06              Driver Version: 580.65.06      CUDA Version: 13.0     |';
    const d = parseNvidiaSmi(header, '0, NVIDIA H100 80GB HBM3, 81559\n');
    expect(d).toEqual({
      driverVersion: '580.65.06',
      cudaVersion: '13.0',
      gpus: [{ index: 0, name: 'NVIDIA H100 80GB HBM3', memoryMiB: 81559 }],
    });
    expect(driverSupports('13.0', '13.0')).toBe(true);
    expect(driverSupports('13.1', '13.0')).toBe(true);
    expect(driverSupports('12.8', '13.0')).toBe(false);
    expect(machineLacks(d, '13.0', { missing: [], driverMissing: false })).toEqual([]);
  });

  it('says plainly what is missing', () => {
    expect(machineLacks(null, '13.0', unresolved(ldd))).toEqual([
      'an NVIDIA driver (nvidia-smi is not installed or does not answer)',
      'libcuda.so.1 (installed with the driver)',
    ]);
    const old = parseNvidiaSmi('Driver Version: 550.54.15      CUDA Version: 12.4', '');
    expect(machineLacks(old, '13.0', { missing: ['libcudnn.so.9'], driverMissing: false })).toEqual([
      'a driver for CUDA 13.0: driver 550.54.15 supports CUDA 12.4 (CUDA 13 needs R580 or newer)',
      'a GPU (nvidia-smi lists none)',
      'libcudnn.so.9 (a library the CUDA provider needs)',
    ]);
  });

  it("reads the wheels pip's download names", () => {
    expect(
      pipSaved(
        'Collecting x\nSaved ./w/onnxruntime_gpu-1.30.0-cp311-cp311-manylinux_2_28_x86_64.whl\nFile was already downloaded /w/nvidia_curand-10.4.5.25-py3-none-manylinux_2_27_x86_64.whl\nSuccessfully downloaded\n',
      ),
    ).toEqual([
      'onnxruntime_gpu-1.30.0-cp311-cp311-manylinux_2_28_x86_64.whl',
      'nvidia_curand-10.4.5.25-py3-none-manylinux_2_27_x86_64.whl',
    ]);
  });
});
