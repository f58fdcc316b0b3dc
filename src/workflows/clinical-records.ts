import type { Composition, Encounter, Provenance, Resource } from 'fhir/r4.js';
import type { BeforeWriteHook, StoreTransaction } from '../storage/resource-store.js';
import type { ResourceChange } from '../storage/types.js';
import { currentWriter, bySignedInUser } from '../subscriptions/write-context.js';
import { amendmentInTransaction, isAmendment, signatureTime, signedAt } from './clinical-signature.js';
import { businessRule, referenceTo, replacedVersion } from './scheduling-rules.js';

/**
 * Signed clinical records (seed 004 FR-EMR-001 / FR-EMR-002, issue 13 §1), before commit on
 * every write path:
 *
 * - Completion: an Encounter becomes `finished`, or a Composition (note) `final`, by a signed-in
 *   user only with a practitioner's signature (clinical-signature.ts) written before it in the
 *   same transaction or earlier (422 otherwise). `$sign` does both at once. Backend clients,
 *   HL7 v2 feeds and imports carry records signed in their source system and are not asked.
 * - Immutability: a signed finished Encounter and a final (or amended) Composition change only
 *   as an amendment: an amendment Provenance (who, why) in the same transaction (`$amend`
 *   writes it), and only within `amendmentWindowHours` of the signature (409 after). Deleting
 *   them is refused (409), and so is changing or deleting a signature or amendment Provenance.
 * - An amended note gets status `amended`; a note is never taken back to a draft.
 */
export interface ClinicalRecordOptions {
  /** CLINICAL_AMENDMENT_WINDOW_HOURS (seed: 24). */
  amendmentWindowHours: number;
}

const NOTE_FINAL = new Set(['final', 'amended']);

export function clinicalRecordsHook(options: ClinicalRecordOptions): BeforeWriteHook {
  const windowMs = options.amendmentWindowHours * 3600_000;
  return async (tx, change) => {
    if (change.resourceType === 'Provenance') return guardProvenance(tx, change);
    if (change.resourceType === 'Encounter') return encounterRule(tx, change, windowMs);
    if (change.resourceType === 'Composition') return noteRule(tx, change, windowMs);
  };
}

async function encounterRule(tx: StoreTransaction, change: ResourceChange, windowMs: number): Promise<void> {
  const after = change.resource as Encounter | undefined;
  // New encounters (server id) were never signed; only a user finishing one is checked.
  if (change.method === 'POST' && (after?.status !== 'finished' || !bySignedInUser())) return;
  const before = await replacedVersion<Encounter>(tx, change);
  if (before?.status === 'finished') {
    const signed = await signedAt(tx, 'Encounter', change.id, { before: true });
    if (signed) return amendment(tx, change, 'Encounter', 'encounter', signed, windowMs, () => {
      if (after && after.status !== 'finished' && after.status !== 'entered-in-error') {
        throw businessRule('invalid', 'A signed encounter cannot be reopened; it stays finished (or entered-in-error).', ['Encounter.status']);
      }
    });
    return;
  }
  if (after?.status === 'finished' && bySignedInUser() && !(await signedAt(tx, 'Encounter', change.id))) {
    throw businessRule(
      'invalid',
      'The encounter cannot be completed without a practitioner signature. Sign it with POST Encounter/[id]/$sign (or write a signature Provenance with it).',
      ['Encounter.status'],
    );
  }
}

async function noteRule(tx: StoreTransaction, change: ResourceChange, windowMs: number): Promise<void> {
  const after = change.resource as Composition | undefined;
  if (change.method === 'POST' && (!after || !NOTE_FINAL.has(after.status) || !bySignedInUser())) return;
  const before = await replacedVersion<Composition>(tx, change);
  if (before && NOTE_FINAL.has(before.status)) {
    const signed = (await signedAt(tx, 'Composition', change.id, { before: true })) ?? legalAttestation(before) ?? before.date;
    return amendment(tx, change, 'Composition', 'note', signed, windowMs, () => {
      if (!after) return;
      if (after.status === 'preliminary') throw businessRule('invalid', 'A final note cannot go back to a draft; amend it instead.', ['Composition.status']);
      // R4: a final composition changed afterwards is `amended`.
      if (after.status === 'final') change.resource = { ...after, status: 'amended' } as Resource;
    });
  }
  if (after && NOTE_FINAL.has(after.status) && bySignedInUser() && !(await signedAt(tx, 'Composition', change.id))) {
    throw businessRule(
      'invalid',
      'The note cannot be made final without a practitioner signature. Sign it with POST Composition/[id]/$sign (or write a signature Provenance with it).',
      ['Composition.status'],
    );
  }
}

/** Checks a change of a signed record: never a delete, only with an amendment Provenance, only within the window. */
function amendment(tx: StoreTransaction, change: ResourceChange, type: string, label: string, signed: string, windowMs: number, contentRule: () => void): void {
  if (change.method === 'DELETE') throw businessRule('conflict', `This ${label} is signed and cannot be deleted; amend it (or mark it entered-in-error) instead.`);
  const signedMs = Date.parse(signed);
  if (!Number.isFinite(signedMs) || Date.now() - signedMs > windowMs) {
    throw businessRule(
      'conflict',
      `This ${label} was signed at ${signed}; amendments are allowed for ${windowMs / 3600_000} hours after signing only. It can no longer be changed.`,
    );
  }
  if (!amendmentInTransaction(tx, type, change.id)) {
    throw businessRule(
      'invalid',
      `This ${label} is signed and immutable; a change is an amendment with a reason: POST ${type}/${change.id}/$amend (or write a Provenance with activity 'amend', reason and agent in the same transaction).`,
    );
  }
  contentRule();
}

function legalAttestation(note: Composition): string | undefined {
  return note.attester?.find((a) => a.mode === 'legal' && a.time)?.time;
}

/**
 * Signatures and amendment records are the audit trail: written once. A signed-in user signs and
 * amends only as themselves (agent and signer are their fhirUser).
 */
async function guardProvenance(tx: StoreTransaction, change: ResourceChange): Promise<void> {
  if (change.method !== 'POST') {
    const before = await replacedVersion<Provenance>(tx, change);
    if (before && isClinicalRecordTrail(before)) {
      throw businessRule('conflict', 'Signature and amendment Provenances of encounters and notes are part of the audit trail and cannot be changed or deleted.');
    }
  }
  const provenance = change.resource as Provenance | undefined;
  const writer = currentWriter();
  if (!provenance || writer?.kind !== 'user' || !isClinicalRecordTrail(provenance)) return;
  const me = writer.fhirUser;
  const others = [
    ...(provenance.agent ?? []).map((a, i) => ({ ref: a.who?.reference, path: `Provenance.agent[${i}].who` })),
    ...(provenance.signature ?? []).map((s, i) => ({ ref: s.who?.reference, path: `Provenance.signature[${i}].who` })),
  ].filter((x) => !me || !sameReference(x.ref, me));
  if (others.length > 0) {
    throw businessRule('invalid', 'A signature or amendment is recorded for the signed-in practitioner only (agent.who and signature.who must be your fhirUser).', others.map((o) => o.path));
  }
}

function isClinicalRecordTrail(p: Provenance): boolean {
  const aboutRecords = (p.target ?? []).some((t) => referenceTo('Encounter', t.reference) || referenceTo('Composition', t.reference));
  return aboutRecords && (signatureTime(p) !== undefined || isAmendment(p) || (p.signature ?? []).length > 0);
}

function sameReference(reference: string | undefined, fhirUser: string): boolean {
  if (!reference) return false;
  const [type, id] = fhirUser.split('/').slice(-2);
  return type !== undefined && id !== undefined && referenceTo(type, reference) === id;
}
