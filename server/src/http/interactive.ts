/**
 * The interactive segmentation routes (/api/interactive): thin, over interactive/ (sessions, the
 * embedding cache, propagation, accept). Same authentication, validation, errors and logs as the
 * jobs API. Added to the API router before its 256 kB body parser: an accept may carry edited masks.
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import type { DicomWebClient } from '../dicomweb/client.js';
import type { Logger } from '../log.js';
import { acceptStructure } from '../interactive/accept.js';
import { checkPrompt } from '../interactive/prompts.js';
import { propagate, type PropagationEvent } from '../interactive/propagate.js';
import type { PromptResult, InteractiveSession } from '../interactive/session.js';
import type { SessionManager } from '../interactive/sessions.js';
import { LdfsamError, toLdfsamError } from '../errors.js';
import { requestUser } from './auth.js';
import {
  acceptRequestSchema,
  encodeRequestSchema,
  parse,
  promptRequestSchema,
  propagateRequestSchema,
  sessionIdParam,
  sessionRequestSchema,
} from './schemas.js';

/** Edited masks of many slices: 32 MB holds every slice of a 1000-slice 512 x 512 series, base64. */
const ACCEPT_BODY_LIMIT = '48mb';

export function addInteractiveRoutes(
  router: express.Router,
  deps: { sessions: SessionManager; client: DicomWebClient; log: Logger },
): void {
  const { sessions, log } = deps;
  const small = express.json({ limit: '256kb' });
  const session = (req: Request, res: Response): InteractiveSession =>
    sessions.get(parse(sessionIdParam, req.params.id, 'session id'), requestUser(res));

  router.post('/interactive', small, async (req, res) => {
    const body = parse(sessionRequestSchema, req.body, 'interactive session request');
    const s = await sessions.create(requestUser(res), body);
    res.status(201).json(describe(sessions, s));
  });

  router.get('/interactive/:id', (req, res) => void res.json(describe(sessions, session(req, res))));

  router.delete('/interactive/:id', (req, res) => {
    const s = session(req, res);
    sessions.close(s.id);
    res.json({ sessionId: s.id, closed: true });
  });

  router.post('/interactive/:id/prompt', small, async (req, res) => {
    const s = session(req, res);
    const body = parse(promptRequestSchema, req.body, 'prompt');
    s.checkSlice(body.slice);
    checkPrompt(body, s.plan.rows, s.plan.columns, sessions.maxPoints(s));
    const t0 = performance.now();
    const maskInput = body.usePreviousMask ? s.previousLogits(body.slice) : undefined;
    const result = await s.prompt(body.slice, body, { maskInput, signal: clientGone(res) });
    const ms = performance.now() - t0;
    sessions.recordPrompt(result, ms);
    log.info('interactive prompt', { session: s.id, slice: body.slice, cached: result.cached, ms: Math.round(ms) });
    res.json({ ...maskBody(s, result), timingsMs: { ...result.timingsMs, server: ms } });
  });

  // The viewer asks for the slice the user has stopped on while a tool is active, so that the
  // encoder has run (or is running: a prompt meanwhile waits on the same pass) by the first click.
  // It cancels the request when the user moves on; an encode nobody waits for any more is dropped.
  router.post('/interactive/:id/encode', small, async (req, res) => {
    const s = session(req, res);
    const body = parse(encodeRequestSchema, req.body, 'encode');
    s.checkSlice(body.slice);
    const t0 = performance.now();
    const timings: Record<string, number> = {};
    const { hit } = await s.embed(body.slice, clientGone(res), timings);
    s.lastUsed = Date.now();
    const ms = performance.now() - t0;
    log.info('interactive encode', { session: s.id, slice: body.slice, cached: hit, ms: Math.round(ms) });
    res.json({ slice: body.slice, cached: hit, timingsMs: { ...timings, server: ms } });
  });

  router.post('/interactive/:id/propagate', small, async (req, res) => {
    const s = session(req, res);
    const body = parse(propagateRequestSchema, req.body, 'propagation');
    s.checkSlice(body.fromSlice);
    if (s.propagation) throw new LdfsamError('CONFLICT', `session ${s.id} is already propagating: cancel it first`);
    const maxSlices = Math.min(body.maxSlices ?? Infinity, sessions.limits.maxPropagationSlices);
    const abort = new AbortController();
    const run = propagate(s, {
      fromSlice: body.fromSlice,
      direction: body.direction,
      minIou: body.minIou ?? sessions.limits.minIou,
      useMask: body.useMask ?? sessions.limits.propagationMaskInput,
      maxSlices,
      signal: abort.signal,
    });
    // Taken before the first await, so that a second request arriving meanwhile is a CONFLICT too.
    s.propagation = abort;
    // The client went away: stop, from the first step on.
    clientGone(res).addEventListener('abort', () => abort.abort(), { once: true });
    // The first step checks the seed; its refusal is a plain JSON error, before any event is sent.
    let first: Awaited<ReturnType<typeof run.next>>;
    try {
      first = await run.next();
    } catch (err) {
      s.propagation = undefined;
      throw err;
    }
    sessions.stats.propagations++;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    const send = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    const t0 = performance.now();
    const slices: number[] = [];
    try {
      for (let next = first; !next.done; next = await run.next()) {
        const e: PropagationEvent = next.value;
        if (e.type === 'slice') {
          slices.push(e.result.slice);
          sessions.stats.propagatedSlices++;
          s.lastUsed = Date.now();
          send('slice', { ...maskBody(s, e.result), direction: e.direction, done: e.done, total: e.total });
        } else send('stopped', e);
      }
      const ms = performance.now() - t0;
      log.info('interactive propagation', {
        session: s.id,
        from: body.fromSlice,
        slices: slices.length,
        cancelled: abort.signal.aborted,
        ms: Math.round(ms),
      });
      send('final', { fromSlice: body.fromSlice, slices: slices.sort((a, b) => a - b), cancelled: abort.signal.aborted, ms });
    } catch (err) {
      const e = toLdfsamError(err);
      if (e.httpStatus >= 500) log.error('interactive propagation failed', { session: s.id, code: e.code, message: e.message });
      send('error', { error: { code: abort.signal.aborted ? 'CANCELLED' : e.code, message: e.message }, slices });
    } finally {
      s.propagation = undefined;
      res.end();
    }
  });

  router.delete('/interactive/:id/propagate', (req, res) => {
    const s = session(req, res);
    const running = s.propagation !== undefined;
    s.propagation?.abort();
    res.json({ sessionId: s.id, cancelled: running });
  });

  // The session is looked up before its large body is read: an unknown or another user's id costs no parsing.
  const sessionFirst = (req: Request, res: Response, next: NextFunction) => {
    session(req, res);
    next();
  };
  router.post('/interactive/:id/accept', sessionFirst, express.json({ limit: ACCEPT_BODY_LIMIT }), async (req, res) => {
    const s = session(req, res);
    const body = parse(acceptRequestSchema, req.body, 'accept');
    const result = await acceptStructure(deps.client, s, body);
    sessions.stats.accepted++;
    log.info('interactive structure stored', {
      session: s.id,
      label: body.label,
      seg: result.segSopInstanceUID,
      frames: result.frames,
    });
    res.status(201).json(result);
  });
}

/**
 * Aborts when the client goes before the answer is complete (the response closed before its end).
 * Listened to on the response: the request's own 'close' fires once its body is read, so it cannot tell.
 */
function clientGone(res: Response): AbortSignal {
  const gone = new AbortController();
  if (res.destroyed) gone.abort(); // closed before the handler got here
  res.on('close', () => {
    if (!res.writableEnded) gone.abort();
  });
  return gone.signal;
}

function describe(sessions: SessionManager, s: InteractiveSession) {
  const { plan, manifest } = s;
  return {
    sessionId: s.id,
    model: { name: manifest.name, version: manifest.version },
    studyInstanceUID: plan.studyInstanceUID,
    seriesInstanceUID: plan.seriesInstanceUID,
    modality: plan.modality,
    rows: plan.rows,
    columns: plan.columns,
    /** In the planned order: the index of a slice in every other call is its place here. */
    slices: plan.slices.map((p) => ({ sopInstanceUID: p.sopInstanceUID, frameNumber: p.frameNumber })),
    maxPoints: sessions.maxPoints(s),
    idleTimeoutMs: sessions.limits.idleMs,
    propagation: {
      minIou: sessions.limits.minIou,
      useMask: sessions.limits.propagationMaskInput,
      maxSlices: sessions.limits.maxPropagationSlices,
    },
    masks: [...s.masks.entries()].sort(([a], [b]) => a - b).map(([slice, m]) => ({ slice, iou: m.iou })),
    /** Slices whose encoder outputs are cached (a prompt there runs only the decoder). */
    encodedSlices: s.encodedSlices(),
    propagating: s.propagation !== undefined,
  };
}

/** A mask as the API returns it: packed bits, row-major, least significant bit first, base64. */
function maskBody(s: InteractiveSession, r: PromptResult) {
  return {
    slice: r.slice,
    iou: r.iou,
    cached: r.cached,
    usedPreviousMask: r.usedPreviousMask,
    mask: {
      rows: s.plan.rows,
      columns: s.plan.columns,
      bits: Buffer.from(r.bits.buffer, r.bits.byteOffset, r.bits.byteLength).toString('base64'),
    },
  };
}
