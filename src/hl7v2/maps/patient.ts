import type { ContactPoint, Identifier, Patient } from 'fhir/r4.js';
import type { Hl7Message, Segment } from '../parse/message.js';
import { parseMessage } from '../parse/er7.js';
import type { MappingTables } from './tables.js';
import { MappingError, type MappingContext, type Written } from './context.js';
import { address, contactPoint, humanName, identifierFromCx, toDate, toDateTime } from './datatypes.js';

/** PID-3 identifiers (v2.1/2.2 senders put the id in PID-2 or PID-4 instead). */
export function patientIdentifiers(ctx: Pick<MappingContext, 'tables'>, pid: Segment): Identifier[] {
  const ids: Identifier[] = [];
  for (const field of [3, 2, 4]) {
    for (const rep of pid.repetitions(field)) {
      const id = identifierFromCx(rep, 'patient-id', ctx.tables);
      if (id && !ids.some((i) => i.system === id.system && i.value === id.value)) ids.push(id);
    }
    if (ids.length) break;
  }
  return ids;
}

/**
 * The patient identifiers of every PID segment of a message that parses, mapped as ingest maps
 * them (same systems): how a message that wrote nothing is still known to be about a patient
 * (GDPR erasure, src/operations/erase.ts). A message that does not parse names nobody.
 */
export function identifiersInMessage(raw: string, tables: MappingTables): Identifier[] {
  let message: Hl7Message;
  try {
    message = parseMessage(raw);
  } catch {
    return [];
  }
  return message.segments.filter((s) => s.name === 'PID').flatMap((pid) => patientIdentifiers({ tables }, pid));
}

/** PID → Patient (demographics only; links and other data are kept when merged into a stored one). */
export function patientFromPid(ctx: MappingContext, pid: Segment): Patient {
  const t = ctx.tables;
  const patient: Patient = { resourceType: 'Patient', identifier: patientIdentifiers(ctx, pid) };
  const names = pid.repetitions(5).map((r) => humanName(r)).filter((n) => n !== undefined);
  if (names.length) patient.name = names;
  const gender = t.administrativeSex[pid.get(8).toUpperCase()];
  if (gender) patient.gender = gender as Patient['gender'];
  const birthDate = toDate(pid.get(7), t);
  if (birthDate && /^\d{4}(-\d{2}(-\d{2})?)?$/.test(birthDate)) patient.birthDate = birthDate;
  const addresses = pid.repetitions(11).map(address).filter((a) => a !== undefined);
  if (addresses.length) patient.address = addresses;
  const telecom = [
    ...pid.repetitions(13).map((r) => contactPoint(r, 'home')),
    ...pid.repetitions(14).map((r) => contactPoint(r, 'work')),
  ].filter((c): c is ContactPoint => c !== undefined);
  if (telecom.length) patient.telecom = telecom;
  const deathFlag = pid.get(30).toUpperCase();
  const deathTime = toDateTime(pid.get(29), t);
  if (deathTime) patient.deceasedDateTime = deathTime;
  else if (deathFlag === 'Y' || deathFlag === 'N') patient.deceasedBoolean = deathFlag === 'Y';
  return patient;
}

/** The stored patient updated with what the message says; identifiers are united, links kept. */
function mergePatient(stored: Patient, incoming: Patient): Patient {
  const identifier = [...(stored.identifier ?? [])];
  for (const id of incoming.identifier ?? []) {
    if (!identifier.some((i) => i.system === id.system && i.value === id.value)) identifier.push(id);
  }
  const merged: Patient = { ...stored, ...incoming, identifier };
  // Links and active belong to merges (A40), not to demographics.
  delete merged.link;
  delete merged.active;
  if (stored.link) merged.link = stored.link;
  if (stored.active !== undefined) merged.active = stored.active;
  return merged;
}

export function requirePid(ctx: MappingContext): Segment {
  const pid = ctx.message.segments.find((s) => s.name === 'PID');
  if (!pid) throw new MappingError('the message has no PID segment, so its patient is unknown', '100');
  return pid;
}

/**
 * The patient of the message, matched by any PID-3 identifier. `update` (ADT) writes the
 * demographics into a stored patient; otherwise (results, orders) a stored patient is only
 * referenced and an unknown one is created from PID, to be completed by ADT later.
 */
export async function resolvePatient(ctx: MappingContext, pid: Segment, update: boolean): Promise<Written> {
  const incoming = patientFromPid(ctx, pid);
  const ids = incoming.identifier ?? [];
  if (ids.length === 0) throw new MappingError('PID-3 (patient identifier list) is empty', '101');
  const merge = update ? mergePatient : (stored: Patient) => stored;
  if (ids.length > 1 && (await ctx.find('Patient', ids[0])).length === 0) {
    // Not known by the first identifier but by a later one (e.g. a national id): that patient.
    for (const id of ids.slice(1)) {
      if ((await ctx.find('Patient', id)).length === 1) return ctx.upsert(incoming, id, merge);
    }
  }
  return ctx.upsert(incoming, ids[0], merge);
}
