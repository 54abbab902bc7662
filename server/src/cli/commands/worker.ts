/** `ldfsam worker` and `ldfsam queue start`: inference workers of the Redis queue, and a local Redis for it. */
import { join } from 'node:path';
import type { Command } from 'commander';
import { loadConfig } from '../../config.js';
import { clientFrom } from '../../dicomweb/from-config.js';
import { LdfsamError } from '../../errors.js';
import { createLogger } from '../../log.js';
import { resolveProvider } from '../../inference/providers.js';
import { ModelRegistry } from '../../inference/registry.js';
import { startRedisServer } from '../../jobs/redis/redis-server.js';
import { startQueueWorker } from '../../jobs/redis/worker.js';
import { action, STOP_TIMEOUT_OPTION, withPacsOptions, type CommonFlags } from '../context.js';
import { runUntilStopped, STOP_HELP } from '../stop.js';

interface WorkerFlags extends CommonFlags {
  queue?: string;
  provider?: string;
  device?: string;
  concurrency?: string;
}

export function registerWorker(program: Command): void {
  withPacsOptions(program.command('worker'))
    .description('run an inference worker that takes jobs from the Redis queue (LDFSAM_QUEUE); start one per GPU')
    .option('--queue <url>', 'Redis queue, redis://host:port/db (env LDFSAM_QUEUE)')
    .option('--provider <provider>', 'onnxruntime execution provider: auto, cpu or cuda (env LDFSAM_PROVIDER, default auto)')
    .option('--device <index>', 'with cuda: the GPU of this worker (env LDFSAM_CUDA_DEVICE)')
    .option('--concurrency <n>', 'jobs at once in this worker (env LDFSAM_JOB_CONCURRENCY, default 1)')
    .option(...STOP_TIMEOUT_OPTION)
    .addHelpText('after', STOP_HELP)
    .action(
      action(async (flags: WorkerFlags) => {
        const config = loadConfig({
          env: process.env,
          file: flags.config,
          flags: {
            dicomwebUrl: flags.dicomweb,
            queue: flags.queue,
            provider: flags.provider,
            cudaDevice: flags.device,
            jobConcurrency: flags.concurrency,
            stopTimeoutMs: flags.stopTimeout,
          },
        });
        if (config.queue === 'sqlite')
          throw new LdfsamError(
            'CONFIG_INVALID',
            'ldfsam worker needs the Redis queue: set LDFSAM_QUEUE=redis://host:port/db or --queue',
          );
        // One GPU per worker: CUDA numbers the visible devices from 0, so the session's device 0 is this one.
        // (Set before any session exists; the inference threads share this process's environment.)
        if (config.cudaDevice !== undefined) process.env.CUDA_VISIBLE_DEVICES = String(config.cudaDevice);
        const log = createLogger({ service: 'ldfsam-worker' });
        const { provider } = await resolveProvider(config.provider, { log: (m) => log.warn(m) });
        const registry = await ModelRegistry.load(
          config.modelDirs,
          { executionProvider: provider },
          { info: (m) => log.info(m), warn: (m) => log.warn(m) },
        );
        const worker = await startQueueWorker({
          config,
          client: clientFrom(config),
          registry,
          log,
          provider,
          device: config.cudaDevice ?? null,
          concurrency: config.jobConcurrency,
        });
        process.stdout.write(
          `LDFSAM worker ${worker.id} (${provider}${config.cudaDevice === undefined ? '' : ` device ${config.cudaDevice}`}, ` +
            `${config.jobConcurrency} at once) takes jobs from ${redacted(config.queue)}; ` +
            `Ctrl-C stops within ${config.stopTimeoutMs / 1000} s, handing the running jobs back to the queue\n`,
        );
        await runUntilStopped({
          log,
          timeoutMs: config.stopTimeoutMs,
          stop: async (why) => {
            const report = await worker.stop(why);
            await registry.close();
            return report;
          },
        });
      }),
    );

  program
    .command('queue')
    .description('the Redis queue')
    .command('start')
    .description('run a local redis-server for the Redis queue (loopback, append-only file in the data folder); Ctrl-C stops')
    .option('--port <port>', 'port', '6379')
    .option('--data-dir <dir>', 'data folder (env LDFSAM_DATA_DIR); Redis keeps its files in <dir>/redis')
    .action(
      action(async (flags: { port: string; dataDir?: string }) => {
        const config = loadConfig({ env: process.env, flags: { dataDir: flags.dataDir } });
        const redis = await startRedisServer({ dir: join(config.dataDir, 'redis'), port: Number(flags.port) });
        process.stdout.write(
          `Redis queue at ${redis.url} (files in ${join(config.dataDir, 'redis')}).\n` +
            `export LDFSAM_QUEUE=${redis.url}, then run ldfsam serve and ldfsam worker. Ctrl-C stops.\n`,
        );
        const stop = () => void redis.stop();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        await new Promise((r) => redis.child.once('exit', r));
      }),
    );
}

/** The queue URL without its password, for messages. */
function redacted(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}
