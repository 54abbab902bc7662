/** LDFSAM_PROVIDER: auto falls back to the CPU with one line saying why, cuda stops with the reason, cpu probes nothing. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/src/config.js';
import { addModel, matmulModel } from '../../server/src/inference/onnx-graph.js';
import {
  CUDA_PROVIDER_LIBRARY,
  cudaUnavailableReason,
  onnxruntimeBinDir,
  resolveProvider,
} from '../../server/src/inference/providers.js';

/** A folder that looks like onnxruntime-node's with the CUDA provider library in it. */
function withLibrary(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ort-bin-'));
  writeFileSync(join(dir, CUDA_PROVIDER_LIBRARY), 'not a real library');
  return dir;
}

describe('execution provider choice', () => {
  it('cpu probes nothing', async () => {
    let probed = 0;
    const choice = await resolveProvider('cpu', { libraryDir: withLibrary(), probe: async () => void probed++ });
    expect(choice).toEqual({ provider: 'cpu', wanted: 'cpu', device: null });
    expect(probed).toBe(0);
  });

  it('auto without the provider library: the CPU, and one line naming the missing file', async () => {
    const lines: string[] = [];
    const empty = mkdtempSync(join(tmpdir(), 'ort-bin-'));
    const choice = await resolveProvider('auto', { libraryDir: empty, log: (l) => lines.push(l) });
    expect(choice).toMatchObject({ provider: 'cpu', wanted: 'auto', device: null });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(join(empty, CUDA_PROVIDER_LIBRARY));
    expect(lines[0]).toContain('npm run setup:gpu');
    expect(choice.fallbackReason).toBe(lines[0]!.replace(/^inference on the CPU: /, ''));
  });

  it('auto with the library but a failing CUDA (no driver, no GPU): the CPU, and the reason onnxruntime gave', async () => {
    const lines: string[] = [];
    const choice = await resolveProvider('auto', {
      libraryDir: withLibrary(),
      probe: async () => {
        throw new Error('CUDA failure 100: no CUDA-capable device is detected\nmore detail');
      },
      log: (l) => lines.push(l),
    });
    expect(choice.provider).toBe('cpu');
    expect(lines).toEqual([
      'inference on the CPU: the CUDA provider does not run here: CUDA failure 100: no CUDA-capable device is detected',
    ]);
  });

  it('auto when the probe runs: CUDA, device 0, nothing logged', async () => {
    const lines: string[] = [];
    const choice = await resolveProvider('auto', {
      libraryDir: withLibrary(),
      probe: async () => undefined,
      log: (l) => lines.push(l),
    });
    expect(choice).toEqual({ provider: 'cuda', wanted: 'auto', device: 0 });
    expect(lines).toEqual([]);
  });

  it('cuda that cannot run stops with CONFIG_INVALID and the reason', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'ort-bin-'));
    await expect(resolveProvider('cuda', { libraryDir: empty })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringMatching(
        /^LDFSAM_PROVIDER=cuda \(--provider cuda\), but CUDA cannot run: .*is missing; run npm run setup:gpu/,
      ),
    });
  });

  it('on this machine (no GPU, no provider library) auto is the CPU and cuda is refused', async () => {
    // The real onnxruntime-node folder and the real probe.
    expect(await cudaUnavailableReason()).toMatch(/CUDA provider library is not installed/);
    expect(onnxruntimeBinDir()).toMatch(/onnxruntime-node\/bin\/napi-v6\/linux\/x64$/);
    await expect(resolveProvider('cuda')).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    expect((await resolveProvider('auto', { log: () => undefined })).provider).toBe('cpu');
  });

  it("the real probe reaches onnxruntime's CUDA provider and reports its failure", async () => {
    // The library check passes (a file in a folder of our own), so onnxruntime itself is asked for
    // CUDA: on this machine it cannot load its provider library and says so.
    const reason = await cudaUnavailableReason({ libraryDir: withLibrary() });
    expect(reason).toMatch(/^the CUDA provider does not run here: .*(Failed to load|CUDA)/i);
  });

  it('the probe and matrix-product graphs are valid models: y = x + x, c = a x b on the CPU', async () => {
    const session = await ort.InferenceSession.create(addModel());
    const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from([1.5]), [1]) });
    expect(Array.from(out.y!.data as Float32Array)).toEqual([3]);
    await session.release();
    const mm = await ort.InferenceSession.create(matmulModel(2));
    const a = new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4]), [2, 2]);
    expect(Array.from((await mm.run({ a, b: a })).c!.data as Float32Array)).toEqual([7, 10, 15, 22]);
    await mm.release();
  });
});

describe('LDFSAM_PROVIDER in the config', () => {
  it('defaults to auto, takes LDFSAM_PROVIDER, still reads the older LDFSAM_EXECUTION_PROVIDER, refuses others', () => {
    expect(loadConfig({ env: {} }).provider).toBe('auto');
    expect(loadConfig({ env: { LDFSAM_PROVIDER: 'cpu' } }).provider).toBe('cpu');
    expect(loadConfig({ env: { LDFSAM_EXECUTION_PROVIDER: 'cuda' } }).provider).toBe('cuda');
    expect(loadConfig({ env: { LDFSAM_EXECUTION_PROVIDER: 'cuda', LDFSAM_PROVIDER: 'cpu' } }).provider).toBe('cpu');
    expect(loadConfig({ env: { LDFSAM_PROVIDER: 'cpu' }, flags: { provider: 'cuda' } }).provider).toBe('cuda');
    expect(() => loadConfig({ env: { LDFSAM_PROVIDER: 'tpu' } })).toThrow(/provider \(LDFSAM_PROVIDER\)/);
    expect(loadConfig({ env: {} }).batchSize).toBeUndefined();
    expect(loadConfig({ env: { LDFSAM_BATCH_SIZE: '32' } }).batchSize).toBe(32);
  });
});
