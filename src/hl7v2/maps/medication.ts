import type { Dosage, Identifier, MedicationRequest } from 'fhir/r4.js';
import type { Segment } from '../parse/message.js';
import { MappingError, reference, type MappingContext } from './context.js';
import { personDisplay, toCodeableConcept, toDateTime } from './datatypes.js';
import { resolvePatient, requirePid } from './patient.js';
import { orderNumbers } from './results.js';
import { lookup } from './tables.js';

/** Per ORC the RXE (pharmacy encoded order) and RXR (route) that follow it. */
function orders(segments: Segment[]): Array<{ orc: Segment; rxe?: Segment; rxr?: Segment }> {
  const list: Array<{ orc: Segment; rxe?: Segment; rxr?: Segment }> = [];
  for (const s of segments) {
    const last = list[list.length - 1];
    if (s.name === 'ORC') list.push({ orc: s });
    else if (s.name === 'RXE' && last && !last.rxe) last.rxe = s;
    else if (s.name === 'RXR' && last && !last.rxr) last.rxr = s;
  }
  return list;
}

/** MedicationRequest.status from the order control (ORC-1) or order status (ORC-5), as for ServiceRequest. */
const STATUS: Record<string, MedicationRequest['status']> = { active: 'active', revoked: 'cancelled', 'on-hold': 'on-hold', completed: 'completed', 'entered-in-error': 'entered-in-error' };

/**
 * RDE^O11 (pharmacy encoded order): per ORC with an RXE a MedicationRequest identified by the
 * placer order number (ORC-2; filler ORC-3 when there is none): medication RXE-2, dose
 * RXE-3/5, route RXR-1, dispense amount RXE-10/11, refills RXE-12, authored ORC-9, requester ORC-12.
 */
export async function mapMedicationOrder(ctx: MappingContext): Promise<void> {
  const t = ctx.tables;
  const pid = requirePid(ctx);
  const list = orders(ctx.message.segments).filter((o) => o.rxe);
  if (list.length === 0) throw new MappingError('the pharmacy order has no ORC with an RXE segment', '100');
  const patient = await resolvePatient(ctx, pid, false);
  const h = ctx.message.header;
  for (const [index, { orc, rxe, rxr }] of list.entries()) {
    if (!rxe) continue;
    const { placer, filler } = orderNumbers(ctx, undefined, orc);
    const key: Identifier = placer ?? filler ?? { system: ctx.system('medication-order-of-message'), value: `${h.sendingApplication}|${h.sendingFacility}|${h.controlId}|${index + 1}` };
    const medication = toCodeableConcept(rxe.fields[2]?.[0], t);
    if (!medication) throw new MappingError('RXE-2 (give code) is empty', '101');
    const control = orc.get(1).trim().toUpperCase();
    const status = t.orderControl.codes[control] ?? lookup(t.orderStatus, orc.get(5).trim()) ?? 'active';
    const request: MedicationRequest = {
      resourceType: 'MedicationRequest',
      identifier: [key, ...(placer && filler ? [filler] : [])],
      status: STATUS[status] ?? 'active',
      intent: 'order',
      medicationCodeableConcept: medication,
      subject: reference(patient),
    };
    const authored = toDateTime(orc.get(9), t);
    if (authored) request.authoredOn = authored;
    const requester = personDisplay(orc.fields[12]?.[0]);
    if (requester) request.requester = { display: requester };
    const dosage: Dosage = {};
    const amount = rxe.get(3).trim();
    if (/^\d+(\.\d+)?$/.test(amount)) {
      const unit = rxe.get(5).trim();
      const ucum = unit ? (t.ucum[unit] ?? t.ucum[unit.toLowerCase()]) : undefined;
      dosage.doseAndRate = [{ doseQuantity: { value: Number(amount), ...(unit ? { unit } : {}), ...(ucum ? { system: 'http://unitsofmeasure.org', code: ucum } : {}) } }];
    }
    const route = toCodeableConcept(rxr?.fields[1]?.[0], t);
    if (route) dosage.route = route;
    const frequency = (orc.get(7, 2) || rxe.get(1, 2)).trim();
    if (frequency) dosage.text = frequency;
    if (Object.keys(dosage).length) request.dosageInstruction = [dosage];
    const dispense = rxe.get(10).trim();
    const refills = rxe.get(12).trim();
    if (/^\d+(\.\d+)?$/.test(dispense) || /^\d+$/.test(refills)) {
      request.dispenseRequest = {};
      if (/^\d+(\.\d+)?$/.test(dispense)) request.dispenseRequest.quantity = { value: Number(dispense), ...(rxe.get(11).trim() ? { unit: rxe.get(11).trim() } : {}) };
      if (/^\d+$/.test(refills)) request.dispenseRequest.numberOfRepeatsAllowed = Number(refills);
    }
    await ctx.upsert(request, key);
  }
}
