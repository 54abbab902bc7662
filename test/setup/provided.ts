/**
 * Values the global set-up hands to the integration tests. Typed here, in one place: vitest's
 * ProvidedContext is re-exported through an internal chunk, where module augmentation does not reach.
 */
import { inject } from 'vitest';

export interface Provided {
  dicomwebUrl: string;
  orthancHttpUrl: string;
  referenceDir: string;
  derivedDir: string;
  workDir: string;
}

export function provided(): Provided {
  const get = inject as unknown as (key: string) => string;
  return {
    dicomwebUrl: get('dicomwebUrl'),
    orthancHttpUrl: get('orthancHttpUrl'),
    referenceDir: get('referenceDir'),
    derivedDir: get('derivedDir'),
    workDir: get('workDir'),
  };
}
