/**
 * The one configuration object. Sources, lowest precedence first: built-in defaults, a JSON file
 * (`--config` or LDFSAM_CONFIG), environment variables (LDFSAM_*), command-line flags. It is read
 * and validated once, at start, and passed down; nothing else reads process.env.
 */
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { LdfsamError } from './errors.js';
import { basicAuthorization, readPacsCredentials } from './util/pacs-credentials.js';

/** AE titles: 1-16 characters of the default repertoire, no backslash, not only spaces. */
const AE_TITLE = /^(?=.*\S)[ -[\]-~]{1,16}$/;

const port = z.coerce.number().int().min(1).max(65535);
/** A list from a JSON array (config file) or a comma-separated string (environment). */
const commaList = z
  .union([
    z.array(z.string()),
    z.string().transform((s) =>
      s
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean),
    ),
  ])
  .default([]);

/**
 * A host name or address the server answers to besides loopback (LDFSAM_ALLOWED_HOSTS): `name`
 * (any port) or `name:port`; IPv6 in brackets. No wildcards: a wildcard would let DNS rebinding in.
 */
const allowedHost = z
  .string()
  .regex(
    /^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i,
    'each allowed host is name[:port] or [ipv6][:port], no wildcard, no scheme, no path',
  )
  .transform((s) => s.toLowerCase());

export interface DicomPeer {
  aet: string;
  host: string;
  port: number;
}

/** A DICOM peer of the embedded Orthanc (LDFSAM_PACS_DICOM_PEERS): `AET@ipv4[:port]`, port 104 by default. */
const dicomPeer = z.string().transform((s, ctx): DicomPeer => {
  const m = /^([A-Za-z0-9_.-]{1,16})@([0-9.]+)(?::(\d{1,5}))?$/.exec(s.trim());
  const port = Number(m?.[3] ?? 104);
  if (!m || !isIPv4(m[2]!) || port < 1 || port > 65535) {
    ctx.addIssue({
      code: 'custom',
      message: `${JSON.stringify(s)} is not AET@ipv4[:port] (AE title of 1-16 letters, digits, '_', '.', '-'; Orthanc compares the address with the peer's)`,
    });
    return z.NEVER;
  }
  return { aet: m[1]!, host: m[2]!, port };
});

/** A list from a JSON array (config file) or a comma-separated string (environment), each item checked. */
function commaListOf<T extends z.ZodType<unknown, string>>(item: T) {
  return z
    .union([
      z.array(z.string()),
      z.string().transform((s) =>
        s
          .split(',')
          .map((p) => p.trim())
          .filter(Boolean),
      ),
    ])
    .pipe(z.array(item))
    .default([]);
}

export const configSchema = z
  .object({
    /** DICOMweb root of the PACS; defaults to the embedded Orthanc's. */
    dicomwebUrl: z.url({ protocol: /^https?$/ }).optional(),
    pacsHttpPort: port.default(8042),
    pacsDicomPort: port.default(4242),
    /**
     * The only DICOM peers the embedded Orthanc accepts associations from (AE title + address). Its
     * DICOM port is closed when there are none.
     */
    pacsDicomPeers: commaListOf(dicomPeer),
    dataDir: z.string().min(1).default(join(homedir(), '.ldfsam')),
    orthancBin: z.string().min(1).default('/usr/sbin/Orthanc'),
    orthancPluginsDir: z.string().min(1).default('/usr/share/orthanc/plugins'),
    host: z.string().min(1).default('127.0.0.1'),
    /** 0 = any free port (tests). */
    port: z.coerce.number().int().min(0).max(65535).default(5080),
    /** Host names the server answers to besides localhost/127.0.0.1/[::1] (DNS-rebinding guard). */
    allowedHosts: commaListOf(allowedHost),
    /** Per-request time limit for PACS requests, in ms. */
    pacsTimeoutMs: z.coerce.number().int().min(100).max(3_600_000).default(60_000),
    /** Retries on connection errors and 5xx answers (never on 4xx). */
    pacsRetries: z.coerce.number().int().min(0).max(10).default(3),
    /** Authorization header value for the PACS (e.g. "Basic dXNlcjpwYXNz" or "Bearer …"); server-side only. */
    dicomwebAuthorization: z.string().min(1).optional(),
    /** Extra model folders (each with model.json), beside the shipped ones in models/. */
    modelDirs: commaList,
    /**
     * onnxruntime execution provider: auto = CUDA when it runs here (probed once: provider library,
     * driver, GPU), else the CPU with one log line saying why; cuda = CUDA or stop with the reason.
     */
    provider: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
    /**
     * Slices per inference call; unset = the provider's default (inference/providers.ts: 4 on the CPU,
     * measured 21% faster per slice than 1 for `tiny` on 2 cores, 8 no better; 16 on CUDA).
     */
    batchSize: z.coerce.number().int().min(1).max(256).optional(),
    /** 3D clean-up: connected components smaller than this many voxels are dropped (0 = off). */
    minComponentVoxels: z.coerce.number().int().min(0).default(0),
    /** Bearer tokens for the API: plain, or "sha256:<hex>" of the token. */
    apiTokens: commaList,
    oidcIssuer: z.url().optional(),
    oidcAudience: z.string().optional(),
    oidcJwksUrl: z.url().optional(),
    /** Jobs run at once by the embedded queue, or by one `ldfsam worker` (one per inference worker by default). */
    jobConcurrency: z.coerce.number().int().min(1).max(16).default(1),
    /**
     * The job queue: `sqlite` = the embedded one (SQLite store + runner in the server), or a Redis URL
     * (redis://host:port/db) = BullMQ, with `ldfsam worker` processes doing the inference.
     */
    queue: z.union([z.literal('sqlite'), z.url({ protocol: /^rediss?$/ })]).default('sqlite'),
    /** Jobs talking to the PACS at once, over all workers (0 = no limit); a Redis semaphore with the Redis queue. */
    pacsMaxJobs: z.coerce.number().int().min(0).max(1000).default(0),
    /**
     * Redis queue: how long a worker's lock on a running job lasts without renewal (renewed every half of it).
     * A worker that dies loses its job to another after at most this plus half of it (the stalled-job check).
     */
    queueLockMs: z.coerce.number().int().min(1000).max(600_000).default(30_000),
    /**
     * How long `worker`, `serve` and `start` take at most to stop after SIGTERM/SIGINT (running jobs
     * handed back, connections closed); then they exit anyway. Below a supervisor's grace period (10 s).
     */
    stopTimeoutMs: z.coerce.number().int().min(100).max(600_000).default(10_000),
    /** `ldfsam worker` with CUDA: the GPU this worker uses (one worker per GPU); sets CUDA_VISIBLE_DEVICES. */
    cudaDevice: z.coerce.number().int().min(0).max(63).optional(),
    /** The prebuilt OHIF viewer's dist folder; default: vendor/ohif-app/dist (put there by npm run setup). */
    viewerDir: z.string().min(1).optional(),
    /**
     * An API token handed to the served viewer in its app-config.js, for deployments with static
     * tokens: whoever can load the viewer page can read it, so use it only where the page itself is
     * protected (a signing-in reverse proxy, a trusted network). It is accepted by the API like
     * LDFSAM_API_TOKENS.
     */
    viewerToken: z.string().min(16).optional(),
    /** OIDC client id of the viewer: when set with LDFSAM_OIDC_ISSUER, OHIF signs users in and sends their token. */
    oidcClientId: z.string().min(1).optional(),
    /** Interactive segmentation: memory for the slices' encoder outputs (the embedding LRU), in MB. */
    interactiveCacheMb: z.coerce.number().int().min(0).max(1_048_576).default(1024),
    /** An interactive session unused this long (ms) is closed and its masks forgotten. */
    interactiveIdleMs: z.coerce.number().int().min(1000).max(86_400_000).default(1_800_000),
    /** Interactive sessions one user (token or OIDC subject) may have open at once. */
    interactiveSessionsPerUser: z.coerce.number().int().min(1).max(1000).default(4),
    /** Interactive sessions open at once on this server, all users together. */
    interactiveMaxSessions: z.coerce.number().int().min(1).max(10_000).default(64),
    /** Points per prompt (the model's own maxPoints also applies). */
    interactiveMaxPoints: z.coerce.number().int().min(1).max(256).default(16),
    /** Slices one propagation may segment. */
    interactiveMaxPropagationSlices: z.coerce.number().int().min(1).max(100_000).default(1000),
    /**
     * Propagation stops at a slice whose predicted IoU is below this (a request may give its own).
     * 0.75: medsam-lite on the shared CT's insert gave >= 0.81 on every slice with it and <= 0.72 past
     * its end; on HC18 / PH2 boxes with the structure >= 0.89 (README, "Interactive segmentation").
     */
    interactiveMinIou: z.coerce.number().min(0).max(1).default(0.75),
    /**
     * Propagation feeds the previous slice's mask logits to the decoder as its mask input (a request may
     * say). Off: with it, medsam-lite's Dice on the CT insert fell from 0.940 to 0.913 (LiteMedSAM was
     * not trained with mask inputs).
     */
    interactivePropagationMaskInput: z
      .union([z.boolean(), z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1')])
      .default(false),
    /** MONAI Label API: total size of the uploaded volumes and labels kept (least recently used go first). */
    monailabelStoreMb: z.coerce.number().int().min(16).max(1_048_576).default(4096),
    /** MONAI Label API: largest upload (one request body). */
    monailabelMaxUploadMb: z.coerce.number().int().min(1).max(65_536).default(1024),
    /** MONAI Label API: largest volume once decompressed (its voxels), uploaded or read from the PACS. */
    monailabelMaxVolumeMb: z.coerce.number().int().min(1).max(65_536).default(2048),
    /** MONAI Label API: an uploaded volume unused for this long is removed. */
    monailabelTtlHours: z.coerce.number().positive().max(8760).default(24),
    /** A DICOM node (AET@host:port) that results are sent to by C-STORE. */
    storeDimse: z
      .string()
      .transform((value, ctx) => {
        try {
          return parseDimseNode(value);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: (err as Error).message });
          return z.NEVER;
        }
      })
      .optional(),
    /** Where results go: STOW-RS to the PACS, C-STORE to storeDimse, or both; default stow, or both with a node. */
    storeVia: z.enum(['stow', 'dimse', 'both']).optional(),
    /** Our AE title when we call the DICOM node. */
    storeAet: z.string().regex(AE_TITLE, 'must be an AE title: 1-16 characters, no backslash').default('LDFSAM'),
    /** RTSTRUCT contours: Douglas-Peucker tolerance in pixels (0 = along the pixel edges, exact). */
    rtstructTolerance: z.coerce.number().min(0).lt(0.5).default(0),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.storeVia && c.storeVia !== 'stow' && !c.storeDimse)
      ctx.addIssue({ code: 'custom', path: ['storeVia'], message: `"${c.storeVia}" needs a DICOM node in LDFSAM_STORE_DIMSE` });
  });

export type Config = z.infer<typeof configSchema> & { dicomwebUrl: string; storeVia: 'stow' | 'dimse' | 'both' };

/** Environment variable for each config key. */
export const ENV_VARS: Record<keyof z.infer<typeof configSchema>, string> = {
  dicomwebUrl: 'LDFSAM_DICOMWEB_URL',
  pacsHttpPort: 'LDFSAM_PACS_HTTP_PORT',
  pacsDicomPort: 'LDFSAM_PACS_DICOM_PORT',
  pacsDicomPeers: 'LDFSAM_PACS_DICOM_PEERS',
  dataDir: 'LDFSAM_DATA_DIR',
  orthancBin: 'LDFSAM_ORTHANC_BIN',
  orthancPluginsDir: 'LDFSAM_ORTHANC_PLUGINS_DIR',
  host: 'LDFSAM_HOST',
  port: 'LDFSAM_PORT',
  allowedHosts: 'LDFSAM_ALLOWED_HOSTS',
  pacsTimeoutMs: 'LDFSAM_PACS_TIMEOUT_MS',
  pacsRetries: 'LDFSAM_PACS_RETRIES',
  dicomwebAuthorization: 'LDFSAM_DICOMWEB_AUTHORIZATION',
  modelDirs: 'LDFSAM_MODEL_DIRS',
  provider: 'LDFSAM_PROVIDER',
  batchSize: 'LDFSAM_BATCH_SIZE',
  minComponentVoxels: 'LDFSAM_MIN_COMPONENT_VOXELS',
  apiTokens: 'LDFSAM_API_TOKENS',
  oidcIssuer: 'LDFSAM_OIDC_ISSUER',
  oidcAudience: 'LDFSAM_OIDC_AUDIENCE',
  oidcJwksUrl: 'LDFSAM_OIDC_JWKS_URL',
  jobConcurrency: 'LDFSAM_JOB_CONCURRENCY',
  queue: 'LDFSAM_QUEUE',
  pacsMaxJobs: 'LDFSAM_PACS_MAX_JOBS',
  queueLockMs: 'LDFSAM_QUEUE_LOCK_MS',
  stopTimeoutMs: 'LDFSAM_STOP_TIMEOUT_MS',
  cudaDevice: 'LDFSAM_CUDA_DEVICE',
  viewerDir: 'LDFSAM_VIEWER_DIR',
  viewerToken: 'LDFSAM_VIEWER_TOKEN',
  oidcClientId: 'LDFSAM_OIDC_CLIENT_ID',
  interactiveCacheMb: 'LDFSAM_INTERACTIVE_CACHE_MB',
  interactiveIdleMs: 'LDFSAM_INTERACTIVE_IDLE_MS',
  interactiveSessionsPerUser: 'LDFSAM_INTERACTIVE_SESSIONS_PER_USER',
  interactiveMaxSessions: 'LDFSAM_INTERACTIVE_MAX_SESSIONS',
  interactiveMaxPoints: 'LDFSAM_INTERACTIVE_MAX_POINTS',
  interactiveMaxPropagationSlices: 'LDFSAM_INTERACTIVE_MAX_PROPAGATION_SLICES',
  interactiveMinIou: 'LDFSAM_INTERACTIVE_MIN_IOU',
  interactivePropagationMaskInput: 'LDFSAM_INTERACTIVE_PROPAGATION_MASK_INPUT',
  monailabelStoreMb: 'LDFSAM_MONAILABEL_STORE_MB',
  monailabelMaxUploadMb: 'LDFSAM_MONAILABEL_MAX_UPLOAD_MB',
  monailabelMaxVolumeMb: 'LDFSAM_MONAILABEL_MAX_VOLUME_MB',
  monailabelTtlHours: 'LDFSAM_MONAILABEL_TTL_HOURS',
  storeDimse: 'LDFSAM_STORE_DIMSE',
  storeVia: 'LDFSAM_STORE_VIA',
  storeAet: 'LDFSAM_STORE_AET',
  rtstructTolerance: 'LDFSAM_RTSTRUCT_TOLERANCE',
};

/** Older names still read when the current one is not set. */
const ENV_ALIASES: Record<string, keyof typeof ENV_VARS> = {
  LDFSAM_EXECUTION_PROVIDER: 'provider',
};

export interface ConfigSources {
  env?: NodeJS.ProcessEnv;
  /** Values from command-line flags, already named like the config keys; undefined = not given. */
  flags?: Record<string, unknown>;
  /** Path of a JSON config file; falls back to LDFSAM_CONFIG. */
  file?: string;
}

export function loadConfig({ env = {}, flags = {}, file }: ConfigSources = {}): Config {
  const merged: Record<string, unknown> = {};
  const configFile = file ?? env.LDFSAM_CONFIG;
  if (configFile) Object.assign(merged, readConfigFile(configFile));
  for (const [name, key] of Object.entries(ENV_ALIASES)) {
    const value = env[name];
    if (value !== undefined && value !== '') merged[key] = value;
  }
  for (const [key, name] of Object.entries(ENV_VARS)) {
    const value = env[name];
    if (value !== undefined && value !== '') merged[key] = value;
  }
  for (const [key, value] of Object.entries(flags)) {
    if (value !== undefined) merged[key] = value;
  }
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? '') as keyof typeof ENV_VARS;
      // A list's item is named by its position: "allowedHosts (LDFSAM_ALLOWED_HOSTS) item 2".
      const item = typeof issue.path[1] === 'number' ? ` item ${issue.path[1] + 1}` : '';
      const where = ENV_VARS[key] ? `${key} (${ENV_VARS[key]})${item}` : issue.path.join('.') || '(config)';
      return `${where}: ${issue.message}`;
    });
    throw new LdfsamError('CONFIG_INVALID', `invalid configuration: ${problems.join('; ')}`);
  }
  const config = parsed.data;
  const dataDir = resolve(config.dataDir);
  const dicomwebUrl = (config.dicomwebUrl ?? `http://127.0.0.1:${config.pacsHttpPort}/dicom-web`).replace(/\/+$/, '');
  // The embedded PACS runs with credentials of its own, kept in the data folder; a PACS configured
  // elsewhere gets only what LDFSAM_DICOMWEB_AUTHORIZATION says.
  const stored =
    !config.dicomwebAuthorization && isEmbeddedPacs(dicomwebUrl, config.pacsHttpPort) ? readPacsCredentials(dataDir) : undefined;
  return {
    ...config,
    dataDir,
    dicomwebUrl,
    ...(stored ? { dicomwebAuthorization: basicAuthorization(stored) } : {}),
    // A configured DICOM node receives results besides the PACS unless told otherwise.
    storeVia: config.storeVia ?? (config.storeDimse ? 'both' : 'stow'),
  };
}

/** A DICOM node that results are sent to by C-STORE. */
export interface DimseNode {
  aet: string;
  host: string;
  port: number;
}

/** Parses AET@host:port (host: a name, an IPv4 address or [IPv6]). */
export function parseDimseNode(value: string): DimseNode {
  const m = /^([^@]+)@(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : 0;
  if (!m || !AE_TITLE.test(m[1]!) || port < 1 || port > 65535) {
    throw new LdfsamError(
      'CONFIG_INVALID',
      `"${value}" is not a DICOM node: write AET@host:port (AE title of 1-16 characters, port 1-65535)`,
    );
  }
  return { aet: m[1]!.trim(), host: m[2]!.replace(/^\[|\]$/g, ''), port };
}

/** The DICOMweb root is the embedded Orthanc's: loopback, on LDFSAM_PACS_HTTP_PORT. */
export function isEmbeddedPacs(dicomwebUrl: string, pacsHttpPort: number): boolean {
  const u = new URL(dicomwebUrl);
  return (
    u.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname) && Number(u.port || 80) === pacsHttpPort
  );
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new LdfsamError('CONFIG_INVALID', `cannot read config file ${path}: ${(err as Error).message}`);
  }
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not a JSON object');
    return value as Record<string, unknown>;
  } catch (err) {
    throw new LdfsamError('CONFIG_INVALID', `config file ${path} is not a JSON object: ${(err as Error).message}`);
  }
}
