import type { Bundle, CapabilityStatement, OperationOutcome, Resource, ServiceRequest, Specimen } from 'fhir/r4.js';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labWorklistSql, previousResultsSql } from '../../src/storage/lab-store.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { signInAs } from './smart-helpers.js';

/**
 * Laboratory orders (issue 14 §1, seed 004 FR-LAB-001): orders checked against the catalogue
 * (terminology/lab-catalog/), server-assigned accession numbers with a Code 128 label, collection
 * status, and the work list (STAT first).
 */

const LAB = 'https://fhir.hospital.example.org/CodeSystem/lab-test';
const ACCESSION = 'https://fhir.hospital.example.org/sid/accession-number';

let t: TestApp;
let patient: string;

beforeAll(async () => {
  t = await startTestApp();
  patient = await create({ resourceType: 'Patient', name: [{ family: 'Pham', given: ['Lan'] }], gender: 'female', birthDate: '1980-05-01' });
}, 60_000);

afterAll(async () => {
  await t?.close();
});

async function create(resource: object, token?: string): Promise<string> {
  const type = (resource as { resourceType: string }).resourceType;
  const res = await t.request({ method: 'POST', url: `/fhir/${type}`, payload: resource, ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as { id: string }).id;
}

function order(code: string, priority: ServiceRequest['priority'], authoredOn: string, status: ServiceRequest['status'] = 'active'): ServiceRequest {
  return { resourceType: 'ServiceRequest', status, intent: 'order', priority, authoredOn, code: { coding: [{ system: LAB, code }] }, subject: { reference: `Patient/${patient}` } };
}

describe('FR-LAB-001 lab orders against the catalogue', () => {
  it('FR-LAB-001: the catalogue (ActivityDefinitions, ObservationDefinitions) is valid FHIR R4 ($validate)', async () => {
    const bundle = JSON.parse(readFileSync(resolve(import.meta.dirname, '../../terminology/lab-catalog/Bundle-lab-catalog.json'), 'utf8')) as Bundle;
    const res = await t.request({ method: 'POST', url: '/fhir/Bundle/$validate', payload: bundle });
    expect(res.statusCode, res.body).toBe(200);
    expect((res.json() as OperationOutcome).issue.filter((i) => i.severity === 'error' || i.severity === 'fatal')).toEqual([]);
    const types = (bundle.entry ?? []).map((e) => e.resource?.resourceType);
    expect(types.filter((x) => x === 'ActivityDefinition').length).toBeGreaterThanOrEqual(20);
    expect(types.filter((x) => x === 'ObservationDefinition').length).toBeGreaterThanOrEqual(20);
    for (const name of ['lab-worklist', 'specimen-label', 'lab-verify', 'lab-report-pdf']) {
      const definition = JSON.parse(readFileSync(resolve(import.meta.dirname, `../../conformance/OperationDefinition-${name}.json`), 'utf8')) as Resource;
      const checked = await t.request({ method: 'POST', url: '/fhir/OperationDefinition/$validate', payload: definition });
      expect((checked.json() as OperationOutcome).issue.filter((i) => i.severity === 'error' || i.severity === 'fatal'), name).toEqual([]);
    }
  });

  it('FR-LAB-001: an unknown or non-orderable catalogue code is refused with 422 business-rule at ServiceRequest.code', async () => {
    for (const code of ['NOPE', 'haematology']) {
      const res = await t.request({ method: 'POST', url: '/fhir/ServiceRequest', payload: order(code, 'routine', '2026-12-01T08:00:00Z') });
      expect(res.statusCode, res.body).toBe(422);
      const issue = (res.json() as OperationOutcome).issue[0]!;
      expect(issue.code).toBe('business-rule');
      expect(issue.expression).toEqual(['ServiceRequest.code']);
    }
  });

  it('FR-LAB-001: a test or a panel of the catalogue is accepted and points at its ActivityDefinition', async () => {
    const id = await create(order('CBC', 'routine', '2026-12-01T08:00:00Z'));
    const stored = (await t.request({ method: 'GET', url: `/fhir/ServiceRequest/${id}` })).json() as ServiceRequest;
    expect(stored.instantiatesCanonical).toEqual(['https://fhir.hospital.example.org/ActivityDefinition/lab-cbc']);
    expect(stored.category?.[0]?.coding?.[0]?.code).toBe('108252007');
    await t.request({ method: 'DELETE', url: `/fhir/ServiceRequest/${id}` });
  });
});

describe('FR-LAB-001 specimen barcodes and collection status', () => {
  it('FR-LAB-001: concurrent specimens get distinct accession numbers LAB-YYYYMMDD-NNNNN', async () => {
    const ids = await Promise.all(Array.from({ length: 12 }, () => create({ resourceType: 'Specimen', subject: { reference: `Patient/${patient}` } })));
    const numbers = await Promise.all(
      ids.map(async (id) => ((await t.request({ method: 'GET', url: `/fhir/Specimen/${id}` })).json() as Specimen).accessionIdentifier),
    );
    for (const n of numbers) {
      expect(n?.system).toBe(ACCESSION);
      expect(n?.value).toMatch(/^LAB-[0-9]{8}-[0-9]{5}$/);
    }
    expect(new Set(numbers.map((n) => n?.value)).size).toBe(12);
  });

  it('FR-LAB-001: the accession number is the server\'s: kept when left out, a change or a made-up one refused', async () => {
    const id = await create({ resourceType: 'Specimen', subject: { reference: `Patient/${patient}` } });
    const first = (await t.request({ method: 'GET', url: `/fhir/Specimen/${id}` })).json() as Specimen;
    const { accessionIdentifier, ...rest } = first;
    const kept = await t.request({ method: 'PUT', url: `/fhir/Specimen/${id}`, payload: { ...rest, note: [{ text: 'haemolysed' }] } });
    expect(kept.statusCode, kept.body).toBe(200);
    expect((kept.json() as Specimen).accessionIdentifier).toEqual(accessionIdentifier);
    const changed = await t.request({ method: 'PUT', url: `/fhir/Specimen/${id}`, payload: { ...rest, accessionIdentifier: { system: ACCESSION, value: 'LAB-20260101-00001' } } });
    expect(changed.statusCode).toBe(409);
    expect((changed.json() as OperationOutcome).issue[0]!.code).toBe('business-rule');
    const madeUp = await t.request({ method: 'POST', url: '/fhir/Specimen', payload: { resourceType: 'Specimen', accessionIdentifier: { system: ACCESSION, value: 'LAB-20260101-00009' } } });
    expect(madeUp.statusCode).toBe(422);
  });

  it('FR-LAB-001: $label returns a Code 128 PNG of the accession number', async () => {
    const id = await create({ resourceType: 'Specimen', subject: { reference: `Patient/${patient}` } });
    const res = await t.request({ method: 'GET', url: `/fhir/Specimen/${id}/$label` });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['content-type']).toBe('image/png');
    const png = res.rawPayload;
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    // Width from the IHDR chunk: a Code 128 of 18 characters at scale 3 is several hundred pixels wide.
    expect(png.readUInt32BE(16)).toBeGreaterThan(300);
    expect((await t.request({ method: 'GET', url: '/fhir/Specimen/nope/$label' })).statusCode).toBe(404);
  });

  it('FR-LAB-001: collection status: collected specimens are available; marking one available records when and by whom', async () => {
    const tech = await signInAs(t, 'LAB_TECHNICIAN', 'Practitioner/tech-1');
    const sr = await create(order('GLU', 'routine', '2026-12-01T07:00:00Z'));
    const collected = await create({ resourceType: 'Specimen', request: [{ reference: `ServiceRequest/${sr}` }], subject: { reference: `Patient/${patient}` }, collection: { collectedDateTime: '2026-12-01T07:30:00Z' } }, tech.token);
    expect(((await t.request({ method: 'GET', url: `/fhir/Specimen/${collected}` })).json() as Specimen).status).toBe('available');
    const marked = await create({ resourceType: 'Specimen', status: 'available', subject: { reference: `Patient/${patient}` } }, tech.token);
    const s = (await t.request({ method: 'GET', url: `/fhir/Specimen/${marked}` })).json() as Specimen;
    expect(s.collection?.collectedDateTime).toMatch(/^\d{4}-\d{2}-\d{2}T/);
    expect(s.collection?.collector?.reference).toBe('Practitioner/tech-1');
    await t.request({ method: 'DELETE', url: `/fhir/ServiceRequest/${sr}` });
  });
});

describe('FR-LAB-001 work list', () => {
  it('FR-LAB-001: STAT first, then asap, urgent, routine; oldest first within a priority; paged; closed and non-lab orders left out; specimens included', async () => {
    const ids = {
      routineOld: await create(order('HB', 'routine', '2026-12-01T06:00:00Z')),
      stat: await create(order('K', 'stat', '2026-12-01T09:00:00Z')),
      urgent: await create(order('CREA', 'urgent', '2026-12-01T08:00:00Z')),
      routineNew: await create(order('CHOL', 'routine', '2026-12-01T10:00:00Z')),
      statOld: await create(order('NA', 'stat', '2026-12-01T08:30:00Z')),
      asap: await create(order('ALT', 'asap', '2026-12-01T09:30:00Z')),
    };
    await create(order('HB', 'stat', '2026-12-01T05:00:00Z', 'completed'));
    await create({ resourceType: 'ServiceRequest', status: 'active', intent: 'order', priority: 'stat', code: { text: 'Chest X-ray' }, subject: { reference: `Patient/${patient}` } });
    const specimen = await create({ resourceType: 'Specimen', request: [{ reference: `ServiceRequest/${ids.stat}` }], subject: { reference: `Patient/${patient}` } });

    const tech = await signInAs(t, 'LAB_TECHNICIAN', 'Practitioner/tech-2');
    const res = await t.request({ method: 'GET', url: '/fhir/ServiceRequest/$worklist?_count=100', headers: { authorization: `Bearer ${tech.token}` } });
    expect(res.statusCode, res.body).toBe(200);
    const bundle = res.json() as Bundle;
    const matches = (bundle.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource!.id);
    expect(matches).toEqual([ids.statOld, ids.stat, ids.asap, ids.urgent, ids.routineOld, ids.routineNew]);
    expect(bundle.total).toBe(6);
    expect((bundle.entry ?? []).filter((e) => e.search?.mode === 'include').map((e) => e.resource!.id)).toEqual([specimen]);

    const page2 = await t.request({ method: 'GET', url: '/fhir/ServiceRequest/$worklist?_count=2&_offset=2', headers: { authorization: `Bearer ${tech.token}` } });
    const b2 = page2.json() as Bundle;
    expect((b2.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource!.id)).toEqual([ids.asap, ids.urgent]);
    expect(b2.link?.find((l) => l.relation === 'next')?.url).toContain('_offset=4');
    expect((await t.request({ method: 'GET', url: '/fhir/ServiceRequest/$worklist?_count=x' })).statusCode).toBe(400);
  });

  it('FR-LAB-001: a patient-app token cannot read the work list', async () => {
    const p = await signInAs(t, 'PATIENT', `Patient/${patient}`);
    const res = await t.request({ method: 'GET', url: '/fhir/ServiceRequest/$worklist', headers: { authorization: `Bearer ${p.token}` } });
    expect(res.statusCode).toBe(403);
  });
});

describe('FR-LAB-001 work list SQL', () => {
  it('FR-LAB-001: the work list and the previous results read the search index through its indexes (EXPLAIN); the operations are declared', async () => {
    const db = t.server.database.db;
    await db.transaction().execute(async (trx) => {
      await sql`SET LOCAL enable_seqscan = off`.execute(trx);
      const queries: Array<[ReturnType<typeof labWorklistSql>, RegExp]> = [
        [labWorklistSql(LAB, 50, 0), /search_token_(code|res)/],
        [previousResultsSql(patient, LAB, 'HB', [], 4), /search_reference_(target|res)|search_token_(code|res)/],
      ];
      for (const [query, index] of queries) {
        const compiled = query.compile(trx);
        const plan = (await trx.executeQuery<Record<string, string>>({ ...compiled, sql: `EXPLAIN ${compiled.sql}` })).rows.map((r) => Object.values(r)[0]).join('\n');
        expect(plan, plan).toMatch(index);
        expect(plan, plan).not.toMatch(/Seq Scan on (search_|resource)/);
      }
    });
    const cs = (await t.request({ method: 'GET', url: '/fhir/metadata' })).json() as CapabilityStatement;
    const ops = (type: string) => (cs.rest?.[0]?.resource?.find((r) => r.type === type)?.operation ?? []).map((o) => o.name);
    expect(ops('ServiceRequest')).toContain('worklist');
    expect(ops('Specimen')).toContain('label');
    expect(ops('DiagnosticReport')).toEqual(expect.arrayContaining(['verify', 'pdf']));
    expect(ops('Observation')).toContain('verify');
  });
});
