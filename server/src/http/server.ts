/** Starting and stopping the API server: store, models, runner, then listen. */
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Config } from '../config.js';
import { clientFrom } from '../dicomweb/from-config.js';
import { LdfsamError } from '../errors.js';
import { EmbeddedQueue } from '../jobs/embedded.js';
import type { JobQueue, StopReport } from '../jobs/queue.js';
import { JobRunner } from '../jobs/runner.js';
import { JobStore } from '../jobs/store.js';
import { RedisJobQueue } from '../jobs/redis/redis-queue.js';
import { startQueueWorker, type QueueWorker } from '../jobs/redis/worker.js';
import type { Logger } from '../log.js';
import { DEFAULT_BATCH_SIZE, resolveProvider, type ProviderChoice } from '../inference/providers.js';
import { ModelRegistry } from '../inference/registry.js';
import { SessionManager, type InteractiveLimits } from '../interactive/sessions.js';
import { createApp } from './app.js';
import { locateViewer } from '../viewer/viewer-routes.js';
import { packageVersion } from '../util/paths.js';
import { authEnabled } from './auth.js';
import { VolumeStore } from '../volume/store.js';
import { MONAILABEL_PATH } from './monailabel/router.js';

export interface RunningServer {
  url: string;
  /** Where the viewer is served, or why it is not. */
  viewer: { url: string } | { missing: string };
  /**
   * Stops listening (open connections, SSE streams included, are closed), stops the inference (the
   * running jobs go back to the queue) and closes the queue and the models; says which jobs went back.
   */
  close(why?: string): Promise<StopReport>;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export interface ServerOptions {
  retryDelayMs?: number;
  /** With the Redis queue: also run an inference worker in this process (`serve --with-worker`). */
  withWorker?: boolean;
}

export async function startServer(config: Config, log: Logger, options: ServerOptions = {}): Promise<RunningServer> {
  const auth = {
    apiTokens: [...config.apiTokens, ...(config.viewerToken ? [config.viewerToken] : [])],
    oidcIssuer: config.oidcIssuer,
    oidcAudience: config.oidcAudience,
    oidcJwksUrl: config.oidcJwksUrl,
  };
  if (!LOOPBACK.has(config.host) && !authEnabled(auth)) {
    throw new LdfsamError(
      'CONFIG_INVALID',
      `refusing to listen on ${config.host} without authentication: set LDFSAM_API_TOKENS (or LDFSAM_OIDC_ISSUER), or bind to 127.0.0.1`,
    );
  }
  // Only a process that runs inference needs a provider (and probes CUDA for it).
  const runsInference = config.queue === 'sqlite' || options.withWorker === true;
  const choice: ProviderChoice | null = runsInference
    ? await resolveProvider(config.provider, { log: (m) => log.warn(m) })
    : null;
  const provider = choice?.provider ?? 'cpu';
  if (choice) log.info('inference execution provider', { provider, wanted: choice.wanted });
  const registry = await ModelRegistry.load(
    config.modelDirs,
    { executionProvider: provider },
    { info: (m) => log.info(m), warn: (m) => log.warn(m) },
  );
  const client = clientFrom(config);
  const queue = openQueue(config, { client, registry, log, provider, retryDelayMs: options.retryDelayMs });
  await queue.start();
  let worker: QueueWorker | undefined;
  const located = locateViewer(config.viewerDir);
  if ('missing' in located) log.warn('viewer not served', { reason: located.missing });
  const viewer =
    'files' in located
      ? {
          files: located.files,
          options: {
            version: packageVersion(),
            ...(config.viewerToken ? { viewerToken: config.viewerToken } : {}),
            ...(config.oidcIssuer && config.oidcClientId
              ? { oidc: { issuer: config.oidcIssuer, clientId: config.oidcClientId } }
              : {}),
          },
        }
      : undefined;
  const proxy = { dicomwebUrl: config.dicomwebUrl, authorization: config.dicomwebAuthorization, timeoutMs: config.pacsTimeoutMs };
  const sessions = new SessionManager({ client, registry, log }, interactiveLimits(config));
  const MB = 1024 * 1024;
  const monailabel = {
    store: new VolumeStore(join(config.dataDir, 'monailabel'), {
      maxBytes: config.monailabelStoreMb * MB,
      ttlMs: config.monailabelTtlHours * 3_600_000,
    }),
    version: packageVersion(),
    maxUploadBytes: config.monailabelMaxUploadMb * MB,
    maxVolumeBytes: config.monailabelMaxVolumeMb * MB,
    batchSize: config.batchSize ?? DEFAULT_BATCH_SIZE[provider],
    minComponentVoxels: config.minComponentVoxels,
    ...(config.oidcClientId ? { oidcClientId: config.oidcClientId } : {}),
  };
  const hosts = { allowedHosts: config.allowedHosts, boundHost: config.host };
  const app = createApp({
    auth,
    hosts,
    queue,
    registry,
    client,
    log,
    proxy,
    sessions,
    monailabel,
    provider: choice,
    ...(viewer ? { viewer } : {}),
  });
  const server = await new Promise<import('node:http').Server>((resolve, reject) => {
    const s = app.listen(config.port, config.host, () => resolve(s));
    s.once('error', (err) =>
      reject(new LdfsamError('CONFIG_INVALID', `cannot listen on ${config.host}:${config.port}: ${err.message}`)),
    );
  });
  if (queue.backend === 'redis' && options.withWorker) {
    worker = await startQueueWorker({
      config,
      client,
      registry,
      log,
      provider,
      device: null,
      concurrency: config.jobConcurrency,
    });
  }
  const { port } = server.address() as AddressInfo;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  if (['0.0.0.0', '::'].includes(config.host) && config.allowedHosts.length === 0) {
    log.warn('listening on every address, but only requests naming localhost, 127.0.0.1 or [::1] are served', {
      fix: 'set LDFSAM_ALLOWED_HOSTS to the names and addresses clients use to reach this server',
    });
  }
  log.info('server listening', {
    url,
    monailabel: `${url}${MONAILABEL_PATH}`,
    allowedHosts: config.allowedHosts,
    dicomweb: config.dicomwebUrl,
    models: registry.list().map((m) => m.manifest.name),
    auth: authEnabled(auth),
    queue: queue.backend,
    inference: queue.backend === 'sqlite' || worker ? 'in this process' : 'ldfsam worker processes',
  });
  return {
    url,
    viewer: viewer ? { url: `${url}/` } : (located as { missing: string }),
    async close(why = 'the server stops') {
      sessions.closeAll();
      const closed = new Promise((r) => server.close(r));
      server.closeAllConnections();
      await closed;
      const fromWorker = await worker?.stop(why);
      const fromQueue = await queue.close();
      await registry.close();
      return {
        handedBack: [...(fromWorker?.handedBack ?? []), ...fromQueue.handedBack],
        left: [...(fromWorker?.left ?? []), ...fromQueue.left],
      };
    },
  };
}

/** The interactive API's limits from the config (README, "Interactive segmentation"). */
export function interactiveLimits(config: Config): InteractiveLimits {
  return {
    idleMs: config.interactiveIdleMs,
    sessionsPerUser: config.interactiveSessionsPerUser,
    maxSessions: config.interactiveMaxSessions,
    maxPoints: config.interactiveMaxPoints,
    maxPropagationSlices: config.interactiveMaxPropagationSlices,
    cacheBytes: config.interactiveCacheMb * 1024 * 1024,
    minIou: config.interactiveMinIou,
    propagationMaskInput: config.interactivePropagationMaskInput,
  };
}

/**
 * The embedded queue (runner in this process) unless LDFSAM_QUEUE names Redis. LDFSAM_PACS_MAX_JOBS
 * caps the embedded runner's concurrency too: it is the only one talking to the PACS.
 */
function openQueue(
  config: Config,
  deps: { client: ReturnType<typeof clientFrom>; registry: ModelRegistry; log: Logger; provider: string; retryDelayMs?: number },
): JobQueue {
  if (config.queue !== 'sqlite') {
    return new RedisJobQueue({
      url: config.queue,
      log: deps.log,
      pacsMaxJobs: config.pacsMaxJobs,
      lockMs: config.queueLockMs,
      retryDelayMs: deps.retryDelayMs,
    });
  }
  const store = new JobStore(join(config.dataDir, 'jobs.sqlite'));
  const concurrency = config.pacsMaxJobs > 0 ? Math.min(config.jobConcurrency, config.pacsMaxJobs) : config.jobConcurrency;
  const runner = new JobRunner({ ...deps, store, config, concurrency });
  return new EmbeddedQueue(store, runner, { provider: deps.provider, concurrency, pacsMaxJobs: config.pacsMaxJobs });
}
