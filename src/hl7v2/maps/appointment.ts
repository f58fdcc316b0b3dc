import type { Appointment, AppointmentParticipant, Identifier } from 'fhir/r4.js';
import { MappingError, reference, type MappingContext } from './context.js';
import { identifierFromEi, personDisplay, toCodeableConcept, toInstant } from './datatypes.js';
import { resolvePatient, requirePid } from './patient.js';

/**
 * SIU^S12–S15 (schedule notifications): an Appointment identified by the filler appointment
 * id SCH-2 (placer SCH-1 when there is none); status from the trigger when it cancels (S15),
 * else SCH-25 (filler status) or the trigger (tables.json appointmentStatus), start / end SCH-11.4/11.5 or AIS-4 + AIS-7 minutes,
 * reason SCH-7, type SCH-8, service AIS-3, the patient and AIP personnel as participants.
 */
export async function mapAppointment(ctx: MappingContext): Promise<void> {
  const t = ctx.tables;
  const pid = requirePid(ctx);
  const sch = ctx.message.segments.find((s) => s.name === 'SCH');
  if (!sch) throw new MappingError('the SIU message has no SCH segment', '100');
  const ais = ctx.message.segments.find((s) => s.name === 'AIS');
  const patient = await resolvePatient(ctx, pid, false);
  const key: Identifier | undefined = identifierFromEi(sch.fields[2]?.[0], 'filler-appointment', t) ?? identifierFromEi(sch.fields[1]?.[0], 'placer-appointment', t);
  if (!key) throw new MappingError('SCH-1 and SCH-2 (appointment ids) are empty', '101');
  const byFiller = t.appointmentStatus.filler[sch.get(25).trim().toUpperCase()];
  const byTrigger = t.appointmentStatus.trigger[ctx.message.header.triggerEvent];
  // A cancellation (S15) cancels whatever SCH-25 still says; otherwise the filler status is the more precise.
  const status = (byTrigger === 'cancelled' ? byTrigger : (byFiller ?? byTrigger ?? 'booked')) as Appointment['status'];
  let start = toInstant(sch.get(11, 4), t);
  let end = toInstant(sch.get(11, 5), t);
  if (!start && ais) {
    start = toInstant(ais.get(4), t);
    const minutes = Number(ais.get(7));
    if (start && Number.isFinite(minutes) && minutes > 0 && (!ais.get(8) || /^min/i.test(ais.get(8)))) end = new Date(Date.parse(start) + minutes * 60_000).toISOString();
  }
  if ((!start || !end) && status !== 'proposed' && status !== 'cancelled' && status !== 'waitlist') {
    throw new MappingError('the appointment has no start and end (SCH-11.4/11.5, or AIS-4 with AIS-7 minutes)', '101');
  }
  const participant: AppointmentParticipant[] = [{ actor: reference(patient), status: 'accepted' }];
  for (const aip of ctx.message.segments.filter((s) => s.name === 'AIP')) {
    const who = personDisplay(aip.fields[3]?.[0]);
    if (who) participant.push({ actor: { display: who }, status: 'accepted' });
  }
  const appointment: Appointment = { resourceType: 'Appointment', identifier: [key], status, participant };
  if (start) appointment.start = start;
  if (end) appointment.end = end;
  const reason = toCodeableConcept(sch.fields[7]?.[0], t);
  if (reason) appointment.reasonCode = [reason];
  const type = toCodeableConcept(sch.fields[8]?.[0], t);
  if (type) appointment.appointmentType = type;
  const service = toCodeableConcept(ais?.fields[3]?.[0], t);
  if (service) appointment.serviceType = [service];
  await ctx.upsert(appointment, key);
}
