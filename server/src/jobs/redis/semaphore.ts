/**
 * A global limit on jobs talking to the PACS at once (LDFSAM_PACS_MAX_JOBS), over every worker: a
 * Redis sorted set of holders scored by the expiry of their lease. A holder renews its lease while
 * it works; a worker that dies stops renewing, and its slot frees itself when the lease expires.
 */
import type { Redis } from 'ioredis';
import { silentLogger, type Logger } from '../../log.js';

/** KEYS[1] the set; ARGV: holder, lease ms, max. Expired leases go first; a holder renews its own. */
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  return 1
end
return 0`;

export class PacsSlots {
  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly max: number,
    private readonly leaseMs: number,
    private readonly log: Logger = silentLogger,
  ) {}

  /** Waits for a slot (checking `stop` between tries); returns the release function. */
  async acquire(holder: string, stop: () => Promise<boolean>): Promise<() => Promise<void>> {
    if (this.max <= 0) return async () => undefined;
    while ((await this.redis.eval(ACQUIRE, 1, this.key, holder, this.leaseMs, this.max)) !== 1) {
      if (await stop()) throw new Error('stopped while waiting for a PACS slot');
      await new Promise((r) => setTimeout(r, 250));
    }
    // A renewal that fails (Redis restarting) is tried again at the next tick; the lease outlasts two of them.
    const renew = setInterval(
      () =>
        void this.redis
          .eval(ACQUIRE, 1, this.key, holder, this.leaseMs, this.max)
          .catch((err: Error) => this.log.warn('redis: PACS slot lease not renewed', { jobId: holder, message: err.message })),
      Math.max(250, this.leaseMs / 3),
    );
    return async () => {
      clearInterval(renew);
      // Not removed, the slot frees itself when its lease expires.
      await this.redis
        .zrem(this.key, holder)
        .catch((err: Error) => this.log.warn('redis: PACS slot not released', { jobId: holder, message: err.message }));
    };
  }

  async inUse(): Promise<number> {
    const [sec, micro] = await this.redis.time();
    return this.redis.zcount(this.key, Number(sec) * 1000 + Math.floor(Number(micro) / 1000), '+inf');
  }
}
