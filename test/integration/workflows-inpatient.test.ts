import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CapabilityStatement, FhirResource, Composition, Encounter, Location, OperationDefinition, OperationOutcome, Parameters } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BED_STATUS_SYSTEM, PHYSICAL_TYPE_SYSTEM } from '../../src/workflows/inpatient.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Bed management (seed 004 FR-IP-001..003, issue 12 §4; src/workflows/inpatient.ts): wards and
 * beds as Locations, atomic bed allocation at admission, transfer with location history,
 * discharge that needs a discharge summary and frees the bed, live ward occupancy.
 */

let t: TestApp;
let patient: string;

async function create<T extends { id?: string }>(resource: { resourceType: string; [key: string]: unknown } | FhirResource): Promise<T> {
  const res = await t.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource });
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as T;
}

async function read<T>(type: string, id: string): Promise<T> {
  const res = await t.request({ method: 'GET', url: `/fhir/${type}/${id}` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as T;
}

const physical = (code: 'wa' | 'ro' | 'bd') => ({ coding: [{ system: PHYSICAL_TYPE_SYSTEM, code }] });

async function ward(name: string): Promise<string> {
  return (await create<Location>({ resourceType: 'Location', status: 'active', name, physicalType: physical('wa') })).id!;
}

async function bed(wardId: string, name: string, status = 'U'): Promise<string> {
  const b = await create<Location>({
    resourceType: 'Location',
    status: 'active',
    name,
    physicalType: physical('bd'),
    partOf: { reference: `Location/${wardId}` },
    operationalStatus: { system: BED_STATUS_SYSTEM, code: status },
  });
  return b.id!;
}

async function bedStatus(id: string): Promise<string | undefined> {
  return (await read<Location>('Location', id)).operationalStatus?.code;
}

function admission(bedId: string | undefined, extra: Partial<Encounter> = {}): Encounter {
  return {
    resourceType: 'Encounter',
    status: 'in-progress',
    class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP', display: 'inpatient encounter' },
    subject: { reference: `Patient/${patient}` },
    period: { start: new Date().toISOString() },
    ...(bedId ? { location: [{ location: { reference: `Location/${bedId}` }, status: 'active' }] } : {}),
    ...extra,
  };
}

function expectBusinessRule(res: { statusCode: number; body: string }, status: number, text: RegExp): void {
  expect(res.statusCode, res.body).toBe(status);
  const outcome = JSON.parse(res.body) as OperationOutcome;
  expect(outcome.issue[0]?.code).toBe('business-rule');
  expect(outcome.issue[0]?.diagnostics).toMatch(text);
}

async function put(resource: Encounter): Promise<{ statusCode: number; body: string; json(): unknown }> {
  return t.request({ method: 'PUT', url: `/fhir/Encounter/${resource.id}`, payload: resource });
}

async function dischargeSummary(encounterId: string): Promise<void> {
  await create<Composition>({
    resourceType: 'Composition',
    status: 'final',
    type: { coding: [{ system: 'http://loinc.org', code: '18842-5', display: 'Discharge summary' }] },
    subject: { reference: `Patient/${patient}` },
    encounter: { reference: `Encounter/${encounterId}` },
    date: new Date().toISOString(),
    author: [{ display: 'Dr Ward' }],
    title: 'Discharge summary',
  });
  // FR-IP-003 also needs the discharge medication list (workflows-discharge.test.ts tests that rule).
  await create({
    resourceType: 'List',
    status: 'current',
    mode: 'snapshot',
    code: { coding: [{ system: 'http://loinc.org', code: '10183-2' }] },
    subject: { reference: `Patient/${patient}` },
    encounter: { reference: `Encounter/${encounterId}` },
    emptyReason: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/list-empty-reason', code: 'nilknown' }] },
  });
}

async function occupancy(wardId: string): Promise<Record<string, number>> {
  const res = await t.request({ method: 'GET', url: `/fhir/Location/${wardId}/$occupancy` });
  expect(res.statusCode, res.body).toBe(200);
  const params = (res.json() as Parameters).parameter ?? [];
  const value = (name: string) => params.find((p) => p.name === name);
  return {
    total: value('total')!.valueInteger!,
    occupied: value('occupied')!.valueInteger!,
    free: value('free')!.valueInteger!,
    unavailable: value('unavailable')!.valueInteger!,
    rate: value('occupancyRate')!.valueDecimal!,
  };
}

beforeAll(async () => {
  t = await startTestApp();
  patient = (await create({ resourceType: 'Patient', name: [{ family: 'Inpatient' }] })).id!;
});
afterAll(async () => {
  await t?.close();
});

describe('beds (FR-IP-001, FR-IP-002, FR-IP-003)', () => {
  it('FR-IP-002 admission to a free bed takes it (O) in the same transaction and records the period start', async () => {
    const w = await ward('Ward A');
    const b = await bed(w, 'A1');
    const enc = await create<Encounter>(admission(b));
    expect(await bedStatus(b)).toBe('O');
    expect(enc.location?.[0]?.status).toBe('active');
    expect(enc.location?.[0]?.period?.start).toBeDefined();
  });

  it('FR-IP-001 an occupied, contaminated or closed bed is refused (409 business-rule), nothing written', async () => {
    const w = await ward('Ward B');
    const b = await bed(w, 'B1');
    await create(admission(b));
    expectBusinessRule(await t.request({ method: 'POST', url: '/fhir/Encounter', payload: admission(b) }), 409, /Bed B1 is occupied/);
    const dirty = await bed(w, 'B2', 'K');
    expectBusinessRule(await t.request({ method: 'POST', url: '/fhir/Encounter', payload: admission(dirty) }), 409, /contaminated/);
    const res = await t.request({ method: 'GET', url: `/fhir/Encounter?location=Location/${b}&_summary=count` });
    expect((res.json() as { total: number }).total).toBe(1);
  });

  it('FR-IP-001 20 concurrent admissions to the last free bed: exactly one wins', async () => {
    const w = await ward('Ward C');
    const b = await bed(w, 'C1');
    await bed(w, 'C2', 'O');
    const results = await Promise.all(Array.from({ length: 20 }, () => t.request({ method: 'POST', url: '/fhir/Encounter', payload: admission(b) })));
    const statuses = results.map((r) => r.statusCode);
    expect(statuses.filter((s) => s === 201), JSON.stringify(results.filter((r) => r.statusCode !== 201 && r.statusCode !== 409).map((r) => r.body))).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(19);
    const res = await t.request({ method: 'GET', url: `/fhir/Encounter?location=Location/${b}&_summary=count` });
    expect((res.json() as { total: number }).total).toBe(1);
    expect(await occupancy(w)).toMatchObject({ total: 2, occupied: 2, free: 0 });
  });

  it('FR-IP-002 admission to a ward gets a free bed allocated by the server; a full ward refuses (409)', async () => {
    const w = await ward('Ward K');
    await bed(w, 'K1', 'O');
    const free = await bed(w, 'K2');
    const enc = await create<Encounter>(admission(w));
    const bedEntry = enc.location?.find((l) => l.location.reference === `Location/${free}`);
    expect(bedEntry?.status).toBe('active');
    expect(bedEntry?.period?.start).toBeDefined();
    expect(enc.location?.some((l) => l.location.reference === `Location/${w}`)).toBe(true);
    expect(await bedStatus(free)).toBe('O');
    expectBusinessRule(await t.request({ method: 'POST', url: '/fhir/Encounter', payload: admission(w) }), 409, /no free bed in Ward K/);
    // A ward without any beds is not bed-managed: nothing to allocate.
    const plain = await ward('Day unit');
    const day = await create<Encounter>(admission(plain));
    expect(day.location).toHaveLength(1);
  });

  it('FR-IP-002 20 concurrent admissions to a ward with 3 free beds: 3 win, each in a different bed', async () => {
    const w = await ward('Ward L');
    const beds = [await bed(w, 'L1'), await bed(w, 'L2'), await bed(w, 'L3')];
    const results = await Promise.all(Array.from({ length: 20 }, () => t.request({ method: 'POST', url: '/fhir/Encounter', payload: admission(w) })));
    const won = results.filter((r) => r.statusCode === 201).map((r) => JSON.parse(r.body) as Encounter);
    expect(won, JSON.stringify(results.filter((r) => r.statusCode !== 201 && r.statusCode !== 409).map((r) => r.body))).toHaveLength(3);
    expect(results.filter((r) => r.statusCode === 409)).toHaveLength(17);
    const taken = won.map((e) => e.location?.find((l) => beds.includes(l.location.reference!.replace('Location/', '')))?.location.reference).sort();
    expect(taken).toEqual(beds.map((b) => `Location/${b}`).sort());
    expect(await occupancy(w)).toMatchObject({ total: 3, occupied: 3, free: 0, rate: 1 });
  });

  it('FR-IP-001 an occupied bed cannot be freed or deleted behind its encounter (409); an empty one marked O can', async () => {
    const w = await ward('Ward M');
    const b = await bed(w, 'M1');
    const enc = await create<Encounter>(admission(b));
    const current = await read<Location>('Location', b);
    const freed = await t.request({ method: 'PUT', url: `/fhir/Location/${b}`, payload: { ...current, operationalStatus: { system: BED_STATUS_SYSTEM, code: 'U' } } });
    expectBusinessRule(freed, 409, new RegExp(`M1 is occupied by Encounter/${enc.id}`));
    expectBusinessRule(await t.request({ method: 'DELETE', url: `/fhir/Location/${b}` }), 409, /discharge or transfer/);
    expect(await bedStatus(b)).toBe('O');
    const stale = await bed(w, 'M2', 'O');
    const res = await t.request({ method: 'PUT', url: `/fhir/Location/${stale}`, payload: { ...(await read<Location>('Location', stale)), operationalStatus: { system: BED_STATUS_SYSTEM, code: 'U' } } });
    expect(res.statusCode, res.body).toBe(200);
  });

  it('FR-IP-001 transfer moves the bed: the old one is freed and stays in Encounter.location as completed history', async () => {
    const w = await ward('Ward D');
    const from = await bed(w, 'D1');
    const to = await bed(w, 'D2');
    const enc = await create<Encounter>(admission(from));
    // The client just names the new bed; the server keeps the old one as history.
    const res = await put({ ...enc, location: [{ location: { reference: `Location/${to}` }, status: 'active' }] });
    expect(res.statusCode, res.body).toBe(200);
    const moved = res.json() as Encounter;
    expect(await bedStatus(from)).toBe('U');
    expect(await bedStatus(to)).toBe('O');
    const old = moved.location?.find((l) => l.location.reference === `Location/${from}`);
    const current = moved.location?.find((l) => l.location.reference === `Location/${to}`);
    expect(old?.status).toBe('completed');
    expect(old?.period?.start).toBeDefined();
    expect(old?.period?.end).toBeDefined();
    expect(current?.status).toBe('active');
    const taken = await bed(w, 'D3', 'O');
    expectBusinessRule(await put({ ...moved, location: [...(moved.location ?? []).filter((l) => l.status === 'completed'), { location: { reference: `Location/${taken}` }, status: 'active' }] }), 409, /D3 is occupied/);
    expect(await bedStatus(to)).toBe('O');
  });

  it('FR-IP-003 discharge needs a discharge summary (422), then frees the bed', async () => {
    const w = await ward('Ward E');
    const b = await bed(w, 'E1');
    const enc = await create<Encounter>(admission(b));
    const early = await put({ ...enc, status: 'finished' });
    expectBusinessRule(early, 422, /discharge summary/);
    expect(await bedStatus(b)).toBe('O');
    await dischargeSummary(enc.id!);
    const res = await put({ ...enc, status: 'finished', period: { ...enc.period, end: new Date().toISOString() } });
    expect(res.statusCode, res.body).toBe(200);
    const done = res.json() as Encounter;
    expect(done.location?.[0]?.status).toBe('completed');
    expect(done.location?.[0]?.period?.end).toBeDefined();
    expect(await bedStatus(b)).toBe('U');
    // The freed bed takes the next patient.
    await create(admission(b));
    expect(await bedStatus(b)).toBe('O');
  });

  it('FR-IP-003 a cancelled or deleted admission frees the bed without a summary', async () => {
    const w = await ward('Ward F');
    const b1 = await bed(w, 'F1');
    const b2 = await bed(w, 'F2');
    const e1 = await create<Encounter>(admission(b1));
    const e2 = await create<Encounter>(admission(b2));
    expect([await bedStatus(b1), await bedStatus(b2)]).toEqual(['O', 'O']);
    expect((await put({ ...e1, status: 'cancelled' })).statusCode).toBe(200);
    expect(await bedStatus(b1)).toBe('U');
    const del = await t.request({ method: 'DELETE', url: `/fhir/Encounter/${e2.id}` });
    expect([200, 204]).toContain(del.statusCode);
    expect(await bedStatus(b2)).toBe('U');
  });

  it('FR-IP-001 ward occupancy is live: $occupancy counts beds (rooms included) as they are now', async () => {
    const w = await ward('Ward G');
    const room = (await create<Location>({ resourceType: 'Location', status: 'active', name: 'G room 1', physicalType: physical('ro'), partOf: { reference: `Location/${w}` } })).id!;
    const g1 = await bed(w, 'G1');
    await bed(room, 'G2');
    await bed(w, 'G3', 'K');
    await bed(w, 'G4');
    expect(await occupancy(w)).toEqual({ total: 4, occupied: 0, free: 3, unavailable: 1, rate: 0 });
    const enc = await create<Encounter>(admission(g1));
    expect(await occupancy(w)).toEqual({ total: 4, occupied: 1, free: 2, unavailable: 1, rate: 0.25 });
    const res = await t.request({ method: 'GET', url: `/fhir/Location/${w}/$occupancy` });
    const bedParam = (res.json() as Parameters).parameter?.find((p) => p.name === 'bed' && p.part?.some((x) => x.valueReference?.reference === `Location/${g1}`));
    expect(bedParam?.part?.find((x) => x.name === 'encounter')?.valueReference?.reference).toBe(`Encounter/${enc.id}`);
    expect((await t.request({ method: 'GET', url: `/fhir/Location/${g1}/$occupancy` })).statusCode).toBe(400);
    expect((await t.request({ method: 'GET', url: '/fhir/Location/nope/$occupancy' })).statusCode).toBe(404);
  });

  it('FR-IP-001 conformance/OperationDefinition-occupancy.json documents $occupancy and is valid FHIR R4', async () => {
    const definition = JSON.parse(readFileSync(join(import.meta.dirname, '../../conformance/OperationDefinition-occupancy.json'), 'utf8')) as OperationDefinition;
    const res = await t.request({ method: 'POST', url: '/fhir/OperationDefinition/$validate', payload: definition });
    expect(res.statusCode).toBe(200);
    expect((res.json() as OperationOutcome).issue.filter((i) => i.severity === 'error' || i.severity === 'fatal')).toEqual([]);
    expect(definition.parameter?.map((p) => p.name)).toEqual(['ward', 'total', 'occupied', 'free', 'unavailable', 'occupancyRate', 'bed']);
    const metadata = (await t.request({ method: 'GET', url: '/fhir/metadata' })).json() as CapabilityStatement;
    const operations = (type: string) => metadata.rest?.[0]?.resource?.find((r) => r.type === type)?.operation?.map((o) => o.name);
    expect(operations('Location')).toContain('occupancy');
    expect(operations('Patient')).toEqual(expect.arrayContaining(['match', 'everything']));
  });

  it('FR-IP-002 external data: finished encounters and encounters at non-bed Locations are stored as sent', async () => {
    const hospital = (await create<Location>({ resourceType: 'Location', status: 'active', name: 'General Hospital' })).id!;
    const w = await ward('Ward H');
    const b = await bed(w, 'H1', 'O');
    const atHospital = await create<Encounter>(admission(hospital));
    expect(atHospital.location?.[0]).toEqual({ location: { reference: `Location/${hospital}` }, status: 'active' });
    const second = await create<Encounter>(admission(hospital));
    expect(second.id).toBeDefined();
    // History from another system: a finished stay in a bed that is occupied now.
    const past = await create<Encounter>(admission(b, { status: 'finished' }));
    expect(past.location?.[0]?.status).toBe('active');
    expect(await bedStatus(b)).toBe('O');
    await create(admission(undefined));
  });
});
