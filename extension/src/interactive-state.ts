/**
 * The interactive section's state and the pure functions over it: the prompts and masks of the
 * structure being drawn (per slice of the server's planned order), the undo stack, propagation
 * progress, the label to store it under. Masks are kept decoded (one byte per packed byte, as the
 * server sends them); a mask the server does not hold as its latest (restored by undo) is `dirty`
 * and is sent back with its bits on accept.
 */
import type { Accepted, Box, InteractiveSession, ModelInfo, PromptPoint } from './api-client.js';
import { STRUCTURES } from './codes.js';
import type { ErrorInfo } from './panel-state.js';

export type Tool = 'none' | 'box' | 'point';

export interface SlicePrompt {
  box?: Box;
  points: PromptPoint[];
}

export interface ClientMask {
  bits: Uint8Array;
  iou: number | null;
  /** The server's session does not hold this mask as the slice's latest: send its bits on accept. */
  dirty: boolean;
}

/** What one step changed, as it was before: undo puts it back. */
export interface UndoEntry {
  what: 'prompt' | 'propagation';
  before: Record<number, { prompt?: SlicePrompt; mask?: ClientMask }>;
}

export interface PropagationProgress {
  running: boolean;
  done: number;
  total: number;
  stopped: { direction: string; reason: string; atSlice: number | null }[];
  cancelled?: boolean;
}

export interface InteractiveState {
  tool: Tool;
  session?: InteractiveSession;
  opening: boolean;
  /** The user's promptable model per modality. */
  chosenModel: Record<string, string>;
  prompts: Record<number, SlicePrompt>;
  masks: Record<number, ClientMask>;
  undo: UndoEntry[];
  busy?: 'prompt' | 'propagate' | 'accept';
  /** The slice the active viewport shows (planned index), when it belongs to the session's series. */
  slice?: number;
  /** Click to preview drawn, and the server's time, of the last prompt (ms). */
  previewMs?: number;
  serverMs?: number;
  propagation?: PropagationProgress;
  /** A STRUCTURES key, or 'free' with `text`. */
  label: { key: string; text: string };
  accepted?: Accepted & { label: string };
  error?: ErrorInfo;
  hint?: string;
}

export const initialInteractive: InteractiveState = {
  tool: 'none',
  opening: false,
  chosenModel: {},
  prompts: {},
  masks: {},
  undo: [],
  label: { key: STRUCTURES[0]!.key, text: '' },
};

/** Models that take prompts for a modality: those made for it first, then catch-alls (the server's order). */
export function promptableModels(models: ModelInfo[], modality: string): ModelInfo[] {
  const fitting = models.filter(
    (m) => (m.modes ?? ['auto']).includes('promptable') && (m.modalities.includes(modality) || m.modalities.includes('*')),
  );
  return [...fitting.filter((m) => m.modalities.includes(modality)), ...fitting.filter((m) => !m.modalities.includes(modality))];
}

export function chosenPromptable(
  models: ModelInfo[] | undefined,
  modality: string,
  chosen: Record<string, string>,
): ModelInfo | undefined {
  const list = promptableModels(models ?? [], modality);
  return list.find((m) => m.name === chosen[modality]) ?? list[0];
}

/**
 * Whether the model's own held-out metrics say a click alone does not segment (e.g. LiteMedSAM,
 * trained with boxes only): prompted Dice for a single point below 0.5. Undefined when the manifest
 * does not say.
 */
export function clicksNeedBox(model: ModelInfo | undefined): boolean | undefined {
  const prompted = (model?.metrics as { prompted?: unknown } | null | undefined)?.prompted;
  if (!Array.isArray(prompted)) return undefined;
  const dice = prompted
    .filter((e: { prompt?: unknown }) => typeof e?.prompt === 'string' && /point/i.test(e.prompt))
    .map((e: { dice?: { mean?: number } | number }) => (typeof e.dice === 'number' ? e.dice : e.dice?.mean))
    .filter((d): d is number => typeof d === 'number');
  if (dice.length === 0) return undefined;
  return Math.max(...dice) < 0.5;
}

/** A new prompt on a slice: the box tool replaces the slice's prompt, the point tool adds a point. */
export function nextPrompt(current: SlicePrompt | undefined, change: { box: Box } | { point: PromptPoint }): SlicePrompt {
  if ('box' in change) return { box: change.box, points: [] };
  return { box: current?.box, points: [...(current?.points ?? []), change.point] };
}

/** The state after a prompt was sent for `slice` (its mask comes with setMask). */
export function withPrompt(s: InteractiveState, slice: number, prompt: SlicePrompt): InteractiveState {
  return {
    ...s,
    prompts: { ...s.prompts, [slice]: prompt },
    undo: [...s.undo, { what: 'prompt', before: { [slice]: { prompt: s.prompts[slice], mask: s.masks[slice] } } }],
  };
}

export function setMask(s: InteractiveState, slice: number, mask: ClientMask | undefined): InteractiveState {
  const masks = { ...s.masks };
  if (mask) masks[slice] = mask;
  else delete masks[slice];
  return { ...s, masks };
}

/** Undoes the last step: prompts and masks of the slices it touched are as they were (their masks now dirty). */
export function undo(s: InteractiveState): InteractiveState {
  const last = s.undo.at(-1);
  if (!last) return s;
  const prompts = { ...s.prompts };
  const masks = { ...s.masks };
  for (const [key, was] of Object.entries(last.before)) {
    const slice = Number(key);
    if (was.prompt) prompts[slice] = was.prompt;
    else delete prompts[slice];
    if (was.mask) masks[slice] = { ...was.mask, dirty: true };
    else delete masks[slice];
  }
  return { ...s, prompts, masks, undo: s.undo.slice(0, -1) };
}

/** Forgets the structure being drawn (the session and its cached slices stay). */
export function cleared(s: InteractiveState): InteractiveState {
  return { ...s, prompts: {}, masks: {}, undo: [], propagation: undefined, hint: undefined, error: undefined };
}

export function isEmptyMask(bits: Uint8Array): boolean {
  for (let i = 0; i < bits.length; i++) if (bits[i]) return false;
  return true;
}

/** The slices to store: every non-empty mask; the bits of those the server does not hold. */
export function acceptSlices(s: InteractiveState): { slice: number; bits?: string }[] {
  return Object.entries(s.masks)
    .filter(([, m]) => !isEmptyMask(m.bits))
    .map(([k, m]) => ({ slice: Number(k), ...(m.dirty ? { bits: encodeBits(m.bits) } : {}) }))
    .sort((a, b) => a.slice - b.slice);
}

export function decodeBits(base64: string): Uint8Array {
  const text = atob(base64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

export function encodeBits(bits: Uint8Array): string {
  let text = '';
  for (let i = 0; i < bits.length; i += 0x8000) text += String.fromCharCode(...bits.subarray(i, i + 0x8000));
  return btoa(text);
}

/** An RGBA colour as one 32-bit pixel word in the platform's byte order (as a Uint32Array over ImageData sees it). */
export function rgbaWord(r: number, g: number, b: number, a: number): number {
  return new Uint32Array(new Uint8ClampedArray([r, g, b, a]).buffer)[0]!;
}

/**
 * Paints a packed mask (pixel i is bit i & 7 of byte i >> 3, row-major, as the server sends it) into
 * `out`, one 32-bit word per pixel: `on` where the bit is set, 0 (transparent) elsewhere. A byte
 * with no bit set (most of a mask) costs one test, so this is on the click path without weight.
 */
export function paintMask(bits: Uint8Array, pixels: number, on: number, out: Uint32Array): void {
  out.fill(0, 0, pixels);
  const bytes = Math.min(bits.length, Math.ceil(pixels / 8));
  for (let j = 0; j < bytes; j++) {
    const byte = bits[j]!;
    if (byte === 0) continue;
    const base = j << 3;
    const end = Math.min(8, pixels - base);
    for (let k = 0; k < end; k++) if ((byte >> k) & 1) out[base + k] = on;
  }
}

/** The label and codes to store under: a listed structure, or free text (the server makes a local code). */
export function chosenLabel(s: InteractiveState) {
  if (s.label.key === 'free') return s.label.text.trim() ? { label: s.label.text.trim() } : undefined;
  const choice = STRUCTURES.find((c) => c.key === s.label.key);
  return choice ? { label: choice.label, category: choice.category, type: choice.type, color: choice.color } : undefined;
}

/** The planned index of an image (its SOP Instance UID and frame), or undefined when the session's series lacks it. */
export function sliceOf(
  session: InteractiveSession | undefined,
  sopInstanceUID: string,
  frameNumber: number,
): number | undefined {
  if (!session) return undefined;
  const i = session.slices.findIndex((x) => x.sopInstanceUID === sopInstanceUID && x.frameNumber === frameNumber);
  return i < 0 ? undefined : i;
}

export function maskedSlices(s: InteractiveState): number[] {
  return Object.keys(s.masks)
    .map(Number)
    .filter((k) => !isEmptyMask(s.masks[k]!.bits))
    .sort((a, b) => a - b);
}

/**
 * The slice to have the server encode before the user's first click on it: the one shown, while a
 * tool is on, a session is open and no propagation holds the encoder; none where the server has
 * encoded it already (or is asked to).
 */
export function sliceToEncodeAhead(s: InteractiveState, ...known: ReadonlySet<number>[]): number | undefined {
  if (s.slice === undefined || !s.session || s.tool === 'none' || s.busy === 'propagate') return undefined;
  return known.some((k) => k.has(s.slice!)) ? undefined : s.slice;
}

/**
 * Whether an encode asked ahead for `slice` is no longer wanted (cancelled, so that the server drops
 * it unless a prompt waits on it): the user has moved to another slice, or put the tools away.
 */
export function aheadUnwanted(s: InteractiveState, slice: number): boolean {
  return s.slice !== slice || !s.session || s.tool === 'none';
}
