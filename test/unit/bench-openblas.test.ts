/** The bench's OpenBLAS kernel choice: SkylakeX only where the CPU has AVX-512 (elsewhere it dies of SIGILL). */
import { describe, expect, it } from 'vitest';
import { openblasCoreType } from '../../server/src/bench/model-under-test.js';

describe('openblasCoreType', () => {
  it('asks for SkylakeX on an AVX-512 CPU and for nothing on an AVX2-only one', () => {
    const line = (flags: string) => `processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 ${flags}\n`;
    expect(openblasCoreType(line('avx2 avx512f avx512_vnni avx512_bf16'))).toEqual({ OPENBLAS_CORETYPE: 'SkylakeX' });
    expect(openblasCoreType(line('avx2 fma'))).toEqual({});
    expect(openblasCoreType(line('avx2 avx512fp16'))).toEqual({}); // not avx512f itself
    expect(openblasCoreType('')).toEqual({});
  });
});
