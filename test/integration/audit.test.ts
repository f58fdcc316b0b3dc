import type { AuditEvent, Bundle, OperationOutcome } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, TEST_CLIENT, type TestApp } from '../support/test-app.js';
import { approve, createPatient, createUser, exchangeCode, pkce, post, REDIRECT, registerClient, requestIdOf, authorizeQuery } from './smart-helpers.js';

let t: TestApp;
let patient: string;
let started: string;
let appClient: string;
const USER_SCOPE = 'openid fhirUser user/*.rs';

beforeAll(async () => {
  t = await startTestApp({ AUDIT_EVENTS: 'on' });
  started = new Date(Date.now() - 1000).toISOString();
  patient = await createPatient(t, 'Audited');
  appClient = (await registerClient(t, { client_name: 'Audit app', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], scope: USER_SCOPE })).client_id;
  await createUser(t, { username: 'dr.audit', role: 'DOCTOR', fhirUser: 'Practitioner/audit-doc' });
  await createUser(t, { username: 'nurse.audit', role: 'NURSE' });
}, 180_000);
afterAll(async () => {
  await t?.close();
});

/** The AuditEvents a search finds, after the queued ones are written. */
async function auditEvents(query: string): Promise<AuditEvent[]> {
  await t.server.audit.flush();
  const res = await t.request({ method: 'GET', url: `/fhir/AuditEvent?${query}&_count=200` });
  expect(res.statusCode, res.body).toBe(200);
  return ((res.json() as Bundle).entry ?? []).map((e) => e.resource as AuditEvent);
}

const subtypeOf = (e: AuditEvent) => e.subtype?.[0]?.code;

describe('AuditEvents of FHIR requests', () => {
  it('a create, a read, a search and a failed read each leave an AuditEvent', async () => {
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${patient}` })).statusCode).toBe(200);
    expect((await t.request({ method: 'GET', url: `/fhir/Observation?patient=${patient}&code=1234-5` })).statusCode).toBe(200);
    expect((await t.request({ method: 'GET', url: '/fhir/Patient/no-such-patient' })).statusCode).toBe(404);

    const events = await auditEvents(`entity=Patient/${patient}`);
    const create = events.find((e) => subtypeOf(e) === 'create');
    expect(create).toMatchObject({ action: 'C', outcome: '0', type: { code: 'rest' } });
    const read = events.find((e) => subtypeOf(e) === 'read');
    expect(read).toMatchObject({ action: 'R', outcome: '0', type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' } });
    expect(read?.subtype?.[0]?.system).toBe('http://hl7.org/fhir/restful-interaction');
    // who (the backend client, requestor, from where) and what
    expect(read?.agent[0]).toMatchObject({ altId: TEST_CLIENT.id, requestor: true, who: { identifier: { value: TEST_CLIENT.id } } });
    expect(read?.agent[0]?.network?.address).toBeTruthy();
    expect(read?.entity?.some((x) => x.what?.reference === `Patient/${patient}` && x.role?.code === '1')).toBe(true);
    expect(Date.parse(read?.recorded ?? '')).toBeGreaterThanOrEqual(Date.parse(started));

    // the search names the patient: its query is kept (base64, as the spec says)
    const search = events.find((e) => subtypeOf(e) === 'search-type');
    expect(search).toMatchObject({ action: 'R', outcome: '0' });
    const query = search?.entity?.find((x) => x.role?.code === '24')?.query;
    expect(Buffer.from(query ?? '', 'base64').toString('utf8')).toBe(`patient=${patient}&code=1234-5`);

    // $everything: an operation on the patient's record
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${patient}/$everything` })).statusCode).toBe(200);
    const everything = (await auditEvents(`entity=Patient/${patient}&subtype=operation`)).filter((e) => e.outcomeDesc?.startsWith('$everything'));
    expect(everything).toHaveLength(1);
    expect(everything[0]).toMatchObject({ action: 'E', outcome: '0', outcomeDesc: '$everything HTTP 200' });

    const failed = await auditEvents('entity=Patient/no-such-patient');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ action: 'R', outcome: '4', outcomeDesc: 'HTTP 404' });
    expect(subtypeOf(failed[0]!)).toBe('read');
  });

  it('is searchable by agent id, date, subtype and outcome, and the events are valid R4', async () => {
    const byClient = await auditEvents(`altid=${TEST_CLIENT.id}&date=ge${started}&subtype=read&outcome=0`);
    expect(byClient.length).toBeGreaterThan(0);
    expect(byClient.every((e) => subtypeOf(e) === 'read' && e.outcome === '0')).toBe(true);
    const none = await auditEvents(`altid=${TEST_CLIENT.id}&date=lt${started}`);
    expect(none).toHaveLength(0);
    const { id: _id, meta: _meta, ...event } = byClient[0]!;
    const validated = await t.request({ method: 'POST', url: '/fhir/AuditEvent/$validate', payload: event });
    expect(validated.statusCode, validated.body).toBe(200);
    const issues = (validated.json() as OperationOutcome).issue.filter((i) => i.severity === 'error' || i.severity === 'fatal');
    expect(issues).toEqual([]);
  });

  it('nobody writes AuditEvents through the API, not even the system client, nor inside a transaction', async () => {
    const [existing] = await auditEvents('subtype=read');
    const forged: AuditEvent = { ...existing!, id: undefined, meta: undefined, outcome: '0' };
    const created = await t.request({ method: 'POST', url: '/fhir/AuditEvent', payload: forged });
    expect(created.statusCode, created.body).toBe(403);
    expect((created.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
    expect((await t.request({ method: 'PUT', url: `/fhir/AuditEvent/${existing!.id}`, payload: { ...existing, outcome: '8' } })).statusCode).toBe(403);
    expect((await t.request({ method: 'DELETE', url: `/fhir/AuditEvent/${existing!.id}` })).statusCode).toBe(403);
    expect((await t.request({ method: 'GET', url: `/fhir/AuditEvent/${existing!.id}` })).json()).toMatchObject({ outcome: existing!.outcome });

    const transaction = await t.request({
      method: 'POST',
      url: '/fhir',
      payload: {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { fullUrl: 'urn:uuid:0c0c0c0c-0000-4000-8000-000000000001', resource: { resourceType: 'Patient', name: [{ family: 'Smuggler' }] }, request: { method: 'POST', url: 'Patient' } },
          { resource: forged, request: { method: 'POST', url: 'AuditEvent' } },
        ],
      },
    });
    expect(transaction.statusCode, transaction.body).toBe(403);
    const smuggler = await t.request({ method: 'GET', url: '/fhir/Patient?family=Smuggler' });
    expect((smuggler.json() as Bundle).total).toBe(0);
    // the refused transaction is itself audited, as a failure
    const audited = (await auditEvents('subtype=transaction&outcome=4')).filter((e) => e.entity?.some((x) => x.what?.reference === undefined));
    expect(audited.length).toBeGreaterThan(0);
  });
});

describe('AuditEvents of sign-ins, and who may read them', () => {
  it('a failed sign-in and a lockout are audited; a user who is not ADMIN may not read the audit trail', async () => {
    const { challenge } = pkce();
    const page = await t.server.http.inject({ method: 'GET', url: `/auth/authorize?${authorizeQuery({ clientId: appClient, scope: USER_SCOPE, challenge })}` });
    const request = requestIdOf(page.body);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await post(t, '/auth/authorize/signin', { request, username: 'nurse.audit', password: 'Wrong-password-1!' })).statusCode);
    expect(statuses[0]).toBe(401);
    expect(statuses.at(-1)).toBe(423);

    const logins = await auditEvents('subtype=http://dicom.nema.org/resources/ontology/DCM|110122');
    const nurse = logins.filter((e) => e.agent[0]?.name === 'nurse.audit');
    expect(nurse.filter((e) => e.outcome === '4').length).toBeGreaterThanOrEqual(4);
    expect(nurse.some((e) => e.outcome === '8' && e.outcomeDesc?.includes('locked'))).toBe(true);
    expect(nurse[0]).toMatchObject({ action: 'E', type: { code: '110114' } });
    expect(nurse[0]?.agent[1]).toMatchObject({ altId: appClient, requestor: false });

    // a DOCTOR signs in (audited, as Practitioner/audit-doc) and reads: audited, but AuditEvents are refused
    const { verifier, challenge: c2 } = pkce();
    const redirect = await approve(t, { clientId: appClient, scope: USER_SCOPE, challenge: c2 }, 'dr.audit');
    const token = (await exchangeCode(t, { code: redirect.searchParams.get('code')!, client_id: appClient, code_verifier: verifier })).json().access_token as string;
    const asDoctor = (url: string) => t.server.http.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
    expect((await asDoctor(`/fhir/Patient/${patient}`)).statusCode).toBe(200);
    expect((await asDoctor('/fhir/AuditEvent')).statusCode).toBe(403);
    expect((await asDoctor('/fhir?_type=AuditEvent')).statusCode).toBe(403);
    expect((await asDoctor(`/fhir/Patient/${patient}/AuditEvent`)).statusCode).toBe(403);
    const formSearch = await t.server.http.inject({ method: 'POST', url: '/fhir/_search', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' }, payload: '_type=AuditEvent' });
    expect(formSearch.statusCode).toBe(403);
    // …nor indirectly: includes and whole-system search silently leave AuditEvents out
    await t.server.audit.flush();
    const types = async (url: string) => {
      const res = await asDoctor(url);
      expect(res.statusCode, res.body).toBe(200);
      return (res.json() as Bundle).entry?.map((e) => e.resource?.resourceType) ?? [];
    };
    const revinclude = await types(`/fhir/Patient?_id=${patient}&_revinclude=AuditEvent:entity`);
    expect(revinclude).toContain('Patient');
    expect(revinclude).not.toContain('AuditEvent');
    const system = await types('/fhir?_lastUpdated=gt2000-01-01&_count=500');
    expect(system.length).toBeGreaterThan(0);
    expect(system).not.toContain('AuditEvent');
    const systemCount = (await asDoctor('/fhir?_summary=count')).json() as Bundle;
    const adminCount = (await t.request({ method: 'GET', url: '/fhir?_summary=count' })).json() as Bundle;
    expect(systemCount.total).toBeLessThan(adminCount.total ?? 0);

    const doctor = await auditEvents('agent=Practitioner/audit-doc');
    expect(doctor.some((e) => e.type.code === '110114' && e.outcome === '0')).toBe(true);
    const doctorRead = doctor.find((e) => subtypeOf(e) === 'read' && e.entity?.some((x) => x.what?.reference === `Patient/${patient}`));
    expect(doctorRead?.agent.map((a) => a.altId)).toContain(appClient);
    expect(doctorRead?.agent[0]?.role?.[0]?.coding?.[0]?.code).toBe('DOCTOR');
    expect(doctor.filter((e) => e.outcome === '4' && e.outcomeDesc === 'HTTP 403').length).toBe(4);
  });
});

describe('the audit writer', () => {
  it('wrote every event it was given (all valid)', async () => {
    await t.server.audit.flush();
    expect(t.server.audit.writeFailures).toBe(0);
  });
});

describe('AUDIT_EVENTS=off', () => {
  it('writes no AuditEvents, and AuditEvents stay unwritable', async () => {
    const off = await startTestApp({ AUDIT_EVENTS: 'off' });
    try {
      const id = await createPatient(off, 'Unaudited');
      expect((await off.request({ method: 'GET', url: `/fhir/Patient/${id}` })).statusCode).toBe(200);
      await off.server.audit.flush();
      const found = await off.request({ method: 'GET', url: '/fhir/AuditEvent?_summary=count' });
      expect((found.json() as Bundle).total).toBe(0);
      const created = await off.request({
        method: 'POST',
        url: '/fhir/AuditEvent',
        payload: { resourceType: 'AuditEvent', type: { code: 'rest' }, action: 'R', recorded: new Date().toISOString(), agent: [{ requestor: true, who: { display: 'x' } }], source: { observer: { display: 'x' } } },
      });
      expect(created.statusCode).toBe(403);
    } finally {
      await off.close();
    }
  }, 120_000);
});
