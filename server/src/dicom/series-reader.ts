/**
 * Streams the slices of a planned series from the PACS in processing order: frames are fetched in
 * their stored transfer syntax, decompressed here, and turned into pixel values. A bounded number
 * of requests run ahead of the consumer, so fetching and decoding overlap with whatever the
 * consumer does, and memory stays bounded by `prefetch` x `framesPerRequest` frames.
 */
import type { DicomWebClient } from '../dicomweb/client.js';
import type { DicomJsonElement, RetrievedFrame } from '../dicomweb/types.js';
import { LdfsamError } from '../errors.js';
import { decompressOffThread } from './codecs/decode-pool.js';
import { NATIVE_SYNTAXES, TS } from './codecs/index.js';
import { readPart10Header, readPart10Pixels } from './part10.js';
import { buildPalette, nativeFrameLength, toSlicePixels, type FrameBytes, type Palette, type SlicePixels } from './pixels.js';
import type { PaletteSource, SeriesPlan, SlicePlan } from './series-plan.js';

export interface Slice {
  plan: SlicePlan;
  pixels: SlicePixels;
  /** Transfer syntax the PACS sent this frame in. */
  transferSyntaxUID: string;
}

export interface ReadOptions {
  /** Requests allowed to run ahead of the consumer (default 4). */
  prefetch?: number;
  /** Frames asked for in one request, for multi-frame instances (default 8). */
  framesPerRequest?: number;
  signal?: AbortSignal;
  /**
   * Transfer syntax to ask the PACS for; default '*' (as stored, decoded here). A PACS that cannot
   * serve '*' can be asked for explicit little endian ('1.2.840.10008.1.2.1') instead.
   */
  transferSyntaxUID?: string;
}

interface Batch {
  slices: SlicePlan[];
}

export async function* readSeriesSlices(
  client: DicomWebClient,
  plan: SeriesPlan,
  options: ReadOptions = {},
): AsyncGenerator<Slice> {
  const prefetch = Math.max(1, options.prefetch ?? 4);
  const framesPerRequest = Math.max(1, options.framesPerRequest ?? 8);
  const palettes = new Map<string, Promise<Palette>>();
  const batches = batchSlices(plan.slices, framesPerRequest);
  const pending: Promise<Slice[]>[] = [];
  let next = 0;
  const launch = () => {
    while (pending.length < prefetch && next < batches.length) {
      const promise = fetchBatch(client, plan, batches[next++]!, palettes, options);
      promise.catch(() => undefined); // surfaced when awaited; avoids an unhandled rejection meanwhile
      pending.push(promise);
    }
  };
  launch();
  while (pending.length > 0) {
    const slices = await pending.shift()!;
    launch();
    for (const slice of slices) yield slice;
  }
}

/** Consecutive slices of the same instance go into one frames request. */
function batchSlices(slices: SlicePlan[], max: number): Batch[] {
  const batches: Batch[] = [];
  let current: Batch | undefined;
  for (const s of slices) {
    if (current && current.slices[0]!.sopInstanceUID === s.sopInstanceUID && current.slices.length < max) {
      current.slices.push(s);
    } else {
      current = { slices: [s] };
      batches.push(current);
    }
  }
  return batches;
}

async function fetchBatch(
  client: DicomWebClient,
  plan: SeriesPlan,
  batch: Batch,
  palettes: Map<string, Promise<Palette>>,
  options: ReadOptions,
): Promise<Slice[]> {
  const { signal } = options;
  const first = batch.slices[0]!;
  const ids = {
    studyInstanceUID: plan.studyInstanceUID,
    seriesInstanceUID: plan.seriesInstanceUID,
    sopInstanceUID: first.sopInstanceUID,
  };
  const frames = await fetchFrames(
    client,
    ids,
    batch.slices.map((s) => s.frameNumber),
    signal,
    options.transferSyntaxUID,
  );
  let palette: Palette | undefined;
  if (first.palette) {
    let loading = palettes.get(first.sopInstanceUID);
    if (!loading) {
      loading = loadPalette(client, ids, first.palette, signal);
      palettes.set(first.sopInstanceUID, loading);
    }
    palette = await loading;
  }
  const out: Slice[] = [];
  for (let i = 0; i < batch.slices.length; i++) {
    const slice = batch.slices[i]!;
    out.push({
      plan: slice,
      pixels: await decodeSlice(frames[i]!, slice, palette),
      transferSyntaxUID: frames[i]!.transferSyntaxUID,
    });
  }
  return out;
}

/**
 * Frames of one instance. When a PACS refuses to cut frames out of an instance it lists (Orthanc
 * answers 400 "Bad file format" for native YBR_FULL_422 and for truncated pixel data, and 500 "Not
 * implemented yet" for an unknown transfer syntax or a missing Photometric Interpretation), the whole
 * instance is fetched and its frames are cut here; checks downstream then say what is wrong. A 500
 * used to end as PACS_UNAVAILABLE, retried as if the PACS were down (found by test/reliability).
 */
export async function fetchFrames(
  client: DicomWebClient,
  ids: { studyInstanceUID: string; seriesInstanceUID: string; sopInstanceUID: string },
  frameNumbers: number[],
  signal?: AbortSignal,
  transferSyntaxUID?: string,
  nativeFrameBytes?: number,
): Promise<RetrievedFrame[]> {
  try {
    return await client.retrieveInstanceFrames({ ...ids, frameNumbers, signal, transferSyntaxUID });
  } catch (err) {
    const refused = err instanceof LdfsamError && (err.code === 'PACS_REJECTED' || err.details.status === 500);
    if (!refused) throw err;
    try {
      return framesFromPart10(await client.retrieveInstance({ ...ids, signal }), frameNumbers, nativeFrameBytes);
    } catch (fallback) {
      if (fallback instanceof LdfsamError && fallback.code !== 'UNSUPPORTED_DICOM') throw fallback;
      const said = /"Message"\s*:\s*"([^"]*)"/.exec(err.message)?.[1] ?? `HTTP ${err.details.status}`;
      throw new LdfsamError(
        'UNSUPPORTED_DICOM',
        `the PACS cannot deliver frame(s) ${frameNumbers.join(',')} of instance ${ids.sopInstanceUID} (${said}), and the ` +
          `instance itself cannot be read either (${(fallback as Error).message}); its pixel data is probably damaged`,
        err.details,
        { cause: err },
      );
    }
  }
}

/** Frames cut out of a Part 10 file: encapsulated frames as dcmjs splits them, native by size. */
export function framesFromPart10(file: Buffer, frameNumbers: number[], nativeFrameBytes?: number): RetrievedFrame[] {
  const { transferSyntaxUID, pixelData, numberOfFrames } = readPart10Pixels(file);
  return frameNumbers.map((n) => {
    if (n < 1 || n > numberOfFrames) throw new LdfsamError('UNSUPPORTED_DICOM', `frame ${n} of ${numberOfFrames} does not exist`);
    let bytes: Buffer;
    if (NATIVE_SYNTAXES.has(transferSyntaxUID)) {
      const all = pixelData[0] ?? new Uint8Array(0);
      const size = nativeFrameBytes ?? Math.floor(all.length / numberOfFrames);
      bytes = Buffer.from(
        all.buffer,
        all.byteOffset + Math.min(all.length, (n - 1) * size),
        Math.max(0, Math.min(size, all.length - (n - 1) * size)),
      );
    } else {
      const frame =
        pixelData.length === numberOfFrames ? pixelData[n - 1] : numberOfFrames === 1 ? Buffer.concat(pixelData) : undefined;
      if (!frame)
        throw new LdfsamError('UNSUPPORTED_DICOM', `${pixelData.length} encapsulated fragments for ${numberOfFrames} frames`);
      bytes = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
    }
    return { frameNumber: n, transferSyntaxUID, contentType: 'application/dicom', bytes };
  });
}

/** Decodes one retrieved frame of a planned slice; damaged data becomes UNSUPPORTED_DICOM. */
export async function decodeSlice(frame: RetrievedFrame, slice: SlicePlan, palette?: Palette): Promise<SlicePixels> {
  const { format } = slice;
  const where = `instance ${slice.sopInstanceUID} frame ${slice.frameNumber}`;
  const ts = frame.transferSyntaxUID;
  let bytes: FrameBytes;
  if (NATIVE_SYNTAXES.has(ts)) {
    const expected = nativeFrameLength(format);
    if (frame.bytes.length < expected) {
      throw new LdfsamError(
        'UNSUPPORTED_DICOM',
        `${where}: truncated pixel data (${frame.bytes.length} bytes, expected ${expected})`,
      );
    }
    bytes = {
      bytes: frame.bytes,
      planar: format.planarConfiguration === 1,
      photometric: format.photometricInterpretation,
      bigEndian: ts === TS.ExplicitBig,
    };
  } else {
    let decoded;
    try {
      // Off the main thread: a JPEG 2000 slice is 30 ms and more of synchronous wasm.
      decoded = await decompressOffThread(ts, frame.bytes, {
        rows: format.rows,
        columns: format.columns,
        samples: format.samplesPerPixel,
        bytesPerSample: format.bitsAllocated / 8,
        photometric: format.photometricInterpretation,
      });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new LdfsamError('UNSUPPORTED_DICOM', `${where}: cannot decode ${ts}: ${message}`, {}, { cause: err });
    }
    if (decoded.width !== format.columns || decoded.height !== format.rows || decoded.components !== format.samplesPerPixel) {
      throw new LdfsamError(
        'UNSUPPORTED_DICOM',
        `${where}: decoded frame is ${decoded.width}x${decoded.height}x${decoded.components}, the header says ` +
          `${format.columns}x${format.rows}x${format.samplesPerPixel}`,
      );
    }
    const expected = format.rows * format.columns * format.samplesPerPixel * (format.bitsAllocated / 8);
    if (decoded.bytes.length < expected) {
      throw new LdfsamError('UNSUPPORTED_DICOM', `${where}: decoded ${decoded.bytes.length} bytes, expected ${expected}`);
    }
    let photometric = format.photometricInterpretation;
    if (decoded.colourConvertedToRgb) photometric = 'RGB';
    else if (photometric === 'YBR_FULL_422') photometric = 'YBR_FULL'; // compressed 422 decodes to full samples
    bytes = { bytes: decoded.bytes, planar: decoded.planar, photometric };
  }
  try {
    return toSlicePixels(bytes, format, { slope: slice.rescaleSlope, intercept: slice.rescaleIntercept }, palette);
  } catch (err) {
    throw new LdfsamError('UNSUPPORTED_DICOM', `${where}: ${(err as Error).message}`, {}, { cause: err });
  }
}

export async function loadPalette(
  client: DicomWebClient | undefined,
  ids: { studyInstanceUID: string; seriesInstanceUID: string; sopInstanceUID: string },
  source: PaletteSource,
  signal?: AbortSignal,
): Promise<Palette> {
  const read = async (el: DicomJsonElement): Promise<Uint8Array> => {
    if (el.InlineBinary !== undefined) return Buffer.from(el.InlineBinary, 'base64');
    if (el.BulkDataURI && client) return client.retrieveBulkData({ BulkDataURI: el.BulkDataURI, signal });
    if (Array.isArray(el.Value) && el.Value[0] instanceof ArrayBuffer) return new Uint8Array(el.Value[0]); // read from a file
    if (Array.isArray(el.Value)) return new Uint8Array(new Uint16Array(el.Value.map(Number)).buffer);
    throw new LdfsamError('UNSUPPORTED_DICOM', `instance ${ids.sopInstanceUID}: palette data has no value`);
  };
  let descriptor = source.descriptor;
  if (!descriptor) {
    // Some PACS leave the US/SS-ambiguous descriptor out of their metadata: read it from the file.
    if (!client)
      throw new LdfsamError(
        'UNSUPPORTED_DICOM',
        `instance ${ids.sopInstanceUID}: PALETTE COLOR without a lookup table descriptor`,
      );
    const header = readPart10Header(await client.retrieveInstance({ ...ids, signal }));
    const d = header.dataset.RedPaletteColorLookupTableDescriptor as number[] | undefined;
    if (!d || d.length !== 3) {
      throw new LdfsamError(
        'UNSUPPORTED_DICOM',
        `instance ${ids.sopInstanceUID}: PALETTE COLOR without a lookup table descriptor`,
      );
    }
    descriptor = [d[0]!, d[1]!, d[2]!];
  }
  const [red, green, blue] = await Promise.all([read(source.red), read(source.green), read(source.blue)]);
  try {
    return buildPalette(descriptor, { red, green, blue }, source.segmented);
  } catch (err) {
    throw new LdfsamError('UNSUPPORTED_DICOM', `instance ${ids.sopInstanceUID}: ${(err as Error).message}`, {}, { cause: err });
  }
}
