import type { Appointment, DiagnosticReport, Encounter, Invoice, Location, Patient, PaymentReconciliation, Practitioner, Resource, ServiceRequest } from 'fhir/r4.js';
import { rng } from './search-data.js';

/**
 * Deterministic synthetic hospital data for the reports bench (issue 14 §5): a year of
 * appointments, invoices with line items and payments, inpatient stays in ward beds, and lab
 * orders with their final reports, `total` resources in all (mix below), spread over
 * [SPAN_START, SPAN_END). The report period measured is the last month (REPORT_PERIOD), as a
 * monthly report is run.
 */
export const SPAN_START = Date.parse('2025-07-01T00:00:00Z');
export const SPAN_END = Date.parse('2026-07-01T00:00:00Z');
export const REPORT_PERIOD = { first: '2026-06-01', last: '2026-06-30' };

const MIX = { Patient: 0.05, Appointment: 0.3, Invoice: 0.15, PaymentReconciliation: 0.12, Encounter: 0.08, ServiceRequest: 0.15, DiagnosticReport: 0.15 };
const CHARGE = 'https://fhir.hospital.example.org/CodeSystem/charge-code';
const CATEGORIES = ['CONS-GP', 'CONS-SPEC', 'LAB-ORDER', 'LAB-STAT', 'MED-DISP', 'BED-DAY', 'IMAGING', 'PROCEDURE'];
const TESTS = ['2345-7', '718-7', '2160-0', '6690-2', '777-3', '2951-2', '2823-3', '1742-6', '1920-8', '4548-4'];
const PHYSICAL = 'http://terminology.hl7.org/CodeSystem/location-physical-type';
const DAY = 86_400_000;

export interface ReportsDataShape {
  practitioners: number;
  wards: number;
  bedsPerWard: number;
  counts: Record<keyof typeof MIX, number>;
}

export function reportsDataShape(total: number): ReportsDataShape {
  const counts = Object.fromEntries(Object.entries(MIX).map(([k, f]) => [k, Math.round(total * f)])) as Record<keyof typeof MIX, number>;
  // Payments and reports are generated per invoice / request, so they follow those counts.
  counts.DiagnosticReport = counts.ServiceRequest;
  return { practitioners: Math.max(10, Math.round(total / 5000)), wards: Math.max(3, Math.round(total / 50_000)), bedsPerWard: 30, counts };
}

const iso = (ms: number) => new Date(ms).toISOString();
const money = (value: number) => ({ value, currency: 'VND' });

export function* reportsData(total: number): Generator<Resource> {
  const shape = reportsDataShape(total);
  const r = rng(14_005);
  const pick = <T>(items: readonly T[]) => items[Math.floor(r() * items.length)]!;
  const when = () => SPAN_START + Math.floor(r() * (SPAN_END - SPAN_START));
  const patient = () => ({ reference: `Patient/rp-${Math.floor(r() * shape.counts.Patient)}` });
  for (let i = 0; i < shape.practitioners; i++) yield { resourceType: 'Practitioner', id: `rpr-${i}`, name: [{ family: `Doctor ${i}` }] } as Practitioner;
  for (let i = 0; i < shape.counts.Patient; i++) yield { resourceType: 'Patient', id: `rp-${i}`, name: [{ family: `Patient ${i}` }], gender: i % 2 ? 'female' : 'male' } as Patient;
  const beds: string[] = [];
  for (let w = 0; w < shape.wards; w++) {
    yield { resourceType: 'Location', id: `rw-${w}`, status: 'active', name: `Ward ${w}`, physicalType: { coding: [{ system: PHYSICAL, code: 'wa' }] } } as Location;
    for (let b = 0; b < shape.bedsPerWard; b++) {
      beds.push(`rb-${w}-${b}`);
      yield {
        resourceType: 'Location',
        id: `rb-${w}-${b}`,
        status: 'active',
        name: `Bed ${w}.${b}`,
        physicalType: { coding: [{ system: PHYSICAL, code: 'bd' }] },
        partOf: { reference: `Location/rw-${w}` },
        operationalStatus: { system: 'http://terminology.hl7.org/CodeSystem/v2-0116', code: 'U' },
      } as Location;
    }
  }
  const statuses: Appointment['status'][] = ['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'noshow', 'cancelled', 'booked', 'arrived', 'checked-in'];
  for (let i = 0; i < shape.counts.Appointment; i++) {
    const start = when();
    yield {
      resourceType: 'Appointment',
      id: `ra-${i}`,
      status: pick(statuses),
      start: iso(start),
      end: iso(start + 15 * 60_000),
      participant: [
        { actor: patient(), status: 'accepted' },
        { actor: { reference: `Practitioner/rpr-${Math.floor(r() * shape.practitioners)}` }, status: 'accepted' },
      ],
    } as Appointment;
  }
  let payments = 0;
  for (let i = 0; i < shape.counts.Invoice; i++) {
    const date = when();
    const lines = Array.from({ length: 3 }, () => ({ code: pick(CATEGORIES), base: 10_000 * (1 + Math.floor(r() * 50)) }));
    const net = lines.reduce((s, l) => s + l.base, 0);
    const tax = lines.reduce((s, l) => s + l.base / 10, 0);
    const x = r();
    // Invoices get paid: most older than two months are balanced, recent ones often still open.
    const recent = date >= SPAN_END - 60 * DAY;
    const status: Invoice['status'] = x < (recent ? 0.55 : 0.93) ? 'balanced' : x < 0.96 ? 'issued' : x < 0.98 ? 'draft' : 'cancelled';
    yield {
      resourceType: 'Invoice',
      id: `ri-${i}`,
      status,
      ...(status === 'cancelled' ? { cancelledReason: 'duplicate' } : {}),
      subject: patient(),
      date: iso(date),
      lineItem: lines.map((l) => ({
        chargeItemCodeableConcept: { coding: [{ system: CHARGE, code: l.code }] },
        priceComponent: [
          { type: 'base', amount: money(l.base) },
          { type: 'tax', amount: money(l.base / 10) },
        ],
      })),
      totalNet: money(net),
      totalGross: money(net + tax),
    } as Invoice;
    // Balanced invoices are paid in full, a third of the issued ones in part.
    const paid = status === 'balanced' ? net + tax : status === 'issued' && r() < 0.33 ? Math.round((net + tax) / 2) : 0;
    if (paid > 0 && payments < shape.counts.PaymentReconciliation) {
      payments++;
      yield {
        resourceType: 'PaymentReconciliation',
        id: `rpay-${i}`,
        status: 'active',
        created: iso(date + DAY),
        paymentDate: iso(date + Math.floor(r() * 5) * DAY).slice(0, 10),
        paymentAmount: money(paid),
        detail: [{ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/payment-type', code: 'payment' }] }, request: { reference: `Invoice/ri-${i}` }, amount: money(paid) }],
      } as PaymentReconciliation;
    }
  }
  for (let i = 0; i < shape.counts.Encounter; i++) {
    const start = when();
    const end = start + Math.floor((0.5 + r() * 9.5) * DAY);
    const bed = pick(beds);
    yield {
      resourceType: 'Encounter',
      id: `re-${i}`,
      status: 'finished',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP' },
      subject: patient(),
      period: { start: iso(start), end: iso(end) },
      location: [{ location: { reference: `Location/${bed}` }, status: 'completed', period: { start: iso(start), end: iso(end) } }],
    } as Encounter;
  }
  for (let i = 0; i < shape.counts.ServiceRequest; i++) {
    const authored = when();
    const y = r();
    const priority: ServiceRequest['priority'] = y < 0.1 ? 'stat' : y < 0.3 ? 'urgent' : 'routine';
    yield {
      resourceType: 'ServiceRequest',
      id: `rsr-${i}`,
      status: 'active',
      intent: 'order',
      code: { coding: [{ system: 'http://loinc.org', code: pick(TESTS) }] },
      subject: patient(),
      authoredOn: iso(authored),
      priority,
    } as ServiceRequest;
    const minutes = (priority === 'stat' ? 30 : priority === 'urgent' ? 120 : 600) * (0.3 + r() * 2);
    yield {
      resourceType: 'DiagnosticReport',
      id: `rdr-${i}`,
      status: 'final',
      code: { coding: [{ system: 'http://loinc.org', code: '24323-8' }] },
      subject: patient(),
      basedOn: [{ reference: `ServiceRequest/rsr-${i}` }],
      effectiveDateTime: iso(authored),
      issued: iso(authored + Math.round(minutes * 60_000)),
    } as DiagnosticReport;
  }
}
