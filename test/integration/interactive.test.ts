/**
 * The interactive API over real HTTP against the real Orthanc, with the promptable fixture
 * (test/fixtures/model-promptable: the min-max threshold inside the prompt's box and point discs,
 * longest-side-pad at 256): every mask is checked against the fixture's answer computed with pydicom
 * from the source pixels, so a shifted, flipped or transposed mask, or one from another slice, fails.
 * Then caching, propagation over SSE (stop reasons, cancel), accept -> one SEG series checked by
 * pydicom, highdicom and dciodvfy, every bad input, limits, expiry, and concurrent sessions within the
 * embedding cache's memory limit. Studies of their own (ct-interactive, us-interactive), since the
 * SEGs stored here would upset other tests' counts.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import dcmjs from 'dcmjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/src/config.js';
import { startServer, type RunningServer } from '../../server/src/http/server.js';
import { silentLogger } from '../../server/src/log.js';
import { projectPath } from '../../server/src/util/paths.js';
import { runCli } from '../setup/cli.js';
import { pacsClient, pacsEnv, provided } from '../setup/provided.js';
import { startFaultProxy } from '../setup/proxy.js';
import { runPython } from '../setup/python.js';

const exec = promisify(execFile);
const { dicomwebUrl, pacsAuthorization, derivedDir } = provided();
const pacs = pacsClient();
const FIXTURES = projectPath('test', 'fixtures');
const MODEL = 'promptable-fixture';
/** The fixture's disc radius (12 input pixels) in native pixels of a 512- or 640-wide slice (input 256). */
const radius = (columnsOrLongest: number) => (12 * columnsOrLongest) / 256;

let work: string;
let server: RunningServer;
let base: string;
let ct: { studyInstanceUID: string; seriesInstanceUID: string };
let us: { studyInstanceUID: string; seriesInstanceUID: string };

async function ids(name: string) {
  const r = await runCli(['pacs', 'load', '--json', '--dicomweb', dicomwebUrl, join(derivedDir, name)], pacsEnv());
  const { studyInstanceUID, seriesInstanceUID } = (
    JSON.parse(r.stdout) as { series: { studyInstanceUID: string; seriesInstanceUID: string }[] }
  ).series[0]!;
  return { studyInstanceUID, seriesInstanceUID };
}

async function call(path: string, init: { method?: string; body?: unknown; token?: string; url?: string } = {}) {
  const res = await fetch(`${init.url ?? base}${path}`, {
    method: init.method ?? 'GET',
    headers: { 'content-type': 'application/json', ...(init.token ? { authorization: `Bearer ${init.token}` } : {}) },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body };
}

/** Reads a propagation's event stream to its end; `onEvent` may act on events as they come. */
async function propagate(
  session: string,
  body: unknown,
  onEvent?: (name: string, data: any) => void | Promise<void>,
  url = base,
): Promise<{ name: string; data: any }[]> {
  const res = await fetch(`${url}/api/interactive/${session}/propagate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.headers.get('content-type')?.includes('json'))
    return [{ name: 'http-error', data: { status: res.status, body: await res.json() } }];
  const events: { name: string; data: any }[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const name = /^event: (.*)$/m.exec(block)![1]!;
      const data = JSON.parse(/^data: (.*)$/m.exec(block)![1]!);
      events.push({ name, data });
      await onEvent?.(name, data);
    }
  }
  return events;
}

async function openSession(series: { studyInstanceUID: string; seriesInstanceUID: string }, url = base, token?: string) {
  const r = await call('/api/interactive', { method: 'POST', body: { ...series, model: MODEL }, url, token });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body as {
    sessionId: string;
    rows: number;
    columns: number;
    slices: { sopInstanceUID: string; frameNumber: number }[];
  };
}

function prompt(session: string, body: unknown, url = base) {
  return call(`/api/interactive/${session}/prompt`, { method: 'POST', body, url });
}

interface MaskCase {
  file: string;
  bits: string;
  box?: number[];
  points?: { x: number; y: number; positive: boolean }[];
  radius: number;
}
interface MaskCheck {
  pixels: number;
  expectedPixels: number;
  dice: number;
  diceFlippedRows: number;
  diceFlippedColumns: number;
  outside: number;
}

/**
 * Runs `body` against a server of its own (its own embedding cache) whose PACS answers frames 400 ms
 * late (a delaying proxy in front of Orthanc), so that a cancel lands while a slice is fetched.
 */
async function behindSlowPacs(
  body: (slow: RunningServer, proxy: Awaited<ReturnType<typeof startFaultProxy>>) => Promise<void>,
): Promise<void> {
  const proxy = await startFaultProxy(dicomwebUrl, (_m, url) => (url.includes('/frames/') ? { delayMs: 400 } : undefined));
  const slow = await startInteractiveServer({}, proxy.dicomwebUrl);
  try {
    await body(slow, proxy);
  } finally {
    await slow.close();
    await proxy.close();
  }
}

/** A POST whose client goes after 150 ms (before the slow PACS has answered): resolves with the fetch's error name. */
function postAndLeave(url: string, path: string, body: unknown): Promise<string> {
  return fetch(`${url}/api${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(150),
  })
    .then(() => 'answered')
    .catch((err: Error) => err.name);
}

async function checkMasks(cases: MaskCase[]): Promise<MaskCheck[]> {
  const path = join(work, `cases-${Date.now()}.json`);
  await writeFile(path, JSON.stringify(cases));
  return JSON.parse(await runPython('test/tools/check_interactive.py', ['mask', path])) as MaskCheck[];
}

/** The file of a derived series' slice, by SOP Instance UID (the planned order is not the file order). */
async function sourceFile(series: string, sop: string): Promise<string> {
  for (const f of await readdir(join(derivedDir, series))) {
    const file = join(derivedDir, series, f);
    const bytes = await readFile(file);
    const dict = dcmjs.data.DicomMessage.readFile(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    if ((dict.dict['00080018'] as { Value?: string[] } | undefined)?.Value?.[0] === sop) return file;
  }
  throw new Error(`no file of ${series} has SOP Instance UID ${sop}`);
}

/** The bounding box [x0, y0, x1, y1] of a mask's set pixels. */
function boxOf(bits: string, rows: number, columns: number): number[] {
  const b = Buffer.from(bits, 'base64');
  let [x0, y0, x1, y1] = [columns, rows, -1, -1];
  for (let y = 0; y < rows; y++)
    for (let x = 0; x < columns; x++) {
      const i = y * columns + x;
      if ((b[i >> 3]! >> (i & 7)) & 1) [x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x), Math.max(y1, y)];
    }
  return [x0, y0, x1, y1];
}

function widened([x0, y0, x1, y1]: number[], margin: number, rows: number, columns: number): number[] {
  const mx = margin * (x1! - x0! + 1);
  const my = margin * (y1! - y0! + 1);
  return [Math.max(0, x0! - mx), Math.max(0, y0! - my), Math.min(columns - 1, x1! + mx), Math.min(rows - 1, y1! + my)];
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ldfsam-interactive-'));
  ct = await ids('ct-interactive');
  us = await ids('us-interactive');
  server = await startInteractiveServer({});
  base = server.url;
}, 120_000);

afterAll(async () => {
  await server?.close();
  await rm(work, { recursive: true, force: true });
});

function startInteractiveServer(flags: Record<string, unknown>, url = dicomwebUrl): Promise<RunningServer> {
  const config = loadConfig({
    env: {},
    flags: {
      dicomwebUrl: url,
      dicomwebAuthorization: pacsAuthorization,
      dataDir: join(work, `data-${Math.random()}`),
      port: 0,
      modelDirs: [FIXTURES],
      ...flags,
    },
  });
  return startServer({ ...config, port: 0 }, silentLogger);
}

/** Each expected mask is computed by a Python oracle (pydicom + torch): seconds here, a minute or more on a loaded machine. */
const ORACLE_TIMEOUT_MS = 300_000;

describe('prompts', { timeout: ORACLE_TIMEOUT_MS }, () => {
  let session: Awaited<ReturnType<typeof openSession>>;
  let sliceFile: string;
  const SLICE = 6;
  // Around the phantom's central insert on slice 6, off-centre so that a flip moves it.
  const BOX = [190, 210, 330, 340];

  it('opens a session on the planned series: every slice in position order', async () => {
    session = await openSession(ct);
    expect(session).toMatchObject({ rows: 512, columns: 512, modality: 'CT', model: { name: MODEL, version: '1.0.0' } });
    expect(session.slices).toHaveLength(28);
    const inspect = JSON.parse(
      (await runCli(['inspect', '--json', '--dicomweb', dicomwebUrl, '--study', ct.studyInstanceUID], pacsEnv())).stdout,
    ) as { series: { sopInstanceUIDs: string[] }[] };
    expect(session.slices.map((s) => s.sopInstanceUID)).toEqual(inspect.series[0]!.sopInstanceUIDs);
    sliceFile = await sourceFile('ct-interactive', session.slices[SLICE]!.sopInstanceUID);
  });

  it('a box gives the fixture answer inside the box, on that slice, unflipped', async () => {
    const r = await prompt(session.sessionId, { slice: SLICE, box: BOX });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ slice: SLICE, cached: false, usedPreviousMask: false, mask: { rows: 512, columns: 512 } });
    expect(r.body.timingsMs.encode).toBeGreaterThan(0);
    const [check] = await checkMasks([{ file: sliceFile, bits: r.body.mask.bits, box: BOX, radius: radius(512) }]);
    expect(check!.pixels).toBeGreaterThan(5000);
    expect(check!.dice).toBeGreaterThan(0.999);
    expect(check!.diceFlippedRows).toBeLessThan(0.8);
    expect(check!.diceFlippedColumns).toBeLessThan(0.8);
    expect(check!.outside).toBe(0);
    // The fixture's IoU: the share of the region above the threshold.
    expect(r.body.iou).toBeGreaterThan(0.1);
    expect(r.body.iou).toBeLessThan(1);
  });

  it('the same slice again is cached (decoder only); a negative point removes its disc', async () => {
    const neg = { x: 260, y: 275, positive: false };
    const r = await prompt(session.sessionId, { slice: SLICE, box: BOX, points: [neg] });
    expect(r.status).toBe(200);
    expect(r.body.cached).toBe(true);
    expect(r.body.timingsMs.encode).toBeUndefined();
    const [check] = await checkMasks([{ file: sliceFile, bits: r.body.mask.bits, box: BOX, points: [neg], radius: radius(512) }]);
    expect(check!.dice).toBeGreaterThan(0.999);
    expect(check!.outside).toBe(0);
    // Compared with the box alone, the disc around the point is gone.
    const boxOnly = await prompt(session.sessionId, { slice: SLICE, box: BOX });
    const [alone] = await checkMasks([{ file: sliceFile, bits: boxOnly.body.mask.bits, box: BOX, radius: radius(512) }]);
    expect(alone!.pixels - check!.pixels).toBeGreaterThan(1000);
  });

  it('a slice encoded ahead of its first prompt (POST .../encode) answers that prompt from the cache', async () => {
    const ahead = 9;
    const first = await call(`/api/interactive/${session.sessionId}/encode`, { method: 'POST', body: { slice: ahead } });
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    expect(first.body).toMatchObject({ slice: ahead, cached: false });
    expect(first.body.timingsMs.encode).toBeGreaterThan(0);
    const again = await call(`/api/interactive/${session.sessionId}/encode`, { method: 'POST', body: { slice: ahead } });
    expect(again.body).toMatchObject({ slice: ahead, cached: true });
    expect((await call(`/api/interactive/${session.sessionId}`)).body.encodedSlices).toEqual([SLICE, ahead]);
    const r = await prompt(session.sessionId, { slice: ahead, box: BOX });
    expect(r.status).toBe(200);
    expect(r.body.cached).toBe(true);
    expect(r.body.timingsMs.encode).toBeUndefined();
    // The mask is that slice's, as if it had been encoded by the prompt.
    const file = await sourceFile('ct-interactive', session.slices[ahead]!.sopInstanceUID);
    const [check] = await checkMasks([{ file, bits: r.body.mask.bits, box: BOX, radius: radius(512) }]);
    expect(check!.dice).toBeGreaterThan(0.999);
    expect(check!.outside).toBe(0);
  });

  it('positive points alone give their discs; a previous mask as input is kept (the fixture unites them)', async () => {
    const pos = [
      { x: 250, y: 270, positive: true },
      { x: 100, y: 400, positive: true },
    ];
    const r = await prompt(session.sessionId, { slice: SLICE, points: pos });
    expect(r.status).toBe(200);
    const [check] = await checkMasks([{ file: sliceFile, bits: r.body.mask.bits, points: pos, radius: radius(512) }]);
    expect(check!.expectedPixels).toBeGreaterThan(500);
    expect(check!.dice).toBeGreaterThan(0.999);
    expect(check!.outside).toBe(0);
    const union = await prompt(session.sessionId, { slice: SLICE, box: BOX, usePreviousMask: true });
    expect(union.body.usedPreviousMask).toBe(true);
    const [both] = await checkMasks([
      { file: sliceFile, bits: union.body.mask.bits, box: BOX, points: pos, radius: radius(512) },
    ]);
    expect(both!.dice).toBeGreaterThan(0.999);
  });

  it('on a non-square RGB image (640 x 480), x is the column and y the row', async () => {
    const s = await openSession(us);
    expect(s).toMatchObject({ rows: 480, columns: 640 });
    const box = [120, 60, 400, 260];
    const r = await prompt(s.sessionId, { slice: 0, box });
    expect(r.status).toBe(200);
    const file = join(derivedDir, 'us-interactive', '000.dcm');
    const [check] = await checkMasks([{ file, bits: r.body.mask.bits, box, radius: radius(640) }]);
    expect(check!.pixels).toBeGreaterThan(1000);
    expect(check!.dice).toBeGreaterThan(0.999);
    expect(check!.outside).toBe(0);
    // The same box with x and y swapped covers other pixels.
    const swapped = await prompt(s.sessionId, { slice: 0, box: [60, 120, 260, 400] });
    const [other] = await checkMasks([{ file, bits: swapped.body.mask.bits, box, radius: radius(640) }]);
    expect(other!.dice).toBeLessThan(0.7);
    expect((await call(`/api/interactive/${s.sessionId}`, { method: 'DELETE' })).body.closed).toBe(true);
  });

  it('refuses bad input with coded errors and stores nothing', async () => {
    const id = session.sessionId;
    const seventeen = Array.from({ length: 17 }, (_, i) => ({ x: 10 + i, y: 10, positive: true }));
    const cases: [string, string, unknown, number, string][] = [
      ['a box outside the image', `/api/interactive/${id}/prompt`, { slice: 1, box: [10, 10, 600, 100] }, 400, 'INVALID_INPUT'],
      ['a negative coordinate', `/api/interactive/${id}/prompt`, { slice: 1, box: [-1, 10, 60, 100] }, 400, 'INVALID_INPUT'],
      ['an empty box', `/api/interactive/${id}/prompt`, { slice: 1, box: [50, 50, 50, 90] }, 400, 'INVALID_INPUT'],
      ['a reversed box', `/api/interactive/${id}/prompt`, { slice: 1, box: [90, 50, 50, 90] }, 400, 'INVALID_INPUT'],
      ['no box and no point', `/api/interactive/${id}/prompt`, { slice: 1 }, 400, 'INVALID_INPUT'],
      [
        'a point outside',
        `/api/interactive/${id}/prompt`,
        { slice: 1, points: [{ x: 512, y: 3, positive: true }] },
        400,
        'INVALID_INPUT',
      ],
      ['17 points', `/api/interactive/${id}/prompt`, { slice: 1, points: seventeen }, 400, 'INVALID_INPUT'],
      ['a slice out of range', `/api/interactive/${id}/prompt`, { slice: 28, box: BOX }, 400, 'INVALID_INPUT'],
      ['a fractional slice', `/api/interactive/${id}/prompt`, { slice: 1.5, box: BOX }, 400, 'INVALID_INPUT'],
      ['an unknown field', `/api/interactive/${id}/prompt`, { slice: 1, box: BOX, model: 'x' }, 400, 'INVALID_INPUT'],
      ['encoding a slice out of range', `/api/interactive/${id}/encode`, { slice: 28 }, 400, 'INVALID_INPUT'],
      ['encoding without a slice', `/api/interactive/${id}/encode`, {}, 400, 'INVALID_INPUT'],
      ['encoding with a box', `/api/interactive/${id}/encode`, { slice: 1, box: BOX }, 400, 'INVALID_INPUT'],
      [
        'encoding in an unknown session',
        '/api/interactive/00000000-0000-4000-8000-000000000000/encode',
        { slice: 1 },
        404,
        'NOT_FOUND',
      ],
      [
        'an unknown session',
        '/api/interactive/00000000-0000-4000-8000-000000000000/prompt',
        { slice: 1, box: BOX },
        404,
        'NOT_FOUND',
      ],
      ['a malformed session id', '/api/interactive/nope/prompt', { slice: 1, box: BOX }, 400, 'INVALID_INPUT'],
      ['a model without a promptable export', '/api/interactive', { ...ct, model: 'threshold-fixture' }, 400, 'INVALID_INPUT'],
      ['an unknown model', '/api/interactive', { ...ct, model: 'no-such-model' }, 404, 'NOT_FOUND'],
      [
        'an unknown series',
        '/api/interactive',
        { studyInstanceUID: ct.studyInstanceUID, seriesInstanceUID: '1.2.3.4', model: MODEL },
        404,
        'NOT_FOUND',
      ],
      [
        'a malformed UID',
        '/api/interactive',
        { studyInstanceUID: '1.2.x', seriesInstanceUID: '1.2.3', model: MODEL },
        400,
        'INVALID_INPUT',
      ],
      ['propagating from a slice without a mask', `/api/interactive/${id}/propagate`, { fromSlice: 20 }, 400, 'INVALID_INPUT'],
      ['a bad direction', `/api/interactive/${id}/propagate`, { fromSlice: SLICE, direction: 'sideways' }, 400, 'INVALID_INPUT'],
      [
        'accepting a slice without a mask',
        `/api/interactive/${id}/accept`,
        { label: 'Liver', slices: [{ slice: 20 }] },
        400,
        'INVALID_INPUT',
      ],
      [
        'accepting bits of the wrong size',
        `/api/interactive/${id}/accept`,
        { label: 'Liver', slices: [{ slice: 20, bits: 'AAAA' }] },
        400,
        'INVALID_INPUT',
      ],
      [
        'accepting only empty masks',
        `/api/interactive/${id}/accept`,
        { label: 'Liver', slices: [{ slice: 20, bits: Buffer.alloc(32768).toString('base64') }] },
        400,
        'INVALID_INPUT',
      ],
      [
        'accepting a slice twice',
        `/api/interactive/${id}/accept`,
        { label: 'Liver', slices: [{ slice: SLICE }, { slice: SLICE }] },
        400,
        'INVALID_INPUT',
      ],
      [
        'accepting without a label',
        `/api/interactive/${id}/accept`,
        { label: ' ', slices: [{ slice: SLICE }] },
        400,
        'INVALID_INPUT',
      ],
      [
        'a code meaning with a backslash (two values in one LO)',
        `/api/interactive/${id}/accept`,
        { label: 'Liver', type: { scheme: 'SCT', code: '10200004', meaning: 'Liver\\left' }, slices: [{ slice: SLICE }] },
        400,
        'INVALID_INPUT',
      ],
      [
        'a code of an unknown scheme',
        `/api/interactive/${id}/accept`,
        { label: 'Liver', type: { scheme: 'SRT', code: '1', meaning: 'x' }, slices: [{ slice: SLICE }] },
        400,
        'INVALID_INPUT',
      ],
    ];
    for (const [what, path, body, status, code] of cases) {
      const r = await call(path, { method: 'POST', body });
      expect(r.body?.error?.code, what).toBe(code);
      expect(r.status, what).toBe(status);
    }
    const raw = async (path: string, headers: Record<string, string>, body: string) => {
      const res = await fetch(`${base}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body,
      });
      return { status: res.status, body: (await res.json()) as { error: { code: string; message: string } } };
    };
    // A body the parser refuses for its encoding is the client's error, said so (not a server failure).
    const encoded = await raw(
      `/api/interactive/${id}/prompt`,
      { 'content-encoding': 'br2' },
      JSON.stringify({ slice: 1, box: BOX }),
    );
    expect(encoded).toMatchObject({ status: 400, body: { error: { code: 'INVALID_INPUT' } } });
    expect(encoded.body.error.message).toMatch(/br2/);
    // An accept for an unknown session is refused before its (large) body is read.
    const unknown = await raw('/api/interactive/00000000-0000-4000-8000-000000000000/accept', {}, '{"not json');
    expect(unknown).toMatchObject({ status: 404, body: { error: { code: 'NOT_FOUND' } } });
    expect(await pacs.searchForSeries({ studyInstanceUID: ct.studyInstanceUID, queryParams: { Modality: 'SEG' } })).toHaveLength(
      0,
    );
  });
});

describe('propagation and accept', { timeout: ORACLE_TIMEOUT_MS }, () => {
  let session: Awaited<ReturnType<typeof openSession>>;
  let masks: Map<number, string>;
  let ious: Map<number, number>;
  const FROM = 4;

  it('propagates both ways over SSE until the structure ends, each slice its own mask', async () => {
    session = await openSession(ct);
    // The central insert (a cylinder through slices 0-10 of the phantom): a box around it on slice 4.
    const first = await prompt(session.sessionId, { slice: FROM, box: [200, 215, 300, 320] });
    expect(first.body.mask).toBeDefined();
    // The fixture's IoU (the share of its box above the threshold) says nothing of the structure's presence: off.
    const events = await propagate(session.sessionId, { fromSlice: FROM, direction: 'both', minIou: 0 });
    const names = events.map((e) => e.name);
    expect(names.at(-1)).toBe('final');
    const slices = events.filter((e) => e.name === 'slice').map((e) => e.data);
    const stopped = events.filter((e) => e.name === 'stopped').map((e) => e.data);
    expect(stopped.map((s) => s.direction)).toEqual(['up', 'down']);
    // Down reaches the first slice; up goes on while the threshold finds something in the box.
    expect(stopped[1]).toMatchObject({ reason: 'end-of-series', atSlice: null });
    expect(stopped[0]).toMatchObject({ reason: 'empty', iou: 0 });
    const up = slices.filter((s) => s.direction === 'up').map((s) => s.slice);
    const down = slices.filter((s) => s.direction === 'down').map((s) => s.slice);
    expect(up).toEqual(Array.from({ length: up.length }, (_, i) => FROM + 1 + i));
    expect(down).toEqual([3, 2, 1, 0]);
    expect(up.length).toBeGreaterThanOrEqual(4);
    expect(stopped[0].atSlice).toBe(FROM + up.length + 1);
    // Progress is monotonic, and the final event lists every slice done.
    expect(slices.map((s) => s.done)).toEqual(slices.map((_, i) => i + 1));
    const final = events.at(-1)!.data;
    expect(final).toMatchObject({ fromSlice: FROM, cancelled: false });
    expect(final.slices).toEqual([...down, ...up].sort((a, b) => a - b));
    // Every mask is the fixture's answer on its own slice for the box of the mask before it, + 10% per side.
    const previous = new Map<number, string>([[FROM, first.body.mask.bits]]);
    for (const e of slices) previous.set(e.slice, e.mask.bits);
    const files = await Promise.all(slices.map((s) => sourceFile('ct-interactive', session.slices[s.slice]!.sopInstanceUID)));
    const checks = await checkMasks(
      slices.map((e, i) => {
        const before = previous.get(e.direction === 'up' ? e.slice - 1 : e.slice + 1)!;
        return { file: files[i]!, bits: e.mask.bits, box: widened(boxOf(before, 512, 512), 0.1, 512, 512), radius: radius(512) };
      }),
    );
    for (const [i, c] of checks.entries()) {
      expect(c.pixels, `slice ${slices[i].slice}`).toBeGreaterThan(1000);
      expect(c.dice, `slice ${slices[i].slice}`).toBeGreaterThan(0.999);
      expect(c.diceFlippedRows).toBeLessThan(0.9);
    }
    masks = new Map([[FROM, first.body.mask.bits], ...slices.map((s) => [s.slice, s.mask.bits] as [number, string])]);
    ious = new Map(slices.map((s) => [s.slice, s.iou]));
    const state = await call(`/api/interactive/${session.sessionId}`);
    expect(state.body.masks.map((m: { slice: number }) => m.slice)).toEqual([...masks.keys()].sort((a, b) => a - b));
  });

  it('stops at the slice limit and at a minimum IoU', async () => {
    const limited = await propagate(session.sessionId, { fromSlice: FROM, direction: 'down', maxSlices: 2, minIou: 0 });
    expect(limited.filter((e) => e.name === 'slice').map((e) => e.data.slice)).toEqual([3, 2]);
    expect(limited.find((e) => e.name === 'stopped')!.data).toMatchObject({ reason: 'limit', atSlice: 1 });
    const strict = await propagate(session.sessionId, { fromSlice: FROM, direction: 'up', minIou: 0.999 });
    expect(strict.filter((e) => e.name === 'slice')).toHaveLength(0);
    expect(strict.find((e) => e.name === 'stopped')!.data).toMatchObject({ reason: 'low-iou', atSlice: FROM + 1 });
    // The refused mask is not kept: the slice keeps the one it had (from the propagation before).
    const state = await call(`/api/interactive/${session.sessionId}`);
    const kept = state.body.masks.find((m: { slice: number }) => m.slice === FROM + 1);
    expect(kept.iou).toBe(ious.get(FROM + 1));
  });

  it('accept stores one SEG: SEMIAUTOMATIC, the model as algorithm, frames on consecutive source slices, the masks as answered', async () => {
    const keep = [...masks.keys()].sort((a, b) => a - b);
    const r = await call(`/api/interactive/${session.sessionId}/accept`, {
      method: 'POST',
      body: {
        label: 'Insert',
        category: { scheme: 'SCT', code: '91723000', meaning: 'Anatomical Structure' },
        type: { scheme: 'SCT', code: '4147007', meaning: 'Mass' },
        slices: keep.map((slice) => ({ slice })),
      },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({ frames: keep.length, slices: keep, instanceNumber: 1 });
    const series = await pacs.searchForSeries({ studyInstanceUID: ct.studyInstanceUID, queryParams: { Modality: 'SEG' } });
    expect(series.map((s) => s['0020000E']?.Value?.[0])).toEqual([r.body.segSeriesInstanceUID]);
    const file = join(work, 'accepted.dcm');
    await writeFile(
      file,
      await pacs.retrieveInstance({
        studyInstanceUID: ct.studyInstanceUID,
        seriesInstanceUID: r.body.segSeriesInstanceUID,
        sopInstanceUID: r.body.segSopInstanceUID,
      }),
    );
    const report = JSON.parse(
      await runPython('test/tools/check_interactive.py', ['seg', file, join(derivedDir, 'ct-interactive')]),
    );
    expect(report).toMatchObject({
      highdicom: 'ok',
      sopClassUID: '1.2.840.10008.5.1.4.1.1.66.4',
      seriesDescription: 'LDFSAM interactive',
      segments: 1,
      label: 'Insert',
      algorithmType: 'SEMIAUTOMATIC',
      algorithmName: 'LDFSAM',
      algorithmVersion: `${MODEL} 1.0.0`,
      type: { scheme: 'SCT', code: '4147007', meaning: 'Mass' },
    });
    // Frame i sits on planned slice keep[i]: consecutive source slices, each mask exactly as the API answered.
    expect(report.frames.map((f: { source: string }) => f.source)).toEqual(keep.map((k) => session.slices[k]!.sopInstanceUID));
    for (const [i, f] of report.frames.entries()) {
      expect(f).toMatchObject({ found: true, positionMatches: true });
      expect(f.bits, `frame ${i + 1}`).toBe(masks.get(keep[i]!));
    }
    const { stdout, stderr } = await exec('dciodvfy', [file]).catch((e: { stdout: string; stderr: string }) => e);
    expect(`${stdout}\n${stderr}`.split('\n').filter((l) => /^Error/.test(l))).toEqual([]);
  });

  it('a second structure (free text, an edited mask) is a second instance of the same SEG series', async () => {
    const edited = Buffer.alloc((512 * 512) / 8);
    for (let y = 100; y < 140; y++) for (let x = 96; x < 160; x++) edited[(y * 512 + x) >> 3]! |= 1 << ((y * 512 + x) & 7);
    // The slice's own mask and an edited one, under a free-text label.
    const region = (color: number[]) => ({
      label: 'My region',
      color,
      slices: [{ slice: FROM }, { slice: FROM + 1, bits: edited.toString('base64') }],
    });
    const accept = (color: number[]) =>
      call(`/api/interactive/${session.sessionId}/accept`, { method: 'POST', body: region(color) });
    const r = await accept([200, 30, 30]);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({ instanceNumber: 2, frames: 2, slices: [FROM, FROM + 1] });
    const series = await pacs.searchForSeries({ studyInstanceUID: ct.studyInstanceUID, queryParams: { Modality: 'SEG' } });
    expect(series).toHaveLength(1);
    const instances = await pacs.searchForInstances({
      studyInstanceUID: ct.studyInstanceUID,
      seriesInstanceUID: r.body.segSeriesInstanceUID,
    });
    expect(instances).toHaveLength(2);
    const file = join(work, 'second.dcm');
    await writeFile(
      file,
      await pacs.retrieveInstance({
        studyInstanceUID: ct.studyInstanceUID,
        seriesInstanceUID: r.body.segSeriesInstanceUID,
        sopInstanceUID: r.body.segSopInstanceUID,
      }),
    );
    const report = JSON.parse(
      await runPython('test/tools/check_interactive.py', ['seg', file, join(derivedDir, 'ct-interactive')]),
    );
    expect(report).toMatchObject({ label: 'My region', instanceNumber: 2, type: { scheme: '99LDFSAM', meaning: 'My region' } });
    expect(report.type.code).toMatch(/^L[0-9A-F]{10}$/);
    expect(report.frames[1].bits).toBe(edited.toString('base64'));
    // The same structure accepted again is the same instance: the PACS keeps it once.
    const again = await accept([200, 30, 30]);
    expect(again.body.segSopInstanceUID).toBe(r.body.segSopInstanceUID);
    expect(
      await pacs.searchForInstances({ studyInstanceUID: ct.studyInstanceUID, seriesInstanceUID: r.body.segSeriesInstanceUID }),
    ).toHaveLength(2);
    // Only its colour changed: a change all the same, stored as a new instance (not taken for a repeat and dropped).
    const recoloured = await accept([30, 30, 200]);
    expect(recoloured.status).toBe(201);
    expect(recoloured.body.segSopInstanceUID).not.toBe(r.body.segSopInstanceUID);
    expect(
      await pacs.searchForInstances({ studyInstanceUID: ct.studyInstanceUID, seriesInstanceUID: r.body.segSeriesInstanceUID }),
    ).toHaveLength(3);
  });
});

describe('cancel, limits, expiry, memory', { timeout: ORACLE_TIMEOUT_MS }, () => {
  it('a propagation is cancelled by DELETE and by closing its stream; the slices done stay', async () => {
    // Slow frames (a delaying proxy in front of Orthanc) so that the cancel lands mid-way.
    await behindSlowPacs(async (slow) => {
      const s = await openSession(ct, slow.url);
      await prompt(s.sessionId, { slice: 0, box: [200, 215, 300, 320] }, slow.url);
      let cancelled = false;
      const events = await propagate(
        s.sessionId,
        { fromSlice: 0, direction: 'up', minIou: 0 },
        async (name) => {
          if (name === 'slice' && !cancelled) {
            cancelled = true;
            expect(
              (await call(`/api/interactive/${s.sessionId}/propagate`, { method: 'DELETE', url: slow.url })).body.cancelled,
            ).toBe(true);
          }
        },
        slow.url,
      );
      const done = events.filter((e) => e.name === 'slice').length;
      expect(done).toBeGreaterThanOrEqual(1);
      expect(done).toBeLessThanOrEqual(3);
      expect(events.find((e) => e.name === 'stopped')!.data.reason).toBe('cancelled');
      expect(events.at(-1)).toMatchObject({ name: 'final', data: { cancelled: true } });
      const state = await call(`/api/interactive/${s.sessionId}`, { url: slow.url });
      expect(state.body.propagating).toBe(false);
      expect(state.body.masks).toHaveLength(1 + done);

      // Two propagations asked at once: one runs, the other is a CONFLICT (the session is taken
      // before the first await). Closing the stream stops it too: the session is free again within a slice's time.
      const controller = new AbortController();
      const start = () =>
        fetch(`${slow.url}/api/interactive/${s.sessionId}/propagate`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ fromSlice: 0, direction: 'up', minIou: 0 }),
          signal: controller.signal,
        });
      const both = await Promise.all([start(), start()]);
      expect(both.map((r) => r.status).sort()).toEqual([200, 409]);
      const refused = both.find((r) => r.status === 409)!;
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('CONFLICT');
      controller.abort();
      await expect
        .poll(async () => (await call(`/api/interactive/${s.sessionId}`, { url: slow.url })).body.propagating, {
          timeout: 10_000,
        })
        .toBe(false);
    });
  });

  it('a client gone before the first event (its first slice still being fetched) stops the propagation there', async () => {
    // A server of its own, so its own cache: slice 1 is not encoded yet
    await behindSlowPacs(async (slow) => {
      const s = await openSession(ct, slow.url);
      await prompt(s.sessionId, { slice: 0, box: [200, 215, 300, 320] }, slow.url);
      const leaving = postAndLeave(slow.url, `/interactive/${s.sessionId}/propagate`, {
        fromSlice: 0,
        direction: 'up',
        minIou: 0,
      });
      expect(await leaving).toBe('TimeoutError');
      await expect
        .poll(async () => (await call(`/api/interactive/${s.sessionId}`, { url: slow.url })).body.propagating, {
          timeout: 10_000,
        })
        .toBe(false);
      // Not the ~10 slices the structure spans: the seed, and at most the slice being fetched.
      const after = await call(`/api/interactive/${s.sessionId}`, { url: slow.url });
      expect(after.body.masks.length).toBeLessThanOrEqual(2);
    });
  });

  it('an encode ahead that its client cancels (the user moved on) is dropped: its slice is not fetched to the end nor encoded', async () => {
    // A server of its own, so its own cache: nothing encoded yet
    await behindSlowPacs(async (slow, proxy) => {
      const s = await openSession(ct, slow.url);
      const leaving = postAndLeave(slow.url, `/interactive/${s.sessionId}/encode`, { slice: 2 });
      expect(await leaving).toBe('TimeoutError');
      const metrics = async () => {
        const text = (await call('/api/metrics', { url: slow.url })).body as string;
        return (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
      };
      await expect.poll(async () => (await metrics())('ldfsam_interactive_encodes_dropped_total'), { timeout: 5000 }).toBe(1);
      // The server aborted its PACS request for the slice's frame (held 400 ms by the proxy).
      expect(proxy.closedEarly().filter((url) => url.includes('/frames/'))).toHaveLength(1);
      // Well past the delayed frame: still nothing encoded.
      await new Promise((r) => setTimeout(r, 1500));
      expect((await metrics())('ldfsam_interactive_encodes_total')).toBe(0);
      expect((await call(`/api/interactive/${s.sessionId}`, { url: slow.url })).body.encodedSlices).toEqual([]);
      // The slice is not lost for later: a prompt there encodes it.
      const answer = await prompt(s.sessionId, { slice: 2, box: [200, 215, 300, 320] }, slow.url);
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      expect(answer.body.cached).toBe(false);
      expect((await metrics())('ldfsam_interactive_encodes_total')).toBe(1);
    });
  });

  it("a prompt whose client goes before its answer does not hide an earlier prompt's answer on the slice", async () => {
    // A server of its own, so its own cache: slice 4 is not encoded yet
    await behindSlowPacs(async (slow) => {
      const s = await openSession(ct, slow.url);
      const first = prompt(s.sessionId, { slice: 4, box: [200, 215, 300, 320] }, slow.url);
      await new Promise((r) => setTimeout(r, 50)); // the first is the server's first
      const leaving = postAndLeave(slow.url, `/interactive/${s.sessionId}/prompt`, { slice: 4, box: [100, 100, 300, 300] });
      expect(await leaving).toBe('TimeoutError');
      const answer = await first;
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      // The slice's mask is the first prompt's answer (before: none kept, the gone prompt counted as newer).
      const state = await call(`/api/interactive/${s.sessionId}`, { url: slow.url });
      expect(state.body.masks).toEqual([{ slice: 4, iou: answer.body.iou }]);
    });
  });

  it('limits sessions per user and per server (also when opened at the same moment), expires idle sessions, and keeps other users out', async () => {
    const limited = await startInteractiveServer({
      interactiveSessionsPerUser: 2,
      interactiveIdleMs: 1500,
      apiTokens: ['token-of-alice-123', 'token-of-bob-4567'],
    });
    try {
      const a1 = await openSession(ct, limited.url, 'token-of-alice-123');
      await openSession(ct, limited.url, 'token-of-alice-123');
      const third = await call('/api/interactive', {
        method: 'POST',
        body: { ...ct, model: MODEL },
        url: limited.url,
        token: 'token-of-alice-123',
      });
      expect(third).toMatchObject({ status: 429, body: { error: { code: 'LIMIT_REACHED' } } });
      // Bob has his own allowance and cannot see Alice's session.
      await openSession(ct, limited.url, 'token-of-bob-4567');
      const peek = await call(`/api/interactive/${a1.sessionId}`, { url: limited.url, token: 'token-of-bob-4567' });
      expect(peek).toMatchObject({ status: 404, body: { error: { code: 'NOT_FOUND' } } });
      // Idle sessions expire and say so; their room is free again.
      await new Promise((r) => setTimeout(r, 2500));
      const gone = await call(`/api/interactive/${a1.sessionId}`, { url: limited.url, token: 'token-of-alice-123' });
      expect(gone.status).toBe(404);
      expect(gone.body.error.message).toMatch(/expired/);
      await openSession(ct, limited.url, 'token-of-alice-123');
    } finally {
      await limited.close();
    }
    // The server's own limit holds when users open sessions at the same moment (both pass the check made before the series is read).
    const one = await startInteractiveServer({
      interactiveMaxSessions: 1,
      apiTokens: ['token-of-alice-123', 'token-of-bob-4567'],
    });
    try {
      const both = await Promise.all(
        ['token-of-alice-123', 'token-of-bob-4567'].map((token) =>
          call('/api/interactive', { method: 'POST', body: { ...ct, model: MODEL }, url: one.url, token }),
        ),
      );
      expect(both.map((r) => r.status).sort()).toEqual([201, 429]);
      expect(both.find((r) => r.status === 429)!.body.error.message).toMatch(/the server has 1 interactive sessions open/);
    } finally {
      await one.close();
    }
  });

  it('concurrent sessions stay within the embedding cache limit; the metrics show it', async () => {
    // 1 MB: three of the fixture's 256 x 256 embeddings (256 kB each) fit, a fourth evicts the oldest.
    const small = await startInteractiveServer({ interactiveCacheMb: 1 });
    try {
      const sessions = await Promise.all([openSession(ct, small.url), openSession(ct, small.url), openSession(us, small.url)]);
      const answers = await Promise.all(
        sessions.flatMap((s, k) =>
          (k < 2 ? [3, 4, 5, 6, 7, 8] : [0]).map((slice) => prompt(s.sessionId, { slice, box: [100, 100, 300, 300] }, small.url)),
        ),
      );
      for (const a of answers) expect(a.status, JSON.stringify(a.body)).toBe(200);
      // Which slices the burst left in the cache depends on which fetch finished first; a slice just
      // prompted is the most recent entry, so its next prompt runs only the decoder.
      await prompt(sessions[0].sessionId, { slice: 8, box: [100, 100, 300, 300] }, small.url);
      const again = await prompt(sessions[0].sessionId, { slice: 8, box: [120, 120, 280, 280] }, small.url);
      expect(again.body.cached).toBe(true);
      const text = (await call('/api/metrics', { url: small.url })).body as string;
      const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
      expect(metric('ldfsam_interactive_cache_limit_bytes')).toBe(1024 * 1024);
      expect(metric('ldfsam_interactive_cache_bytes')).toBeLessThanOrEqual(1024 * 1024);
      expect(metric('ldfsam_interactive_cache_entries')).toBe(3);
      expect(metric('ldfsam_interactive_cache_evictions_total')).toBeGreaterThan(0);
      expect(metric('ldfsam_interactive_sessions')).toBe(3);
      expect(metric('ldfsam_interactive_prompts_total')).toBe(15);
      // Both CT sessions share the cache: 7 different slices, encoded at most once per request.
      expect(metric('ldfsam_interactive_encodes_total')).toBeGreaterThanOrEqual(7);
      expect(metric('ldfsam_interactive_encodes_total')).toBeLessThanOrEqual(14);
      expect(metric('ldfsam_interactive_cache_hit_ratio')).toBeGreaterThan(0);
    } finally {
      await small.close();
    }
  });
});
