import type { Coding, Provenance, Reference } from 'fhir/r4.js';
import { provenancesTargeting } from '../storage/clinical-records-store.js';
import type { StoreTransaction } from '../storage/resource-store.js';
import { referenceTo } from './scheduling-rules.js';

/**
 * What counts as a practitioner's signature and as an amendment record (issue 13 §1): both are
 * Provenances whose `target` names the Encounter or Composition (with or without a version).
 *
 * - Signature: a `signature` of an ASTM E1762 signature type (author's, coauthor's, legal,
 *   verification …, system urn:iso-astm:E1762-95:2013) whose `who` is a Practitioner, and an
 *   `agent.who` that is a Practitioner. Its `signature.when` is the signing time, the start of
 *   the amendment window.
 * - Amendment: `activity` coded `amend` (ISO 21089 life cycle) or v3-DataOperation `UPDATE`,
 *   a `reason` (code or text: the why) and an `agent.who` (the who), written in the same
 *   transaction as the change it explains.
 */

export const SIGNATURE_TYPE_SYSTEM = 'urn:iso-astm:E1762-95:2013';
export const AUTHOR_SIGNATURE: Coding = { system: SIGNATURE_TYPE_SYSTEM, code: '1.2.840.10065.1.12.1.1', display: "Author's Signature" };
export const AMEND_ACTIVITY: Coding = { system: 'http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle', code: 'amend', display: 'Amend (Update) Record Lifecycle Event' };
export const SIGN_ACTIVITY: Coding = { system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'LA', display: 'legal authenticator' };

function isPractitioner(reference: Reference | undefined): boolean {
  return referenceTo('Practitioner', reference?.reference) !== undefined;
}

export function targets(provenance: Provenance, type: string, id: string): boolean {
  return (provenance.target ?? []).some((t) => referenceTo(type, t.reference) === id);
}

/** The signing time of a signature Provenance, or undefined when it is not one. */
export function signatureTime(provenance: Provenance): string | undefined {
  if (!(provenance.agent ?? []).some((a) => isPractitioner(a.who))) return undefined;
  const signature = (provenance.signature ?? []).find(
    (s) => isPractitioner(s.who) && (s.type ?? []).some((c) => c.system === SIGNATURE_TYPE_SYSTEM && /^1\.2\.840\.10065\.1\.12\.1\.\d+$/.test(c.code ?? '')),
  );
  return signature?.when;
}

export function isAmendment(provenance: Provenance): boolean {
  const activity = provenance.activity?.coding ?? [];
  const amend = activity.some((c) => c.code === 'amend' || (c.code === 'UPDATE' && c.system === 'http://terminology.hl7.org/CodeSystem/v3-DataOperation'));
  const why = (provenance.reason ?? []).some((r) => Boolean(r.text?.trim()) || (r.coding ?? []).some((c) => c.code));
  const who = (provenance.agent ?? []).some((a) => a.who?.reference);
  return amend && why && who;
}

/** Provenances written so far in this transaction (they count before they are committed). */
export function provenancesInTransaction(tx: StoreTransaction): Provenance[] {
  return tx.changes.filter((c) => c.resourceType === 'Provenance' && c.resource).map((c) => c.resource as Provenance);
}

/**
 * The earliest signing time of `type/id`: from signatures stored before this transaction and,
 * unless `before` is set, those written in it (the index sees this transaction's flushed writes,
 * so they are told apart by id). Undefined: never signed.
 */
export async function signedAt(tx: StoreTransaction, type: string, id: string, options: { before?: boolean } = {}): Promise<string | undefined> {
  const written = new Set(tx.changes.filter((c) => c.resourceType === 'Provenance').map((c) => c.id));
  const stored = (await provenancesTargeting(await tx.executor(), type, id)).filter((r) => !written.has(r.id)).map((r) => JSON.parse(r.json) as Provenance);
  const candidates = options.before ? stored : [...provenancesInTransaction(tx), ...stored];
  const times = candidates
    .filter((p) => targets(p, type, id))
    .map(signatureTime)
    .filter((t): t is string => t !== undefined)
    .sort((a, b) => Date.parse(a) - Date.parse(b));
  return times[0];
}

/** The amendment Provenance of this transaction for `type/id`, if the client (or `$amend`) wrote one. */
export function amendmentInTransaction(tx: StoreTransaction, type: string, id: string): Provenance | undefined {
  return provenancesInTransaction(tx).find((p) => targets(p, type, id) && isAmendment(p));
}
