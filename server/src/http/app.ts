/**
 * The HTTP API (Express 5): routes -> job runner -> pipeline. `createApp` builds the app without
 * listening; one error handler maps every error code to its HTTP status and a JSON body
 * `{error: {code, message}}`.
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import type { DicomWebClient } from '../dicomweb/client.js';
import { str, TAG } from '../dicom/tags.js';
import { LdfsamError, toLdfsamError } from '../errors.js';
import { emptyCounts, foundNothing, PRIORITY, type JobQueue } from '../jobs/queue.js';
import { FINAL_STATES, type Job, type JobRequest } from '../jobs/types.js';
import type { Logger } from '../log.js';
import { modelModes } from '../models/manifest.js';
import { accepts, autoRefusal, type ModelRegistry, type RegisteredModel } from '../inference/registry.js';
import type { ProviderChoice } from '../inference/providers.js';
import { dicomwebProxy, type ProxyOptions } from '../viewer/dicomweb-proxy.js';
import { DICOMWEB_PROXY_PATH, type ViewerOptions } from '../viewer/app-config.js';
import { viewerRouter, type ViewerFiles } from '../viewer/viewer-routes.js';
import { createAuth, type AuthConfig } from './auth.js';
import type { SessionManager } from '../interactive/sessions.js';
import { addInteractiveRoutes } from './interactive.js';
import { MONAILABEL_PATH, monaiLabelRouter, type MonaiLabelDeps } from './monailabel/router.js';
import { hostGuard, type HostPolicy } from './host-guard.js';
import { openapi } from './openapi.js';
import { batchRequestSchema, idParam, jobRequestSchema, limitParam, parse } from './schemas.js';

export interface AppDeps {
  auth: AuthConfig;
  /** Names the server answers to besides loopback; loopback only when absent. */
  hosts?: HostPolicy;
  /** The embedded queue or the Redis one; the routes behave the same on both. */
  queue: JobQueue;
  registry: ModelRegistry;
  client: DicomWebClient;
  log: Logger;
  /** The PACS behind the viewer's same-origin DICOMweb proxy; no proxy when absent. */
  proxy?: ProxyOptions;
  /** Interactive segmentation sessions (/api/interactive). */
  sessions: SessionManager;
  /** The OHIF viewer with our extension; the API alone when absent. */
  viewer?: { files: ViewerFiles; options: ViewerOptions };
  /** The MONAI-Label-compatible API (3D Slicer) under /monailabel; absent = not served. */
  monailabel?: Omit<MonaiLabelDeps, 'auth' | 'registry' | 'client' | 'log'>;
  /** The execution provider of the inference in this process; null when it runs none (Redis queue, no --with-worker). */
  provider?: ProviderChoice | null;
}

/** What /health, /api/models and /api/metrics say about the inference in this process. */
function providerView(deps: AppDeps): { provider: string | null; device: number | null; providerFallback?: string } {
  const p = deps.provider ?? null;
  if (!p) return { provider: null, device: null };
  return { provider: p.provider, device: p.device, ...(p.fallbackReason ? { providerFallback: p.fallbackReason } : {}) };
}

export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  // Before anything else: a request naming another host (DNS rebinding) reaches no route.
  app.use(hostGuard(deps.hosts ?? { allowedHosts: [] }));

  app.get('/health', (_req, res) => void res.json({ status: 'ok', provider: providerView(deps).provider }));

  const api = express.Router();
  api.use(createAuth(deps.auth));
  // Before the 256 kB body parser: an accept may carry edited masks.
  addInteractiveRoutes(api, { sessions: deps.sessions, client: deps.client, log: deps.log });
  api.use(express.json({ limit: '256kb' }));

  // Not ready: PACS_UNAVAILABLE when the PACS does not answer (whatever else is wrong), else
  // NOT_READY when no model is loaded; both 503, the message lists every reason.
  api.get('/ready', async (_req, res) => {
    const problems: string[] = [];
    let pacsDown = false;
    try {
      await deps.client.searchForStudies({ queryParams: { limit: 1 } });
    } catch (err) {
      pacsDown = true;
      problems.push(`PACS: ${toLdfsamError(err).message}`);
    }
    if (deps.registry.list().length === 0) problems.push('no model is loaded');
    if (problems.length > 0)
      throw new LdfsamError(pacsDown ? 'PACS_UNAVAILABLE' : 'NOT_READY', `not ready: ${problems.join('; ')}`);
    res.json({ status: 'ready', models: deps.registry.list().length });
  });

  api.get('/metrics', async (_req, res) => {
    res.type('text/plain; version=0.0.4').send(await metricsText(deps));
  });

  api.get('/queue', async (_req, res) => void res.json(await deps.queue.info()));

  api.get('/openapi.json', (_req, res) => void res.json(openapi));

  api.get('/models', (_req, res) => {
    res.json({
      ...providerView(deps),
      models: deps.registry.list().map(({ manifest: m }) => ({
        name: m.name,
        version: m.version,
        description: m.description ?? '',
        configuration: m.configuration.name,
        modes: modelModes(m),
        modalities: m.modalities,
        segments: m.segments.map((s) => ({
          number: s.number,
          label: s.label,
          category: s.category,
          type: s.type,
          color: s.color.rgb,
        })),
        metrics: m.metrics,
      })),
    });
  });

  api.post('/jobs', async (req, res) => {
    const body = parse(jobRequestSchema, req.body, 'job request');
    const named = body.model ? await deps.registry.resolveName(body.model) : undefined;
    const series = await acceptedSeries(deps, body.studyInstanceUID, named, body.seriesInstanceUID, body.outputs);
    const priority = body.priority === 'batch' ? PRIORITY.batch : PRIORITY.interactive;
    const submitted = [];
    for (const s of series) submitted.push(await deps.queue.submit(s, { force: body.force, priority }));
    res.status(202).json({
      jobId: submitted[0]!.job.id,
      jobIds: submitted.map((s) => s.job.id),
      state: submitted[0]!.job.state,
      created: submitted.map((s) => s.created),
    });
  });

  api.get('/jobs', async (req, res) => {
    const limit = parse(limitParam, req.query.limit, 'limit') ?? 50;
    res.json({ jobs: await deps.queue.recent(limit) });
  });

  api.get('/jobs/:id', async (req, res) => void res.json(await jobOrThrow(deps, req.params.id)));

  api.delete('/jobs/:id', async (req, res) => {
    await jobOrThrow(deps, req.params.id);
    res.json(await deps.queue.cancel(req.params.id));
  });

  api.get('/jobs/:id/events', async (req, res) => {
    const job = await jobOrThrow(deps, req.params.id);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    let lastDone = -1;
    let sent = 0;
    let ended = false;
    const send = (j: Job) => {
      if (ended) return;
      const final = FINAL_STATES.includes(j.state);
      // Monotonic progress: never send fewer slices done than before.
      if (!final && j.progress && j.progress.done < lastDone) return;
      lastDone = Math.max(lastDone, j.progress?.done ?? -1);
      res.write(`event: ${final ? 'final' : 'progress'}\ndata: ${JSON.stringify(j)}\n\n`);
      sent++;
      if (final) {
        ended = true;
        unsubscribe();
        res.end();
      }
    };
    const unsubscribe = deps.queue.subscribe(job.id, send);
    req.on('close', unsubscribe);
    // The snapshot is read after subscribing (the Redis queue reads it asynchronously): updates that
    // came in meanwhile are newer, so it goes out only first, or when it is final.
    const snapshot = (await deps.queue.get(job.id))!;
    if (sent === 0 || FINAL_STATES.includes(snapshot.state)) send(snapshot);
  });

  api.post('/batches', async (req, res) => {
    const body = parse(batchRequestSchema, req.body, 'batch request');
    const named = body.model ? await deps.registry.resolveName(body.model) : undefined;
    let studies = body.studies;
    if (body.query) {
      const found = await deps.client.searchForStudies({ queryParams: body.query });
      studies = found.map((s) => str(s, TAG.StudyInstanceUID)).filter((u): u is string => Boolean(u));
    }
    const requests: JobRequest[] = [];
    for (const study of studies ?? []) {
      try {
        requests.push(...(await acceptedSeries(deps, study, named, undefined, body.outputs)));
      } catch (err) {
        const e = toLdfsamError(err);
        if (e.code !== 'NOT_FOUND') throw e;
        deps.log.warn('batch: study skipped', { study, reason: e.message });
      }
    }
    const { batchId, jobs } = await deps.queue.submitBatch(body, requests, { force: body.force });
    deps.log.info('batch accepted', {
      batchId,
      studies: studies?.length ?? 0,
      jobs: jobs.length,
      alreadyDone: requests.length - jobs.length,
    });
    res
      .status(202)
      .json({ batchId, jobs: jobs.length, studies: studies?.length ?? 0, skippedAlreadyDone: requests.length - jobs.length });
  });

  api.get('/batches/:id', async (req, res) => void res.json(await batchView(deps, req.params.id)));

  api.delete('/batches/:id', async (req, res) => {
    const view = await batchView(deps, req.params.id);
    for (const job of view.jobs) if (!FINAL_STATES.includes(job.state)) await deps.queue.cancel(job.id);
    res.json(await batchView(deps, req.params.id));
  });

  app.use('/api', api);
  if (deps.monailabel)
    app.use(
      MONAILABEL_PATH,
      monaiLabelRouter({ ...deps.monailabel, auth: deps.auth, registry: deps.registry, client: deps.client, log: deps.log }),
    );
  if (deps.proxy) app.use(DICOMWEB_PROXY_PATH, createAuth(deps.auth), dicomwebProxy(deps.proxy));
  if (deps.viewer) app.use(viewerRouter(deps.viewer.files, deps.viewer.options));
  app.use((_req, _res, next) => next(new LdfsamError('NOT_FOUND', 'no such route')));
  app.use(errorHandler(deps.log));
  return app;
}

async function jobOrThrow(deps: AppDeps, id: string): Promise<Job> {
  parse(idParam, id, 'job id');
  const job = await deps.queue.get(id);
  if (!job) throw new LdfsamError('NOT_FOUND', `no job ${id}`);
  return job;
}

async function batchView(deps: AppDeps, id: string) {
  parse(idParam, id, 'batch id');
  const batch = await deps.queue.batch(id);
  if (!batch) throw new LdfsamError('NOT_FOUND', `no batch ${id}`);
  const counts = emptyCounts();
  for (const j of batch.jobs) counts[j.state]++;
  return {
    id,
    request: batch.request,
    createdAt: batch.createdAt,
    counts,
    // Of the succeeded jobs, those that stored nothing because the model found nothing: not failures.
    nothingFound: batch.jobs.filter(foundNothing).length,
    done: batch.jobs.every((j) => FINAL_STATES.includes(j.state)),
    jobs: batch.jobs,
  };
}

/** The series of a study to segment: the named one, or every image series a model accepts. */
/** Series of results (ours or others'), never segmented themselves. */
const RESULT_MODALITIES = ['SEG', 'RTSTRUCT'];

async function acceptedSeries(
  deps: AppDeps,
  study: string,
  model: RegisteredModel | undefined,
  seriesUid?: string,
  outputs?: JobRequest['outputs'],
): Promise<JobRequest[]> {
  const found = await deps.client.searchForSeries({ studyInstanceUID: study });
  if (found.length === 0) throw new LdfsamError('NOT_FOUND', `study ${study} is not in the PACS`);
  const candidates = found
    .map((s) => ({ uid: str(s, TAG.SeriesInstanceUID) ?? '', modality: str(s, TAG.Modality) ?? '' }))
    .filter((s) => (seriesUid ? s.uid === seriesUid : !RESULT_MODALITIES.includes(s.modality)));
  if (seriesUid && candidates.length === 0) throw new LdfsamError('NOT_FOUND', `series ${seriesUid} is not in study ${study}`);
  const out: JobRequest[] = [];
  for (const s of candidates) {
    const m = model ?? deps.registry.forModality(s.modality);
    if (!m || !accepts(m.manifest, s.modality)) {
      if (seriesUid) {
        throw new LdfsamError(
          'INVALID_INPUT',
          m ? autoRefusal(m.manifest, s.modality)! : `no registered model accepts modality ${s.modality}`,
        );
      }
      continue;
    }
    // SEG, the default, is left out of the request: the same request as before outputs existed.
    out.push({
      studyInstanceUID: study,
      seriesInstanceUID: s.uid,
      model: m.manifest.name,
      ...(outputs && outputs !== 'seg' ? { outputs } : {}),
    });
  }
  if (out.length === 0)
    throw new LdfsamError(
      'NOT_FOUND',
      `no series of study ${study} is accepted by ${model?.manifest.name ?? 'any registered model'}`,
    );
  return out;
}

async function metricsText(deps: AppDeps): Promise<string> {
  const [counts, stats, queue] = await Promise.all([deps.queue.counts(), deps.queue.stats(), deps.queue.info()]);
  const lines = ['# HELP ldfsam_jobs Jobs by state.', '# TYPE ldfsam_jobs gauge'];
  for (const [state, n] of Object.entries(counts)) lines.push(`ldfsam_jobs{state="${state}"} ${n}`);
  lines.push(
    '# HELP ldfsam_slices_total Slices segmented.',
    '# TYPE ldfsam_slices_total counter',
    `ldfsam_slices_total ${stats.slices}`,
  );
  // The numbers of GET /api/queue.
  lines.push("# HELP ldfsam_queue_jobs Queue entries by queue state (BullMQ's counts).", '# TYPE ldfsam_queue_jobs gauge');
  for (const [state, n] of Object.entries(queue.counts))
    lines.push(`ldfsam_queue_jobs{backend="${queue.backend}",state="${state}"} ${n}`);
  lines.push('# HELP ldfsam_queue_workers Inference workers seen (heartbeat).', '# TYPE ldfsam_queue_workers gauge');
  for (const w of queue.workers)
    lines.push(`ldfsam_queue_workers{worker="${w.id}",provider="${w.provider}",device="${w.device ?? ''}"} ${w.concurrency}`);
  lines.push(
    '# HELP ldfsam_queue_pacs_jobs Jobs talking to the PACS now, and the limit (0 = none).',
    '# TYPE ldfsam_queue_pacs_jobs gauge',
    `ldfsam_queue_pacs_jobs ${queue.pacs.inUse}`,
    '# TYPE ldfsam_queue_pacs_max_jobs gauge',
    `ldfsam_queue_pacs_max_jobs ${queue.pacs.maxJobs}`,
  );
  lines.push('# HELP ldfsam_stage_seconds Time spent per pipeline stage.', '# TYPE ldfsam_stage_seconds summary');
  for (const [stage, s] of Object.entries(stats.stageSeconds)) {
    lines.push(
      `ldfsam_stage_seconds_sum{stage="${stage}"} ${s.sum.toFixed(6)}`,
      `ldfsam_stage_seconds_count{stage="${stage}"} ${s.count}`,
    );
  }
  lines.push(...interactiveMetrics(deps.sessions));
  const p = providerView(deps);
  lines.push(
    '# HELP ldfsam_inference_provider The onnxruntime execution provider of the inference in this process (none: it runs no inference).',
    '# TYPE ldfsam_inference_provider gauge',
    `ldfsam_inference_provider{provider="${p.provider ?? 'none'}",device="${p.device ?? ''}"} 1`,
  );
  lines.push(
    '# HELP ldfsam_models Registered models.',
    '# TYPE ldfsam_models gauge',
    `ldfsam_models ${deps.registry.list().length}`,
  );
  return `${lines.join('\n')}\n`;
}

function interactiveMetrics(sessions: SessionManager): string[] {
  const s = sessions.snapshot();
  const lookups = s.cache.hits + s.cache.misses;
  const metric = (name: string, type: string, help: string, value: number) => [
    `# HELP ${name} ${help}`,
    `# TYPE ${name} ${type}`,
    `${name} ${Number.isInteger(value) ? value : value.toFixed(6)}`,
  ];
  return [
    ...metric('ldfsam_interactive_sessions', 'gauge', 'Interactive sessions open.', s.sessions),
    ...metric(
      'ldfsam_interactive_cache_bytes',
      'gauge',
      "Memory held by the slices' encoder outputs (embedding cache).",
      s.cache.bytes,
    ),
    ...metric(
      'ldfsam_interactive_cache_limit_bytes',
      'gauge',
      'The embedding cache limit (LDFSAM_INTERACTIVE_CACHE_MB).',
      s.cache.limitBytes,
    ),
    ...metric('ldfsam_interactive_cache_entries', 'gauge', 'Slices in the embedding cache.', s.cache.entries),
    ...metric('ldfsam_interactive_cache_hits_total', 'counter', 'Embedding lookups answered from the cache.', s.cache.hits),
    ...metric('ldfsam_interactive_cache_misses_total', 'counter', 'Embedding lookups that ran the encoder.', s.cache.misses),
    ...metric('ldfsam_interactive_cache_evictions_total', 'counter', 'Embeddings dropped for room.', s.cache.evictions),
    ...metric(
      'ldfsam_interactive_encodes_dropped_total',
      'counter',
      'Slice encodings dropped before they ran because every request for them had gone.',
      s.cache.dropped,
    ),
    ...metric(
      'ldfsam_interactive_cache_hit_ratio',
      'gauge',
      'Hits / lookups (0 before any lookup).',
      lookups ? s.cache.hits / lookups : 0,
    ),
    ...metric('ldfsam_interactive_prompts_total', 'counter', 'Prompts answered.', s.prompts),
    ...metric(
      'ldfsam_interactive_prompts_cached_total',
      'counter',
      'Prompts on a slice already encoded (decoder only).',
      s.cachedPrompts,
    ),
    ...metric('ldfsam_interactive_prompt_seconds_sum', 'counter', 'Server time of the prompts.', s.promptSeconds),
    ...metric('ldfsam_interactive_encodes_total', 'counter', 'Slices encoded.', s.encodes),
    ...metric('ldfsam_interactive_encode_seconds_sum', 'counter', 'Encoder time.', s.encodeSeconds),
    ...metric('ldfsam_interactive_propagations_total', 'counter', 'Propagations started.', s.propagations),
    ...metric('ldfsam_interactive_propagated_slices_total', 'counter', 'Slices segmented by propagation.', s.propagatedSlices),
    ...metric('ldfsam_interactive_accepted_total', 'counter', 'Structures stored as SEG.', s.accepted),
  ];
}

function errorHandler(log: Logger) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction) => {
    let e: LdfsamError;
    const status = (err as { status?: number; type?: string }).status;
    if ((err as { type?: string }).type === 'entity.too.large')
      e = new LdfsamError('PAYLOAD_TOO_LARGE', 'request body too large');
    else if ((err as { type?: string }).type === 'entity.parse.failed' || (status === 400 && !(err instanceof LdfsamError))) {
      e = new LdfsamError('INVALID_INPUT', 'request body is not valid JSON');
    } else if (!(err instanceof LdfsamError) && status !== undefined && status >= 400 && status < 500) {
      // The body parser's other refusals (an unknown Content-Encoding or charset: 415): the client's, said as it says them.
      e = new LdfsamError('INVALID_INPUT', `request body refused: ${(err as Error).message}`);
    } else e = toLdfsamError(err);
    if (e.httpStatus >= 500)
      log.error('request failed', { method: req.method, path: req.path, code: e.code, message: e.message });
    if (res.destroyed) return; // the client has gone (a cancelled request): nobody to answer
    res.status(e.httpStatus).json({ error: { code: e.code, message: e.message } });
  };
}
