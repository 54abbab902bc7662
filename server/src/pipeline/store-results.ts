/**
 * Storing a run's results (SEG, RTSTRUCT or both) where the configuration says: STOW-RS to the PACS
 * (then read back and checked), C-STORE to a DICOM node, or both.
 *
 * Nothing is half-stored where it can be avoided: every object is built before anything is sent; a
 * DICOM node is asked first, in an association that sends nothing, whether it is there and takes
 * every object's SOP class, so a node that is down or refuses fails the run before the PACS gets
 * anything; all objects go to the PACS in one STOW-RS request and to the node in one association.
 * What DIMSE and STOW-RS cannot undo (the PACS stored one object and refused the other; the node
 * refused an object after the PACS stored them) ends in an error that names what was stored where
 * and what was not. A re-run stores nothing twice: the objects' UIDs are derived from the source
 * series, the model and the content, and a PACS keeps one copy of an instance it already has.
 */
import type { Config } from '../config.js';
import type { DicomWebClient } from '../dicomweb/client.js';
import { num, str, TAG } from '../dicom/tags.js';
import { LdfsamError, toLdfsamError } from '../errors.js';
import { cStore, describeNode, type DimseNode } from '../pacs/dimse.js';
import { RTSTRUCT_SOP_CLASS } from '../seg/rtstruct.js';
import { SEG_SOP_CLASS } from '../seg/writer.js';

export interface StoreTargets {
  stow: boolean;
  dimse?: { node: DimseNode; callingAet: string; timeoutMs: number; retries: number };
}

/** Where a configuration sends results. */
export function storeTargetsFrom(
  config: Pick<Config, 'storeVia' | 'storeDimse' | 'storeAet' | 'pacsTimeoutMs' | 'pacsRetries'>,
): StoreTargets {
  const dimse =
    config.storeVia !== 'stow' && config.storeDimse
      ? { node: config.storeDimse, callingAet: config.storeAet, timeoutMs: config.pacsTimeoutMs, retries: config.pacsRetries }
      : undefined;
  return { stow: config.storeVia !== 'dimse', dimse };
}

export interface ResultObject {
  kind: 'SEG' | 'RTSTRUCT';
  bytes: Uint8Array;
  seriesInstanceUID: string;
  sopInstanceUID: string;
  /** SEG: frames the PACS must report when read back. */
  frames?: number;
}

export interface Stored {
  /** Where the objects went: 'stow' and/or 'dimse:AET@host:port'. */
  storedIn: string[];
  /** store (STOW-RS), verify (read back), cstore (the DICOM node, negotiation included). */
  timingsMs: Record<string, number>;
}

const label = (o: ResultObject) => `${o.kind} ${o.sopInstanceUID}`;

export async function storeResults(
  client: DicomWebClient,
  studyInstanceUID: string,
  objects: ResultObject[],
  targets: StoreTargets,
  options: { signal?: AbortSignal; onStage?: (stage: 'store' | 'verify') => void } = {},
): Promise<Stored> {
  const { signal } = options;
  const timingsMs: Record<string, number> = {};
  const dimseObjects = objects.map((o) => ({ label: label(o), bytes: o.bytes }));
  const dimseOptions = targets.dimse && { ...targets.dimse, signal };
  let t = performance.now();
  if (targets.dimse && targets.stow) await cStore(targets.dimse.node, dimseObjects, { ...dimseOptions!, negotiateOnly: true });
  const where: string[] = [];
  if (targets.stow) {
    options.onStage?.('store');
    await stow(client, studyInstanceUID, objects);
    timingsMs.store = performance.now() - t;
    t = performance.now();
    options.onStage?.('verify');
    await verify(client, studyInstanceUID, objects); // stored: a cancel no longer applies
    timingsMs.verify = performance.now() - t;
    where.push('stow');
  }
  t = performance.now();
  if (targets.dimse) {
    try {
      // Once the PACS holds the results, a cancel no longer stops the copy to the node: a run that
      // stored something is finished, not cancelled ("cancelled" promises that nothing was stored).
      await cStore(targets.dimse.node, dimseObjects, targets.stow ? { ...dimseOptions!, signal: undefined } : dimseOptions!);
    } catch (err) {
      const e = toLdfsamError(err);
      if (!targets.stow) throw e;
      // The PACS holds the results already: say so, with what the node did.
      throw new LdfsamError(
        e.code,
        `stored in the PACS through STOW-RS: ${objects.map(label).join(', ')}; but ${e.message}`,
        { ...e.details, storedStow: objects.map(label) },
        { cause: e },
      );
    }
    where.push(`dimse:${describeNode(targets.dimse.node)}`);
    timingsMs.cstore = performance.now() - t;
  }
  return { storedIn: where, timingsMs };
}

/** One STOW-RS request with every object. */
async function stow(client: DicomWebClient, studyInstanceUID: string, objects: ResultObject[]) {
  const stored = await client.storeInstances({ datasets: objects.map((o) => o.bytes), studyInstanceUID });
  const refused = objects.filter((o) => stored.failed.some((f) => f.sopInstanceUID === o.sopInstanceUID));
  if (refused.length > 0) {
    const ok = objects.filter((o) => !refused.includes(o));
    const reasons = refused.map((o) => {
      const f = stored.failed.find((x) => x.sopInstanceUID === o.sopInstanceUID)!;
      return `${label(o)} (failure reason 0x${f.failureReason.toString(16)})`;
    });
    throw new LdfsamError(
      'PACS_REJECTED',
      `the PACS refused ${reasons.join(', ')}${ok.length ? `; it stored ${ok.map(label).join(', ')}` : '; nothing was stored'}`,
      { stored: ok.map(label), notStored: refused.map(label) },
    );
  }
}

/** Each object read back from the PACS and checked: ours, whole. */
async function verify(client: DicomWebClient, studyInstanceUID: string, objects: ResultObject[]) {
  for (const o of objects) {
    const back = await client.retrieveSeriesMetadata({ studyInstanceUID, seriesInstanceUID: o.seriesInstanceUID });
    const mine = back.find((m) => str(m, TAG.SOPInstanceUID) === o.sopInstanceUID);
    const sopClass = o.kind === 'SEG' ? SEG_SOP_CLASS : RTSTRUCT_SOP_CLASS;
    const framesOk = o.frames === undefined || num(mine, TAG.NumberOfFrames) === o.frames;
    if (!mine || str(mine, TAG.SOPClassUID) !== sopClass || !framesOk) {
      throw new LdfsamError('SEG_INVALID', `the ${o.kind} read back from the PACS is not the one stored (${o.sopInstanceUID})`);
    }
  }
}
