import type { Appointment, Encounter, EpisodeOfCare, OperationOutcomeIssue, Reference } from 'fhir/r4.js';
import { FhirError } from '../fhir/errors.js';
import { referencing } from '../storage/front-desk-store.js';
import type { BeforeWriteHook, StoreTransaction } from '../storage/resource-store.js';
import type { ResourceChange } from '../storage/types.js';
import { byApiCaller } from '../subscriptions/write-context.js';
import { referenceTo, replacedVersion } from './scheduling-rules.js';

/**
 * Encounters link to the appointment or admission (issue 13 §1, seed 004 FR-EMR-001 /
 * FR-IP-002), before commit, for Encounters written through the API:
 *
 * - `appointment`: each an existing Appointment with the encounter's patient among its
 *   participants, in a status the encounter can follow — no encounter (other than cancelled /
 *   entered-in-error) under a cancelled, no-show or entered-in-error appointment, and none that
 *   has begun (arrived … finished) under one not yet booked (proposed, pending, waitlist).
 * - The admission: an admission is an inpatient EpisodeOfCare (type v3-ActCode IMP, opened by
 *   the bed rules of inpatient-discharge.ts when the patient takes a bed). `episodeOfCare`: each
 *   an existing EpisodeOfCare of the same patient, not ended while the encounter is not; an
 *   inpatient encounter (class IMP, ACUTE, NONAC) that names episodes names the inpatient one.
 *   An open inpatient encounter naming none is linked to the patient's active admission, when
 *   there is one. `partOf`: an existing Encounter of the same patient.
 *
 * Otherwise 422 business-rule, naming the element. Only when a link, the patient, the class or
 * the status changes (an encounter is not refused later because its appointment moved on).
 * Encounters without links (walk-ins, Synthea's history) pass; writes with no API caller (bulk
 * import, HL7 v2 feed, server-side) are stored as sent, as the other rules do.
 */

const ACT_CODE = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
/** v3-ActCode inpatient encounter classes (IMP and its specialisations). */
const INPATIENT = new Set(['IMP', 'ACUTE', 'NONAC']);
/** Encounter statuses that take no place under an appointment or stay. */
const VOID = new Set(['cancelled', 'entered-in-error', 'unknown']);
const ENDED = new Set(['finished', 'cancelled', 'entered-in-error']);
const APPOINTMENT_VOID = new Set(['cancelled', 'noshow', 'entered-in-error']);
const APPOINTMENT_UNBOOKED = new Set(['proposed', 'pending', 'waitlist']);
const EPISODE_ENDED = new Set(['finished', 'cancelled', 'entered-in-error']);

export const encounterLinksHook: BeforeWriteHook = async (tx, change) => {
  if (change.resourceType !== 'Encounter' || !change.resource || !byApiCaller()) return;
  const encounter = change.resource as Encounter;
  const inpatient = isInpatient(encounter);
  const hasLinks = (encounter.appointment?.length ?? 0) > 0 || (encounter.episodeOfCare?.length ?? 0) > 0 || encounter.partOf !== undefined;
  // Nothing to check and nothing to link: no read at all (the common outpatient write).
  if (!hasLinks && (!inpatient || ENDED.has(encounter.status))) return;
  const before = change.method === 'POST' ? undefined : await replacedVersion<Encounter>(tx, change);
  if (before && linksOf(before) === linksOf(encounter)) return;

  const patient = referenceTo('Patient', encounter.subject?.reference);
  const issues: OperationOutcomeIssue[] = [];
  const refuse = (path: string, message: string) => issues.push({ severity: 'error', code: 'business-rule', diagnostics: message, expression: [path] });
  await checkAppointments(tx, encounter, patient, refuse);
  await checkEpisodes(tx, encounter, patient, inpatient, refuse);
  await checkPartOf(tx, change, encounter, patient, refuse);
  if (issues.length > 0) throw new FhirError('invalid', issues);

  if (inpatient && !ENDED.has(encounter.status) && !encounter.episodeOfCare?.length && patient) {
    const admission = await activeAdmission(tx, patient);
    if (admission) change.resource = { ...encounter, episodeOfCare: [{ reference: `EpisodeOfCare/${admission}` }] } as Encounter;
  }
};

function isInpatient(encounter: Encounter): boolean {
  const c = encounter.class;
  return c !== undefined && (c.system === ACT_CODE || c.system === undefined) && INPATIENT.has(c.code ?? '');
}

/** What the checks depend on: a change elsewhere (diagnoses, participants) is not re-checked. */
function linksOf(e: Encounter): string {
  return JSON.stringify([e.appointment?.map((r) => r.reference), e.episodeOfCare?.map((r) => r.reference), e.partOf?.reference, e.subject?.reference, e.status, e.class?.code]);
}

async function readLive<T>(tx: StoreTransaction, type: string, id: string): Promise<T | undefined> {
  const stored = await tx.read(type, id);
  return stored?.json && !stored.deleted ? (JSON.parse(stored.json) as T) : undefined;
}

type Refuse = (path: string, message: string) => void;

async function checkAppointments(tx: StoreTransaction, encounter: Encounter, patient: string | undefined, refuse: Refuse): Promise<void> {
  for (const [i, ref] of (encounter.appointment ?? []).entries()) {
    const path = `Encounter.appointment[${i}]`;
    const id = literal(ref, 'Appointment');
    const appointment = id ? await readLive<Appointment>(tx, 'Appointment', id) : undefined;
    if (!id || !appointment) {
      refuse(path, `The appointment ${ref.reference ?? ref.display ?? ''} does not exist; an encounter links to an existing Appointment.`.replace(/ {2}/g, ' '));
      continue;
    }
    const patients = appointment.participant.map((p) => referenceTo('Patient', p.actor?.reference)).filter((p): p is string => p !== undefined);
    if (patient && !patients.includes(patient)) {
      refuse(path, `Appointment/${id} is ${patients.length ? `for Patient/${patients.join(', Patient/')}` : 'for no patient'}, not for this encounter's Patient/${patient}.`);
    }
    if (VOID.has(encounter.status)) continue;
    if (APPOINTMENT_VOID.has(appointment.status)) {
      refuse(path, `Appointment/${id} is ${appointment.status === 'noshow' ? 'a no-show' : appointment.status}; an encounter cannot take place under it (start a new encounter without it, or book again).`);
    } else if (encounter.status !== 'planned' && APPOINTMENT_UNBOOKED.has(appointment.status)) {
      refuse(path, `Appointment/${id} is only ${appointment.status}, not booked; book it before the encounter begins (${encounter.status}).`);
    }
  }
}

async function checkEpisodes(tx: StoreTransaction, encounter: Encounter, patient: string | undefined, inpatient: boolean, refuse: Refuse): Promise<void> {
  const episodes = encounter.episodeOfCare ?? [];
  let admission = false;
  for (const [i, ref] of episodes.entries()) {
    const path = `Encounter.episodeOfCare[${i}]`;
    const id = literal(ref, 'EpisodeOfCare');
    const episode = id ? await readLive<EpisodeOfCare>(tx, 'EpisodeOfCare', id) : undefined;
    if (!id || !episode) {
      refuse(path, `The episode of care ${ref.reference ?? ref.display ?? ''} does not exist.`.replace(/ {2}/g, ' '));
      continue;
    }
    const owner = referenceTo('Patient', episode.patient?.reference);
    if (patient && owner !== patient) refuse(path, `EpisodeOfCare/${id} is ${owner ? `Patient/${owner}'s` : 'of no patient'}, not this encounter's Patient/${patient}.`);
    if (!ENDED.has(encounter.status) && !VOID.has(encounter.status) && EPISODE_ENDED.has(episode.status)) {
      refuse(path, `EpisodeOfCare/${id} is ${episode.status}; an encounter that is ${encounter.status} cannot belong to it.`);
    }
    if (isAdmission(episode)) admission = true;
  }
  if (inpatient && episodes.length > 0 && !admission) {
    refuse('Encounter.episodeOfCare', 'An inpatient encounter (class IMP) links to its admission: the inpatient EpisodeOfCare (type IMP) opened when the patient was admitted.');
  }
}

async function checkPartOf(tx: StoreTransaction, change: ResourceChange, encounter: Encounter, patient: string | undefined, refuse: Refuse): Promise<void> {
  if (!encounter.partOf) return;
  const id = literal(encounter.partOf, 'Encounter');
  if (id === change.id) return refuse('Encounter.partOf', 'An encounter cannot be part of itself.');
  const parent = id ? await readLive<Encounter>(tx, 'Encounter', id) : undefined;
  if (!id || !parent) return refuse('Encounter.partOf', `The encounter ${encounter.partOf.reference ?? ''} this one is part of does not exist.`.replace(/ {2}/g, ' '));
  const owner = referenceTo('Patient', parent.subject?.reference);
  if (patient && owner !== patient) refuse('Encounter.partOf', `Encounter/${id} is ${owner ? `Patient/${owner}'s` : 'of no patient'}, not this encounter's Patient/${patient}.`);
}

/** The id a literal reference names (an identifier-only or contained reference names none here). */
function literal(ref: Reference, type: string): string | undefined {
  return referenceTo(type, ref.reference);
}

function isAdmission(episode: EpisodeOfCare): boolean {
  return (episode.type ?? []).some((t) => (t.coding ?? []).some((c) => c.system === ACT_CODE && c.code === 'IMP'));
}

/** The patient's active inpatient EpisodeOfCare (at most one: the bed rules reuse it). */
async function activeAdmission(tx: StoreTransaction, patient: string): Promise<string | undefined> {
  const episodes = await referencing(await tx.executor(), 'EpisodeOfCare', 'patient', 'Patient', patient);
  return episodes.find(({ json }) => {
    const episode = JSON.parse(json) as EpisodeOfCare;
    return episode.status === 'active' && isAdmission(episode);
  })?.id;
}
