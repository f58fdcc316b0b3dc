import type { Bundle, FhirResource } from 'fhir/r4.js';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, TEST_CLIENT, type TestApp } from '../support/test-app.js';
import { downloadAll, exportManifest, KICKOFF_HEADERS } from './bulk-export-helpers.js';
import { approve, createUser, exchangeCode, pkce, post, registerClient, REDIRECT } from './smart-helpers.js';

/**
 * Scope matrix (issue 9 §4): tokens of limited scopes try every path by which data leaves the
 * server, against allowed and forbidden targets. Nothing forbidden may come back — neither
 * directly nor through include, chain, `_has`, history, Bundle or $everything — and totals must
 * not count it.
 */

let t: TestApp;
/** client_credentials token limited to `system/Observation.read`. */
let observationOnly: string;
/** A PATIENT user's token: `patient/*.rs`, patient context = patientA. */
let patientToken: string;
let patientA: string;
let patientB: string;
let practitioner: string;
let obsA: string;
let obsB: string;
let reportA: string;
/** client_credentials token with the granular `system/Observation.rs?category=laboratory`. */
let labOnly: string;
let obsLab: string;
let obsVital: string;

async function create(resource: Record<string, unknown>): Promise<string> {
  const res = await t.request({ method: 'POST', url: `/fhir/${String(resource.resourceType)}`, payload: resource });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as { id: string }).id;
}

function as(token: string, options: InjectOptions) {
  const headers: Record<string, string> = { ...(options.headers as Record<string, string> | undefined), authorization: `Bearer ${token}` };
  if (options.payload !== undefined) headers['content-type'] = 'application/fhir+json';
  const payload = typeof options.payload === 'object' && options.payload !== null ? JSON.stringify(options.payload) : options.payload;
  return t.server.http.inject({ ...options, headers, payload });
}

async function bundleAs(token: string, url: string): Promise<Bundle> {
  const res = await as(token, { method: 'GET', url });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as Bundle;
}

/** `Type/id` of every resource in a Bundle (entries of nested Bundles included). */
function refsIn(bundle: Bundle): string[] {
  const out: string[] = [];
  for (const e of bundle.entry ?? []) {
    const r = e.resource as FhirResource | undefined;
    if (!r) continue;
    if (r.resourceType === 'Bundle') out.push(...refsIn(r));
    else out.push(`${r.resourceType}/${r.id}`);
  }
  return out;
}

beforeAll(async () => {
  t = await startTestApp();
  patientA = await create({ resourceType: 'Patient', name: [{ family: 'Alpha', given: ['Ann'] }] });
  patientB = await create({ resourceType: 'Patient', name: [{ family: 'Beta', given: ['Bob'] }] });
  practitioner = await create({ resourceType: 'Practitioner', name: [{ family: 'Grey' }] });
  const observation = (patient: string) => ({
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '718-7' }] },
    subject: { reference: `Patient/${patient}` },
    performer: [{ reference: `Practitioner/${practitioner}` }],
  });
  obsA = await create(observation(patientA));
  obsB = await create(observation(patientB));
  reportA = await create({ resourceType: 'DiagnosticReport', status: 'final', code: { text: 'CBC' }, subject: { reference: `Patient/${patientA}` }, result: [{ reference: `Observation/${obsA}` }] });
  await create({ resourceType: 'DiagnosticReport', status: 'final', code: { text: 'CBC' }, subject: { reference: `Patient/${patientB}` }, result: [{ reference: `Observation/${obsB}` }] });

  const categorized = (code: string) => ({ ...observation(patientB), category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code }] }] });
  obsLab = await create(categorized('laboratory'));
  obsVital = await create(categorized('vital-signs'));
  const lab = await post(
    t,
    '/auth/token',
    { grant_type: 'client_credentials', scope: 'system/Observation.rs?category=laboratory' },
    { authorization: `Basic ${Buffer.from(`${TEST_CLIENT.id}:${TEST_CLIENT.secret}`).toString('base64')}` },
  );
  expect(lab.statusCode, lab.body).toBe(200);
  expect(lab.json().scope).toBe('system/Observation.rs?category=laboratory');
  labOnly = lab.json().access_token;

  const cc = await post(
    t,
    '/auth/token',
    { grant_type: 'client_credentials', scope: 'system/Observation.read' },
    { authorization: `Basic ${Buffer.from(`${TEST_CLIENT.id}:${TEST_CLIENT.secret}`).toString('base64')}` },
  );
  expect(cc.statusCode, cc.body).toBe(200);
  expect(cc.json().scope).toBe('system/Observation.read');
  observationOnly = cc.json().access_token;

  const scope = 'openid fhirUser launch/patient patient/*.rs patient/Appointment.cud';
  const client = (await registerClient(t, { client_name: 'Patient app', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], scope })).client_id;
  await createUser(t, { username: 'ann.alpha', role: 'PATIENT', fhirUser: `Patient/${patientA}` });
  const { verifier, challenge } = pkce();
  const redirect = await approve(t, { clientId: client, scope, challenge }, 'ann.alpha');
  const token = await exchangeCode(t, { code: redirect.searchParams.get('code')!, client_id: client, code_verifier: verifier });
  expect(token.statusCode, token.body).toBe(200);
  expect(token.json().patient).toBe(patientA);
  expect(token.json().scope.split(' ')).toContain('patient/Appointment.cud');
  patientToken = token.json().access_token;
}, 240_000);

afterAll(async () => {
  await t?.close();
});

describe('a token limited to system/Observation.read', () => {
  it('gets no Patient or Practitioner through _include, and no DiagnosticReport through _revinclude', async () => {
    const b = await bundleAs(observationOnly, '/fhir/Observation?_include=Observation:subject&_include=Observation:performer&_revinclude=DiagnosticReport:result');
    expect(refsIn(b).sort()).toEqual([`Observation/${obsA}`, `Observation/${obsB}`, `Observation/${obsLab}`, `Observation/${obsVital}`].sort());
    const iterate = await bundleAs(observationOnly, '/fhir/Observation?_include=*&_include:iterate=*&_revinclude:iterate=*');
    expect(refsIn(iterate).every((r) => r.startsWith('Observation/'))).toBe(true);
    // The same searches with full access do include them (the test can fail).
    const full = await bundleAs(t.token, '/fhir/Observation?_include=Observation:subject&_revinclude=DiagnosticReport:result');
    expect(refsIn(full)).toEqual(expect.arrayContaining([`Patient/${patientA}`, `DiagnosticReport/${reportA}`]));
  });

  it('cannot probe forbidden types through chains or _has (no match, no count)', async () => {
    const chain = `/fhir/Observation?subject:Patient.family=Alpha&_total=accurate`;
    expect((await bundleAs(t.token, chain)).total).toBe(1);
    const limited = await bundleAs(observationOnly, chain);
    expect(limited.total).toBe(0);
    expect(limited.entry ?? []).toHaveLength(0);
    const has = `/fhir/Observation?_has:DiagnosticReport:result:status=final&_total=accurate`;
    expect((await bundleAs(t.token, has)).total).toBe(2);
    expect((await bundleAs(observationOnly, has)).total).toBe(0);
  });

  it('is refused reads and searches of other types, and their compartment search yields Observations only', async () => {
    expect((await as(observationOnly, { method: 'GET', url: `/fhir/Patient/${patientA}` })).statusCode).toBe(403);
    expect((await as(observationOnly, { method: 'GET', url: '/fhir/Patient' })).statusCode).toBe(403);
    const compartment = await bundleAs(observationOnly, `/fhir/Patient/${patientA}/*?_include=Observation:subject`);
    expect(refsIn(compartment)).toEqual([`Observation/${obsA}`]);
    const system = await bundleAs(observationOnly, '/fhir?_include=Observation:subject&_total=accurate');
    expect(refsIn(system).every((r) => r.startsWith('Observation/'))).toBe(true);
    expect(system.total).toBe(4);
  });

  it('gets no forbidden type through a search inside a batch', async () => {
    const res = await as(observationOnly, {
      method: 'POST',
      url: '/fhir',
      payload: { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: 'Observation?_include=Observation:subject' } }] },
    });
    expect(res.statusCode, res.body).toBe(200);
    const refs = refsIn(res.json() as Bundle);
    expect(refs).toContain(`Observation/${obsA}`);
    expect(refs.every((r) => r.startsWith('Observation/'))).toBe(true);
  });
});

describe("a patient/*.rs token confined to patient A's compartment", () => {
  it('reads and vreads only resources of its compartment (403 otherwise)', async () => {
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Patient/${patientA}` })).statusCode).toBe(200);
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Observation/${obsA}` })).statusCode).toBe(200);
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Patient/${patientB}` })).statusCode).toBe(403);
    const other = await as(patientToken, { method: 'GET', url: `/fhir/Observation/${obsB}` });
    expect(other.statusCode).toBe(403);
    expect(other.json().resourceType).toBe('OperationOutcome');
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Observation/${obsB}/_history/1` })).statusCode).toBe(403);
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Practitioner/${practitioner}` })).statusCode).toBe(403);
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Observation/${obsB}/$validate` })).statusCode).toBe(403);
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Observation/${obsA}/$validate` })).statusCode).toBe(200);
  });

  it('searches only its compartment: matches, totals, includes, revincludes, chains, _has', async () => {
    const obs = await bundleAs(patientToken, '/fhir/Observation?_total=accurate&_include=Observation:subject&_include=Observation:performer&_revinclude=DiagnosticReport:result');
    expect(obs.total).toBe(1);
    expect(refsIn(obs).sort()).toEqual([`DiagnosticReport/${reportA}`, `Observation/${obsA}`, `Patient/${patientA}`].sort());
    const patients = await bundleAs(patientToken, '/fhir/Patient?_total=accurate&_revinclude=Observation:subject');
    expect(patients.total).toBe(1);
    expect(refsIn(patients).sort()).toEqual([`Observation/${obsA}`, `Patient/${patientA}`].sort());
    expect((await bundleAs(patientToken, '/fhir/Observation?subject:Patient.family=Beta&_total=accurate')).total).toBe(0);
    expect((await bundleAs(patientToken, '/fhir/Observation?subject:Patient.family=Alpha&_total=accurate')).total).toBe(1);
    const has = await bundleAs(patientToken, '/fhir/Patient?_has:Observation:subject:status=final&_total=accurate');
    expect(refsIn(has)).toEqual([`Patient/${patientA}`]);
    const system = await bundleAs(patientToken, '/fhir?_type=Patient,Observation,Practitioner&_total=accurate');
    expect(refsIn(system).sort()).toEqual([`Observation/${obsA}`, `Patient/${patientA}`].sort());
    expect(system.total).toBe(2);
    const otherCompartment = await bundleAs(patientToken, `/fhir/Patient/${patientB}/Observation?_total=accurate`);
    expect(otherCompartment.total).toBe(0);
  });

  it('sees history only of its own resources', async () => {
    const own = await bundleAs(patientToken, `/fhir/Observation/${obsA}/_history`);
    expect(refsIn(own)).toEqual([`Observation/${obsA}`]);
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Observation/${obsB}/_history` })).statusCode).toBe(403);
    // Type and system history: filtered to the compartment, totals counting only what is shown.
    const type = await bundleAs(patientToken, '/fhir/Observation/_history');
    expect(refsIn(type)).toEqual([`Observation/${obsA}`]);
    expect(type.total).toBe(1);
    const system = await bundleAs(patientToken, '/fhir/_history');
    expect(refsIn(system).every((r) => r === `Patient/${patientA}` || r === `Observation/${obsA}` || r === `DiagnosticReport/${reportA}` || r.startsWith('Appointment/'))).toBe(true);
    expect(refsIn(system)).toEqual(expect.arrayContaining([`Patient/${patientA}`, `Observation/${obsA}`, `DiagnosticReport/${reportA}`]));
    expect(system.total).toBe(system.entry?.length);
  });

  it('batch entries: searches filtered to the compartment, a read of another patient refused', async () => {
    const ok = await as(patientToken, {
      method: 'POST',
      url: '/fhir',
      payload: { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: 'Observation?_include=Observation:subject' } }, { request: { method: 'GET', url: `Observation/${obsA}` } }] },
    });
    expect(ok.statusCode, ok.body).toBe(200);
    const refs = refsIn(ok.json() as Bundle);
    expect(refs).toContain(`Observation/${obsA}`);
    expect(refs).toContain(`Patient/${patientA}`);
    expect(refs).not.toContain(`Observation/${obsB}`);
    expect(refs).not.toContain(`Patient/${patientB}`);
    // A forbidden entry is refused on its own (403 entry response); the batch still answers 200.
    const refused = await as(patientToken, {
      method: 'POST',
      url: '/fhir',
      payload: { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: `Observation/${obsB}` } }] },
    });
    expect(refused.statusCode).toBe(200);
    expect((refused.json() as Bundle).entry?.[0]?.response?.status).toBe('403');
    expect(refused.body).not.toContain(`Patient/${patientB}`);
  });

  it('$everything only for its own patient; bulk export only of its own compartment', async () => {
    const own = await bundleAs(patientToken, `/fhir/Patient/${patientA}/$everything`);
    const refs = refsIn(own);
    expect(refs).toEqual(expect.arrayContaining([`Patient/${patientA}`, `Observation/${obsA}`]));
    expect(refs).not.toContain(`Observation/${obsB}`);
    expect(refs).not.toContain(`Patient/${patientB}`);
    // Practitioner is never in a Patient compartment: not brought in as a referenced resource either.
    expect(refs).not.toContain(`Practitioner/${practitioner}`);
    // Members only (the audit trail of A's own reads is in A's compartment), nothing they merely refer to.
    const types = new Set(refs.map((r) => r.split('/')[0]));
    expect([...types].filter((x) => !['Patient', 'Observation', 'DiagnosticReport', 'Appointment', 'AuditEvent'].includes(x!))).toEqual([]);
    expect(own.entry?.every((e) => e.search?.mode === 'match')).toBe(true);
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Patient/${patientB}/$everything` })).statusCode).toBe(403);
    for (const url of ['/fhir/$export', `/fhir/Group/x/$export`, `/fhir/Patient/$export?patient=Patient/${patientB}`]) {
      const res = await as(patientToken, { method: 'GET', url, headers: KICKOFF_HEADERS });
      expect(res.statusCode, url).toBe(403);
    }
    // Patient-level export runs, forced to the token's patient.
    const asPatient = { ...t, request: (o: InjectOptions) => as(patientToken, o) } as TestApp;
    const exported = (await downloadAll(asPatient, await exportManifest(asPatient, '/fhir/Patient/$export'))).map((r) => `${r.resourceType}/${r.id}`);
    expect(exported).toEqual(expect.arrayContaining([`Patient/${patientA}`, `Observation/${obsA}`, `DiagnosticReport/${reportA}`]));
    for (const forbidden of [`Patient/${patientB}`, `Observation/${obsB}`, `Observation/${obsLab}`, `Practitioner/${practitioner}`]) expect(exported).not.toContain(forbidden);
  });

  it('writes only inside its compartment: creates, updates, deletes, conditional writes, transactions', async () => {
    // A booked Appointment has its times (app-3).
    const appointment = (patient: string) => ({ resourceType: 'Appointment', status: 'booked', start: '2030-01-07T09:00:00Z', end: '2030-01-07T09:20:00Z', participant: [{ actor: { reference: `Patient/${patient}` }, status: 'accepted' }] });
    const mine = await as(patientToken, { method: 'POST', url: '/fhir/Appointment', payload: appointment(patientA) });
    expect(mine.statusCode, mine.body).toBe(201);
    const myId = (mine.json() as { id: string }).id;
    expect((await as(patientToken, { method: 'POST', url: '/fhir/Appointment', payload: appointment(patientB) })).statusCode).toBe(403);
    const theirs = await create(appointment(patientB));
    expect((await as(patientToken, { method: 'DELETE', url: `/fhir/Appointment/${theirs}` })).statusCode).toBe(403);
    expect((await as(patientToken, { method: 'PUT', url: `/fhir/Appointment/${theirs}`, payload: { ...appointment(patientA), id: theirs } })).statusCode).toBe(403);
    // Moving my own appointment to another patient is refused too.
    expect((await as(patientToken, { method: 'PUT', url: `/fhir/Appointment/${myId}`, payload: { ...appointment(patientB), id: myId } })).statusCode).toBe(403);
    expect((await as(patientToken, { method: 'DELETE', url: '/fhir/Appointment?status=booked' })).statusCode).toBe(403);
    expect((await t.request({ method: 'GET', url: `/fhir/Appointment/${theirs}` })).statusCode).toBe(200);
    const transaction = (patient: string) => ({ resourceType: 'Bundle', type: 'transaction', entry: [{ resource: appointment(patient), request: { method: 'POST', url: 'Appointment' } }] });
    expect((await as(patientToken, { method: 'POST', url: '/fhir', payload: transaction(patientB) })).statusCode).toBe(403);
    const ok = await as(patientToken, { method: 'POST', url: '/fhir', payload: transaction(patientA) });
    expect(ok.statusCode, ok.body).toBe(200);
    const total = await bundleAs(t.token, `/fhir/Appointment?actor=Patient/${patientB}&_total=accurate`);
    expect(total.total).toBe(1);
  });
});

describe('a granular system/Observation.rs?category=laboratory token', () => {
  it('searches and reads laboratory Observations only; other types and categories stay hidden', async () => {
    const obs = await bundleAs(labOnly, '/fhir/Observation?_total=accurate&_include=Observation:subject&_revinclude=DiagnosticReport:result');
    expect(refsIn(obs)).toEqual([`Observation/${obsLab}`]);
    expect(obs.total).toBe(1);
    expect((await bundleAs(labOnly, '/fhir/Observation?code=718-7&_total=accurate')).total).toBe(1);
    const system = await bundleAs(labOnly, '/fhir?_type=Observation&_total=accurate');
    expect(refsIn(system)).toEqual([`Observation/${obsLab}`]);
    expect((await as(labOnly, { method: 'GET', url: `/fhir/Observation/${obsLab}` })).statusCode).toBe(200);
    expect((await as(labOnly, { method: 'GET', url: `/fhir/Observation/${obsVital}` })).statusCode).toBe(403);
    expect((await as(labOnly, { method: 'GET', url: `/fhir/Observation/${obsA}` })).statusCode).toBe(403);
    expect((await as(labOnly, { method: 'GET', url: '/fhir/DiagnosticReport' })).statusCode).toBe(403);
    expect((await as(labOnly, { method: 'POST', url: '/fhir/Observation', payload: { resourceType: 'Observation', status: 'final', code: { text: 'x' } } })).statusCode).toBe(403);
  });
});
