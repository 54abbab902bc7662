/**
 * The part of MONAI Label's REST API that 3D Slicer's MONAI Label module and MONAI Label's clients
 * use (MONAI Label 0.8.5), mounted under one prefix of the server (/monailabel). The clients join
 * their server URL's path with each endpoint, so `http://host:5080/monailabel` is the URL to give
 * them. Same authentication as /api: without tokens (loopback only) everything is open; with tokens
 * or OIDC every route but GET /auth/ and POST /auth/token needs a bearer token, which the clients
 * get from POST /auth/token (see auth.ts here).
 */
import { randomUUID } from 'node:crypto';
import express, { type Request, type Response } from 'express';
import type { DicomWebClient } from '../../dicomweb/client.js';
import { readSeriesSlices } from '../../dicom/series-reader.js';
import { LdfsamError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { ModelRegistry } from '../../inference/registry.js';
import { writeNrrd } from '../../volume/nrrd.js';
import { volumeFormat } from '../../volume/read.js';
import { seriesGrid, seriesVoxels } from '../../volume/series-volume.js';
import type { VolumeStore } from '../../volume/store.js';
import { createAuth, type AuthConfig } from '../auth.js';
import { loginRoutes } from './auth.js';
import { buildFormAnswer, paramsOf, parseForm } from './form.js';
import { ImageResolver } from './images.js';
import { runInference, type Output } from './infer.js';
import { datastoreStats, info, monaiModels, SESSION_PREFIX } from './info.js';
import { nextSample, STRATEGIES, type Strategy } from './next-sample.js';

export const MONAILABEL_PATH = '/monailabel';

export interface MonaiLabelDeps {
  auth: AuthConfig;
  /** OIDC client for the password grant of POST /auth/token (LDFSAM_OIDC_CLIENT_ID). */
  oidcClientId?: string;
  registry: ModelRegistry;
  client: DicomWebClient;
  store: VolumeStore;
  log: Logger;
  version: string;
  maxUploadBytes: number;
  maxVolumeBytes: number;
  batchSize: number;
  minComponentVoxels: number;
}

const OUTPUTS = new Set<Output>(['image', 'json', 'all', 'dicom_seg']);
const TRAINING =
  'no training runs in this server: LDFSAM models are trained and published with the models CLI (npm run model:train, see models/README.md)';

export function monaiLabelRouter(deps: MonaiLabelDeps): express.Router {
  const router = express.Router();
  const ctx: Context = {
    deps,
    images: new ImageResolver(deps.store, deps.client, deps.maxVolumeBytes),
    form: express.raw({ type: 'multipart/form-data', limit: deps.maxUploadBytes }),
  };
  router.use(loginRoutes(deps.auth, deps.oidcClientId));
  router.use(createAuth(deps.auth));
  serviceRoutes(router, ctx);
  datastoreRoutes(router, ctx);
  sessionRoutes(router, ctx);
  inferRoute(router, ctx);
  return router;
}

interface Context {
  deps: MonaiLabelDeps;
  images: ImageResolver;
  /** The body parser of the multipart routes (bounded by LDFSAM_MONAILABEL_MAX_UPLOAD_MB). */
  form: express.RequestHandler;
}

/** Info, login check, training (not here) and active learning. */
function serviceRoutes(router: express.Router, { deps }: Context): void {
  router.get('/auth/token/valid', (_req, res) => void res.json({ valid: true }));
  router.get('/info', (_req, res) => void res.json(info(deps.registry, deps.store, deps.version)));

  router.get('/train', (_req, _res) => {
    throw new LdfsamError('NOT_FOUND', TRAINING); // 404 is also "nothing is training", what the clients ask
  });
  router.post('/train', () => {
    throw new LdfsamError('NOT_FOUND', TRAINING);
  });
  router.post('/train/:model', () => {
    throw new LdfsamError('NOT_FOUND', TRAINING);
  });
  router.delete('/train', () => {
    throw new LdfsamError('NOT_FOUND', TRAINING);
  });

  router.post('/activelearning/:strategy', express.json({ limit: '256kb' }), async (req, res) => {
    const strategy = req.params.strategy;
    if (!(strategy in STRATEGIES))
      throw new LdfsamError(
        'NOT_FOUND',
        `unknown strategy ${JSON.stringify(strategy)}; known: ${Object.keys(STRATEGIES).join(', ')}`,
      );
    const model = (req.body as { model?: unknown } | undefined)?.model;
    const sample = await nextSample(deps.client, deps.registry, strategy as Strategy, {
      ...(typeof model === 'string' && model !== 'any' && model !== '' ? { model } : {}),
    });
    res.json(sample ?? {});
  });
}

/** The local datastore (uploads, labels, sessions) and PACS series as volumes. */
function datastoreRoutes(router: express.Router, { deps, images, form }: Context): void {
  router.get('/datastore', (req, res) => {
    const output = queryString(req, 'output') ?? 'stats';
    if (output === 'stats') return void res.json(datastoreStats(deps.store));
    if (output === 'train') return void res.json([]);
    if (output !== 'all') throw new LdfsamError('INVALID_INPUT', 'output must be stats, all or train');
    const objects = Object.fromEntries(
      deps.store
        .list()
        .filter((e) => !e.id.startsWith(SESSION_PREFIX))
        .map((e) => [
          e.id,
          {
            image: {
              ext: e.file.slice('image'.length),
              info: { ...e.params, bytes: e.bytes, ts: Date.parse(e.uploadedAt) / 1000 },
            },
            labels: Object.fromEntries(
              Object.entries(e.labels).map(([tag, l]) => [tag, { ext: l.file.slice(`label-${tag}`.length), info: l.info }]),
            ),
          },
        ]),
    );
    res.json({ name: 'LDFSAM datastore (uploaded volumes; PACS series are addressed by SeriesInstanceUID)', objects });
  });

  const upload = (req: Request, res: Response) => {
    const data = parseForm(req.body, req.get('content-type'));
    const file = data.files.file;
    if (!file || file.data.length === 0)
      throw new LdfsamError('INVALID_INPUT', 'send the volume as the multipart file field "file"');
    const params = paramsOf(data);
    const id = queryString(req, 'image') || stripExtension(file.filename);
    const found = volumeFormat(file.data);
    if (!found)
      throw new LdfsamError('INVALID_INPUT', `${file.filename || 'the file'} is neither NIfTI (.nii, .nii.gz) nor NRRD (.nrrd)`);
    // Read it whole before keeping it: a damaged, truncated or unsupported file is refused, and nothing is kept.
    images.check(file.data, `${file.filename || 'the file'}`);
    deps.store.addImage(id, file.data, found.extension, params);
    deps.log.info('monailabel: image stored', { image: id, bytes: file.data.length });
    res.json({ image: id });
  };
  router.put('/datastore', form, upload);
  router.put('/datastore/image', form, upload);

  router.get('/datastore/image', async (req, res) => {
    const id = requiredQuery(req, 'image');
    const ref = await images.resolve(id);
    if (ref.kind === 'local')
      return void res.download(deps.store.path(ref.entry), `${safeName(id)}${ref.entry.file.slice('image'.length)}`);
    const grid = seriesGrid(ref.plan);
    const { data, rgb } = await seriesVoxels(ref.plan, readSeriesSlices(deps.client, ref.plan), deps.maxVolumeBytes);
    sendFile(res, `${safeName(id)}.nrrd`, writeNrrd(grid, data, { rgb }));
  });

  router.put('/datastore/label', form, (req, res) => {
    const id = requiredQuery(req, 'image');
    const tag = queryString(req, 'tag') || 'final';
    const data = parseForm(req.body, req.get('content-type'));
    const label = data.files.label;
    if (!label || label.data.length === 0)
      throw new LdfsamError('INVALID_INPUT', 'send the label as the multipart file field "label"');
    if (!deps.store.get(id)) {
      throw new LdfsamError(
        'NOT_FOUND',
        `no image ${JSON.stringify(id)} in the datastore: labels are kept for uploaded volumes; for a PACS series, ` +
          'store the automatic result as DICOM SEG (infer with output=dicom_seg)',
      );
    }
    const found = volumeFormat(label.data);
    if (!found) throw new LdfsamError('INVALID_INPUT', 'the label is neither NIfTI nor NRRD');
    images.check(label.data, 'the label');
    deps.store.saveLabel(id, tag, label.data, found.extension, paramsOf(data));
    res.json({ image: id, label: id, tag });
  });

  router.get('/datastore/label', (req, res) => {
    const id = requiredQuery(req, 'label');
    const tag = queryString(req, 'tag') ?? 'final';
    const entry = deps.store.get(id);
    const label = entry && deps.store.label(entry, tag);
    if (!entry || !label) throw new LdfsamError('NOT_FOUND', `no label ${JSON.stringify(tag)} for ${JSON.stringify(id)}`);
    res.download(deps.store.path(entry, label.file), `${safeName(id)}${label.file.slice(`label-${tag}`.length)}`);
  });
}

/** Sessions (the Slicer module uploads a volume it loaded itself this way): datastore entries of their own. */
function sessionRoutes(router: express.Router, { deps, images, form }: Context): void {
  router.put('/session', form, (req, res) => {
    const data = parseForm(req.body, req.get('content-type'));
    const file = data.files.files ?? Object.values(data.files)[0];
    if (!file || file.data.length === 0)
      throw new LdfsamError('INVALID_INPUT', 'send the volume as the multipart file field "files"');
    const found = volumeFormat(file.data);
    if (!found)
      throw new LdfsamError('INVALID_INPUT', `${file.filename || 'the file'} is neither NIfTI (.nii, .nii.gz) nor NRRD (.nrrd)`);
    images.check(file.data, file.filename || 'the file');
    const sessionId = randomUUID();
    const entry = deps.store.addImage(`${SESSION_PREFIX}${sessionId}`, file.data, found.extension, data.fields);
    res.json({ session_id: sessionId, session_info: sessionInfo(sessionId, entry) });
  });
  router.get('/session/:id', (req, res) => {
    const entry = deps.store.get(`${SESSION_PREFIX}${req.params.id}`);
    if (!entry) throw new LdfsamError('NOT_FOUND', `session ${req.params.id} not found (expired or never created)`);
    res.json(sessionInfo(req.params.id, entry));
  });
  router.delete('/session/:id', (req, res) => {
    const entry = deps.store.get(`${SESSION_PREFIX}${req.params.id}`);
    if (!entry) throw new LdfsamError('NOT_FOUND', `session ${req.params.id} not found`);
    deps.store.remove(entry.id);
    res.json(sessionInfo(req.params.id, entry));
  });
}

function inferRoute(router: express.Router, { deps, images, form }: Context): void {
  router.post('/infer/:model', form, async (req, res) => {
    const name = req.params.model as string;
    const entry = monaiModels(deps.registry).get(name);
    if (!entry)
      throw new LdfsamError('NOT_FOUND', `unknown model ${JSON.stringify(name)}; GET ${MONAILABEL_PATH}/info/ lists them`);
    const output = (queryString(req, 'output') ?? 'all') as Output;
    if (!OUTPUTS.has(output)) throw new LdfsamError('INVALID_INPUT', 'output must be image, json, all or dicom_seg');
    const data = parseForm(req.body, req.get('content-type'));
    if (data.files.file)
      throw new LdfsamError('INVALID_INPUT', 'upload the volume first (PUT /datastore/?image=ID), then infer with ?image=ID');
    const sessionId = typeof req.query.session_id === 'string' && req.query.session_id ? req.query.session_id : undefined;
    const id = sessionId ? `${SESSION_PREFIX}${sessionId}` : requiredQuery(req, 'image');
    const aborted = new AbortController();
    res.on('close', () => res.writableFinished || aborted.abort());
    const image = await images.resolve(id, aborted.signal);
    const answer = await runInference(
      deps,
      { name, model: entry.model, mode: entry.mode, image, params: paramsOf(data), output },
      aborted.signal,
    );
    deps.log.info('monailabel: inference', { model: name, image: id, latencies: answer.params.latencies });
    if (output === 'json') return void res.json(answer.params);
    const compress = paramsOf(data).result_compress !== false;
    const nrrd = writeNrrd(answer.source.grid, answer.label, { compress });
    const file = `label_${safeName(String(answer.params.image))}.nrrd`;
    if (output === 'image') return sendFile(res, file, nrrd);
    const { body, contentType } = buildFormAnswer(answer.params, { name: file, data: nrrd, type: 'application/octet-stream' });
    res
      .status(200)
      .set({ 'content-type': contentType, 'content-length': String(body.length) })
      .end(body);
  });
}

function sessionInfo(id: string, entry: { uploadedAt: string; lastUsedAt: string; bytes: number }) {
  return {
    name: id,
    image: id,
    create_ts: Date.parse(entry.uploadedAt) / 1000,
    last_access_ts: Date.parse(entry.lastUsedAt) / 1000,
    bytes: entry.bytes,
  };
}

/** A query parameter given once as text; undefined when absent (a repeated or nested one is refused). */
function queryString(req: Request, name: string): string | undefined {
  const v = req.query[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new LdfsamError('INVALID_INPUT', `the query parameter ${name} must be given once, as text`);
  return v;
}

function requiredQuery(req: Request, name: string): string {
  const v = req.query[name];
  if (typeof v !== 'string' || v === '') throw new LdfsamError('INVALID_INPUT', `the query parameter ${name} is required`);
  return v;
}

/** A file name the clients can write into their temp folder: no separators, no surprises. */
export function safeName(id: string): string {
  return (
    id
      .replace(/[^A-Za-z0-9._-]+/g, '_')
      .replace(/^\.+/, '_')
      .slice(0, 128) || 'image'
  );
}

function stripExtension(filename: string): string {
  return filename.replace(/^.*[\\/]/, '').replace(/(\.nii\.gz|\.nii|\.nrrd|\.gz)$/i, '');
}

/** A whole file with a Content-Length (the clients read multipart and files without chunking). */
function sendFile(res: Response, name: string, data: Buffer): void {
  res
    .status(200)
    .set({
      'content-type': 'application/octet-stream',
      'content-length': String(data.length),
      'content-disposition': `attachment; filename="${name}"`,
    })
    .end(data);
}
