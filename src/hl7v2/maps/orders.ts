import type { Identifier, ServiceRequest } from 'fhir/r4.js';
import type { Segment } from '../parse/message.js';
import { MappingError, reference, type MappingContext } from './context.js';
import { personDisplay, toCodeableConcept, toDateTime } from './datatypes.js';
import { resolvePatient, requirePid } from './patient.js';
import { orderNumbers } from './results.js';
import { lookup } from './tables.js';

/** An ORC with the detail segment (OBR) that follows it before the next ORC. */
function orders(segments: Segment[]): Array<{ orc: Segment; obr?: Segment; tq1?: Segment }> {
  const list: Array<{ orc: Segment; obr?: Segment; tq1?: Segment }> = [];
  for (const s of segments) {
    if (s.name === 'ORC') list.push({ orc: s });
    else if (s.name === 'OBR' && list.length && !list[list.length - 1].obr) list[list.length - 1].obr = s;
    // An OBR without its own ORC (some OML senders): the OBR alone describes the order.
    else if (s.name === 'OBR') list.push({ orc: s, obr: s });
    else if (s.name === 'TQ1' && list.length && !list[list.length - 1].tq1) list[list.length - 1].tq1 = s;
  }
  return list;
}

/**
 * ORM^O01 / OML^O21: per ORC a ServiceRequest identified by its placer order number (ORC-2 /
 * OBR-2; the filler number ORC-3 / OBR-3 when there is none), status from the order control
 * (ORC-1) or order status (ORC-5), code OBR-4, priority TQ1-9 / ORC-7.6 / OBR-27.6.
 */
export async function mapOrder(ctx: MappingContext): Promise<void> {
  const t = ctx.tables;
  const pid = requirePid(ctx);
  const list = orders(ctx.message.segments);
  if (list.length === 0) throw new MappingError('the order message has no ORC segment', '100');
  const patient = await resolvePatient(ctx, pid, false);
  const h = ctx.message.header;
  for (const [index, { orc, obr, tq1 }] of list.entries()) {
    const { placer, filler } = orderNumbers(ctx, obr, orc);
    const identifier: Identifier[] = [];
    if (placer) identifier.push({ ...placer, type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'PLAC' }] } });
    if (filler) identifier.push({ ...filler, type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'FILL' }] } });
    const key: Identifier = placer ?? filler ?? { system: ctx.system('order-of-message'), value: `${h.sendingApplication}|${h.sendingFacility}|${h.controlId}|${index + 1}` };
    if (identifier.length === 0) identifier.push(key);
    const control = orc.get(1).trim().toUpperCase();
    const status = t.orderControl.codes[control] ?? lookup(t.orderStatus, orc.get(5).trim());
    const request: ServiceRequest = {
      resourceType: 'ServiceRequest',
      identifier,
      status: (status ?? 'active') as ServiceRequest['status'],
      intent: 'order',
      subject: reference(patient),
    };
    const code = toCodeableConcept(obr?.fields[4]?.[0], t);
    if (code) request.code = code;
    const priorityCode = (tq1?.get(9) || orc.get(7, 6) || obr?.get(27, 6) || '').trim();
    const priority = priorityCode ? t.priority.codes[priorityCode.toUpperCase()] : undefined;
    if (priority) request.priority = priority as ServiceRequest['priority'];
    const authored = toDateTime(orc.get(9), t);
    if (authored) request.authoredOn = authored;
    const requester = personDisplay(orc.fields[12]?.[0]) ?? personDisplay(obr?.fields[16]?.[0]);
    if (requester) request.requester = { display: requester };
    await ctx.upsert(request, key, (stored, incoming) => ({ ...stored, ...incoming, identifier: unite(stored.identifier, incoming.identifier) }));
  }
}

function unite(a: Identifier[] = [], b: Identifier[] = []): Identifier[] {
  const out = [...a];
  for (const id of b) if (!out.some((o) => o.system === id.system && o.value === id.value)) out.push(id);
  return out;
}
