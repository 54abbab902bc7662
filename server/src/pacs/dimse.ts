/**
 * C-STORE of our results to a configured DICOM node (LDFSAM_STORE_DIMSE=AET@host:port), for PACS and
 * planning systems that do not speak DICOMweb. DIMSE itself is dcmjs-dimse's (association, PDUs,
 * C-STORE); this module adds what a result needs:
 *
 * - Negotiation: per object's SOP class one presentation context with its own transfer syntax
 *   (explicit VR little endian) alone, and one with implicit and explicit VR little endian. The
 *   dataset goes in the syntax it was written in when the node accepts that, byte for byte as we
 *   wrote it (dcmjs-dimse would otherwise re-encode it from its parsed form); otherwise we re-encode it
 *   with dcmjs in the syntax the node chose (dcmjs-dimse's own transcoder fails on 1-bit SEG pixel
 *   data, and then silently sends nothing).
 * - All or nothing where DIMSE allows it: when the node accepts the association but no presentation
 *   context for one of the objects' SOP classes, nothing is sent, and the error names the SOP class.
 * - Retries: a node that cannot be reached, closes or aborts the association, rejects it as
 *   transient, or answers "out of resources" (A7xx) is tried again (backoff from 250 ms, like the
 *   DICOMweb client); an object the node refused for good is not.
 * - Errors: PACS_UNAVAILABLE (could not store after the retries) and PACS_REJECTED (refused), both
 *   naming the node, what was stored and what not, and the DIMSE status or rejection reason.
 */
import dcmjs from 'dcmjs';
import dimse from 'dcmjs-dimse';
import type { DimseNode } from '../config.js';
import { TAG } from '../dicom/tags.js';
import { LdfsamError } from '../errors.js';
import { sleep } from '../util/sleep.js';

export { parseDimseNode, type DimseNode } from '../config.js';

const { Client, Dataset } = dimse;
// dcmjs-dimse logs every PDU to the console at INFO; outcomes are reported by this module instead.
dimse.log.setLevel('silent');
const { CStoreRequest } = dimse.requests;
const { PresentationContext } = dimse.association;
const { RejectResult, TransferSyntax } = dimse.constants;

export interface DimseObject {
  label: string;
  bytes: Uint8Array;
}

export interface DimseStoreOptions {
  /** Our AE title (calling AE). */
  callingAet: string;
  /** Connection, association and PDU time limit, ms. */
  timeoutMs: number;
  /** Tries after the first, on transient failures. */
  retries: number;
  /** First pause between tries, doubled each time. */
  backoffMs?: number;
  signal?: AbortSignal;
  /** Negotiate the association and release it without sending anything: is the node there, and does it take these objects? */
  negotiateOnly?: boolean;
}

export interface DimseStored {
  label: string;
  sopInstanceUID: string;
  /** 0x0000, or a warning status (0xB000, 0xB006, 0xB007): stored, coerced or with elements discarded. */
  status: number;
}

export function describeNode(node: DimseNode): string {
  return `${node.aet}@${node.host}:${node.port}`;
}

/**
 * Sends every object in one association. Resolves when the node has stored all of them (success or
 * warning status); throws otherwise, saying which were stored (details.stored) and which not.
 */
export async function cStore(node: DimseNode, objects: DimseObject[], options: DimseStoreOptions): Promise<DimseStored[]> {
  const parsed = objects.map(parsePart10);
  let pause = options.backoffMs ?? 250;
  for (let attempt = 0; ; attempt++) {
    if (options.signal?.aborted) throw new LdfsamError('CANCELLED', `C-STORE to ${describeNode(node)} cancelled`);
    const outcome = await storeOnce(node, parsed, options);
    if (outcome.kind === 'done') return outcome.stored;
    if (options.signal?.aborted)
      throw new LdfsamError(
        'CANCELLED',
        `C-STORE to ${describeNode(node)} cancelled (stored there: ${outcome.stored.map((s) => s.label).join(', ') || 'nothing'})`,
      );
    const stored = outcome.stored.map((s) => s.label);
    const notStored = parsed.filter((p) => !stored.includes(p.label)).map((p) => p.label);
    const what = `${stored.length ? `stored there: ${stored.join(', ')}; ` : 'nothing was stored there; '}not stored: ${notStored.join(', ')}`;
    const details = {
      node: describeNode(node),
      stored,
      notStored,
      ...(outcome.status !== undefined ? { dimseStatus: outcome.status } : {}),
    };
    if (outcome.kind === 'refused')
      throw new LdfsamError(
        'PACS_REJECTED',
        `the DICOM node ${describeNode(node)} refused: ${outcome.reason} (${what})`,
        details,
      );
    if (attempt >= options.retries)
      throw new LdfsamError(
        'PACS_UNAVAILABLE',
        `C-STORE to the DICOM node ${describeNode(node)} failed after ${attempt + 1} tries: ${outcome.reason} (${what})`,
        details,
      );
    await sleep(pause, options.signal);
    pause *= 2;
  }
}

interface Parsed {
  label: string;
  sopClassUID: string;
  sopInstanceUID: string;
  transferSyntaxUID: string;
  /** The data set after the file meta information, as written. */
  dataset: Buffer;
  /** The whole Part 10 object (re-encoded from it when the node takes another syntax). */
  part10: Uint8Array;
}

type Outcome =
  | { kind: 'done'; stored: DimseStored[] }
  | { kind: 'transient' | 'refused'; reason: string; stored: DimseStored[]; status?: number };

/** One association: negotiate, check every object has a context, send them one after another, release. */
function storeOnce(node: DimseNode, objects: Parsed[], options: DimseStoreOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    const client = new Client();
    const stored: DimseStored[] = [];
    let failure: Outcome | undefined;
    const fail = (o: Outcome) => (failure ??= o);
    const requests = objects.map((o) => {
      const request = new CStoreRequest(new VerbatimDataset(o));
      request.on('response', (response: InstanceType<typeof dimse.responses.CStoreResponse>) => {
        const status = response.getStatus();
        if (status === 0 || (status & 0xf000) === 0xb000) {
          stored.push({ label: o.label, sopInstanceUID: o.sopInstanceUID, status });
          return;
        }
        const text = `status 0x${status.toString(16).padStart(4, '0').toUpperCase()} (${statusMeaning(status)}) for ${o.label}${
          response.getErrorComment() ? `: ${response.getErrorComment()}` : ''
        }`;
        // Out of resources may pass; anything else is the node's decision about this object.
        fail({ kind: (status & 0xff00) === 0xa700 ? 'transient' : 'refused', reason: text, stored, status });
      });
      client.addRequest(request);
      // The syntax the object was written in, alone: accepted, the bytes go as they are.
      client.addAdditionalPresentationContext(new PresentationContext(0, o.sopClassUID, o.transferSyntaxUID), true);
      return request;
    });
    client.on('associationAccepted', (association: InstanceType<typeof dimse.association.Association>) => {
      const missing = objects.filter((_, i) => !association.getAcceptedPresentationContextFromRequest(requests[i]!));
      if (options.negotiateOnly) client.clearRequests();
      // The syntax each object goes in: set here, so that we encode it (dcmjs-dimse's transcoder
      // fails silently on 1-bit SEG pixel data and the object would just not be sent).
      requests.forEach((r) => {
        const ts = association.getAcceptedPresentationContextFromRequest(r)?.getAcceptedTransferSyntaxUid();
        if (ts) r.getDataset()!.setTransferSyntaxUid(ts);
      });
      if (missing.length === 0) return;
      // Nothing goes when one object could not: dcmjs-dimse would skip it silently and send the rest.
      client.clearRequests();
      const results = association
        .getPresentationContexts()
        .map((pc) => association.getPresentationContext(pc.id))
        .filter((pc) => missing.some((m) => m.sopClassUID === pc.getAbstractSyntaxUid()))
        .map((pc) => pc.getResultDescription());
      fail({
        kind: 'refused',
        reason: `no presentation context accepted for ${missing.map((m) => `${m.label} (SOP class ${m.sopClassUID})`).join(', ')}: ${[
          ...new Set(results),
        ].join(', ')}`,
        stored,
      });
    });
    client.on('associationRejected', (reject: { result: number; source: number; reason: number }) => {
      fail({
        kind: reject.result === RejectResult.Transient ? 'transient' : 'refused',
        reason: `association rejected (${reject.result === RejectResult.Transient ? 'transient' : 'permanent'}, ${rejectReason(reject.source, reject.reason)})`,
        stored,
      });
    });
    client.on('networkError', (err: Error) =>
      fail({ kind: 'transient', reason: `network error: ${err.message.replace(/^\s*->\s*/, '')}`, stored }),
    );
    client.on('closed', () => {
      options.signal?.removeEventListener('abort', abort);
      if (!failure && !options.negotiateOnly && stored.length < objects.length)
        fail({
          kind: 'transient',
          reason: 'the node closed or aborted the association before it answered every C-STORE',
          stored,
        });
      resolve(failure ?? { kind: 'done', stored });
    });
    const abort = () => {
      fail({ kind: 'refused', reason: 'cancelled', stored });
      try {
        client.abort();
      } catch {
        // not connected yet: the socket closes by itself
      }
    };
    options.signal?.addEventListener('abort', abort, { once: true });
    client.send(node.host, node.port, options.callingAet, node.aet, {
      connectTimeout: options.timeoutMs,
      associationTimeout: options.timeoutMs,
      pduTimeout: options.timeoutMs,
    });
  });
}

/**
 * A dcmjs-dimse Dataset that sends the bytes it was made from when the negotiated syntax is theirs,
 * and otherwise our own dcmjs encoding of the object in that (uncompressed) syntax.
 */
class VerbatimDataset extends Dataset {
  private readonly parsed: Parsed;

  constructor(parsed: Parsed) {
    super(parsed.dataset, parsed.transferSyntaxUID);
    this.parsed = parsed;
  }

  override getDenaturalizedDataset(): Buffer {
    const ts = this.getTransferSyntaxUid();
    if (ts === this.parsed.transferSyntaxUID) return this.parsed.dataset;
    if (ts !== TransferSyntax.ImplicitVRLittleEndian && ts !== TransferSyntax.ExplicitVRLittleEndian)
      throw new LdfsamError('SEG_INVALID', `${this.parsed.label} cannot be sent in transfer syntax ${ts}`);
    const file = dcmjs.data.DicomMessage.readFile(Uint8Array.from(this.parsed.part10).buffer);
    (file.meta as Record<string, { Value: unknown[] }>)[TAG.TransferSyntaxUID] = { vr: 'UI', Value: [ts] } as never;
    const again = parsePart10({
      label: this.parsed.label,
      bytes: new Uint8Array((file as unknown as { write(): ArrayBuffer }).write()),
    });
    return again.dataset;
  }
}

/** The file meta information (group 0002, explicit VR little endian) and the data set after it. */
function parsePart10(object: DimseObject): Parsed {
  const b = Buffer.from(object.bytes.buffer, object.bytes.byteOffset, object.bytes.byteLength);
  if (b.length < 132 || b.toString('latin1', 128, 132) !== 'DICM')
    throw new LdfsamError('SEG_INVALID', `${object.label} is not a DICOM Part 10 object`);
  const meta: Record<string, string> = {};
  let at = 132;
  while (at + 8 <= b.length && b.readUInt16LE(at) === 0x0002) {
    const element = b.readUInt16LE(at + 2);
    const vr = b.toString('latin1', at + 4, at + 6);
    const long = ['OB', 'OW', 'OF', 'SQ', 'UT', 'UN'].includes(vr);
    const length = long ? b.readUInt32LE(at + 8) : b.readUInt16LE(at + 6);
    const start = at + (long ? 12 : 8);
    meta[element.toString(16).padStart(4, '0')] = b.toString('latin1', start, start + length).replace(/[\0 ]+$/, '');
    at = start + length;
  }
  const [sopClassUID, sopInstanceUID, transferSyntaxUID] = [meta['0002'], meta['0003'], meta['0010']];
  if (!sopClassUID || !sopInstanceUID || !transferSyntaxUID)
    throw new LdfsamError(
      'SEG_INVALID',
      `${object.label} has no SOP class, instance or transfer syntax in its file meta information`,
    );
  if (transferSyntaxUID !== TransferSyntax.ExplicitVRLittleEndian && transferSyntaxUID !== TransferSyntax.ImplicitVRLittleEndian)
    throw new LdfsamError(
      'SEG_INVALID',
      `${object.label} is in transfer syntax ${transferSyntaxUID}; results are written uncompressed`,
    );
  return { label: object.label, sopClassUID, sopInstanceUID, transferSyntaxUID, dataset: b.subarray(at), part10: object.bytes };
}

/** PS3.4 B.2.3 and PS3.7 C.4.2.1.4: what a C-STORE status means. */
export function statusMeaning(status: number): string {
  if ((status & 0xff00) === 0xa700) return 'refused: out of resources';
  if ((status & 0xff00) === 0xa900) return 'error: data set does not match SOP class';
  if ((status & 0xf000) === 0xc000) return 'error: cannot understand';
  const named: Record<number, string> = {
    0x0122: 'refused: SOP class not supported',
    0x0124: 'refused: not authorized',
    0x0110: 'processing failure',
    0x0111: 'duplicate SOP instance',
    0x0117: 'invalid SOP instance',
    0x0211: 'unrecognized operation',
    0x0212: 'mistyped argument',
  };
  return named[status] ?? 'failure';
}

function rejectReason(source: number, reason: number): string {
  if (source === 1) {
    return (
      {
        1: 'no reason given',
        2: 'application context not supported',
        3: 'calling AE title not recognized',
        7: 'called AE title not recognized',
      }[reason] ?? `service user reason ${reason}`
    );
  }
  if (source === 2) return reason === 2 ? 'protocol version not supported' : 'no reason given (ACSE)';
  return reason === 1 ? 'temporary congestion' : reason === 2 ? 'local limit exceeded' : `presentation reason ${reason}`;
}
