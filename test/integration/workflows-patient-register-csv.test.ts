import type { OperationOutcome, Parameters, ParametersParameter, Patient } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, TEST_CLIENT, type TestApp } from '../support/test-app.js';

/**
 * CSV bulk registration (seed 004 FR-PM-001, issue 12 §1; src/workflows/patient-register-csv.ts):
 * every row through the normal write path, per-row results with row numbers.
 */

const NUMBER = 'https://fhir.hospital.example.org/sid/patient-number';
const NATIONAL = 'https://fhir.hospital.example.org/sid/national-id';

let t: TestApp;

beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
});

function upload(csv: string, headers: Record<string, string> = {}) {
  return t.request({ method: 'POST', url: '/fhir/Patient/$register-csv', payload: csv, headers: { 'content-type': 'text/csv', ...headers } });
}

const part = (row: ParametersParameter, name: string) => row.part?.find((p) => p.name === name);
const rowsOf = (p: Parameters) => (p.parameter ?? []).filter((x) => x.name === 'row');
const count = (p: Parameters, name: string) => p.parameter?.find((x) => x.name === name)?.valueInteger;

describe('CSV bulk registration (FR-PM-001)', () => {
  it('FR-PM-001 registers each row with a patient number and reports refused rows by row number', async () => {
    const nid = `CSV-${Date.now()}`;
    const csv = [
      'family,given,birthDate,gender,phone,nationalId',
      `Nguyễn,Thi Lan,1980-02-03,female,+84 90 111 2222,${nid}`,
      '"O\'Brien, Jr",Sean,1975-12-01,male,,',
      '',
      `Duplicate,Dan,1990-01-01,male,,${nid}`,
      'Badgender,Bo,1990-01-01,robot,,',
      'Short,row',
      'Baddate,Al,1990-13-45,male,,',
    ].join('\r\n');
    const res = await upload(csv);
    expect(res.statusCode, res.body).toBe(200);
    const out = res.json() as Parameters;
    expect(count(out, 'created')).toBe(2);
    expect(count(out, 'failed')).toBe(4);
    const rows = rowsOf(out);
    expect(rows.map((r) => part(r, 'row')?.valueInteger)).toEqual([2, 3, 5, 6, 7, 8]);
    expect(rows.map((r) => part(r, 'status')?.valueString)).toEqual(['201', '201', '409', expect.stringMatching(/^4/), '400', expect.stringMatching(/^4/)]);

    const first = part(rows[0]!, 'patient')!.valueReference!.reference!;
    const read = await t.request({ method: 'GET', url: `/fhir/${first}` });
    const patient = read.json() as Patient;
    expect(patient.name?.[0]).toMatchObject({ family: 'Nguyễn', given: ['Thi', 'Lan'] });
    expect(patient.birthDate).toBe('1980-02-03');
    expect(patient.identifier?.find((i) => i.system === NATIONAL)?.value).toBe(nid);
    const number = patient.identifier?.find((i) => i.system === NUMBER)?.value;
    expect(number).toMatch(/^PT-\d{8}-\d{4}$/);
    expect(part(rows[0]!, 'patientNumber')?.valueIdentifier?.value).toBe(number);
    const second = (await t.request({ method: 'GET', url: `/fhir/${part(rows[1]!, 'patient')!.valueReference!.reference}` })).json() as Patient;
    expect(second.name?.[0]?.family).toBe("O'Brien, Jr");

    const dup = part(rows[2]!, 'outcome')!.resource as OperationOutcome;
    expect(dup.issue[0]?.diagnostics).toMatch(/^Row 5: .*national id/i);
    expect((part(rows[4]!, 'outcome')!.resource as OperationOutcome).issue[0]?.diagnostics).toMatch(/^Row 7: /);
    // Refused rows wrote nothing.
    const search = await t.request({ method: 'GET', url: '/fhir/Patient?family=Duplicate,Badgender,Short,Baddate' });
    expect((search.json() as { total?: number; entry?: unknown[] }).entry ?? []).toHaveLength(0);
  });

  it('FR-PM-001 a file that cannot be read as a whole is a 400 and registers nobody', async () => {
    for (const csv of ['', 'family,shoeSize\nA,42', 'given\nAnn', 'family\n"Unclosed', `family\n${'Many\n'.repeat(1001)}`]) {
      const res = await upload(csv);
      expect(res.statusCode, csv.slice(0, 30)).toBe(400);
      expect((res.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
    }
    const many = await t.request({ method: 'GET', url: '/fhir/Patient?family=Many&_summary=count' });
    expect((many.json() as { total: number }).total).toBe(0);
    const json = await t.request({ method: 'POST', url: '/fhir/Patient/$register-csv', payload: { resourceType: 'Patient' } });
    expect(json.statusCode).toBe(415);
  });

  it('FR-PM-001 needs create access to Patient', async () => {
    const res = await t.server.http.inject({
      method: 'POST',
      url: '/auth/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${TEST_CLIENT.id}:${TEST_CLIENT.secret}`).toString('base64')}` },
      payload: 'grant_type=client_credentials&scope=system/Patient.rs',
    });
    const readOnly = (res.json() as { access_token: string }).access_token;
    const refused = await upload('family\nNobody', { authorization: `Bearer ${readOnly}` });
    expect(refused.statusCode).toBe(403);
  });
});
