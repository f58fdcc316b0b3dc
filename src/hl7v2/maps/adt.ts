import type { Encounter, EncounterLocation, Identifier, Patient } from 'fhir/r4.js';
import { MappingError, reference, type MappingContext, type Written } from './context.js';
import { identifierFromCx, locationDisplay, toDateTime } from './datatypes.js';
import { patientIdentifiers, resolvePatient, requirePid } from './patient.js';

/**
 * ADT: the Patient is created or updated from PID (matched by PID-3), and, for events that
 * concern a visit, the Encounter identified by PV1-19 (visit number) gets the event's status
 * (conformance/hl7v2/tables.json encounterEvents), class PV1-2, location PV1-3 and period
 * PV1-44 / PV1-45.
 */
export async function mapAdt(ctx: MappingContext, event: string): Promise<void> {
  const t = ctx.tables;
  const pid = requirePid(ctx);
  const patient = await resolvePatient(ctx, pid, true);
  if (event === 'none') return;
  const rule = t.encounterEvents[event];
  if (!rule) throw new MappingError(`no Encounter rule for ADT event "${event}"`, '207');
  const pv1 = ctx.message.segments.find((s) => s.name === 'PV1');
  if (!pv1) throw new MappingError('the ADT message has no PV1 segment', '100');
  const h = ctx.message.header;
  const visit = pv1.repetitions(19).map((r) => identifierFromCx(r, 'visit-number', t)).find((i) => i !== undefined);
  if (!visit && !rule.startsPeriod && !rule.status) return;
  if (!visit && !rule.startsPeriod) {
    throw new MappingError('PV1-19 (visit number) is empty, so the visit to update cannot be found', '101');
  }
  const key: Identifier = visit ?? { system: ctx.system('visit-of-message'), value: `${h.sendingApplication}|${h.sendingFacility}|${h.controlId}` };

  const patientClass = pv1.get(2).trim().toUpperCase();
  const classCode = t.patientClass.codes[patientClass];
  const encounter: Encounter = {
    resourceType: 'Encounter',
    identifier: [key],
    status: (rule.status ?? 'in-progress') as Encounter['status'],
    class: classCode ? { system: t.patientClass.system, code: classCode } : t.patientClass.unknown,
    subject: reference(patient),
  };
  const evn = ctx.message.segments.find((s) => s.name === 'EVN');
  const eventTime = toDateTime(evn?.get(6) || evn?.get(2) || '', t);
  const start = toDateTime(pv1.get(44), t) ?? (rule.startsPeriod ? eventTime : undefined);
  const end = toDateTime(pv1.get(45), t) ?? (rule.endsPeriod ? eventTime : undefined);
  if (start || end) encounter.period = { ...(start ? { start } : {}), ...(end ? { end } : {}) };
  const place = locationDisplay(pv1, 3);
  if (place) encounter.location = [{ location: { display: place }, status: rule.endsPeriod ? 'completed' : 'active' }];

  await ctx.upsert(encounter, key, (stored, incoming) => {
    const next: Encounter = { ...stored, subject: incoming.subject, class: incoming.class };
    if (rule.status) next.status = incoming.status;
    const period = { ...stored.period, ...incoming.period };
    if (rule.clearsEnd) delete period.end;
    if (Object.keys(period).length) next.period = period;
    else delete next.period;
    next.location = mergeLocations(stored.location, incoming.location?.[0]);
    if (!next.location?.length) delete next.location;
    return next;
  });
}

/** A new location becomes the active one; the earlier ones stay as history, completed. */
function mergeLocations(stored: EncounterLocation[] = [], incoming: EncounterLocation | undefined): EncounterLocation[] {
  if (!incoming) return stored;
  const same = stored.find((l) => l.location.display === incoming.location.display);
  if (same) return stored.map((l) => (l === same ? { ...l, status: incoming.status } : l));
  return [...stored.map((l) => ({ ...l, status: 'completed' as const })), incoming];
}

/**
 * ADT^A40 (merge patient): the surviving patient (PID) links to the prior one (MRG-1) with
 * `replaces`; the prior one becomes inactive and links back with `replaced-by`. A prior
 * patient we never stored is recorded as such an inactive record, so later messages that
 * still use the old identifier find where it went.
 */
export async function mapMerge(ctx: MappingContext): Promise<void> {
  const t = ctx.tables;
  const pid = requirePid(ctx);
  const mrg = ctx.message.segments.find((s) => s.name === 'MRG');
  if (!mrg) throw new MappingError('the merge message has no MRG segment', '100');
  const priorIds = [...mrg.repetitions(1), ...mrg.repetitions(4)].map((r) => identifierFromCx(r, 'patient-id', t)).filter((i): i is Identifier => i !== undefined);
  if (priorIds.length === 0) throw new MappingError('MRG-1 (prior patient identifier list) is empty', '101');
  const surviving = await resolvePatient(ctx, pid, true);
  const survivingIds = patientIdentifiers(ctx, pid);
  if (priorIds.every((p) => survivingIds.some((s) => s.system === p.system && s.value === p.value))) {
    throw new MappingError('MRG-1 names the surviving patient itself', '207');
  }
  const prior: Patient = { resourceType: 'Patient', identifier: priorIds, active: false };
  const priorWritten: Written = await ctx.upsert(prior, priorIds[0], (stored) => ({
    ...stored,
    active: false,
    link: withLink(stored.link, { other: reference(surviving), type: 'replaced-by' }),
  }));
  if (priorWritten.id === surviving.id) throw new MappingError('MRG-1 and PID-3 name the same stored patient', '207');
  // A newly created prior record needs its link too (the merge function only runs on stored ones).
  await ctx.upsert(prior, priorIds[0], (stored) => ({ ...stored, active: false, link: withLink(stored.link, { other: reference(surviving), type: 'replaced-by' }) }));
  await ctx.upsert({ resourceType: 'Patient' } as Patient, survivingIds[0], (stored) => ({
    ...stored,
    link: withLink(stored.link, { other: reference(priorWritten), type: 'replaces' }),
  }));
}

function withLink(links: Patient['link'] = [], link: NonNullable<Patient['link']>[number]): NonNullable<Patient['link']> {
  return links.some((l) => l.other.reference === link.other.reference && l.type === link.type) ? links : [...links, link];
}
