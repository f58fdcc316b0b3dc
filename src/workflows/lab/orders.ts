import type { ServiceRequest, Specimen } from 'fhir/r4.js';
import { nextAccessionNumber } from '../../storage/lab-store.js';
import type { BeforeWriteHook, StoreTransaction } from '../../storage/resource-store.js';
import { currentWriter } from '../../subscriptions/write-context.js';
import { businessRule, replacedVersion } from '../scheduling-rules.js';
import type { LabCatalog } from './catalog.js';

/**
 * Lab orders and specimens (seed 004 FR-LAB-001, issue 14 §1), before commit on every write path.
 *
 * - A ServiceRequest coded with the lab-test CodeSystem must name an orderable test or panel of
 *   the catalogue (422 otherwise); it gets the catalogue's ActivityDefinition as
 *   `instantiatesCanonical` and the category "laboratory procedure" when it has none.
 * - A new Specimen without an accession number gets `LAB-YYYYMMDD-NNNNN` (day in UTC, per-day
 *   sequence in the database: unique across processes) as `accessionIdentifier`; the number is
 *   the server's: an update keeps it (carried over when left out), and changing it is refused (409).
 * - Collection status: a Specimen with `collection.collectedDateTime` and no status is
 *   `available`; one marked `available` without a collection time is collected now, by the writer.
 */

export const ACCESSION_SYSTEM = 'https://fhir.hospital.example.org/sid/accession-number';
const LAB_CATEGORY = { coding: [{ system: 'http://snomed.info/sct', code: '108252007', display: 'Laboratory procedure' }] };

export function labOrderHook(catalog: LabCatalog): BeforeWriteHook {
  return (_tx, change) => {
    if (change.resourceType !== 'ServiceRequest' || !change.resource) return;
    const order = change.resource as ServiceRequest;
    const codings = (order.code?.coding ?? []).filter((c) => c.system === catalog.system);
    if (codings.length === 0) return;
    const test = codings.map((c) => catalog.test(c.code ?? '')).find((t) => t !== undefined);
    if (!test) {
      throw businessRule('invalid', `${codings.map((c) => c.code ?? '(no code)').join(', ')} is not an orderable test or panel of the laboratory catalogue.`, ['ServiceRequest.code']);
    }
    const next: ServiceRequest = { ...order };
    if (!next.instantiatesCanonical?.length && test.activity.url) next.instantiatesCanonical = [test.activity.url];
    if (!next.category?.length) next.category = [LAB_CATEGORY];
    change.resource = next;
  };
}

function accessionDay(now = new Date()): string {
  return now.toISOString().slice(0, 10).replace(/-/g, '');
}

/**
 * Accession numbers taken from the day's counter together, per transaction: `wanted` until the
 * first is needed, then the range not given out yet. A transaction that creates many Specimens
 * (an HL7 v2 batch) takes them in one statement instead of one per Specimen; a rolled-back
 * transaction rolls its step of the counter back with it.
 */
const reservations = new WeakMap<StoreTransaction, { wanted: number; day?: string; next?: number; last?: number }>();

/**
 * A writer about to create `count` Specimens without accession numbers in `tx` says so: the
 * first one takes `count` numbers in one step. Only the first announcement per transaction
 * counts. Say the exact number: numbers taken and not used stay unused (gaps).
 */
export function expectSpecimens(tx: StoreTransaction, count: number): void {
  if (count > 1 && !reservations.has(tx)) reservations.set(tx, { wanted: count });
}

async function accessionNumber(tx: StoreTransaction, day: string): Promise<number> {
  const r = reservations.get(tx);
  if (r?.day === day && r.next !== undefined && r.last !== undefined && r.next <= r.last) return r.next++;
  const count = r && r.day === undefined ? r.wanted : 1;
  const last = await nextAccessionNumber(await tx.executor(), day, count);
  reservations.set(tx, { wanted: 1, day, next: last - count + 2, last });
  return last - count + 1;
}

export const specimenHook: BeforeWriteHook = async (tx, change) => {
  if (change.resourceType !== 'Specimen' || !change.resource) return;
  let specimen = change.resource as Specimen;
  const before = await replacedVersion<Specimen>(tx, change);
  const given = before?.accessionIdentifier?.system === ACCESSION_SYSTEM ? before.accessionIdentifier : undefined;
  const asked = specimen.accessionIdentifier;
  if (given) {
    if (!asked) specimen = { ...specimen, accessionIdentifier: given };
    else if (asked.system !== given.system || asked.value !== given.value) {
      throw businessRule('conflict', `The accession number ${given.value ?? ''} is assigned by the laboratory and cannot be changed.`, ['Specimen.accessionIdentifier']);
    }
  } else if (!asked?.value) {
    const day = accessionDay();
    const n = await accessionNumber(tx, day);
    if (n > 99999) throw businessRule('conflict', `No accession numbers are left for ${day} (at most 99999 specimens a day).`, ['Specimen.accessionIdentifier']);
    specimen = { ...specimen, accessionIdentifier: { use: 'official', system: ACCESSION_SYSTEM, value: `LAB-${day}-${String(n).padStart(5, '0')}` } };
  } else if (asked.system === ACCESSION_SYSTEM) {
    // Numbers of our system come only from the sequence (a made-up one could collide with a later one).
    throw businessRule('invalid', `Accession numbers of ${ACCESSION_SYSTEM} are assigned by the server; leave accessionIdentifier out to get one.`, ['Specimen.accessionIdentifier']);
  }
  // Another laboratory's specimen (its own accession number) is stored as sent; collection
  // status is kept only for the specimens this laboratory numbered.
  if (specimen.accessionIdentifier?.system !== ACCESSION_SYSTEM) {
    change.resource = specimen;
    return;
  }
  const collected = specimen.collection?.collectedDateTime;
  if (collected && !specimen.status) specimen = { ...specimen, status: 'available' };
  if (specimen.status === 'available' && !collected && !specimen.collection?.collectedPeriod && before?.collection?.collectedDateTime) {
    // Collected earlier: a rewrite without the collection (a resent HL7 v2 message) keeps it, so
    // the same content makes no new version.
    specimen = { ...specimen, collection: { ...before.collection, ...specimen.collection, collectedDateTime: before.collection.collectedDateTime } };
  } else if (specimen.status === 'available' && !collected && !specimen.collection?.collectedPeriod) {
    const who = currentWriter()?.fhirUser;
    specimen = {
      ...specimen,
      collection: { ...specimen.collection, collectedDateTime: change.lastUpdated, ...(who?.startsWith('Practitioner/') && !specimen.collection?.collector ? { collector: { reference: who } } : {}) },
    };
  }
  change.resource = specimen;
};
