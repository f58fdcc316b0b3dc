import type { Identifier, Immunization } from 'fhir/r4.js';
import type { Segment } from '../parse/message.js';
import { MappingError, reference, type MappingContext } from './context.js';
import { toCodeableConcept, toDate, toDateTime } from './datatypes.js';
import { resolvePatient, requirePid } from './patient.js';
import { orderNumbers } from './results.js';

/** RXA with its ORC (before it) and RXR (after it): the v2.5.1 VXU_V04 ORDER group. */
function administrations(segments: Segment[]): Array<{ orc?: Segment; rxa: Segment; rxr?: Segment }> {
  const list: Array<{ orc?: Segment; rxa: Segment; rxr?: Segment }> = [];
  let orc: Segment | undefined;
  for (const s of segments) {
    if (s.name === 'ORC') orc = s;
    else if (s.name === 'RXA') {
      list.push({ orc, rxa: s });
      orc = undefined;
    } else if (s.name === 'RXR' && list.length && !list[list.length - 1].rxr) list[list.length - 1].rxr = s;
  }
  return list;
}

/**
 * VXU^V04: the patient from PID (created when unknown) and per RXA an Immunization: vaccine
 * RXA-5, date RXA-3, dose RXA-6/7, lot RXA-15, expiry RXA-16, status from RXA-20 (completion:
 * RE refused / NA not administered → not-done) and RXA-21 (action D → entered-in-error),
 * primary source RXA-9 (00 new record), route and site RXR-1/2. A VXU without RXA only
 * updates the patient (the ORDER group is optional).
 */
export async function mapVaccination(ctx: MappingContext): Promise<void> {
  const t = ctx.tables;
  const pid = requirePid(ctx);
  const patient = await resolvePatient(ctx, pid, false);
  const h = ctx.message.header;
  for (const [index, { orc, rxa, rxr }] of administrations(ctx.message.segments).entries()) {
    const { placer, filler } = orderNumbers(ctx, undefined, orc);
    const key: Identifier = filler ?? placer ?? { system: ctx.system('immunization-of-message'), value: `${h.sendingApplication}|${h.sendingFacility}|${h.controlId}|${index + 1}` };
    const vaccineCode = toCodeableConcept(rxa.fields[5]?.[0], t);
    if (!vaccineCode) throw new MappingError(`RXA-5 (administered code) of RXA ${rxa.get(1) || index + 1} is empty`, '101');
    const occurrence = toDateTime(rxa.get(3), t);
    if (!occurrence) throw new MappingError(`RXA-3 (date/time of administration) of RXA ${rxa.get(1) || index + 1} is empty or invalid`, '101');
    const completion = rxa.get(20).trim().toUpperCase();
    const action = rxa.get(21).trim().toUpperCase();
    const immunization: Immunization = {
      resourceType: 'Immunization',
      identifier: [key],
      status: action === 'D' ? 'entered-in-error' : completion === 'RE' || completion === 'NA' ? 'not-done' : 'completed',
      vaccineCode,
      patient: reference(patient),
      occurrenceDateTime: occurrence,
    };
    const source = rxa.get(9).trim();
    if (source === '00') immunization.primarySource = true;
    else if (source) immunization.primarySource = false;
    const amount = rxa.get(6).trim();
    if (/^\d+(\.\d+)?$/.test(amount) && amount !== '999') {
      immunization.doseQuantity = { value: Number(amount) };
      const unit = rxa.get(7).trim();
      if (unit) {
        immunization.doseQuantity.unit = rxa.get(7, 2).trim() || unit;
        const ucum = t.ucum[unit] ?? t.ucum[unit.toLowerCase()];
        if (ucum) Object.assign(immunization.doseQuantity, { system: 'http://unitsofmeasure.org', code: ucum });
      }
    }
    const lot = rxa.get(15).trim();
    if (lot) immunization.lotNumber = lot;
    const expiry = toDate(rxa.get(16), t);
    if (expiry && expiry.length === 10) immunization.expirationDate = expiry;
    const reason = toCodeableConcept(rxa.fields[18]?.[0], t);
    if (reason && immunization.status === 'not-done') immunization.statusReason = reason;
    const route = toCodeableConcept(rxr?.fields[1]?.[0], t);
    if (route) immunization.route = route;
    const site = toCodeableConcept(rxr?.fields[2]?.[0], t);
    if (site) immunization.site = site;
    await ctx.upsert(immunization, key);
  }
}
