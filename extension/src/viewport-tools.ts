/**
 * The Box and Point tools on OHIF's active viewport, and the preview drawn over it: our own input
 * handling and a canvas laid over cornerstone's, so that a mask appears the moment the server
 * answers (no labelmap to create and render). Coordinates go canvas -> world (the viewport's
 * camera) -> image pixels (cornerstone's worldToImageCoords: (0, 0) is the first pixel's top-left
 * corner), so zoom, pan, flips and rotation are honoured; the preview is drawn back through the
 * same mapping.
 *
 * While a tool is active its mouse presses are caught in the capture phase on the viewport element
 * and go no further: OHIF's own tool (window/level, pan...) does not act on them. The wheel still
 * scrolls slices.
 */
import type { Box, PromptPoint } from './api-client.js';
import type { OhifContext } from './ohif-results.js';
import { paintMask, rgbaWord, type Tool } from './interactive-state.js';

export interface ImageRef {
  imageId: string;
  sopInstanceUID: string;
  frameNumber: number;
}

export interface OverlayContent {
  mask?: { bits: Uint8Array; rows: number; columns: number; color: [number, number, number] };
  prompt?: { box?: Box; points: PromptPoint[] };
}

export interface ToolHandlers {
  /** Pixel indices (floored, not clamped: the receiver knows the image's size). */
  onBox(ref: ImageRef, box: Box, t0: number): void;
  onPoint(ref: ImageRef, point: PromptPoint, t0: number): void;
  /** The image shown changed (scrolling), or the viewport did. */
  onImage(ref: ImageRef | undefined): void;
}

/** The cornerstone viewport calls we use (StackViewport; a VolumeViewport has them too). */
interface CsViewport {
  element: HTMLDivElement;
  getCurrentImageId(): string | undefined;
  canvasToWorld(p: [number, number]): number[];
  worldToCanvas(p: number[]): [number, number];
}

interface CsLibraries {
  cornerstone: {
    utilities: {
      worldToImageCoords(imageId: string, world: number[]): [number, number];
      imageToWorldCoords(imageId: string, image: [number, number]): number[];
    };
    metaData: { get(type: string, imageId: string): Record<string, unknown> | undefined };
    Enums: { Events: Record<string, string> };
  };
}

export class ViewportTools {
  private tool: Tool = 'none';
  private viewport: CsViewport | undefined;
  private canvas: HTMLCanvasElement | undefined;
  private current: ImageRef | undefined;
  private draft: { from: [number, number]; to: [number, number] } | undefined;
  private readonly maskCanvases = new WeakMap<Uint8Array, HTMLCanvasElement>();
  private scratch: ImageData | undefined;
  private detachListeners: (() => void) | undefined;

  constructor(
    private readonly ctx: OhifContext,
    private readonly handlers: ToolHandlers,
    private readonly content: (ref: ImageRef) => OverlayContent,
  ) {}

  setTool(tool: Tool): void {
    this.tool = tool;
    this.attach();
    if (this.viewport) this.viewport.element.style.cursor = tool === 'none' ? '' : 'crosshair';
  }

  /** Follows the active viewport (called when OHIF's grid changes) and redraws. */
  attach(): void {
    const viewport = this.activeViewport();
    if (viewport !== this.viewport) {
      this.detach();
      this.viewport = viewport;
      if (viewport) this.listen(viewport);
    }
    this.refresh();
  }

  detach(): void {
    this.detachListeners?.();
    this.detachListeners = undefined;
    this.canvas?.remove();
    this.canvas = undefined;
    if (this.viewport) this.viewport.element.style.cursor = '';
    this.viewport = undefined;
  }

  /** The image the active viewport shows. */
  currentImage(): ImageRef | undefined {
    const imageId = this.viewport?.getCurrentImageId();
    return imageId ? this.identify(imageId) : undefined;
  }

  /** Client (page) coordinates of an image point, for tests and for placing things over the image. */
  imageToClient(x: number, y: number): [number, number] | undefined {
    const v = this.viewport;
    const imageId = v?.getCurrentImageId();
    if (!v || !imageId) return undefined;
    const [cx, cy] = v.worldToCanvas(this.libs().utilities.imageToWorldCoords(imageId, [x, y]));
    const rect = v.element.getBoundingClientRect();
    return [rect.left + cx, rect.top + cy];
  }

  /** Redraws the preview of the image shown. */
  refresh(): void {
    const v = this.viewport;
    if (!v) return;
    const canvas = this.ensureCanvas(v);
    const dpr = window.devicePixelRatio || 1;
    const width = v.element.clientWidth;
    const height = v.element.clientHeight;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
    }
    const g = canvas.getContext('2d')!;
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.clearRect(0, 0, canvas.width, canvas.height);
    const ref = this.currentImage();
    if (!ref) return;
    const m = this.imageToCanvas(v, ref.imageId);
    g.setTransform(dpr * m.a, dpr * m.b, dpr * m.c, dpr * m.d, dpr * m.e, dpr * m.f);
    const { mask, prompt } = this.content(ref);
    if (mask) {
      g.imageSmoothingEnabled = false;
      g.drawImage(this.maskCanvas(mask), 0, 0);
    }
    const pixel = 1 / Math.max(1e-6, Math.hypot(m.a, m.b)); // one screen pixel in image units
    if (prompt?.box) this.strokeBox(g, prompt.box, pixel, '#facc15');
    if (this.draft) this.strokeBox(g, this.draftBox()!, pixel, '#facc15');
    for (const p of prompt?.points ?? []) {
      g.beginPath();
      g.arc(p.x + 0.5, p.y + 0.5, 5 * pixel, 0, 2 * Math.PI);
      g.fillStyle = p.positive ? '#22c55e' : '#ef4444';
      g.fill();
      g.lineWidth = 1.5 * pixel;
      g.strokeStyle = '#ffffff';
      g.stroke();
    }
  }

  private strokeBox(g: CanvasRenderingContext2D, [x0, y0, x1, y1]: Box, pixel: number, colour: string): void {
    g.lineWidth = 2 * pixel;
    g.strokeStyle = colour;
    g.setLineDash([6 * pixel, 4 * pixel]);
    g.strokeRect(x0, y0, x1 - x0 + 1, y1 - y0 + 1);
    g.setLineDash([]);
  }

  private listen(v: CsViewport): void {
    const element = v.element;
    const rendered = this.libs().Enums.Events.IMAGE_RENDERED ?? 'CORNERSTONE_IMAGE_RENDERED';
    const onRendered = () => {
      const ref = this.currentImage();
      if (ref?.imageId !== this.current?.imageId) {
        this.current = ref;
        this.handlers.onImage(ref);
      }
      this.refresh();
    };
    const onDown = (e: MouseEvent) => {
      if (this.tool === 'none' || e.button !== 0) return;
      // Ours: OHIF's active tool must not also act on this press.
      e.stopPropagation();
      e.preventDefault();
      const ref = this.currentImage();
      const at = this.eventToImage(v, e);
      if (!ref || !at) return;
      if (this.tool === 'point') {
        this.handlers.onPoint(ref, { x: Math.floor(at[0]), y: Math.floor(at[1]), positive: !e.shiftKey }, performance.now());
        return;
      }
      this.draft = { from: at, to: at };
      const onMove = (m: MouseEvent) => {
        const to = this.eventToImage(v, m);
        if (to && this.draft) this.draft.to = to;
        this.refresh();
      };
      const onUp = (u: MouseEvent) => {
        window.removeEventListener('mousemove', onMove, true);
        window.removeEventListener('mouseup', onUp, true);
        u.stopPropagation();
        const to = this.eventToImage(v, u);
        if (to && this.draft) this.draft.to = to;
        const box = this.draftBox();
        this.draft = undefined;
        this.refresh();
        if (box && box[2] > box[0] && box[3] > box[1]) this.handlers.onBox(ref, box, performance.now());
      };
      window.addEventListener('mousemove', onMove, true);
      window.addEventListener('mouseup', onUp, true);
    };
    element.addEventListener('mousedown', onDown, true);
    element.addEventListener(rendered, onRendered);
    const onResize = () => this.refresh();
    window.addEventListener('resize', onResize);
    this.detachListeners = () => {
      element.removeEventListener('mousedown', onDown, true);
      element.removeEventListener(rendered, onRendered);
      window.removeEventListener('resize', onResize);
    };
  }

  private draftBox(): Box | undefined {
    if (!this.draft) return undefined;
    const [ax, ay] = this.draft.from;
    const [bx, by] = this.draft.to;
    return [
      Math.floor(Math.min(ax, bx)),
      Math.floor(Math.min(ay, by)),
      Math.floor(Math.max(ax, bx)),
      Math.floor(Math.max(ay, by)),
    ];
  }

  /** Continuous image coordinates of a mouse event ((0, 0) = the first pixel's top-left corner). */
  private eventToImage(v: CsViewport, e: MouseEvent): [number, number] | undefined {
    const imageId = v.getCurrentImageId();
    if (!imageId) return undefined;
    const rect = v.element.getBoundingClientRect();
    const world = v.canvasToWorld([e.clientX - rect.left, e.clientY - rect.top]);
    return this.libs().utilities.worldToImageCoords(imageId, world);
  }

  /** The affine map from image pixels to canvas (CSS) pixels, from three image points. */
  private imageToCanvas(v: CsViewport, imageId: string) {
    const u = this.libs().utilities;
    const at = (x: number, y: number) => v.worldToCanvas(u.imageToWorldCoords(imageId, [x, y]));
    const o = at(0, 0);
    const px = at(1, 0);
    const py = at(0, 1);
    return { a: px[0] - o[0], b: px[1] - o[1], c: py[0] - o[0], d: py[1] - o[1], e: o[0], f: o[1] };
  }

  /** A mask as a canvas of its own size (made once per mask: a slice's mask is a new array when it changes). */
  private maskCanvas(mask: NonNullable<OverlayContent['mask']>): HTMLCanvasElement {
    let c = this.maskCanvases.get(mask.bits);
    if (c) return c;
    c = document.createElement('canvas');
    c.width = mask.columns;
    c.height = mask.rows;
    const g = c.getContext('2d')!;
    // One pixel buffer for every mask of the image's size: putImageData copies it into the canvas.
    if (this.scratch?.width !== mask.columns || this.scratch.height !== mask.rows)
      this.scratch = g.createImageData(mask.columns, mask.rows);
    const [r, gr, b] = mask.color;
    paintMask(mask.bits, mask.rows * mask.columns, rgbaWord(r, gr, b, 120), new Uint32Array(this.scratch.data.buffer));
    g.putImageData(this.scratch, 0, 0);
    this.maskCanvases.set(mask.bits, c);
    return c;
  }

  private ensureCanvas(v: CsViewport): HTMLCanvasElement {
    if (this.canvas?.isConnected && this.canvas.parentElement === v.element) return this.canvas;
    const c = document.createElement('canvas');
    c.setAttribute('data-cy', 'ldfsam-preview');
    Object.assign(c.style, {
      position: 'absolute',
      left: '0',
      top: '0',
      width: '100%',
      height: '100%',
      pointerEvents: 'none',
      zIndex: '5',
    });
    v.element.append(c);
    this.canvas = c;
    return c;
  }

  private identify(imageId: string): ImageRef {
    const m = /\/instances\/([0-9.]+)\/frames\/(\d+)/.exec(imageId);
    if (m) return { imageId, sopInstanceUID: m[1]!, frameNumber: Number(m[2]) };
    const instance = this.libs().metaData.get('instance', imageId) as { SOPInstanceUID?: string } | undefined;
    const frame = /[?&]frame=(\d+)/.exec(imageId);
    return { imageId, sopInstanceUID: instance?.SOPInstanceUID ?? '', frameNumber: frame ? Number(frame[1]) + 1 : 1 };
  }

  private activeViewport(): CsViewport | undefined {
    const id = this.ctx.services.viewportGridService.getActiveViewportId();
    const service = this.ctx.services.cornerstoneViewportService;
    return (id && (service?.getCornerstoneViewport(id) as CsViewport | null)) || undefined;
  }

  private libs(): CsLibraries['cornerstone'] {
    const entry = this.ctx.extensionManager.getModuleEntry('@ohif/extension-cornerstone.utilityModule.common') as
      { exports: { getCornerstoneLibraries(): CsLibraries } } | undefined;
    if (!entry) throw new Error("OHIF's cornerstone extension is not loaded");
    return entry.exports.getCornerstoneLibraries().cornerstone;
  }
}
