/**
 * The interactive sessions of the server: created for a series and a promptable model, owned by the
 * user who created them (another user's id is NOT_FOUND), closed after an idle time, and limited in
 * number per user and in all. Also the numbers /api/metrics shows (the embedding cache's size, limit
 * and hit rate, prompts and their server time).
 */
import type { DicomWebClient } from '../dicomweb/client.js';
import { loadSeries } from '../dicom/inspect.js';
import { LdfsamError } from '../errors.js';
import type { Logger } from '../log.js';
import { acceptsModality, type ModelRegistry, type RegisteredModel } from '../inference/registry.js';
import { EmbeddingCache, type CacheStats } from './embedding-cache.js';
import { PROMPT_INPUTS } from './prompts.js';
import { InteractiveSession, type PromptResult } from './session.js';

export interface InteractiveLimits {
  /** A session unused this long is closed. */
  idleMs: number;
  sessionsPerUser: number;
  maxSessions: number;
  /** Points per prompt (also bounded by the model's maxPoints). */
  maxPoints: number;
  /** Slices one propagation may segment. */
  maxPropagationSlices: number;
  /** Memory for the slices' encoder outputs. */
  cacheBytes: number;
  /** Propagation stops below this predicted IoU unless the request says otherwise. */
  minIou: number;
  /** Propagation feeds the previous slice's logits as the decoder's mask input unless the request says otherwise. */
  propagationMaskInput: boolean;
}

export interface InteractiveStats {
  sessions: number;
  cache: CacheStats;
  prompts: number;
  /** Prompts whose slice was already encoded (only the decoder ran for them). */
  cachedPrompts: number;
  promptSeconds: number;
  encodes: number;
  encodeSeconds: number;
  propagations: number;
  propagatedSlices: number;
  accepted: number;
}

export class SessionManager {
  readonly cache: EmbeddingCache;
  private readonly sessions = new Map<string, InteractiveSession>();
  /** Ids of sessions closed for idleness (bounded), to say "expired" rather than "unknown". */
  private readonly expired = new Set<string>();
  private readonly sweeper: NodeJS.Timeout;
  readonly stats = {
    prompts: 0,
    cachedPrompts: 0,
    promptSeconds: 0,
    encodes: 0,
    encodeSeconds: 0,
    propagations: 0,
    propagatedSlices: 0,
    accepted: 0,
  };

  constructor(
    private readonly deps: { client: DicomWebClient; registry: ModelRegistry; log: Logger },
    readonly limits: InteractiveLimits,
  ) {
    this.cache = new EmbeddingCache(limits.cacheBytes);
    this.sweeper = setInterval(() => this.sweep(), Math.min(30_000, Math.max(100, limits.idleMs / 4)));
    this.sweeper.unref();
  }

  /** Plans the series (nothing fetched but its metadata), checks the model, starts its worker. */
  async create(
    user: string,
    request: { studyInstanceUID: string; seriesInstanceUID: string; model?: string },
  ): Promise<InteractiveSession> {
    this.checkRoom(user);
    const named = request.model ? await this.deps.registry.resolveName(request.model) : undefined; // fail fast
    if (named) checkPromptable(named);
    const { plan, metadata } = await loadSeries(this.deps.client, request);
    const model = named ?? this.deps.registry.promptableFor(plan.modality)[0];
    if (!model) throw new LdfsamError('NOT_FOUND', `no registered promptable model accepts modality ${plan.modality}`);
    checkPromptable(model);
    if (!acceptsModality(model.manifest, plan.modality))
      throw new LdfsamError(
        'INVALID_INPUT',
        `model ${model.manifest.name} does not accept modality ${plan.modality} (it accepts ${model.manifest.modalities.join(', ')})`,
      );
    const worker = await this.deps.registry.worker(model);
    const sourceInstance = metadata.find((m) => m['00080018']?.Value?.[0] === plan.slices[0]!.sopInstanceUID) ?? metadata[0]!;
    this.checkRoom(user); // again after the awaits: creates running side by side may all have passed the first check
    const session = new InteractiveSession(user, model, plan, sourceInstance, {
      client: this.deps.client,
      worker,
      cache: this.cache,
      onEncoded: (ms) => {
        this.stats.encodes++;
        this.stats.encodeSeconds += ms / 1000;
      },
    });
    this.sessions.set(session.id, session);
    this.deps.log.info('interactive session opened', {
      session: session.id,
      user,
      model: model.manifest.name,
      series: plan.seriesInstanceUID,
      slices: plan.slices.length,
    });
    return session;
  }

  /** LIMIT_REACHED when the user, or the server, has all the sessions it may have open. */
  private checkRoom(user: string): void {
    const mine = [...this.sessions.values()].filter((s) => s.user === user).length;
    if (mine >= this.limits.sessionsPerUser)
      throw new LdfsamError(
        'LIMIT_REACHED',
        `you have ${mine} interactive sessions open (the limit is ${this.limits.sessionsPerUser}): close one (DELETE /api/interactive/{id}) or let it expire`,
      );
    if (this.sessions.size >= this.limits.maxSessions)
      throw new LdfsamError(
        'LIMIT_REACHED',
        `the server has ${this.sessions.size} interactive sessions open, its limit: try again later`,
      );
  }

  /** The caller's session; unknown, expired and other users' sessions are NOT_FOUND. */
  get(id: string, user: string): InteractiveSession {
    const session = this.sessions.get(id);
    if (!session || session.user !== user) {
      const why = this.expired.has(id) ? `expired after ${Math.round(this.limits.idleMs / 1000)} s without use` : 'unknown';
      throw new LdfsamError('NOT_FOUND', `interactive session ${id} is ${session ? 'unknown' : why}: start a new one`);
    }
    session.lastUsed = Date.now();
    return session;
  }

  close(id: string, reason: 'closed' | 'expired' | 'shutdown' = 'closed'): void {
    const session = this.sessions.get(id);
    if (!session) return;
    session.propagation?.abort();
    this.sessions.delete(id);
    if (reason === 'expired') {
      this.expired.add(id);
      if (this.expired.size > 1000) this.expired.delete(this.expired.values().next().value!);
    }
    this.deps.log.info(`interactive session ${reason}`, { session: id, user: session.user, masks: session.masks.size });
  }

  sweep(now = Date.now()): void {
    for (const s of [...this.sessions.values()]) {
      if (!s.propagation && now - s.lastUsed > this.limits.idleMs) this.close(s.id, 'expired');
    }
  }

  /** Points a prompt may carry for this session's model. */
  maxPoints(session: InteractiveSession): number {
    return Math.min(this.limits.maxPoints, session.manifest.promptable!.prompts.maxPoints);
  }

  /** Counts a prompt and its server time (the decode, and the encode when the slice was not cached). */
  recordPrompt(result: PromptResult, ms: number): void {
    this.stats.prompts++;
    this.stats.promptSeconds += ms / 1000;
    if (result.cached) this.stats.cachedPrompts++;
  }

  snapshot(): InteractiveStats {
    return { sessions: this.sessions.size, cache: this.cache.stats(), ...this.stats };
  }

  closeAll(): void {
    clearInterval(this.sweeper);
    for (const id of [...this.sessions.keys()]) this.close(id, 'shutdown');
  }
}

/** A model the interactive API can run: a promptable export whose decoder takes the contract's inputs. */
export function checkPromptable(model: RegisteredModel): void {
  const { manifest } = model;
  if (!manifest.promptable)
    throw new LdfsamError(
      'INVALID_INPUT',
      `model ${manifest.name} has no promptable export (encoder + decoder): it cannot take prompts`,
    );
  const encoderOutputs = new Set(manifest.promptable.encoder.outputs.map((t) => t.name));
  const known = new Set<string>([...encoderOutputs, ...PROMPT_INPUTS]);
  const strange = manifest.promptable.decoder.inputs.map((t) => t.name).filter((n) => !known.has(n));
  const missing = ['point_coords', 'point_labels'].filter((n) => !manifest.promptable!.decoder.inputs.some((t) => t.name === n));
  if (strange.length > 0 || missing.length > 0)
    throw new LdfsamError(
      'MODEL_REJECTED',
      `${manifest.name}: the decoder's inputs are not the promptable contract's (unknown: ${strange.join(', ') || 'none'}; missing: ${missing.join(', ') || 'none'})`,
    );
}
