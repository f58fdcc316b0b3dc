/**
 * Issue 17 §5 (NFR-COMP, GDPR): the export of a patient's record is Patient/[id]/$everything;
 * Patient/[id]/$erase removes the Patient and its compartment with every version and index row,
 * leaves other patients alone, keeps the audit trail, and is refused under legal hold.
 */
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Bundle, OperationOutcome } from 'fhir/r4.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { signInAs } from './smart-helpers.js';

const HOLD = { system: 'https://fhir.hospital.example.org/CodeSystem/record-hold', code: 'legal-hold' };
let t: TestApp;

beforeAll(async () => {
  t = await startTestApp({ AUDIT_EVENTS: 'on' });
}, 120_000);
afterAll(async () => {
  await t?.close();
});

async function create(resource: Record<string, unknown>): Promise<string> {
  const res = await t.request({ method: 'POST', url: `/fhir/${String(resource.resourceType)}`, payload: resource });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as { id: string }).id;
}

function observation(patient: string): Record<string, unknown> {
  return { resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: `Patient/${patient}` }, valueQuantity: { value: 70, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' } };
}

async function total(url: string): Promise<number> {
  const res = await t.request({ method: 'GET', url });
  expect(res.statusCode, res.body).toBe(200);
  return (res.json() as Bundle).total ?? (res.json() as Bundle).entry?.length ?? 0;
}

describe('GDPR export and erasure (issue 17 §5, NFR-COMP)', () => {
  it('NFR-COMP: $everything exports the record; $erase removes the patient, its compartment and every version, nothing else', async () => {
    const family = `Erase${randomBytes(3).toString('hex')}`;
    const patient = await create({ resourceType: 'Patient', name: [{ family, given: ['Eva'] }] });
    const renamed = await t.request({ method: 'PUT', url: `/fhir/Patient/${patient}`, payload: { resourceType: 'Patient', id: patient, name: [{ family, given: ['Eva', 'Maria'] }] } });
    expect(renamed.statusCode, renamed.body).toBe(200);
    const obs = await create(observation(patient));
    const encounter = await create({ resourceType: 'Encounter', status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' }, subject: { reference: `Patient/${patient}` } });
    const other = await create({ resourceType: 'Patient', name: [{ family: `${family}Other` }] });
    const otherObs = await create(observation(other));

    const exported = await t.request({ method: 'GET', url: `/fhir/Patient/${patient}/$everything` });
    expect(exported.statusCode, exported.body).toBe(200);
    const exportedIds = ((exported.json() as Bundle).entry ?? []).map((e) => `${e.resource?.resourceType}/${e.resource?.id}`);
    expect(exportedIds).toEqual(expect.arrayContaining([`Patient/${patient}`, `Observation/${obs}`, `Encounter/${encounter}`]));

    const readOnly = await t.tokenFor('system/Patient.rs');
    const forbidden = await t.server.http.inject({ method: 'POST', url: `/fhir/Patient/${patient}/$erase`, headers: { authorization: `Bearer ${readOnly}` } });
    expect(forbidden.statusCode).toBe(403);

    const erased = await t.request({ method: 'POST', url: `/fhir/Patient/${patient}/$erase` });
    expect(erased.statusCode, erased.body).toBe(200);
    expect((erased.json() as OperationOutcome).issue[0]?.diagnostics).toMatch(/3 resources, 4 versions/);

    for (const url of [`Patient/${patient}`, `Observation/${obs}`, `Encounter/${encounter}`, `Patient/${patient}/_history/1`]) {
      expect((await t.request({ method: 'GET', url: `/fhir/${url}` })).statusCode, url).toBe(404);
    }
    expect(await total(`/fhir/Patient?family=${family}&_total=accurate`)).toBe(1);
    expect(await total(`/fhir/Observation?subject=Patient/${patient}&_total=accurate`)).toBe(0);
    expect(await total(`/fhir/Patient/${patient}/Observation?_total=accurate`)).toBe(0);
    const history = await t.request({ method: 'GET', url: `/fhir/Patient/${patient}/_history` });
    expect([404, 410, 200]).toContain(history.statusCode);
    if (history.statusCode === 200) expect((history.json() as Bundle).entry ?? []).toHaveLength(0);
    const typeHistory = (await t.request({ method: 'GET', url: '/fhir/Patient/_history?_count=1000' })).json() as Bundle;
    expect((typeHistory.entry ?? []).map((e) => e.fullUrl ?? '').filter((u) => u.endsWith(`/Patient/${patient}`))).toHaveLength(0);
    expect((await t.request({ method: 'GET', url: `/fhir/Observation/${otherObs}` })).statusCode).toBe(200);
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${other}` })).statusCode).toBe(200);

    // The erasure is in the audit trail, which holds no name of the erased patient.
    await t.server.audit.flush();
    const trail = await sql<{ content: string }>`SELECT content::text AS content FROM audit_event WHERE content::text LIKE ${'%$erase%'}`.execute(t.server.database.db);
    expect(trail.rows.length).toBeGreaterThan(0);
    expect(trail.rows.some((r) => r.content.includes(family))).toBe(false);
    // Erasing again: nothing left to erase.
    expect((await t.request({ method: 'POST', url: `/fhir/Patient/${patient}/$erase` })).statusCode).toBe(404);
  }, 120_000);

  it('NFR-COMP: a Patient under legal hold is not erased (409 business-rule) until the hold is lifted', async () => {
    const held = await create({ resourceType: 'Patient', meta: { security: [HOLD] }, name: [{ family: 'Held' }] });
    const obs = await create(observation(held));
    const refused = await t.request({ method: 'POST', url: `/fhir/Patient/${held}/$erase` });
    expect(refused.statusCode, refused.body).toBe(409);
    expect((refused.json() as OperationOutcome).issue[0]?.code).toBe('business-rule');
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${held}` })).statusCode).toBe(200);
    expect((await t.request({ method: 'GET', url: `/fhir/Observation/${obs}` })).statusCode).toBe(200);

    const lifted = await t.request({ method: 'PUT', url: `/fhir/Patient/${held}`, payload: { resourceType: 'Patient', id: held, name: [{ family: 'Held' }] } });
    expect(lifted.statusCode, lifted.body).toBe(200);
    expect((await t.request({ method: 'POST', url: `/fhir/Patient/${held}/$erase` })).statusCode).toBe(200);
    expect((await t.request({ method: 'GET', url: `/fhir/Observation/${obs}` })).statusCode).toBe(404);
  }, 60_000);
});

describe('GDPR erasure beyond the resource tables, and who lifts a legal hold (issue 17 §5)', () => {
  it('NFR-COMP: $erase also removes HL7 v2 messages about the patient that wrote nothing, and only those', async () => {
    const mrn = `MRN${randomBytes(4).toString('hex')}`;
    const send = async (controlId: string, trigger: string, pid: string) => {
      const message = [`MSH|^~\\&|ERASEAPP|ERASEFAC|FHIR|HOSP|20260101120000||ADT^${trigger}^ADT_A01|${controlId}|P|2.5.1`, `EVN|${trigger}|20260101120000`, pid, 'PV1|1|O'].join('\r');
      const ack = await t.server.http.inject({ method: 'POST', url: '/hl7v2', headers: { authorization: `Bearer ${t.token}`, 'content-type': 'x-application/hl7-v2+er7' }, payload: message });
      expect(ack.statusCode, ack.body).toBe(200);
      return { code: String(ack.headers['x-hl7-ack-code']), id: String(ack.headers['x-hl7-message-id']) };
    };
    const registered = await send(`${mrn}-1`, 'A04', `PID|1||${mrn}^^^HOSP^MR||Erasable^Ida||19800101|F`);
    expect(registered.code).toBe('AA');
    const patient = ((await t.request({ method: 'GET', url: `/hl7v2/messages/${registered.id}` })).json() as { resources: string[] }).resources.find((r) => r.startsWith('Patient/'))!.split('/')[1]!;
    // Messages that store nothing (an event the server does not take): about the patient, about
    // another patient, and with the same number from another assigning authority (another system).
    const about = await send(`${mrn}-2`, 'A99', `PID|1||${mrn}^^^HOSP^MR||Erasable^Ida||19800101|F`);
    const other = await send(`${mrn}-3`, 'A99', `PID|1||X${mrn}^^^HOSP^MR||Other^Olga||19700101|F`);
    const elsewhere = await send(`${mrn}-4`, 'A99', `PID|1||${mrn}^^^OTHERHOSP^MR||Someone^Else||19600101|M`);
    for (const m of [about, other, elsewhere]) {
      expect(m.code).not.toBe('AA');
      const stored = (await t.request({ method: 'GET', url: `/hl7v2/messages/${m.id}` })).json() as { resources: string[] };
      expect(stored.resources).toEqual([]);
    }

    const erased = await t.request({ method: 'POST', url: `/fhir/Patient/${patient}/$erase` });
    expect(erased.statusCode, erased.body).toBe(200);
    expect((erased.json() as OperationOutcome).issue[0]?.diagnostics).toMatch(/ 2 HL7 v2 messages;/);
    expect((await t.request({ method: 'GET', url: `/hl7v2/messages/${registered.id}` })).statusCode).toBe(404);
    expect((await t.request({ method: 'GET', url: `/hl7v2/messages/${about.id}` })).statusCode).toBe(404);
    expect((await t.request({ method: 'GET', url: `/hl7v2/messages/${other.id}` })).statusCode).toBe(200);
    expect((await t.request({ method: 'GET', url: `/hl7v2/messages/${elsewhere.id}` })).statusCode).toBe(200);
  });

  it('NFR-COMP: $erase removes the raw HL7 v2 messages that wrote the patient and unlinks its pharmacy stock movements', async () => {
    const mrn = `MRN${randomBytes(4).toString('hex')}`;
    const message = [
      `MSH|^~\\&|ERASEAPP|ERASEFAC|FHIR|HOSP|20260101120000||ADT^A04^ADT_A01|${mrn}|P|2.5.1`,
      'EVN|A04|20260101120000',
      `PID|1||${mrn}^^^HOSP^MR||Erasable^Hana||19800101|F`,
      'PV1|1|O',
    ].join('\r');
    const ack = await t.server.http.inject({ method: 'POST', url: '/hl7v2', headers: { authorization: `Bearer ${t.token}`, 'content-type': 'x-application/hl7-v2+er7' }, payload: message });
    expect(ack.statusCode, ack.body).toBe(200);
    expect(ack.headers['x-hl7-ack-code'], ack.body).toBe('AA');
    const messageId = String(ack.headers['x-hl7-message-id']);
    const stored = await t.request({ method: 'GET', url: `/hl7v2/messages/${messageId}` });
    expect(stored.statusCode).toBe(200);
    const patient = ((stored.json() as { resources: string[] }).resources.find((r) => r.startsWith('Patient/')) ?? '').split('/')[1]!;
    expect(patient).toBeTruthy();

    // A dispense to the patient moves stock (src/workflows/pharmacy/).
    const med = await create({ resourceType: 'Medication', status: 'active', code: { text: 'Erasol 10 mg' } });
    const batchExt = [{ url: 'https://fhir.hospital.example.org/StructureDefinition/pharmacy-batch', extension: [{ url: 'lotNumber', valueString: 'ER-1' }, { url: 'expirationDate', valueDate: new Date(Date.now() + 400 * 86_400_000).toISOString().slice(0, 10) }] }];
    await create({ resourceType: 'SupplyDelivery', status: 'completed', suppliedItem: { itemReference: { reference: `Medication/${med}` }, quantity: { value: 20, unit: 'tablet' } }, extension: batchExt, occurrenceDateTime: new Date().toISOString() });
    const rx = await create({ resourceType: 'MedicationRequest', status: 'active', intent: 'order', subject: { reference: `Patient/${patient}` }, medicationReference: { reference: `Medication/${med}` }, authoredOn: new Date().toISOString(), dispenseRequest: { quantity: { value: 5, unit: 'tablet' } } });
    const dispense = await create({ resourceType: 'MedicationDispense', status: 'completed', subject: { reference: `Patient/${patient}` }, medicationReference: { reference: `Medication/${med}` }, authorizingPrescription: [{ reference: `MedicationRequest/${rx}` }], quantity: { value: 5, unit: 'tablet' }, whenHandedOver: new Date().toISOString() });
    const linked = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pharmacy_stock_movement WHERE source = ${`MedicationDispense/${dispense}`}`.execute(t.server.database.db);
    expect(linked.rows[0]!.n).toBeGreaterThan(0);

    const erased = await t.request({ method: 'POST', url: `/fhir/Patient/${patient}/$erase` });
    expect(erased.statusCode, erased.body).toBe(200);
    expect((erased.json() as OperationOutcome).issue[0]?.diagnostics).toMatch(/1 HL7 v2 messages; [1-9]\d* stock movements unlinked/);
    expect((await t.request({ method: 'GET', url: `/hl7v2/messages/${messageId}` })).statusCode).toBe(404);
    const raw = await sql<{ n: number }>`SELECT count(*)::int AS n FROM hl7_message WHERE raw LIKE ${`%${mrn}%`}`.execute(t.server.database.db);
    expect(raw.rows[0]!.n).toBe(0);
    const after = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pharmacy_stock_movement WHERE source = ${`MedicationDispense/${dispense}`}`.execute(t.server.database.db);
    expect(after.rows[0]!.n).toBe(0);
    // The stock ledger still adds up: the dispensed quantity stays taken.
    const stock = await t.request({ method: 'GET', url: `/fhir/Medication/${med}/$stock` });
    expect(stock.statusCode, stock.body).toBe(200);
    const total = (stock.json() as { parameter?: Array<{ name: string; valueDecimal?: number; valueQuantity?: { value?: number } }> }).parameter?.find((p) => p.name === 'total');
    expect(total?.valueDecimal ?? total?.valueQuantity?.value, stock.body).toBe(15);
  }, 60_000);

  it('NFR-COMP: a legal hold is lifted by an ADMIN user, not by a user who may only update the Patient', async () => {
    const held = await create({ resourceType: 'Patient', meta: { security: [HOLD] }, name: [{ family: 'HeldTwo' }] });
    const receptionist = (await signInAs(t, 'RECEPTIONIST', 'Practitioner/rec-hold')).token;
    const admin = (await signInAs(t, 'ADMIN', 'Practitioner/adm-hold')).token;
    const put = (token: string, resource: Record<string, unknown>) =>
      t.server.http.inject({ method: 'PUT', url: `/fhir/Patient/${held}`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' }, payload: JSON.stringify(resource) });
    // The receptionist may update the Patient while keeping the hold…
    const kept = await put(receptionist, { resourceType: 'Patient', id: held, meta: { security: [HOLD] }, name: [{ family: 'HeldTwo', given: ['Kim'] }] });
    expect(kept.statusCode, kept.body).toBe(200);
    // …but not lift it, nor delete the Patient.
    const lifted = await put(receptionist, { resourceType: 'Patient', id: held, name: [{ family: 'HeldTwo' }] });
    expect(lifted.statusCode, lifted.body).toBe(403);
    const deleted = await t.server.http.inject({ method: 'DELETE', url: `/fhir/Patient/${held}`, headers: { authorization: `Bearer ${receptionist}` } });
    expect(deleted.statusCode, deleted.body).toBe(403);
    expect(((await t.request({ method: 'GET', url: `/fhir/Patient/${held}` })).json() as { meta?: { security?: unknown[] } }).meta?.security).toEqual([expect.objectContaining(HOLD)]);
    const byAdmin = await put(admin, { resourceType: 'Patient', id: held, name: [{ family: 'HeldTwo' }] });
    expect(byAdmin.statusCode, byAdmin.body).toBe(200);
    expect((await t.request({ method: 'POST', url: `/fhir/Patient/${held}/$erase` })).statusCode).toBe(200);
  }, 60_000);
});
