import type { Bundle, BundleEntry, FhirResource, OperationOutcome } from 'fhir/r4.js';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, TEST_CLIENT, type TestApp } from '../support/test-app.js';
import { downloadAll, exportManifest } from './bulk-export-helpers.js';
import { approve, createUser, exchangeCode, FHIR_BASE, pkce, post, REDIRECT, registerClient } from './smart-helpers.js';

/**
 * Scope matrix, second part (issue 9 §4, §5): per-entry refusals in batches, filtered type and
 * system history (per version, totals and paging), vread judged per version, granular scopes on
 * $everything and $export, the OIDC userinfo endpoint and redirect URI registration rules. Real
 * tokens from the real token endpoint, over HTTP (fastify inject), allowed and forbidden targets.
 */

let t: TestApp;
let patientA: string;
let patientB: string;
let practitioner: string;
let obsA: string;
let obsB: string;
/** v1 about A, v2 about B. */
let movedOut: string;
/** v1 about B, v2 about A. */
let movedIn: string;
/** about A, then deleted. */
let deletedA: string;
let labA: string;
let vitalA: string;
let labB: string;
/** v1 laboratory, v2 vital-signs (patient B). */
let labThenVital: string;
/** laboratory (patient B), then deleted. */
let labDeleted: string;

/** PATIENT user of A: `openid fhirUser patient/*.rs patient/Appointment.cud`. */
let patientToken: string;
/** PATIENT user of A with a granular scope only for Observations. */
let patientLabToken: string;
/** PATIENT user of A without openid. */
let patientNoOpenid: string;
/** client_credentials `system/Observation.read`. */
let observationOnly: string;
/** client_credentials `system/Observation.rs?category=laboratory`. */
let labOnly: string;
/** client_credentials `system/Patient.rs system/Observation.rs?category=laboratory`. */
let patientsAndLabs: string;

const LAB = 'laboratory';
const VITAL = 'vital-signs';

async function create(resource: Record<string, unknown>): Promise<string> {
  const res = await t.request({ method: 'POST', url: `/fhir/${String(resource.resourceType)}`, payload: resource });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as { id: string }).id;
}

async function update(resource: Record<string, unknown> & { id: string }): Promise<void> {
  const res = await t.request({ method: 'PUT', url: `/fhir/${String(resource.resourceType)}/${resource.id}`, payload: resource });
  expect(res.statusCode, res.body).toBe(200);
}

function observation(patient: string, category?: string): Record<string, unknown> {
  return {
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '718-7' }] },
    subject: { reference: `Patient/${patient}` },
    performer: [{ reference: `Practitioner/${practitioner}` }],
    ...(category ? { category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: category }] }] } : {}),
  };
}

function as(token: string | undefined, options: InjectOptions) {
  const headers: Record<string, string> = { ...(options.headers as Record<string, string> | undefined) };
  if (token) headers.authorization = `Bearer ${token}`;
  if (options.payload !== undefined) headers['content-type'] ??= 'application/fhir+json';
  const payload = typeof options.payload === 'object' && options.payload !== null ? JSON.stringify(options.payload) : options.payload;
  return t.server.http.inject({ ...options, headers, payload });
}

async function bundleAs(token: string, url: string): Promise<Bundle> {
  const res = await as(token, { method: 'GET', url });
  expect(res.statusCode, `${url}: ${res.body.slice(0, 300)}`).toBe(200);
  return res.json() as Bundle;
}

/** `Type/id/_history/v` of every entry of a history Bundle. */
function versionsIn(bundle: Bundle): string[] {
  return (bundle.entry ?? []).map((e) => {
    const [type, id] = (e.fullUrl ?? '').replace(`${FHIR_BASE}/`, '').split('/');
    return `${type}/${id}/_history/${String(e.response?.etag).replace(/^W\/"|"$/g, '')}`;
  });
}

function refsIn(bundle: Bundle): string[] {
  return (bundle.entry ?? []).flatMap((e) => (e.resource ? [`${(e.resource as FhirResource).resourceType}/${(e.resource as FhirResource).id}`] : []));
}

/** Every page of a history, following `next` links. */
async function allPages(token: string, url: string): Promise<{ versions: string[]; first: Bundle }> {
  const first = await bundleAs(token, url);
  const versions = versionsIn(first);
  let next = first.link?.find((l) => l.relation === 'next')?.url;
  for (let guard = 0; next && guard < 100; guard++) {
    const page = await bundleAs(token, next.replace('http://localhost:8080', ''));
    versions.push(...versionsIn(page));
    next = page.link?.find((l) => l.relation === 'next')?.url;
  }
  return { versions, first };
}

async function clientToken(scope: string): Promise<string> {
  const res = await post(t, '/auth/token', { grant_type: 'client_credentials', scope }, { authorization: `Basic ${Buffer.from(`${TEST_CLIENT.id}:${TEST_CLIENT.secret}`).toString('base64')}` });
  expect(res.statusCode, res.body).toBe(200);
  expect(res.json().scope).toBe(scope);
  return res.json().access_token as string;
}

async function patientUserToken(client: string, scope: string): Promise<string> {
  const { verifier, challenge } = pkce();
  const redirect = await approve(t, { clientId: client, scope, challenge }, 'ann.versions');
  const token = await exchangeCode(t, { code: redirect.searchParams.get('code')!, client_id: client, code_verifier: verifier });
  expect(token.statusCode, token.body).toBe(200);
  expect(token.json().patient).toBe(patientA);
  return token.json().access_token as string;
}

beforeAll(async () => {
  t = await startTestApp();
  patientA = await create({ resourceType: 'Patient', name: [{ family: 'Alpha' }] });
  patientB = await create({ resourceType: 'Patient', name: [{ family: 'Beta' }] });
  practitioner = await create({ resourceType: 'Practitioner', name: [{ family: 'Grey' }] });
  obsA = await create(observation(patientA));
  obsB = await create(observation(patientB));
  movedOut = await create(observation(patientA));
  await update({ ...observation(patientB), id: movedOut });
  movedIn = await create(observation(patientB));
  await update({ ...observation(patientA), id: movedIn });
  deletedA = await create(observation(patientA));
  expect((await t.request({ method: 'DELETE', url: `/fhir/Observation/${deletedA}` })).statusCode).toBe(204);
  labA = await create(observation(patientA, LAB));
  vitalA = await create(observation(patientA, VITAL));
  labB = await create(observation(patientB, LAB));
  labThenVital = await create(observation(patientB, LAB));
  await update({ ...observation(patientB, VITAL), id: labThenVital });
  labDeleted = await create(observation(patientB, LAB));
  expect((await t.request({ method: 'DELETE', url: `/fhir/Observation/${labDeleted}` })).statusCode).toBe(204);

  observationOnly = await clientToken('system/Observation.read');
  labOnly = await clientToken(`system/Observation.rs?category=${LAB}`);
  patientsAndLabs = await clientToken(`system/Patient.rs system/Observation.rs?category=${LAB}`);

  const scope = 'openid fhirUser launch/patient patient/*.rs patient/Appointment.cud';
  const client = (await registerClient(t, { client_name: 'Versions app', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], scope })).client_id;
  await createUser(t, { username: 'ann.versions', role: 'PATIENT', fhirUser: `Patient/${patientA}` });
  patientToken = await patientUserToken(client, scope);
  patientLabToken = await patientUserToken(client, `launch/patient patient/Patient.rs patient/Observation.rs?category=${LAB}`);
  patientNoOpenid = await patientUserToken(client, 'launch/patient patient/*.rs');
}, 240_000);

afterAll(async () => {
  await t?.close();
});

describe('batch and transaction entries', () => {
  const appointment = (patient: string) => ({ resourceType: 'Appointment', status: 'proposed', description: `for ${patient}`, participant: [{ actor: { reference: `Patient/${patient}` }, status: 'needs-action' }] });
  const appointmentsOf = async (patient: string) => (await bundleAs(t.token, `/fhir/Appointment?actor=Patient/${patient}&_total=accurate`)).total;

  it('a batch answers each forbidden entry with its own 403 and runs the allowed ones', async () => {
    const before = { a: await appointmentsOf(patientA), b: await appointmentsOf(patientB) };
    const res = await as(patientToken, {
      method: 'POST',
      url: '/fhir',
      payload: {
        resourceType: 'Bundle',
        type: 'batch',
        entry: [
          { request: { method: 'GET', url: `Observation/${obsA}` } },
          { request: { method: 'GET', url: `Observation/${obsB}` } },
          { resource: appointment(patientA), request: { method: 'POST', url: 'Appointment' } },
          { resource: appointment(patientB), request: { method: 'POST', url: 'Appointment' } },
          { request: { method: 'GET', url: `Practitioner/${practitioner}` } },
          { request: { method: 'GET', url: `Observation/${movedOut}/_history/1` } },
          { request: { method: 'GET', url: `Observation/${movedIn}/_history/1` } },
          { request: { method: 'DELETE', url: `Observation/${obsA}` } },
          { request: { method: 'GET', url: 'Observation?_include=Observation:subject' } },
        ],
      },
    });
    expect(res.statusCode, res.body).toBe(200);
    const entries = (res.json() as Bundle).entry as BundleEntry[];
    expect(entries.map((e) => e.response?.status.slice(0, 3))).toEqual(['200', '403', '201', '403', '403', '200', '403', '403', '200']);
    for (const i of [1, 3, 4, 6, 7]) {
      expect(entries[i]!.resource).toBeUndefined();
      const outcome = entries[i]!.response?.outcome as OperationOutcome | undefined;
      expect(outcome?.resourceType).toBe('OperationOutcome');
      expect(outcome?.issue[0]?.code).toBe('forbidden');
    }
    expect((entries[0]!.resource as FhirResource).id).toBe(obsA);
    expect((entries[5]!.resource as FhirResource).id).toBe(movedOut);
    // The search entry sees the compartment only; nothing of B comes back anywhere.
    expect(refsIn(entries[8]!.resource as Bundle)).not.toContain(`Observation/${obsB}`);
    expect(res.body).not.toContain(`Patient/${patientB}`);
    expect(await appointmentsOf(patientA)).toBe(before.a! + 1);
    expect(await appointmentsOf(patientB)).toBe(before.b);
    expect((await t.request({ method: 'GET', url: `/fhir/Observation/${obsA}` })).statusCode).toBe(200);
  });

  it('a batch of a type-limited token: other types refused per entry', async () => {
    const res = await as(observationOnly, {
      method: 'POST',
      url: '/fhir',
      payload: { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: `Patient/${patientA}` } }, { request: { method: 'GET', url: `Observation/${obsB}` } }] },
    });
    expect(res.statusCode, res.body).toBe(200);
    const entries = (res.json() as Bundle).entry as BundleEntry[];
    expect(entries.map((e) => e.response?.status.slice(0, 3))).toEqual(['403', '200']);
    expect(res.body).not.toContain('"family"');
  });

  it('a transaction with one forbidden entry is refused whole and writes nothing', async () => {
    const before = await appointmentsOf(patientA);
    const res = await as(patientToken, {
      method: 'POST',
      url: '/fhir',
      payload: {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { resource: appointment(patientA), request: { method: 'POST', url: 'Appointment' } },
          { request: { method: 'GET', url: `Observation/${obsB}` } },
        ],
      },
    });
    expect(res.statusCode).toBe(403);
    expect(res.json().resourceType).toBe('OperationOutcome');
    expect(JSON.stringify(res.json().issue)).toContain('Bundle.entry[1]');
    expect(await appointmentsOf(patientA)).toBe(before);
  });
});

describe('type and system history, filtered', () => {
  it("a patient/ token sees only versions in its patient's compartment, each judged on its own content", async () => {
    const { versions, first } = await allPages(patientToken, '/fhir/Observation/_history');
    const expected = [
      `Observation/${obsA}/_history/1`,
      `Observation/${movedOut}/_history/1`,
      `Observation/${movedIn}/_history/2`,
      `Observation/${deletedA}/_history/1`,
      `Observation/${deletedA}/_history/2`,
      `Observation/${labA}/_history/1`,
      `Observation/${vitalA}/_history/1`,
    ];
    expect(versions.sort()).toEqual(expected.sort());
    expect(first.total).toBe(expected.length);
    // The delete marker is there (judged by the version it deleted), without content.
    const marker = first.entry?.find((e) => e.fullUrl?.endsWith(deletedA) && e.request?.method === 'DELETE');
    expect(marker?.resource).toBeUndefined();
    // The full-access view has more: the test can fail.
    expect((await bundleAs(t.token, '/fhir/Observation/_history')).total).toBeGreaterThan(expected.length);
  });

  it('pages of a filtered history hold visible versions only, no gaps or repeats', async () => {
    const whole = await allPages(patientToken, '/fhir/_history?_count=50');
    const paged = await allPages(patientToken, '/fhir/_history?_count=2');
    expect(paged.versions).toEqual(whole.versions);
    expect(new Set(paged.versions).size).toBe(paged.versions.length);
    expect(paged.first.total).toBe(whole.versions.length);
    const types = new Set(whole.versions.map((v) => v.split('/')[0]));
    expect([...types].every((x) => ['Appointment', 'Observation', 'Patient'].includes(x!))).toBe(true);
    expect(whole.versions).toEqual(expect.arrayContaining([`Patient/${patientA}/_history/1`, `Observation/${obsA}/_history/1`]));
    for (const v of whole.versions) {
      expect(v).not.toContain(patientB);
      expect(v).not.toContain(practitioner);
      expect(v).not.toContain(obsB);
      expect(v).not.toContain(`${movedOut}/_history/2`);
      expect(v).not.toContain(`${movedIn}/_history/1`);
    }
    // _since and _at keep working under the filter.
    const since = await bundleAs(patientToken, `/fhir/Observation/_history?_since=2000-01-01T00:00:00Z`);
    expect(since.total).toBe(7);
    const at = await bundleAs(patientToken, `/fhir/Observation/_history?_at=ge2000-01-01`);
    expect(versionsIn(at).every((v) => !v.includes(obsB))).toBe(true);
  });

  it('instance history of a patient/ token: per version; nothing visible is 403', async () => {
    expect(versionsIn(await bundleAs(patientToken, `/fhir/Observation/${movedOut}/_history`))).toEqual([`Observation/${movedOut}/_history/1`]);
    expect(versionsIn(await bundleAs(patientToken, `/fhir/Observation/${movedIn}/_history`))).toEqual([`Observation/${movedIn}/_history/2`]);
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Observation/${obsB}/_history` })).statusCode).toBe(403);
  });

  it('a type-limited token: system history shows its types only; other types refused', async () => {
    const system = await allPages(observationOnly, '/fhir/_history?_count=100');
    expect(system.versions.length).toBeGreaterThan(0);
    expect(system.versions.every((v) => v.startsWith('Observation/'))).toBe(true);
    const all = await bundleAs(t.token, '/fhir/Observation/_history?_count=1');
    expect(system.first.total).toBe(all.total);
    expect((await as(observationOnly, { method: 'GET', url: '/fhir/Patient/_history' })).statusCode).toBe(403);
  });

  it('a granular token: versions matching its query only, per version', async () => {
    const type = await allPages(labOnly, '/fhir/Observation/_history');
    // The deletion of a laboratory Observation is shown too (judged by the version it deleted).
    const expected = [`Observation/${labA}/_history/1`, `Observation/${labB}/_history/1`, `Observation/${labThenVital}/_history/1`, `Observation/${labDeleted}/_history/1`, `Observation/${labDeleted}/_history/2`];
    expect(type.versions.sort()).toEqual(expected.sort());
    expect(type.first.total).toBe(expected.length);
    const system = await allPages(labOnly, '/fhir/_history?_count=2');
    expect(system.versions.sort()).toEqual(type.versions.sort());
    expect(system.first.total).toBe(expected.length);
  });

  it('a token without read scopes gets no history', async () => {
    const writeOnly = await clientToken('system/Observation.c');
    expect((await as(writeOnly, { method: 'GET', url: '/fhir/_history' })).statusCode).toBe(403);
  });
});

describe('vread judged per version', () => {
  it('a patient/ token reads the versions that were in its compartment, not the others', async () => {
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Observation/${movedOut}/_history/1` })).statusCode).toBe(200);
    const later = await as(patientToken, { method: 'GET', url: `/fhir/Observation/${movedOut}/_history/2` });
    expect(later.statusCode).toBe(403);
    expect(later.json().resourceType).toBe('OperationOutcome');
    expect(later.body).not.toContain(patientB);
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Observation/${movedIn}/_history/1` })).statusCode).toBe(403);
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Observation/${movedIn}/_history/2` })).statusCode).toBe(200);
    // read follows the current version
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Observation/${movedOut}` })).statusCode).toBe(403);
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Observation/${movedIn}` })).statusCode).toBe(200);
  });

  it('a deletion is 410 to whom could see what was deleted, 403 to others', async () => {
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Observation/${deletedA}` })).statusCode).toBe(410);
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Observation/${deletedA}/_history/2` })).statusCode).toBe(410);
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Observation/${labDeleted}` })).statusCode).toBe(403);
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Observation/${labDeleted}/_history/2` })).statusCode).toBe(403);
    expect((await as(labOnly, { method: 'GET', url: `/fhir/Observation/${labDeleted}` })).statusCode).toBe(410);
    expect((await as(labOnly, { method: 'GET', url: `/fhir/Observation/${deletedA}` })).statusCode).toBe(403);
  });

  it('a granular token reads the versions matching its query', async () => {
    expect((await as(labOnly, { method: 'GET', url: `/fhir/Observation/${labThenVital}/_history/1` })).statusCode).toBe(200);
    expect((await as(labOnly, { method: 'GET', url: `/fhir/Observation/${labThenVital}/_history/2` })).statusCode).toBe(403);
    expect((await as(labOnly, { method: 'GET', url: `/fhir/Observation/${labB}/_history/1` })).statusCode).toBe(200);
  });
});

describe('granular scopes on $everything and $export', () => {
  it("$everything of a patient/ granular token: its patient's matching Observations only, totals too", async () => {
    const own = await bundleAs(patientLabToken, `/fhir/Patient/${patientA}/$everything`);
    expect(refsIn(own).sort()).toEqual([`Observation/${labA}`, `Patient/${patientA}`].sort());
    expect(own.total).toBe(2);
    expect((await as(patientLabToken, { method: 'GET', url: `/fhir/Patient/${patientB}/$everything` })).statusCode).toBe(403);
    const typed = await bundleAs(patientLabToken, `/fhir/Patient/${patientA}/$everything?_type=Observation`);
    expect(refsIn(typed)).toEqual([`Observation/${labA}`]);
  });

  it('$everything of a system granular token: the matching Observations of any patient', async () => {
    const b = await bundleAs(patientsAndLabs, `/fhir/Patient/${patientB}/$everything`);
    expect(refsIn(b).sort()).toEqual([`Observation/${labB}`, `Patient/${patientB}`].sort());
    expect(b.total).toBe(2);
    // Full access sees the other Observations of B: the filter did the work.
    expect((await bundleAs(t.token, `/fhir/Patient/${patientB}/$everything`)).total).toBeGreaterThan(2);
  });

  it('$export of a system granular token: only the matching Observations, with and without _typeFilter', async () => {
    const asLabs = { ...t, request: (o: InjectOptions) => as(patientsAndLabs, o) } as TestApp;
    const exported = (await downloadAll(asLabs, await exportManifest(asLabs, '/fhir/$export?_type=Observation'))).map((r) => `${r.resourceType}/${r.id}`);
    expect(exported.sort()).toEqual([`Observation/${labA}`, `Observation/${labB}`].sort());
    const filtered = (await downloadAll(asLabs, await exportManifest(asLabs, `/fhir/$export?_type=Observation&_typeFilter=${encodeURIComponent(`Observation?subject=Patient/${patientA}`)}`))).map(
      (r) => `${r.resourceType}/${r.id}`,
    );
    expect(filtered).toEqual([`Observation/${labA}`]);
  });

  it("$export of a patient/ granular token: its patient's matching Observations only", async () => {
    const asPatient = { ...t, request: (o: InjectOptions) => as(patientLabToken, o) } as TestApp;
    const exported = (await downloadAll(asPatient, await exportManifest(asPatient, '/fhir/Patient/$export'))).map((r) => `${r.resourceType}/${r.id}`);
    expect(exported.sort()).toEqual([`Observation/${labA}`, `Patient/${patientA}`].sort());
  });
});

describe('OpenID Connect userinfo', () => {
  it('is advertised and answers sub and fhirUser for an openid fhirUser token', async () => {
    const discovery = await t.server.http.inject({ method: 'GET', url: '/.well-known/openid-configuration' });
    expect(discovery.json().userinfo_endpoint).toBe('http://localhost:8080/auth/userinfo');
    for (const method of ['GET', 'POST'] as const) {
      const res = await as(patientToken, { method, url: '/auth/userinfo' });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.headers['cache-control']).toBe('no-store');
      const claims = res.json();
      expect(claims.fhirUser).toBe(`${FHIR_BASE}/Patient/${patientA}`);
      expect(typeof claims.sub).toBe('string');
      expect(claims.sub.length).toBeGreaterThan(0);
    }
  });

  it('is 401 without a token, with a bad one, a client token, or a token without openid', async () => {
    for (const token of [undefined, 'a.b.c', observationOnly, patientNoOpenid]) {
      const res = await as(token, { method: 'GET', url: '/auth/userinfo' });
      expect(res.statusCode).toBe(401);
      expect(String(res.headers['www-authenticate'])).toMatch(/^Bearer /);
      expect(res.body).not.toContain(patientA);
    }
  });
});

describe('redirect URIs at registration', () => {
  const register = (redirectUris: string[]) =>
    t.server.http.inject({
      method: 'POST',
      url: '/auth/register',
      headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ client_name: 'redirects', redirect_uris: redirectUris, token_endpoint_auth_method: 'none' }),
    });

  it('accepts https and http on loopback hosts', async () => {
    for (const uri of ['https://app.example.org/cb', 'http://localhost:3000/cb', 'http://127.0.0.1/callback', 'http://[::1]:8080/cb', 'https://app.example.org/cb?tenant=1']) {
      const res = await register([uri]);
      expect(res.statusCode, `${uri}: ${res.body}`).toBe(201);
      expect(res.json().redirect_uris).toEqual([uri]);
    }
  });

  it('refuses plain http elsewhere, other schemes, fragments and credentials (invalid_redirect_uri)', async () => {
    for (const uri of [
      'http://app.example.org/cb',
      'http://localhost.evil.example/cb',
      'http://127.0.0.1.nip.io/cb',
      'https://app.example.org/cb#frag',
      'http://localhost/cb#',
      'com.example.app:/callback',
      'javascript:alert(1)',
      'ftp://app.example.org/cb',
      'https://app.example.org@evil.example/cb',
      '/relative/cb',
    ]) {
      const res = await register(['https://ok.example.org/cb', uri]);
      expect(res.statusCode, uri).toBe(400);
      expect(res.json().error, uri).toBe('invalid_redirect_uri');
    }
  });

  it('the management API (RFC 7592 update) applies the same rules', async () => {
    const created = (await register(['https://app.example.org/cb'])).json() as { client_id: string };
    const put = (uri: string) =>
      t.server.http.inject({
        method: 'PUT',
        url: `/auth/register/${created.client_id}`,
        headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' },
        payload: JSON.stringify({ client_id: created.client_id, redirect_uris: [uri], token_endpoint_auth_method: 'none' }),
      });
    const refused = await put('http://app.example.org/cb');
    expect(refused.statusCode).toBe(400);
    expect(refused.json().error).toBe('invalid_redirect_uri');
    expect((await put('http://localhost:5000/cb')).statusCode).toBe(200);
  });
});

// Last of the shared app's blocks: it adds Observations of A and B, which the counts above do not expect.
describe('full-text search under scopes', () => {
  it('`_content` finds only what the token may read, on every page', async () => {
    const noted = (patient: string, category: string) => ({ ...observation(patient, category), note: [{ text: 'quokka sighting' }] });
    const aLab = await create(noted(patientA, LAB));
    const aVital = await create(noted(patientA, VITAL));
    const bLab = await create(noted(patientB, LAB));
    const every = async (token: string) => {
      const ids: string[] = [];
      let url: string | undefined = '/fhir/Observation?_content=quokka&_count=1';
      while (url) {
        const page = await bundleAs(token, url);
        ids.push(...(page.entry ?? []).map((e) => e.resource!.id!));
        url = page.link?.find((l) => l.relation === 'next')?.url?.replace('http://localhost:8080', '');
      }
      return ids.sort();
    };
    expect(await every(t.token)).toEqual([aLab, aVital, bLab].sort());
    expect(await every(patientToken)).toEqual([aLab, aVital].sort());
    expect(await every(patientLabToken)).toEqual([aLab]);
    expect(await every(labOnly)).toEqual([aLab, bLab].sort());
    expect((await bundleAs(patientLabToken, '/fhir/Observation?_content=quokka&_total=accurate')).total).toBe(1);
  });
});

describe('history of a signed-in DOCTOR (user/*.rs): audit trail and others\' messages hidden', () => {
  let audited: TestApp;
  let doctorToken: string;
  let mine: string;
  let theirs: string;

  beforeAll(async () => {
    audited = await startTestApp({ AUDIT_EVENTS: 'on' });
    const make = async (resource: Record<string, unknown>) => {
      const res = await audited.request({ method: 'POST', url: `/fhir/${String(resource.resourceType)}`, payload: resource });
      expect(res.statusCode, res.body).toBe(201);
      return (res.json() as { id: string }).id;
    };
    const doctor = await make({ resourceType: 'Practitioner', name: [{ family: 'House' }] });
    const other = await make({ resourceType: 'Practitioner', name: [{ family: 'Wilson' }] });
    const patient = await make({ resourceType: 'Patient', name: [{ family: 'Gamma' }] });
    const message = (from: string, to: string) => ({ resourceType: 'Communication', status: 'completed', subject: { reference: `Patient/${patient}` }, sender: { reference: `Practitioner/${from}` }, recipient: [{ reference: `Practitioner/${to}` }], payload: [{ contentString: 'x' }] });
    mine = await make(message(other, doctor));
    theirs = await make(message(other, other));
    const scope = 'openid fhirUser user/*.rs';
    const client = (await registerClient(audited, { client_name: 'Doctor app', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], scope })).client_id;
    await createUser(audited, { username: 'dr.history', role: 'DOCTOR', fhirUser: `Practitioner/${doctor}` });
    const { verifier, challenge } = pkce();
    const redirect = await approve(audited, { clientId: client, scope, challenge }, 'dr.history');
    const token = await exchangeCode(audited, { code: redirect.searchParams.get('code')!, client_id: client, code_verifier: verifier });
    expect(token.statusCode, token.body).toBe(200);
    doctorToken = token.json().access_token as string;
    // The doctor's own reads are audited: AuditEvents exist for the admin to see.
    const read = await audited.server.http.inject({ method: 'GET', url: `/fhir/Patient/${patient}`, headers: { authorization: `Bearer ${doctorToken}` } });
    expect(read.statusCode).toBe(200);
    await audited.server.audit.flush();
  }, 240_000);

  afterAll(async () => {
    await audited?.close();
  });

  it('system history has no AuditEvent and only the messages the doctor takes part in; totals match', async () => {
    const get = async (token: string, url: string) => {
      const res = await audited.server.http.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
      expect(res.statusCode, res.body).toBe(200);
      return res.json() as Bundle;
    };
    const admin = await get(audited.token, '/fhir/_history?_count=1000');
    expect(refsIn(admin).some((r) => r.startsWith('AuditEvent/'))).toBe(true);
    expect(refsIn(admin)).toEqual(expect.arrayContaining([`Communication/${mine}`, `Communication/${theirs}`]));
    const doctor = await get(doctorToken, '/fhir/_history?_count=1000');
    const refs = refsIn(doctor);
    expect(refs.some((r) => r.startsWith('AuditEvent/'))).toBe(false);
    expect(refs).toContain(`Communication/${mine}`);
    expect(refs).not.toContain(`Communication/${theirs}`);
    expect(doctor.total).toBe(doctor.entry?.length);
    expect((await get(doctorToken, '/fhir/Communication/_history')).total).toBe(1);
    expect((await audited.server.http.inject({ method: 'GET', url: `/fhir/Communication/${theirs}/_history/1`, headers: { authorization: `Bearer ${doctorToken}` } })).statusCode).toBe(403);
  });
});
