/** A redis-server of the test's own (free port, temp folder, append-only file on), restartable in place. */
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
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
 * MONITOR is read from a plain socket: ioredis's monitor() turns its connection into a monitor only
 * once the reply to MONITOR has been handled, so monitored lines that arrive in the same read (a busy
 * queue) are taken for replies to nothing and thrown ("Command queue state error").
 */
export async function recordCommands(url: string): Promise<{ commands: string[][]; stop: () => void }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  const commands: string[][] = [];
  let pending = '';
  let started!: () => void;
  const monitoring = new Promise<void>((resolve) => (started = resolve));
  socket.setEncoding('latin1'); // MONITOR escapes every byte that is not printable ASCII
  socket.on('data', (chunk: string) => {
    pending += chunk;
    for (let eol = pending.indexOf('\r\n'); eol >= 0; eol = pending.indexOf('\r\n')) {
      const line = pending.slice(0, eol);
      pending = pending.slice(eol + 2);
      if (line === '+OK') started();
      else if (line.startsWith('+')) {
        const [name = '', ...args] = monitorArguments(line);
        commands.push([name.toLowerCase(), ...args]);
      }
    }
  });
  await once(socket, 'connect');
  socket.on('error', () => undefined); // Redis stopped by the test: the record ends there
  socket.write('MONITOR\r\n');
  await monitoring;
  return { commands, stop: () => socket.destroy() };
}

const ESCAPES: Record<string, string> = { n: '\n', r: '\r', t: '\t', a: '\x07', b: '\b' };

/** The quoted command and arguments of a MONITOR line: `+<time> [<db> <client>] "name" "arg" ...`. */
export function monitorArguments(line: string): string[] {
  const out: string[] = [];
  let i = line.indexOf('] "') + 2;
  if (i < 2) return out;
  while (line[i] === '"') {
    let value = '';
    for (i++; i < line.length && line[i] !== '"';) {
      if (line[i] !== '\\') value += line[i++];
      else if (line[i + 1] === 'x') {
        value += String.fromCharCode(parseInt(line.slice(i + 2, i + 4), 16));
        i += 4;
      } else {
        value += ESCAPES[line[i + 1]!] ?? line[i + 1];
        i += 2;
      }
    }
    out.push(value);
    i += 2; // the closing quote and the space before the next argument
  }
  return out;
}
