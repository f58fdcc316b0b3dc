import { readFileSync } from 'node:fs';
import type { Identifier, NamingSystem, Patient } from 'fhir/r4.js';
import { nextPatientNumber, withToken } from '../storage/front-desk-store.js';
import type { BeforeWriteHook } from '../storage/resource-store.js';
import { businessRule, replacedVersion } from './scheduling-rules.js';

/**
 * Patient registration (seed 004 FR-PM-001, issue 12 §1), before commit on every write path:
 *
 * - Patient number: a Patient written with an identifier of the patient-number system and no
 *   value gets `PT-YYYYMMDD-XXXX` (registration day in UTC, per-day sequence in the database:
 *   no two processes hand out one number). The number is the server's: an update may not
 *   change or drop it (409). External data without that identifier is stored as it is.
 * - Uniqueness: a national id or patient number already carried by another patient is refused
 *   (409). An advisory lock per value makes concurrent registrations of one id take turns.
 *
 * The systems come from the NamingSystems in terminology/ (data, not code).
 */

export interface RegistrationSystems {
  patientNumber: string;
  /** Identifier systems unique across patients (national id, patient number). */
  unique: string[];
  /** Human names of the unique systems, for messages. */
  labels: Map<string, string>;
}

function uniqueIdOf(path: string): string {
  const naming = JSON.parse(readFileSync(path, 'utf8')) as NamingSystem;
  const id = naming.uniqueId.find((u) => u.type === 'uri' && u.preferred) ?? naming.uniqueId.find((u) => u.type === 'uri');
  if (!id) throw new Error(`${path} names no uri`);
  return id.value;
}

/** The registration systems from terminology/NamingSystem-patient-number.json and -national-id.json. */
export function loadRegistrationSystems(terminologyDir: string): RegistrationSystems {
  const patientNumber = uniqueIdOf(`${terminologyDir}/NamingSystem-patient-number.json`);
  const nationalId = uniqueIdOf(`${terminologyDir}/NamingSystem-national-id.json`);
  return {
    patientNumber,
    unique: [nationalId, patientNumber],
    labels: new Map([
      [nationalId, 'national id'],
      [patientNumber, 'patient number'],
    ]),
  };
}

const PATIENT_NUMBER = /^PT-[0-9]{8}-[0-9]{4}$/;

function registrationDay(now = new Date()): string {
  return now.toISOString().slice(0, 10).replace(/-/g, '');
}

export function registrationHook(systems: RegistrationSystems): BeforeWriteHook {
  return async (tx, change) => {
    if (change.resourceType !== 'Patient' || !change.resource) return;
    let patient = change.resource as Patient;
    // This hook runs before validation (see scheduling-wiring.ts): a malformed identifier list
    // is left to the validator's 422.
    const list: unknown = patient.identifier;
    if (list !== undefined && (!Array.isArray(list) || !list.every((i) => typeof i === 'object' && i !== null && ['string', 'undefined'].includes(typeof (i as Identifier).system) && ['string', 'undefined'].includes(typeof (i as Identifier).value)))) return;
    const ours = (patient.identifier ?? []).filter((i) => systems.unique.includes(i.system ?? ''));
    // Updates are checked against the number already given; creates without our systems are external data.
    const before = change.method === 'POST' && ours.length === 0 ? undefined : await replacedVersion<Patient>(tx, change);
    const given = before?.identifier?.find((i) => i.system === systems.patientNumber && i.value);
    if (given) {
      const kept = (patient.identifier ?? []).some((i) => i.system === systems.patientNumber && i.value === given.value);
      const other = (patient.identifier ?? []).some((i) => i.system === systems.patientNumber && i.value !== undefined && i.value !== given.value);
      if (!kept || other) {
        throw businessRule('conflict', `The patient number ${given.value} is assigned by the hospital and cannot be changed or removed.`, ['Patient.identifier']);
      }
    }
    if (ours.length === 0) return;
    const blank = (patient.identifier ?? []).findIndex((i) => i.system === systems.patientNumber && !i.value);
    if (blank >= 0) {
      if (given) throw businessRule('conflict', `This patient already has the patient number ${given.value}.`, ['Patient.identifier']);
      const day = registrationDay();
      const n = await nextPatientNumber(await tx.executor(), day);
      if (n > 9999) throw businessRule('conflict', `No patient numbers are left for ${day} (at most 9999 registrations a day).`, ['Patient.identifier']);
      const identifier: Identifier[] = [...(patient.identifier ?? [])];
      identifier[blank] = {
        use: 'usual',
        type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR', display: 'Medical record number' }] },
        ...identifier[blank],
        value: `PT-${day}-${String(n).padStart(4, '0')}`,
      };
      patient = { ...patient, identifier };
      change.resource = patient;
    }
    for (const id of patient.identifier ?? []) {
      if (!id.system || !id.value || !systems.unique.includes(id.system)) continue;
      const label = systems.labels.get(id.system) ?? id.system;
      if (id.system === systems.patientNumber && !PATIENT_NUMBER.test(id.value)) {
        throw businessRule('invalid', `${id.value} is not a patient number (PT-YYYYMMDD-XXXX); leave the value empty to have one assigned.`, ['Patient.identifier']);
      }
      await tx.lockCondition(`unique-identifier|${id.system}|${id.value}`);
      const others = await withToken(await tx.executor(), 'Patient', 'identifier', id.system, id.value, change.id);
      if (others.length > 0) {
        throw businessRule('conflict', `Another patient (Patient/${others[0]}) is already registered with this ${label}. Search for that patient instead of registering a new one.`, [
          'Patient.identifier',
        ]);
      }
    }
  };
}
