import type { Appointment, Encounter, EpisodeOfCare, List, MedicationStatement, Reference } from 'fhir/r4.js';
import { referencing } from '../storage/front-desk-store.js';
import type { BeforeWriteHook, StoreTransaction } from '../storage/resource-store.js';
import { bedTransitions } from './inpatient.js';
import { businessRule, referenceTo } from './scheduling-rules.js';

/**
 * The rest of an inpatient stay (seed 004 FR-IP-002 "link admission to encounter", FR-IP-003
 * "create discharge medication list", "schedule follow-up appointments"; issue 12 §4), called
 * by the bed rules of inpatient.ts in the same transaction:
 *
 * - Admission (an Encounter taking a bed without an `episodeOfCare`): linked to the patient's
 *   active inpatient EpisodeOfCare (type v3-ActCode IMP), or to a new one (status active, period start now, type "inpatient
 *   stay", managingOrganization the encounter's serviceProvider).
 * - Discharge (status finished while holding a bed, beside the discharge summary rule): needs a
 *   discharge medication list for the encounter — a List coded LOINC 10183-2 "Hospital
 *   discharge medications" whose `encounter` is this one (empty with an `emptyReason` when
 *   nothing is prescribed), or a MedicationStatement whose `context` is the encounter and whose
 *   category carries 10183-2 — 422 otherwise.
 * - Discharge then proposes a follow-up Appointment: status proposed, appointmentType FOLLOWUP
 *   (v2-0276), participants the patient and the attending practitioner (Encounter.participant
 *   of type ATND, else the first Practitioner), requestedPeriod DISCHARGE_FOLLOW_UP_DAYS after
 *   discharge (+ 7 days to choose from), supportingInformation the Encounter. The front desk books
 *   it like any request (it raises APPOINTMENT_REQUESTED). The stay's EpisodeOfCare is finished.
 *   Charges for the bed days are billing's (issue 14), on the same discharge.
 */

export const DISCHARGE_MEDICATIONS = { system: 'http://loinc.org', code: '10183-2', display: 'Hospital discharge medications' };
const ACT_CODE = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
const PARTICIPATION_TYPE = 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType';
const DAY = 86_400_000;

function patientOf(encounter: Encounter): string | undefined {
  return referenceTo('Patient', encounter.subject?.reference);
}

const coded = (codings: Array<{ system?: string; code?: string }> | undefined) =>
  (codings ?? []).some((c) => c.system === DISCHARGE_MEDICATIONS.system && c.code === DISCHARGE_MEDICATIONS.code);

function isInpatientEpisode(episode: EpisodeOfCare): boolean {
  return (episode.type ?? []).some((t) => (t.coding ?? []).some((c) => c.system === ACT_CODE && c.code === 'IMP'));
}

/** FR-IP-002: the admitted encounter, linked to the patient's active EpisodeOfCare (created when there is none). */
export async function withEpisodeOfCare(tx: StoreTransaction, encounter: Encounter): Promise<Encounter> {
  if (encounter.episodeOfCare?.length) return encounter;
  const patient = patientOf(encounter);
  if (!patient) return encounter;
  // Two admissions of one patient at once must not make two episodes.
  await tx.lockCondition(`episode-of-care/Patient/${patient}`);
  const episodes = await referencing(await tx.executor(), 'EpisodeOfCare', 'patient', 'Patient', patient);
  const active = episodes.find(({ json }) => isInpatientEpisode(JSON.parse(json) as EpisodeOfCare) && (JSON.parse(json) as EpisodeOfCare).status === 'active');
  let id = active?.id;
  if (!id) {
    const episode: EpisodeOfCare = {
      resourceType: 'EpisodeOfCare',
      status: 'active',
      type: [{ coding: [{ system: ACT_CODE, code: 'IMP', display: 'inpatient encounter' }], text: 'Inpatient stay' }],
      patient: { reference: `Patient/${patient}` },
      period: { start: encounter.period?.start ?? new Date().toISOString() },
      ...(encounter.serviceProvider ? { managingOrganization: encounter.serviceProvider } : {}),
    };
    id = (await tx.create(episode, 'POST')).id;
  }
  return { ...encounter, episodeOfCare: [{ reference: `EpisodeOfCare/${id}` }] };
}

/** FR-IP-003: "System SHALL create discharge medication list" — required before the stay is finished. */
export async function requireDischargeMedications(tx: StoreTransaction, encounterId: string): Promise<void> {
  const db = await tx.executor();
  const lists = await referencing(db, 'List', 'encounter', 'Encounter', encounterId);
  const listed = lists.some(({ json }) => {
    const list = JSON.parse(json) as List;
    return list.status !== 'entered-in-error' && coded(list.code?.coding);
  });
  if (listed) return;
  const statements = await referencing(db, 'MedicationStatement', 'context', 'Encounter', encounterId);
  const stated = statements.some(({ json }) => {
    const s = JSON.parse(json) as MedicationStatement;
    return s.status !== 'entered-in-error' && coded(s.category?.coding);
  });
  if (stated) return;
  throw businessRule(
    'invalid',
    `The patient cannot be discharged yet: record the discharge medication list first (a List coded LOINC ${DISCHARGE_MEDICATIONS.code} for Encounter/${encounterId}; empty with an emptyReason when nothing is prescribed).`,
    ['Encounter.status'],
  );
}

function attending(encounter: Encounter): Reference | undefined {
  const practitioners = (encounter.participant ?? []).filter((p) => referenceTo('Practitioner', p.individual?.reference) || referenceTo('PractitionerRole', p.individual?.reference));
  const atnd = practitioners.find((p) => (p.type ?? []).some((t) => (t.coding ?? []).some((c) => c.system === PARTICIPATION_TYPE && c.code === 'ATND')));
  return (atnd ?? practitioners[0])?.individual;
}

/** FR-IP-003 "schedule follow-up appointments": a proposed Appointment, and the episode finished. */
export async function proposeFollowUp(tx: StoreTransaction, encounterId: string, encounter: Encounter, followUpDays: number): Promise<void> {
  const patient = patientOf(encounter);
  if (!patient) return;
  const discharged = Date.parse(encounter.period?.end ?? '') || Date.now();
  const from = new Date(discharged + followUpDays * DAY).toISOString();
  const to = new Date(discharged + (followUpDays + 7) * DAY).toISOString();
  const doctor = attending(encounter);
  const appointment: Appointment = {
    resourceType: 'Appointment',
    status: 'proposed',
    appointmentType: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0276', code: 'FOLLOWUP', display: 'A follow up visit from a previous appointment' }] },
    description: 'Follow-up after hospital discharge',
    supportingInformation: [{ reference: `Encounter/${encounterId}` }],
    requestedPeriod: [{ start: from, end: to }],
    created: new Date().toISOString().slice(0, 10),
    participant: [
      { actor: { reference: `Patient/${patient}` }, required: 'required', status: 'needs-action' },
      ...(doctor ? [{ actor: doctor, required: 'required' as const, status: 'needs-action' as const, type: [{ coding: [{ system: PARTICIPATION_TYPE, code: 'ATND', display: 'attender' }] }] }] : []),
    ],
  };
  await tx.create(appointment, 'POST');
  for (const ref of encounter.episodeOfCare ?? []) {
    const id = referenceTo('EpisodeOfCare', ref.reference);
    if (!id) continue;
    const current = await tx.readForUpdate('EpisodeOfCare', id);
    if (!current?.json || current.deleted) continue;
    const episode = JSON.parse(current.json) as EpisodeOfCare;
    // Only the stay's own episode ends here (not a care programme the encounter also belongs to).
    if (episode.status !== 'active' || !isInpatientEpisode(episode)) continue;
    const finished: EpisodeOfCare = { ...episode, status: 'finished', period: { ...episode.period, end: new Date(discharged).toISOString() } };
    await tx.update(finished, current, 'PUT');
  }
}

export interface StayOptions {
  /** DISCHARGE_FOLLOW_UP_DAYS: the follow-up is proposed this many days after discharge. */
  followUpDays: number;
}

/**
 * Registered right after inpatient.ts's bed rules, which tell what an Encounter write did to a
 * bed (`bedTransitions`): admission → episode of care; discharge → medication list, follow-up.
 */
export function inpatientStayHook(options: StayOptions): BeforeWriteHook {
  return async (tx, change) => {
    if (change.resourceType !== 'Encounter' || !change.resource) return;
    const transition = bedTransitions.get(change);
    if (!transition) return;
    const encounter = change.resource as Encounter;
    if (transition === 'admission') {
      change.resource = await withEpisodeOfCare(tx, encounter);
      return;
    }
    await requireDischargeMedications(tx, change.id);
    await proposeFollowUp(tx, change.id, encounter, options.followUpDays);
  };
}
