import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Bundle, CodeSystem, OperationOutcome, Resource, StructureDefinition } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { profileFiles } from '../../scripts/profile-snapshots.js';
import { snapshotOf } from '../../src/fhir/validation/snapshot.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/** The server's own FHIR definitions, shipped as data (README: Layout). */
const FOLDERS = ['profiles', 'terminology', 'search-params'];
const ROOT = resolve(import.meta.dirname, '../..');
const HOSPITAL_PATIENT = 'https://fhir.hospital.example.org/StructureDefinition/hospital-patient';
const PATIENT_NUMBER = 'https://fhir.hospital.example.org/sid/patient-number';
const USER_ROLE = 'https://fhir.hospital.example.org/CodeSystem/user-role';
const NOTIFICATION_TYPE = 'https://fhir.hospital.example.org/CodeSystem/notification-type';

const definitionFiles = FOLDERS.flatMap((folder) =>
  readdirSync(join(ROOT, folder))
    .filter((f) => f.endsWith('.json'))
    .map((f) => `${folder}/${f}`),
);

const errorsOf = (oo: OperationOutcome) => oo.issue.filter((i) => i.severity === 'error' || i.severity === 'fatal');

describe("the server's own definitions (profiles/, terminology/, search-params/, conformance/)", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('each folder has its README and data', () => {
    for (const folder of FOLDERS) {
      expect(readdirSync(join(ROOT, folder)), folder).toContain('README.md');
      expect(definitionFiles.some((f) => f.startsWith(`${folder}/`)), folder).toBe(true);
    }
  });

  it.each(definitionFiles)('%s is valid FHIR R4 ($validate finds no error)', async (file) => {
    const resource = JSON.parse(readFileSync(join(ROOT, file), 'utf8')) as Resource;
    const res = await t.request({ method: 'POST', url: `/fhir/${resource.resourceType}/$validate`, payload: resource });
    expect(res.statusCode).toBe(200);
    expect(errorsOf(res.json() as OperationOutcome)).toEqual([]);
  });

  it('conformance/: the CapabilityStatement built on its base is valid FHIR R4', async () => {
    const metadata = (await t.request({ method: 'GET', url: '/fhir/metadata' })).json() as Resource;
    const res = await t.request({ method: 'POST', url: '/fhir/CapabilityStatement/$validate', payload: metadata });
    expect(errorsOf(res.json() as OperationOutcome)).toEqual([]);
    expect(readdirSync(join(ROOT, 'conformance'))).toContain('README.md');
  });

  it('every profile snapshot is the one its differential gives (npm run profiles)', () => {
    const files = profileFiles();
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      const sd = JSON.parse(readFileSync(file, 'utf8')) as StructureDefinition;
      expect(sd.snapshot?.element, file).toEqual(snapshotOf(sd));
    }
  });

  describe('the hospital Patient profile, loaded at start-up', () => {
    const patient = (extra: Record<string, unknown>) => ({ resourceType: 'Patient', meta: { profile: [HOSPITAL_PATIENT] }, ...extra });
    const patientNumber = (value: string) => ({ system: PATIENT_NUMBER, value, type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] } });

    it('refuses a Patient claiming it without a patient number, name or gender (422 naming them)', async () => {
      const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: patient({ identifier: [{ system: 'http://other.example/mrn', value: '1' }] }) });
      expect(res.statusCode).toBe(422);
      const where = errorsOf(res.json() as OperationOutcome).flatMap((i) => i.expression ?? []).join(' ');
      expect(where).toMatch(/identifier/);
      expect(where).toMatch(/name/);
      expect(where).toMatch(/gender/);
    });

    it('refuses a patient number without the MR type and two patient numbers', async () => {
      const untyped = await t.request({ method: 'POST', url: '/fhir/Patient', payload: patient({ identifier: [{ system: PATIENT_NUMBER, value: 'PT-20241215-0001' }], name: [{ family: 'Ng' }], gender: 'male' }) });
      expect(untyped.statusCode).toBe(422);
      const two = await t.request({
        method: 'POST',
        url: '/fhir/Patient',
        payload: patient({ identifier: [patientNumber('PT-20241215-0001'), patientNumber('PT-20241215-0002')], name: [{ family: 'Ng' }], gender: 'male' }),
      });
      expect(two.statusCode).toBe(422);
    });

    it('accepts a conforming Patient, which is found by its patient number', async () => {
      const res = await t.request({
        method: 'POST',
        url: '/fhir/Patient',
        payload: patient({ identifier: [patientNumber('PT-20241215-0042'), { system: 'https://fhir.hospital.example.org/sid/national-id', value: '123-45-6789' }], name: [{ family: 'Okafor' }], gender: 'female' }),
        headers: { prefer: 'return=OperationOutcome' },
      });
      expect(res.statusCode).toBe(201);
      expect((res.json() as OperationOutcome).issue.filter((i) => i.severity !== 'information')).toEqual([]);
      const found = (await t.request({ method: 'GET', url: '/fhir/Patient?patient-number=PT-20241215-0042' })).json() as Bundle;
      expect(found.entry?.map((e) => e.resource?.resourceType)).toEqual(['Patient']);
    });

    it('leaves Patients that do not claim it alone', async () => {
      const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: 'Plain' }] } });
      expect(res.statusCode).toBe(201);
    });

    it('$validate checks a resource against it on request', async () => {
      const res = await t.request({
        method: 'POST',
        url: '/fhir/Patient/$validate',
        payload: { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: { resourceType: 'Patient', name: [{ family: 'X' }] } }, { name: 'profile', valueUri: HOSPITAL_PATIENT }] },
      });
      expect(errorsOf(res.json() as OperationOutcome).length).toBeGreaterThan(0);
    });
  });

  describe('the local code systems and value sets, read by search', () => {
    beforeAll(async () => {
      const entries = [
        { resourceType: 'PractitionerRole', id: 'role-doctor', code: [{ coding: [{ system: USER_ROLE, code: 'DOCTOR' }] }] },
        { resourceType: 'PractitionerRole', id: 'role-other', code: [{ coding: [{ system: 'http://example.org/roles', code: 'DOCTOR' }] }] },
        { resourceType: 'Communication', id: 'n-reminder', status: 'completed', category: [{ coding: [{ system: NOTIFICATION_TYPE, code: 'APPOINTMENT_REMINDER_PATIENT' }] }] },
        { resourceType: 'Communication', id: 'n-invoice', status: 'completed', category: [{ coding: [{ system: NOTIFICATION_TYPE, code: 'INVOICE_GENERATED' }] }] },
      ].map((resource) => ({ resource, request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` } }));
      const res = await t.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'transaction', entry: entries } });
      expect(res.statusCode).toBe(200);
    });

    const ids = async (url: string) => {
      const res = await t.request({ method: 'GET', url });
      expect(res.statusCode, res.body).toBe(200);
      return ((res.json() as Bundle).entry ?? []).map((e) => e.resource?.id).sort();
    };

    it('the user-role codes are the roles conformance/smart-roles.json grants scopes to', () => {
      const codes = (JSON.parse(readFileSync(join(ROOT, 'terminology/CodeSystem-user-role.json'), 'utf8')) as CodeSystem).concept?.map((c) => c.code);
      const roles = Object.keys((JSON.parse(readFileSync(join(ROOT, 'conformance/smart-roles.json'), 'utf8')) as { roles: Record<string, unknown> }).roles);
      expect([...(codes ?? [])].sort()).toEqual([...roles].sort());
    });

    it(':in expands the user-role value set', async () => {
      expect(await ids('/fhir/PractitionerRole?role:in=https://fhir.hospital.example.org/ValueSet/user-role')).toEqual(['role-doctor']);
    });

    it(':below walks the notification-type groups', async () => {
      expect(await ids(`/fhir/Communication?category:below=${NOTIFICATION_TYPE}|appointment`)).toEqual(['n-reminder']);
      expect(await ids(`/fhir/Communication?category:below=${NOTIFICATION_TYPE}|billing`)).toEqual(['n-invoice']);
      expect(await ids(`/fhir/Communication?category:below=${NOTIFICATION_TYPE}|laboratory`)).toEqual([]);
    });
  });
});
