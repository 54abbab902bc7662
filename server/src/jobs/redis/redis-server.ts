/**
 * A local redis-server (Debian's package) for the Redis queue: loopback only, data in a folder of
 * its own, append-only file on (every write is logged and fsynced each second, so a restart keeps
 * the queue). `ldfsam queue start` and the tests use it; production runs its own Redis.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { LdfsamError } from '../../errors.js';

export interface RedisServer {
  url: string;
  port: number;
  child: ChildProcess;
  /** SIGTERM: Redis writes its append-only file and exits. */
  stop(): Promise<void>;
}

export async function startRedisServer(options: { dir: string; port: number; bin?: string }): Promise<RedisServer> {
  mkdirSync(options.dir, { recursive: true });
  const args = [
    '--port', String(options.port),
    '--bind', '127.0.0.1',
    '--dir', options.dir,
    '--appendonly', 'yes',
    '--appendfsync', 'everysec',
    '--save', '',
    '--daemonize', 'no',
    '--loglevel', 'notice',
  ]; // prettier-ignore
  let child: ChildProcess;
  try {
    child = spawn(options.bin ?? 'redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    throw new LdfsamError('CONFIG_INVALID', `cannot start redis-server: ${(err as Error).message}`);
  }
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new LdfsamError('CONFIG_INVALID', `redis-server did not start: ${output}`)), 20_000);
    const onData = (d: Buffer) => {
      output += d.toString();
      if (/Ready to accept connections/.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new LdfsamError('CONFIG_INVALID', `cannot start redis-server (apt-get install redis-server): ${err.message}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new LdfsamError('CONFIG_INVALID', `redis-server exited with code ${code}: ${output.trim()}`));
    });
  });
  child.stdout!.resume();
  child.stderr!.resume();
  return {
    url: `redis://127.0.0.1:${options.port}/0`,
    port: options.port,
    child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
