import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type {
  Appointment,
  Bundle,
  CapabilityStatement,
  ChargeItem,
  DiagnosticReport,
  Encounter,
  FhirResource,
  Invoice,
  Location,
  MeasureReport,
  OperationOutcome,
  PaymentReconciliation,
  Resource,
  ServiceRequest,
} from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { signInAs } from './smart-helpers.js';
import {
  expectedAppointments,
  expectedBeds,
  expectedRevenue,
  expectedTurnaround,
  figureOf,
  groupOf,
  parseCsv,
  strataOf,
  type Expected,
} from './reports-oracle.js';

/**
 * Hospital reports (issue 14 §5; seed 004 reports revenue / appointments / bed occupancy / lab,
 * FR-IP-001 occupancy rates; seed 002 appointment statistics): a small data set written over
 * HTTP, each report's figures checked against an independent computation in plain TypeScript
 * over the resources read back through the API (reports-oracle.ts), and the CSV against the
 * MeasureReport.
 */

let t: TestApp;
const FIRST = '2026-01-01';
const LAST = '2026-01-31';
const PERIOD = `periodStart=${FIRST}&periodEnd=${LAST}`;
const VND = (value: number) => ({ value, currency: 'VND' });
const CHARGE = 'https://fhir.hospital.example.org/CodeSystem/charge-code';
const LOINC = 'http://loinc.org';

async function create<T extends Resource>(resource: { resourceType: string; [key: string]: unknown } | FhirResource): Promise<T> {
  const res = await t.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource });
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as T;
}

async function readAll<T extends Resource>(type: string): Promise<T[]> {
  const out: T[] = [];
  let url: string | undefined = `/fhir/${type}?_count=200`;
  while (url) {
    const res = await t.request({ method: 'GET', url });
    expect(res.statusCode, res.body).toBe(200);
    const bundle = res.json() as Bundle;
    out.push(...(bundle.entry ?? []).map((e) => e.resource as T));
    const next = bundle.link?.find((l) => l.relation === 'next')?.url;
    url = next ? next.slice(next.indexOf('/fhir/')) : undefined;
  }
  return out;
}

async function report(name: string, query = PERIOD): Promise<MeasureReport> {
  const res = await t.request({ method: 'GET', url: `/fhir/MeasureReport/$${name}?${query}` });
  expect(res.statusCode, res.body).toBe(200);
  const body = res.json() as MeasureReport;
  expect(body).toMatchObject({ resourceType: 'MeasureReport', status: 'complete', type: 'summary', measure: `https://fhir.hospital.example.org/Measure/${name}` });
  return body;
}

/** Same populations; scores equal to `digits` decimals (the server rounds proportions to 4, minutes to 2). */
function expectFigure(actual: Expected | undefined, expected: Expected, digits = 3): void {
  expect(actual, JSON.stringify(expected)).toBeDefined();
  expect(actual!.populations).toEqual(expected.populations);
  if (expected.score === undefined) expect(actual!.score).toBeUndefined();
  else expect(actual!.score).toBeCloseTo(expected.score, digits);
}

function expectStrata(actual: Map<string, Expected>, expected: Map<string, Expected>, digits = 3): void {
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [k, e] of expected) expectFigure(actual.get(k), e, digits);
}

// ---------------------------------------------------------------- data

let practitioners: string[] = [];
let patient: string;

async function seedAppointments(): Promise<void> {
  const [p1, p2] = practitioners;
  const appt = (start: string, status: Appointment['status'], who: string[]) =>
    create<Appointment>({
      resourceType: 'Appointment',
      status,
      start,
      end: new Date(Date.parse(start) + 15 * 60_000).toISOString(),
      participant: [{ actor: { reference: `Patient/${patient}` }, status: 'accepted' }, ...who.map((p) => ({ actor: { reference: `Practitioner/${p}` }, status: 'accepted' as const }))],
    });
  await appt('2026-01-05T09:00:00Z', 'fulfilled', [p1!]);
  await appt('2026-01-05T10:00:00Z', 'noshow', [p1!]);
  await appt('2026-01-05T11:00:00Z', 'noshow', [p2!]);
  await appt('2026-01-06T09:00:00Z', 'cancelled', [p1!, p2!]);
  await appt('2026-01-06T23:30:00+07:00', 'arrived', [p2!]);
  await appt('2026-01-07T09:00:00Z', 'booked', [p2!]);
  await appt('2026-01-08T09:00:00Z', 'fulfilled', [p2!]);
  await appt('2026-01-31T23:59:00Z', 'checked-in', [p1!]);
  await appt('2026-02-01T00:00:00Z', 'noshow', [p1!]);
  await appt('2025-12-31T23:59:59Z', 'noshow', [p1!]);
}

const physical = (code: string) => ({ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/location-physical-type', code }] });
const bedStatus = (code: string) => ({ system: 'http://terminology.hl7.org/CodeSystem/v2-0116', code });

async function location(name: string, type: string, parent?: string, extra: Partial<Location> = {}): Promise<string> {
  return (
    await create<Location>({ resourceType: 'Location', status: 'active', name, physicalType: physical(type), ...(parent ? { partOf: { reference: `Location/${parent}` } } : {}), ...(type === 'bd' ? { operationalStatus: bedStatus('U') } : {}), ...extra })
  ).id!;
}

async function seedBeds(): Promise<void> {
  const w1 = await location('Ward 1', 'wa');
  const w2 = await location('Ward 2', 'wa');
  await location('Ward 3 (empty)', 'wa');
  const b1 = await location('B1', 'bd', w1);
  const b2 = await location('B2', 'bd', w1);
  const room = await location('Room 2.1', 'ro', w2);
  const b3 = await location('B3', 'bd', room);
  const b4 = await location('B4', 'bd', room);
  await location('B5 (out of service)', 'bd', room, { status: 'inactive' });
  await location('B6 (no ward)', 'bd');
  const stay = (bed: string, start: string, end: string | undefined, status: 'active' | 'completed' | 'planned' = end ? 'completed' : 'active') => ({
    location: { reference: `Location/${bed}` },
    status,
    period: { start, ...(end ? { end } : {}) },
  });
  const encounter = (status: Encounter['status'], location: Encounter['location'], period: Encounter['period']) =>
    create<Encounter>({ resourceType: 'Encounter', status, class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP' }, subject: { reference: `Patient/${patient}` }, period, location });
  // Across the period start: counted from 1 January.
  await encounter('finished', [stay(b1, '2025-12-30T12:00:00Z', '2026-01-03T12:00:00Z')], { start: '2025-12-30T12:00:00Z', end: '2026-01-03T12:00:00Z' });
  // A transfer between wards.
  await encounter('finished', [stay(b2, '2026-01-10T00:00:00Z', '2026-01-12T06:00:00Z'), stay(b3, '2026-01-12T06:00:00Z', '2026-01-15T00:00:00Z')], { start: '2026-01-10T00:00:00Z', end: '2026-01-15T00:00:00Z' });
  // Still in bed B4 (takes it: O now), counted until the period end.
  await encounter('in-progress', [stay(b4, '2026-01-30T00:00:00Z', undefined)], { start: '2026-01-30T00:00:00Z' });
  // Not counted: cancelled, planned, after the period.
  await encounter('cancelled', [stay(b1, '2026-01-20T00:00:00Z', '2026-01-21T00:00:00Z')], { start: '2026-01-20T00:00:00Z' });
  await encounter('finished', [stay(b1, '2026-01-22T00:00:00Z', '2026-01-23T00:00:00Z', 'planned')], { start: '2026-01-22T00:00:00Z', end: '2026-01-23T00:00:00Z' });
  await encounter('finished', [stay(b1, '2026-02-05T00:00:00Z', '2026-02-06T00:00:00Z')], { start: '2026-02-05T00:00:00Z', end: '2026-02-06T00:00:00Z' });
  // Location entry without its end: the encounter's end closes it.
  await encounter('finished', [{ location: { reference: `Location/${b2}` }, status: 'active', period: { start: '2026-01-18T00:00:00Z' } }], { start: '2026-01-18T00:00:00Z', end: '2026-01-20T00:00:00Z' });
}

async function seedLab(): Promise<void> {
  const request = async (code: string, authoredOn: string, priority?: ServiceRequest['priority']) =>
    (
      await create<ServiceRequest>({
        resourceType: 'ServiceRequest',
        status: 'active',
        intent: 'order',
        category: [{ coding: [{ system: 'http://snomed.info/sct', code: '108252007', display: 'Laboratory procedure' }] }],
        code: { coding: [{ system: LOINC, code }] },
        subject: { reference: `Patient/${patient}` },
        authoredOn,
        ...(priority ? { priority } : {}),
      })
    ).id!;
  const later = (instant: string, minutes: number) => new Date(Date.parse(instant) + minutes * 60_000).toISOString();
  const reportOf = (basedOn: string[], status: DiagnosticReport['status'], issued: string) =>
    create<DiagnosticReport>({
      resourceType: 'DiagnosticReport',
      status,
      code: { coding: [{ system: LOINC, code: '24323-8' }] },
      subject: { reference: `Patient/${patient}` },
      basedOn: basedOn.map((id) => ({ reference: `ServiceRequest/${id}` })),
      effectiveDateTime: issued,
      issued,
    });
  const s1 = await request('2345-7', '2026-01-10T08:00:00Z', 'stat');
  const s2 = await request('2345-7', '2026-01-10T09:00:00Z', 'routine');
  const s3 = await request('718-7', '2026-01-11T10:00:00Z', 'urgent');
  const s4 = await request('718-7', '2026-01-12T10:00:00Z');
  const s5 = await request('2345-7', '2026-01-31T23:00:00Z', 'stat');
  await reportOf([s1], 'final', later('2026-01-10T08:00:00Z', 45));
  await reportOf([s2], 'final', later('2026-01-10T09:00:00Z', 240));
  await reportOf([s3], 'final', later('2026-01-11T10:00:00Z', 90));
  await reportOf([s4], 'preliminary', later('2026-01-12T10:00:00Z', 20));
  await reportOf([s4], 'final', later('2026-01-12T10:00:00Z', 30 * 60));
  await reportOf([s5], 'final', '2026-02-01T01:00:00Z');
  await reportOf([s1, s2], 'amended', later('2026-01-10T08:00:00Z', 300));
}

async function seedRevenue(): Promise<void> {
  const chargeItem = await create<ChargeItem>({
    resourceType: 'ChargeItem',
    status: 'billed',
    code: { coding: [{ system: CHARGE, code: 'BED-DAY', display: 'Bed day' }] },
    subject: { reference: `Patient/${patient}` },
  });
  const line = (code: string | undefined, components: Array<[string, number]>) => ({
    ...(code ? { chargeItemCodeableConcept: { coding: [{ system: CHARGE, code }] } } : { chargeItemReference: { reference: `ChargeItem/${chargeItem.id}` } }),
    priceComponent: components.map(([type, value]) => ({ type, amount: VND(value) })),
  });
  const invoice = async (status: Invoice['status'], date: string, net: number, gross: number, lineItem: unknown[]) =>
    (await create<Invoice>({ resourceType: 'Invoice', status, date, subject: { reference: `Patient/${patient}` }, totalNet: VND(net), totalGross: VND(gross), lineItem, ...(status === 'cancelled' ? { cancelledReason: 'test' } : {}) })).id!;
  const i1 = await invoice('issued', '2026-01-05T10:00:00Z', 100000, 110000, [line('CONS-GP', [['base', 100000], ['tax', 10000]])]);
  const i2 = await invoice('balanced', '2026-01-05T15:00:00Z', 200000, 210000, [line('LAB-ORDER', [['base', 150000], ['discount', 10000], ['tax', 5000]]), line(undefined, [['base', 60000], ['tax', 5000]])]);
  await invoice('balanced', '2026-01-20', 50000, 50000, [line('CONS-GP', [['base', 50000]])]);
  await invoice('draft', '2026-01-10T10:00:00Z', 999, 999, [line('CONS-GP', [['base', 999]])]);
  await invoice('cancelled', '2026-01-11T10:00:00Z', 777, 777, [line('CONS-GP', [['base', 777]])]);
  const i6 = await invoice('issued', '2025-12-20T10:00:00Z', 80000, 88000, [line('CONS-SPEC', [['base', 80000], ['tax', 8000]])]);
  await invoice('issued', '2026-02-03T10:00:00Z', 40000, 44000, [line('CONS-GP', [['base', 40000], ['tax', 4000]])]);
  const i8 = await invoice('issued', '2026-01-31T23:00:00Z', 30000, 33000, [line('LAB-ORDER', [['base', 33000], ['discount', -3000], ['tax', 3000]])]);
  const payment = (status: PaymentReconciliation['status'], paymentDate: string, amount: number, to: Array<[string, number]>) =>
    create<PaymentReconciliation>({
      resourceType: 'PaymentReconciliation',
      status,
      created: `${paymentDate}T12:00:00Z`,
      paymentDate,
      paymentAmount: VND(amount),
      ...(to.length ? { detail: to.map(([id, value]) => ({ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/payment-type', code: 'payment' }] }, request: { reference: `Invoice/${id}` }, amount: VND(value) })) } : {}),
    });
  await payment('active', '2026-01-05', 50000, [[i1, 50000]]);
  await payment('active', '2026-01-06', 210000, [[i2, 210000]]);
  await payment('active', '2026-01-31', 10000, [[i6, 10000]]);
  await payment('cancelled', '2026-01-07', 999, [[i1, 999]]);
  await payment('active', '2026-02-01', 7000, [[i8, 7000]]);
  await payment('active', '2026-01-20', -5000, []);
}

beforeAll(async () => {
  t = await startTestApp();
  patient = (await create({ resourceType: 'Patient', name: [{ family: 'Report' }] })).id!;
  practitioners = [(await create({ resourceType: 'Practitioner', name: [{ family: 'One' }] })).id!, (await create({ resourceType: 'Practitioner', name: [{ family: 'Two' }] })).id!];
  await seedAppointments();
  await seedBeds();
  await seedLab();
  await seedRevenue();
}, 120_000);
afterAll(async () => {
  await t?.close();
});

// ---------------------------------------------------------------- checks against the oracle

async function checkRevenue() {
  const body = await report('revenue');
  const e = expectedRevenue(FIRST, LAST, await readAll<Invoice>('Invoice'), await readAll<PaymentReconciliation>('PaymentReconciliation'), await readAll<ChargeItem>('ChargeItem'));
  expectFigure(figureOf(groupOf(body, 'invoiced-gross')), e.gross, 6);
  expectFigure(figureOf(groupOf(body, 'invoiced-net')), e.net, 6);
  expectStrata(strataOf(body, 'invoiced-gross', 'day'), e.grossByDay, 6);
  expectStrata(strataOf(body, 'invoiced-gross', 'month'), e.grossByMonth, 6);
  expectStrata(strataOf(body, 'invoiced-net', 'status'), e.netByStatus, 6);
  expectStrata(strataOf(body, 'invoiced-gross', 'category'), e.grossByCategory, 6);
  expectStrata(strataOf(body, 'invoiced-net', 'category'), e.netByCategory, 6);
  expectFigure(figureOf(groupOf(body, 'collected')), e.collected, 6);
  expectStrata(strataOf(body, 'collected', 'day'), e.collectedByDay, 6);
  expectFigure(figureOf(groupOf(body, 'outstanding')), e.outstanding, 6);
  return { body, e };
}

async function checkAppointments() {
  const body = await report('appointment-statistics');
  const e = expectedAppointments(FIRST, LAST, await readAll<Appointment>('Appointment'));
  expectFigure(figureOf(groupOf(body, 'no-show-rate')), e.noShow);
  expectFigure(figureOf(groupOf(body, 'cancellation-rate')), e.cancellation);
  expectStrata(strataOf(body, 'no-show-rate', 'day'), e.noShowByDay);
  expectStrata(strataOf(body, 'no-show-rate', 'practitioner'), e.noShowByPractitioner);
  expectStrata(strataOf(body, 'no-show-rate', 'status'), e.byStatus);
  expectStrata(strataOf(body, 'cancellation-rate', 'practitioner'), e.cancellationByPractitioner);
  return { body, e };
}

async function checkBeds() {
  const body = await report('bed-occupancy');
  const wards = expectedBeds(FIRST, LAST, await readAll<Location>('Location'), await readAll<Encounter>('Encounter'), Date.now());
  const occupied = strataOf(body, 'occupied-bed-days', 'ward');
  const available = strataOf(body, 'available-bed-days', 'ward');
  const rate = strataOf(body, 'occupancy-rate', 'ward');
  const current = strataOf(body, 'current-occupancy', 'ward');
  expect([...occupied.keys()].sort()).toEqual([...wards.keys()].sort());
  for (const [ward, w] of wards) {
    expectFigure(occupied.get(ward), { populations: { 'initial-population': w.stays }, score: w.occupiedDays }, 4);
    expectFigure(available.get(ward), { populations: { 'initial-population': w.beds }, score: w.availableDays }, 4);
    expectFigure(rate.get(ward), { populations: { 'initial-population': w.beds }, score: w.availableDays ? w.occupiedDays / w.availableDays : undefined }, 4);
    expectFigure(current.get(ward), { populations: { denominator: w.beds, numerator: w.occupiedNow }, score: w.beds ? w.occupiedNow / w.beds : undefined }, 4);
  }
  return { body, wards };
}

async function checkTurnaround() {
  const body = await report('lab-turnaround');
  const e = expectedTurnaround(FIRST, LAST, await readAll<ServiceRequest>('ServiceRequest'), await readAll<DiagnosticReport>('DiagnosticReport'));
  const check = (group: string, pick: (s: { median: number; p90: number; mean: number }) => number) => {
    const fig = (s: { n: number; median: number; p90: number; mean: number }): Expected => ({ populations: { 'initial-population': s.n }, score: pick(s) });
    expectFigure(figureOf(groupOf(body, group)), fig(e.all), 2);
    expectStrata(strataOf(body, group, 'test'), new Map([...e.byTest].map(([k, s]) => [k, fig(s)])), 2);
    expectStrata(strataOf(body, group, 'priority'), new Map([...e.byPriority].map(([k, s]) => [k, fig(s)])), 2);
    expectStrata(strataOf(body, group, 'test-priority'), new Map([...e.byBoth].map(([k, s]) => [k, fig(s)])), 2);
  };
  check('turnaround-median', (s) => s.median);
  check('turnaround-p90', (s) => s.p90);
  check('turnaround-mean', (s) => s.mean);
  return { body, e };
}

// ---------------------------------------------------------------- tests

describe('hospital reports as MeasureReport operations (issue 14 §5)', () => {
  it('revenue: invoiced by day, month, status and category, collected, outstanding = an independent computation', async () => {
    const { body, e } = await checkRevenue();
    // The data set's own numbers, so the oracle itself is checked once.
    expect(e.gross).toEqual({ populations: { 'initial-population': 4 }, score: 403000 });
    expect(e.outstanding).toEqual({ populations: { 'initial-population': 3 }, score: 164000 });
    expect(groupOf(body, 'invoiced-gross').measureScore).toEqual({ value: 403000, unit: 'VND', system: 'urn:iso:std:iso:4217', code: 'VND' });
  });

  it('appointment statistics: no-show rate = noshow / (fulfilled + noshow + arrived + checked-in), per day, practitioner and status', async () => {
    const { e } = await checkAppointments();
    expect(e.noShow).toEqual({ populations: { 'initial-population': 8, denominator: 6, numerator: 2 }, score: 2 / 6 });
    // One practitioner's appointments only.
    const one = await report('appointment-statistics', `${PERIOD}&practitioner=Practitioner/${practitioners[1]}`);
    const mine = (await readAll<Appointment>('Appointment')).filter((a) => a.participant.some((p) => p.actor?.reference === `Practitioner/${practitioners[1]}`));
    expectFigure(figureOf(groupOf(one, 'no-show-rate')), expectedAppointments(FIRST, LAST, mine).noShow);
  });

  it('FR-IP-001 bed occupancy: per ward beds, occupied / available bed-days, rate and current occupancy', async () => {
    const { body, wards } = await checkBeds();
    const all = [...wards.values()];
    const sum = (f: (w: (typeof all)[number]) => number) => all.reduce((s, w) => s + f(w), 0);
    expectFigure(figureOf(groupOf(body, 'occupancy-rate')), { populations: { 'initial-population': sum((w) => w.beds) }, score: sum((w) => w.occupiedDays) / sum((w) => w.availableDays) }, 4);
    expectFigure(figureOf(groupOf(body, 'current-occupancy')), { populations: { denominator: 4, numerator: 1 }, score: 0.25 }, 4);
    // Ward 1: 2.5 + 2.25 + 2 days; Ward 2: 2.75 + 2 days (the oracle checked by hand once).
    expect(sum((w) => w.occupiedDays)).toBeCloseTo(11.5, 6);
  });

  it('lab turnaround: median / p90 / mean minutes from order to final report, per test and priority', async () => {
    const { e } = await checkTurnaround();
    expect(e.all.n).toBe(6);
    expect(e.all.median).toBe(240);
  });

  it('CSV (_format=csv and Accept: text/csv) holds the same figures as the MeasureReport, with a header row', async () => {
    for (const name of ['revenue', 'appointment-statistics', 'bed-occupancy', 'lab-turnaround']) {
      const json = await report(name);
      const res = await t.request({ method: 'GET', url: `/fhir/MeasureReport/$${name}?${PERIOD}&_format=csv` });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/csv/);
      const rows = parseCsv(res.body);
      expect(rows[0]).toEqual(['group', 'stratifier', 'stratum', 'figure', 'value', 'unit']);
      const csv = new Map(rows.slice(1).map((r) => [`${r[0]}/${r[1]}/${r[2]}/${r[3]}`, Number(r[4])]));
      let figures = 0;
      const expectRow = (key: string, value: number) => {
        figures++;
        expect(csv.get(key), key).toBeCloseTo(value, 6);
      };
      for (const g of json.group ?? []) {
        const code = g.code!.coding![0]!.code!;
        const f = figureOf(g);
        for (const [p, n] of Object.entries(f.populations)) expectRow(`${code}///${p}`, n);
        if (f.score !== undefined) expectRow(`${code}///score`, f.score);
        for (const s of g.stratifier ?? []) {
          const sCode = s.code![0]!.coding![0]!.code!;
          for (const [value, sf] of strataOf(json, code, sCode)) {
            for (const [p, n] of Object.entries(sf.populations)) expectRow(`${code}/${sCode}/${value}/${p}`, n);
            if (sf.score !== undefined) expectRow(`${code}/${sCode}/${value}/score`, sf.score);
          }
        }
      }
      expect(rows.length - 1).toBe(figures);
      const accept = await t.request({ method: 'GET', url: `/fhir/MeasureReport/$${name}?${PERIOD}`, headers: { accept: 'text/csv' } });
      expect(accept.headers['content-type']).toMatch(/^text\/csv/);
      expect(parseCsv(accept.body).length).toBe(rows.length);
    }
    // Independent check of one CSV figure: the no-show rate.
    const e = expectedAppointments(FIRST, LAST, await readAll<Appointment>('Appointment'));
    const rows = parseCsv((await t.request({ method: 'GET', url: `/fhir/MeasureReport/$appointment-statistics?${PERIOD}&_format=text/csv` })).body);
    expect(Number(rows.find((r) => r[0] === 'no-show-rate' && r[1] === '' && r[3] === 'score')![4])).toBeCloseTo(e.noShow.score!, 4);
  });

  it('an empty period gives zero counts and no rates', async () => {
    const body = await report('appointment-statistics', 'periodStart=2020-01-01&periodEnd=2020-01-02');
    expect(figureOf(groupOf(body, 'no-show-rate'))).toEqual({ populations: { 'initial-population': 0, denominator: 0, numerator: 0 } });
    const lab = await report('lab-turnaround', 'periodStart=2020-01-01&periodEnd=2020-01-02');
    expect(figureOf(groupOf(lab, 'turnaround-median'))).toEqual({ populations: { 'initial-population': 0 } });
  });

  it('bad parameters are 400 / 406 OperationOutcomes', async () => {
    const bad = async (query: string, status = 400) => {
      const res = await t.request({ method: 'GET', url: `/fhir/MeasureReport/$revenue?${query}` });
      expect(res.statusCode, res.body).toBe(status);
      expect((res.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
    };
    await bad('periodStart=2026-01-01');
    await bad('periodStart=2026-02-30&periodEnd=2026-03-01');
    await bad('periodStart=2026-02-01&periodEnd=2026-01-01');
    await bad('periodStart=2000-01-01&periodEnd=2026-01-01');
    await bad(`${PERIOD}&foo=1`);
    await bad(`${PERIOD}&currency=vnd`);
    await bad(`${PERIOD}&_format=html`, 406);
    expect((await t.request({ method: 'GET', url: `/fhir/MeasureReport/$appointment-statistics?${PERIOD}&practitioner=a/b/c` })).statusCode).toBe(400);
  });

  it('several currencies need currency= (400 naming them); with it, only that currency counts', async () => {
    await create({ resourceType: 'Invoice', status: 'issued', date: '2026-01-15T10:00:00Z', totalNet: { value: 10, currency: 'USD' }, totalGross: { value: 11, currency: 'USD' } });
    const res = await t.request({ method: 'GET', url: `/fhir/MeasureReport/$revenue?${PERIOD}` });
    expect(res.statusCode).toBe(400);
    expect(res.body).toMatch(/USD, VND/);
    const usd = await report('revenue', `${PERIOD}&currency=USD`);
    expect(figureOf(groupOf(usd, 'invoiced-gross'))).toEqual({ populations: { 'initial-population': 1 }, score: 11 });
    const vnd = await report('revenue', `${PERIOD}&currency=VND`);
    expect(figureOf(groupOf(vnd, 'invoiced-gross')).score).toBe(403000);
  });

  it('scopes: ADMIN and ACCOUNTANT run revenue; ACCOUNTANT not bed occupancy; RECEPTIONIST and patients none (403)', async () => {
    const get = (token: string, name: string) => t.server.http.inject({ method: 'GET', url: `/fhir/MeasureReport/$${name}?${PERIOD}`, headers: { authorization: `Bearer ${token}` } });
    const admin = await signInAs(t, 'ADMIN', `Practitioner/${practitioners[0]}`);
    for (const name of ['revenue', 'appointment-statistics', 'bed-occupancy', 'lab-turnaround']) expect((await get(admin.token, name)).statusCode).toBe(name === 'revenue' ? 400 : 200); // revenue: two currencies by now
    const accountant = await signInAs(t, 'ACCOUNTANT', `Practitioner/${practitioners[0]}`);
    expect((await t.server.http.inject({ method: 'GET', url: `/fhir/MeasureReport/$revenue?${PERIOD}&currency=VND`, headers: { authorization: `Bearer ${accountant.token}` } })).statusCode).toBe(200);
    expect((await get(accountant.token, 'bed-occupancy')).statusCode).toBe(403);
    const receptionist = await signInAs(t, 'RECEPTIONIST', `Practitioner/${practitioners[0]}`);
    expect((await get(receptionist.token, 'appointment-statistics')).statusCode).toBe(403);
    const patientToken = await signInAs(t, 'PATIENT', `Patient/${patient}`);
    expect((await get(patientToken.token, 'appointment-statistics')).statusCode).toBe(403);
    expect((await t.server.http.inject({ method: 'GET', url: `/fhir/MeasureReport/$revenue?${PERIOD}` })).statusCode).toBe(401);
  });

  // Runs after the tests above (it changes their data): the report facts of migration 0030 are
  // kept by the writes themselves, so updates, deletes, Bundles and re-categorised ChargeItems
  // must show in every report at once, equal to the oracle over the resources as they are now.
  it('issue 14 §5: reports follow updates, deletes, transaction Bundles and ChargeItem changes (report facts kept by the write)', async () => {
    const put = async (resource: FhirResource) => {
      const res = await t.request({ method: 'PUT', url: `/fhir/${resource.resourceType}/${resource.id}`, payload: resource });
      expect(res.statusCode, res.body).toBe(200);
    };
    const remove = async (type: string, id: string) => {
      const res = await t.request({ method: 'DELETE', url: `/fhir/${type}/${id}` });
      expect(res.statusCode, res.body).toBeLessThan(300);
    };
    const invoices = await readAll<Invoice>('Invoice');
    // The other currency an earlier test added goes (the oracle sums one currency).
    for (const other of invoices.filter((i) => i.totalGross?.currency !== 'VND')) await remove('Invoice', other.id!);
    const i1 = invoices.find((i) => i.totalGross?.value === 110000)!;
    await put({ ...i1, status: 'balanced' });
    await remove('Invoice', invoices.find((i) => i.date === '2026-01-20')!.id!);
    // The ChargeItem a line of i2 refers to is re-coded: that line changes category.
    const [chargeItem] = await readAll<ChargeItem>('ChargeItem');
    await put({ ...chargeItem!, code: { coding: [{ system: CHARGE, code: 'CONS-SPEC', display: 'Specialist' }] } });
    // A ChargeItem and an Invoice referring to it in one transaction; a partial date (the month).
    const bundle = await t.request({
      method: 'POST',
      url: '/fhir',
      payload: {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { fullUrl: 'urn:uuid:6f0c1f4e-0000-4000-8000-000000000001', resource: { resourceType: 'ChargeItem', status: 'billed', code: { coding: [{ system: CHARGE, code: 'IMAGING' }] }, subject: { reference: `Patient/${patient}` } }, request: { method: 'POST', url: 'ChargeItem' } },
          {
            resource: {
              resourceType: 'Invoice',
              status: 'issued',
              date: '2026-01',
              subject: { reference: `Patient/${patient}` },
              lineItem: [{ chargeItemReference: { reference: 'urn:uuid:6f0c1f4e-0000-4000-8000-000000000001' }, priceComponent: [{ type: 'base', amount: VND(70000) }, { type: 'tax', amount: VND(7000) }] }],
              totalNet: VND(70000),
              totalGross: VND(77000),
            },
            request: { method: 'POST', url: 'Invoice' },
          },
        ],
      },
    });
    expect(bundle.statusCode, bundle.body).toBe(200);
    const payments = await readAll<PaymentReconciliation>('PaymentReconciliation');
    await put({ ...payments.find((x) => x.paymentDate === '2026-01-31')!, status: 'cancelled' });
    const { e } = await checkRevenue();
    expect(e.grossByCategory.get(`${CHARGE}|IMAGING`)?.score).toBe(77000);

    const appointments = await readAll<Appointment>('Appointment');
    await put({ ...appointments.find((a) => a.start === '2026-01-05T10:00:00Z')!, status: 'fulfilled' });
    await remove('Appointment', appointments.find((a) => a.start === '2026-01-05T11:00:00Z')!.id!);
    await checkAppointments();

    const encounters = await readAll<Encounter>('Encounter');
    await remove('Encounter', encounters.find((x) => x.period?.start === '2026-01-18T00:00:00Z')!.id!);
    await checkBeds();

    const requests = await readAll<ServiceRequest>('ServiceRequest');
    await put({ ...requests.find((r) => r.authoredOn === '2026-01-11T10:00:00Z')!, priority: 'stat' });
    await checkTurnaround();
  });

  it('issue 14 §5: every group, stratifier and component code of the reports is defined in CodeSystem report-figure (terminology/, $lookup)', async () => {
    const used = new Set<string>();
    for (const name of ['revenue', 'appointment-statistics', 'bed-occupancy', 'lab-turnaround']) {
      for (const g of (await report(name, name === 'revenue' ? `${PERIOD}&currency=VND` : PERIOD)).group ?? []) {
        for (const c of [g.code, ...(g.stratifier ?? []).flatMap((st) => [...(st.code ?? []), ...(st.stratum ?? []).flatMap((x) => (x.component ?? []).map((k) => k.code))])]) {
          for (const coding of c?.coding ?? []) if (coding.system === 'https://fhir.hospital.example.org/CodeSystem/report-figure') used.add(coding.code!);
        }
      }
    }
    expect(used.size).toBeGreaterThan(15);
    for (const code of used) {
      const res = await t.request({ method: 'GET', url: `/fhir/CodeSystem/$lookup?system=https://fhir.hospital.example.org/CodeSystem/report-figure&code=${code}` });
      expect(res.statusCode, `${code}: ${res.body}`).toBe(200);
    }
    // The discount approval Task code (src/workflows/billing/operations.ts) likewise.
    const task = await t.request({ method: 'GET', url: '/fhir/CodeSystem/$lookup?system=https://fhir.hospital.example.org/CodeSystem/billing-task&code=discount-approval' });
    expect(task.statusCode, task.body).toBe(200);
  });

  it('the Measures and OperationDefinitions in conformance/ are valid FHIR R4 and the operations are in the CapabilityStatement', async () => {
    const metadata = (await t.request({ method: 'GET', url: '/fhir/metadata' })).json() as CapabilityStatement;
    const operations = metadata.rest?.[0]?.resource?.find((r) => r.type === 'MeasureReport')?.operation ?? [];
    expect(operations.map((o) => o.name)).toEqual(expect.arrayContaining(['appointment-statistics', 'bed-occupancy', 'lab-turnaround', 'revenue']));
    for (const name of ['revenue', 'appointment-statistics', 'bed-occupancy', 'lab-turnaround']) {
      for (const file of [`Measure-${name}.json`, `OperationDefinition-MeasureReport-${name}.json`]) {
        const resource = JSON.parse(readFileSync(join(import.meta.dirname, '../../conformance', file), 'utf8')) as FhirResource;
        const res = await t.request({ method: 'POST', url: `/fhir/${resource.resourceType}/$validate`, payload: resource });
        expect(res.statusCode, file).toBe(200);
        expect((res.json() as OperationOutcome).issue.filter((i) => i.severity === 'error' || i.severity === 'fatal'), file).toEqual([]);
      }
      const measure = JSON.parse(readFileSync(join(import.meta.dirname, `../../conformance/Measure-${name}.json`), 'utf8')) as { url: string; group: Array<{ code: { coding: Array<{ code: string }> } }> };
      const body = await report(name, name === 'revenue' ? `${PERIOD}&currency=VND` : PERIOD);
      expect(body.measure).toBe(measure.url);
      expect(body.group?.map((g) => g.code?.coding?.[0]?.code)).toEqual(measure.group.map((g) => g.code.coding[0]!.code));
      expect(operations.find((o) => o.name === name)?.definition).toBe(`https://fhir.hospital.example.org/OperationDefinition/MeasureReport-${name}`);
    }
  });
});
