import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent, Bundle, CapabilityStatement, OperationOutcome } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Importer } from '../../src/operations/import.js';
import { SearchService } from '../../src/search/search-service.js';
import { ImportStateStore } from '../../src/storage/import-state.js';
import { startTestApp, TEST_CLIENT, type TestApp } from '../support/test-app.js';
import { approve, authorizeQuery, createPatient, createUser, exchangeCode, FHIR_BASE, FORM, PASSWORD, pkce, post, REDIRECT, registerClient, requestIdOf } from './smart-helpers.js';

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

describe('AuditEvents of the authorization server', () => {
  const tokenForm = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
  const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

  it('token requests (issued and refused), introspection and revocation are audited, without secrets', async () => {
    const issue = await t.server.http.inject({
      method: 'POST',
      url: '/auth/token',
      headers: { ...FORM, authorization: basic(TEST_CLIENT.id, TEST_CLIENT.secret) },
      payload: tokenForm({ grant_type: 'client_credentials', scope: 'system/Patient.rs' }),
    });
    expect(issue.statusCode, issue.body).toBe(200);
    const accessToken = (issue.json() as { access_token: string }).access_token;
    const jti = JSON.parse(Buffer.from(accessToken.split('.')[1]!, 'base64url').toString('utf8')).jti as string;
    const refused = await t.server.http.inject({
      method: 'POST',
      url: '/auth/token',
      headers: { ...FORM, authorization: basic(TEST_CLIENT.id, 'not-the-secret') },
      payload: tokenForm({ grant_type: 'client_credentials', scope: 'system/*.rs' }),
    });
    expect(refused.statusCode).toBe(401);
    const introspected = await t.server.http.inject({ method: 'POST', url: '/auth/introspect', headers: { ...FORM, authorization: `Bearer ${t.token}` }, payload: tokenForm({ token: accessToken }) });
    expect(introspected.json()).toMatchObject({ active: true });
    const revoked = await t.server.http.inject({ method: 'POST', url: '/auth/revoke', headers: { ...FORM, authorization: basic(TEST_CLIENT.id, TEST_CLIENT.secret) }, payload: tokenForm({ token: accessToken }) });
    expect(revoked.statusCode).toBe(200);

    const events = await auditEvents(`type=http://dicom.nema.org/resources/ontology/DCM|110114&altid=${TEST_CLIENT.id}&date=ge${started}`);
    const ours = (code: string) => events.filter((e) => e.subtype?.some((s) => s.code === code && s.system === 'http://localhost:8080/auth/audit-events'));
    const issued = ours('token').filter((e) => e.entity?.some((x) => x.what?.identifier?.value === jti));
    expect(issued).toHaveLength(1);
    expect(issued[0]).toMatchObject({ action: 'E', outcome: '0', outcomeDesc: 'client_credentials token issued' });
    expect(issued[0]?.agent[0]).toMatchObject({ altId: TEST_CLIENT.id, requestor: true });
    expect(ours('token').some((e) => e.outcome === '4' && e.outcomeDesc === 'client_credentials refused: invalid_client')).toBe(true);
    expect(ours('introspect').some((e) => e.outcome === '0' && e.outcomeDesc === 'introspection: token active' && e.entity?.some((x) => x.what?.identifier?.value === jti))).toBe(true);
    expect(ours('revoke').some((e) => e.outcome === '0' && e.entity?.some((x) => x.what?.identifier?.value === jti))).toBe(true);
    // No secret, no token in any of them.
    const text = JSON.stringify(events);
    expect(text).not.toContain(TEST_CLIENT.secret);
    expect(text).not.toContain('not-the-secret');
    expect(text).not.toContain(accessToken.split('.')[2]);
  });

  it('administration calls (users, client registration) are audited with what they changed', async () => {
    const user = await createUser(t, { username: 'pharma.audit', role: 'PHARMACIST' });
    const patch = await t.server.http.inject({ method: 'PATCH', url: `/auth/users/${user.id}`, headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' }, payload: JSON.stringify({ role: 'NURSE' }) });
    expect(patch.statusCode, patch.body).toBe(200);
    const forbidden = await t.server.http.inject({ method: 'GET', url: '/auth/users' });
    expect(forbidden.statusCode).toBe(401);
    const events = await auditEvents(`type=http://dicom.nema.org/resources/ontology/DCM|110113&date=ge${started}`);
    const about = (value: string) => events.filter((e) => e.entity?.some((x) => x.what?.identifier?.value === value));
    const code = (e: AuditEvent) => e.subtype?.find((s) => s.system === 'http://localhost:8080/auth/audit-events')?.code;
    expect(about(user.id).map(code).sort()).toEqual(['user-create', 'user-update']);
    expect(about(user.id).find((e) => code(e) === 'user-update')).toMatchObject({ action: 'U', outcome: '0', subtype: [{ system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110137' }, {}] });
    expect(about(appClient).map(code)).toEqual(['client-register']);
    expect(events.some((e) => code(e) === 'user-list' && e.outcome === '4' && e.agent[0]?.who?.display === 'unauthenticated caller')).toBe(true);
    expect(JSON.stringify(events)).not.toContain(PASSWORD);
  });
});

describe('the lean audit store', () => {
  it('AuditEvents read, vread, history, _revinclude and _lastUpdated like any type; unindexed params are unknown, not empty', async () => {
    const [event] = await auditEvents(`entity=Patient/${patient}&subtype=read`);
    expect(event?.meta?.versionId).toBe('1');
    const vread = await t.request({ method: 'GET', url: `/fhir/AuditEvent/${event!.id}/_history/1` });
    expect(vread.statusCode).toBe(200);
    expect(vread.json()).toEqual(event);
    const history = (await t.request({ method: 'GET', url: `/fhir/AuditEvent/${event!.id}/_history` })).json() as Bundle;
    expect(history.entry).toHaveLength(1);
    expect((await t.request({ method: 'GET', url: `/fhir/AuditEvent?_id=${event!.id}&_lastUpdated=ge${started}` })).json()).toMatchObject({ total: 1 });
    const revinclude = (await t.request({ method: 'GET', url: `/fhir/Patient?_id=${patient}&_revinclude=AuditEvent:entity&_count=500` })).json() as Bundle;
    expect(revinclude.entry?.some((e) => e.resource?.id === event!.id)).toBe(true);
    // patient, action, type and source searches
    expect((await auditEvents(`patient=${patient}&action=R&type=rest`)).some((e) => e.id === event!.id)).toBe(true);
    const strict = await t.request({ method: 'GET', url: '/fhir/AuditEvent?entity-type=2', headers: { prefer: 'handling=strict' } });
    expect(strict.statusCode).toBe(400);
    expect((strict.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
  });

  it('the CapabilityStatement offers AuditEvent read and search only, with the parameters it indexes', async () => {
    const metadata = (await t.server.http.inject({ method: 'GET', url: '/fhir/metadata' })).json() as CapabilityStatement;
    const audit = metadata.rest?.[0]?.resource?.find((r) => r.type === 'AuditEvent');
    const codes = audit?.interaction?.map((i) => i.code) ?? [];
    expect(codes).toEqual(expect.arrayContaining(['read', 'vread', 'search-type', 'history-instance']));
    for (const write of ['create', 'update', 'patch', 'delete']) expect(codes).not.toContain(write);
    expect(audit?.conditionalUpdate).toBeUndefined();
    const params = audit?.searchParam?.map((p) => p.name) ?? [];
    expect(params).toEqual(expect.arrayContaining(['date', 'patient', 'agent', 'altid', 'entity', 'type', 'subtype', 'action', 'outcome', 'source', 'site']));
    expect(params).not.toContain('entity-type');
    const patientResource = metadata.rest?.[0]?.resource?.find((r) => r.type === 'Patient');
    expect(patientResource?.interaction?.map((i) => i.code)).toContain('create');
  });

  it('samples of every kind of server-built AuditEvent are valid against the base specification', async () => {
    const samples = await auditEvents(`date=ge${started}`);
    const kinds = new Map<string, AuditEvent>();
    for (const e of samples) kinds.set(`${e.type.code}|${e.subtype?.map((s) => s.code).join(',')}|${e.outcome}`, e);
    expect(kinds.size).toBeGreaterThanOrEqual(8);
    for (const [kind, event] of kinds) {
      const issues = t.server.validator.validate(event).filter((i) => i.severity === 'error' || i.severity === 'fatal');
      expect(issues, kind).toEqual([]);
    }
    // …and the validator does judge them: one without its required agent is refused.
    const { agent: _agent, ...broken } = samples[0]!;
    expect(t.server.validator.validate(broken as AuditEvent).some((i) => i.severity === 'error')).toBe(true);
  });

  it('npm run import (the Importer) refuses AuditEvents like REST does, and writes the rest', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-import-'));
    try {
      const forged = { resourceType: 'AuditEvent', id: 'forged-1', type: { code: 'rest' }, action: 'R', recorded: new Date().toISOString(), agent: [{ requestor: true, who: { display: 'x' } }], source: { observer: { display: 'x' } } };
      writeFileSync(join(dir, 'mixed.ndjson'), `${JSON.stringify({ resourceType: 'Patient', id: 'imported-beside-audit', name: [{ family: 'Imported' }] })}\n${JSON.stringify(forged)}\n`);
      writeFileSync(join(dir, 'bundle.json'), JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry: [{ resource: { ...forged, id: undefined }, request: { method: 'POST', url: 'AuditEvent' } }] }));
      const search = new SearchService({ db: t.server.database.db, registry: t.server.registry });
      const importer = new Importer({ interactions: { store: t.server.store, search, validator: t.server.validator, fhirBase: FHIR_BASE }, state: new ImportStateStore(t.server.database.db) });
      const summary = await importer.run(
        ['mixed.ndjson', 'bundle.json'].map((name) => ({ kind: 'file' as const, path: join(dir, name), name })),
        { scope: 'cli' },
      );
      expect(summary.issues.some((i) => i.line === 2 && /written by the server only/.test(i.message))).toBe(true);
      expect(summary.inputs.find((i) => i.name === 'bundle.json')?.status).toBe('failed');
      expect((await t.request({ method: 'GET', url: '/fhir/Patient/imported-beside-audit' })).statusCode).toBe(200);
      expect((await t.request({ method: 'GET', url: '/fhir/AuditEvent/forged-1' })).statusCode).toBe(404);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the audit writer', () => {
  it('wrote every event it was given (all valid)', async () => {
    await t.server.audit.flush();
    expect(t.server.audit.writeFailures).toBe(0);
    expect(t.server.audit.stats()).toMatchObject({ queued: 0, lost: 0, refused: 0 });
    // …and says so to monitoring.
    const metrics = await t.server.http.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toMatch(/^fhir_audit_events_written_total [1-9]/m);
    expect(metrics.body).toMatch(/^fhir_audit_events_lost_total 0$/m);
    expect(metrics.body).toMatch(/^fhir_audit_queue_length 0$/m);
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
