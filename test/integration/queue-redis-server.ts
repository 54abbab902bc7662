/** A redis-server of the test's own (free port, temp folder, append-only file on), restartable in place. */
import { Redis } from 'ioredis';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedisServer, type RedisServer } from '../../server/src/jobs/redis/redis-server.js';
import { freePorts } from '../setup/ports.js';

export interface TestRedis {
  /** redis://127.0.0.1:<port>/<db>; separate databases keep separate queues apart. */
  url(db?: number): string;
  /** Stops Redis (SIGTERM: it writes its append-only file) and starts it again on the same port and folder. */
  restart(): Promise<void>;
  /** Redis gone: stopped (SIGTERM, its append-only file written), folder kept; `up()` starts it again. */
  down(): Promise<void>;
  up(): Promise<void>;
  /** Redis hung (SIGSTOP): connections stay open, nothing answers; `resume()` (SIGCONT). */
  pause(): void;
  resume(): void;
  /** Running and answering again, whatever a test left it as. */
  ensureUp(): Promise<void>;
  stop(): Promise<void>;
}

export async function startTestRedis(): Promise<TestRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'ldfsam-redis-'));
  const [port] = await freePorts(1);
  let server: RedisServer = await startRedisServer({ dir, port: port! });
  return {
    url: (db = 0) => `redis://127.0.0.1:${port}/${db}`,
    async restart() {
      await server.stop();
      server = await startRedisServer({ dir, port: port! });
    },
    down: () => server.stop(),
    async up() {
      server = await startRedisServer({ dir, port: port! });
    },
    pause: () => void server.child.kill('SIGSTOP'),
    resume: () => void server.child.kill('SIGCONT'),
    async ensureUp() {
      server.child.kill('SIGCONT');
      if (server.child.exitCode !== null || server.child.signalCode !== null)
        server = await startRedisServer({ dir, port: port! });
    },
    async stop() {
      server.child.kill('SIGCONT');
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Every command the Redis server at `url` runs from now on (scripts' commands included; the command's
 * name lower-cased, its arguments as sent), in the order it ran them (MONITOR): the oracle for "this write came before that one".
 */
export async function recordCommands(url: string): Promise<{ commands: string[][]; stop: () => void }> {
  const monitor = await new Redis(url).monitor();
  const commands: string[][] = [];
  monitor.on('monitor', (_time: string, [name, ...args]: string[]) =>
    commands.push([String(name).toLowerCase(), ...args.map(String)]),
  );
  return { commands, stop: () => monitor.disconnect() };
}
