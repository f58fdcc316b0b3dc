import type { ChargeItem, Identifier } from 'fhir/r4.js';
import { MappingError, reference, type MappingContext } from './context.js';
import { toCodeableConcept, toDateTime } from './datatypes.js';
import { resolvePatient, requirePid } from './patient.js';

/**
 * DFT^P03 (post detail financial transaction): per FT1 a billable ChargeItem identified by the
 * transaction id FT1-2: code FT1-7, date FT1-4, quantity FT1-10, unit amount FT1-11 as price override.
 */
export async function mapCharges(ctx: MappingContext): Promise<void> {
  const t = ctx.tables;
  const pid = requirePid(ctx);
  const ft1s = ctx.message.segments.filter((s) => s.name === 'FT1');
  if (ft1s.length === 0) throw new MappingError('the DFT message has no FT1 segment', '100');
  const patient = await resolvePatient(ctx, pid, false);
  const h = ctx.message.header;
  for (const [index, ft1] of ft1s.entries()) {
    const transaction = ft1.get(2).trim();
    const key: Identifier = transaction
      ? { system: ctx.system(`transaction:${encodeURIComponent(h.sendingApplication)}`), value: transaction }
      : { system: ctx.system('charge-of-message'), value: `${h.sendingApplication}|${h.sendingFacility}|${h.controlId}|${ft1.get(1) || index + 1}` };
    const code = toCodeableConcept(ft1.fields[7]?.[0], t);
    if (!code) throw new MappingError(`FT1-7 (transaction code) of FT1 ${ft1.get(1) || index + 1} is empty`, '101');
    const charge: ChargeItem = { resourceType: 'ChargeItem', identifier: [key], status: 'billable', code, subject: reference(patient) };
    const when = toDateTime(ft1.get(4), t);
    if (when) charge.occurrenceDateTime = when;
    const quantity = ft1.get(10).trim();
    if (/^\d+(\.\d+)?$/.test(quantity)) charge.quantity = { value: Number(quantity) };
    const amount = ft1.get(11, 1, 1).trim();
    const currency = ft1.get(11, 1, 2).trim();
    if (/^-?\d+(\.\d+)?$/.test(amount)) charge.priceOverride = { value: Number(amount), ...(/^[A-Z]{3}$/.test(currency) ? { currency } : {}) };
    await ctx.upsert(charge, key);
  }
}
