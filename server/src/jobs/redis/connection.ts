/** Redis connections of the queue (API and workers). */
import { Redis } from 'ioredis';

/**
 * `maxRetriesPerRequest: null`: commands wait while Redis restarts instead of failing after a few
 * tries (what BullMQ requires of workers), so a restart costs a pause, not failed jobs.
 */
export function connectRedis(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true });
}
