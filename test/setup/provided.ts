/**
 * Values the global set-up hands to the integration tests. Typed here, in one place: vitest's
 * ProvidedContext is re-exported through an internal chunk, where module augmentation does not reach.
 */
import { inject } from 'vitest';
import { DicomWebClient, type DicomWebClientOptions } from '../../server/src/dicomweb/client.js';

export interface Provided {
  dicomwebUrl: string;
  orthancHttpUrl: string;
  /** The test Orthanc runs with authentication, as the embedded PACS does: its Authorization header. */
  pacsAuthorization: string;
  referenceDir: string;
  derivedDir: string;
  workDir: string;
}

export function provided(): Provided {
  const get = inject as unknown as (key: string) => string;
  return {
    dicomwebUrl: get('dicomwebUrl'),
    orthancHttpUrl: get('orthancHttpUrl'),
    pacsAuthorization: get('pacsAuthorization'),
    referenceDir: get('referenceDir'),
    derivedDir: get('derivedDir'),
    workDir: get('workDir'),
  };
}

/** The environment a spawned command needs to talk to the test PACS (its credentials). */
export function pacsEnv(): Record<string, string> {
  return { LDFSAM_DICOMWEB_AUTHORIZATION: provided().pacsAuthorization };
}

/** A DICOMweb client of the test PACS, with its credentials. */
export function pacsClient(options: Partial<DicomWebClientOptions> = {}): DicomWebClient {
  const { dicomwebUrl, pacsAuthorization } = provided();
  return new DicomWebClient({ url: dicomwebUrl, ...options, headers: { authorization: pacsAuthorization, ...options.headers } });
}
