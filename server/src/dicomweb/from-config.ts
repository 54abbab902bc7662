import type { Config } from '../config.js';
import { DicomWebClient } from './client.js';

/** The PACS client of a configuration; the PACS credentials (if any) stay here, on the server side. */
export function clientFrom(config: Config): DicomWebClient {
  return new DicomWebClient({
    url: config.dicomwebUrl,
    timeoutMs: config.pacsTimeoutMs,
    retries: config.pacsRetries,
    headers: config.dicomwebAuthorization ? { authorization: config.dicomwebAuthorization } : {},
  });
}
