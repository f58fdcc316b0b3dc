import type { Bundle, Communication, FhirResource, Parameters } from 'fhir/r4.js';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { READ_BY_EXTENSION } from '../../src/workflows/messaging.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { approve, createUser, exchangeCode, pkce, registerClient, REDIRECT } from './smart-helpers.js';

/**
 * Secure messaging (issue 11 §5): Communication threads between a patient and staff, readable
 * only by their participants on every path (search, read, _include / _revinclude, compartment,
 * history), read status by `$mark-read`, and live delivery over websocket Subscriptions
 * (`Communication?recipient=Patient/x`) that respects the same rule.
 */

let t: TestApp;
let wsUrl: string;
let patient1: string;
let patient2: string;
let doctor1: string;
let doctor2: string;
let patientToken: string;
let doctor1Token: string;
let doctor2Token: string;
/** P1 → D1 (by the patient), D1 → P1 (reply), D2 ↔ P2, D2 → P1. */
let question: string;
let reply: string;
let otherPatients: string;
let otherDoctor: string;

function as(token: string, options: InjectOptions) {
  const headers: Record<string, string> = { ...(options.headers as Record<string, string> | undefined), authorization: `Bearer ${token}` };
  if (options.payload !== undefined) headers['content-type'] = 'application/fhir+json';
  const payload = typeof options.payload === 'object' && options.payload !== null ? JSON.stringify(options.payload) : options.payload;
  return t.server.http.inject({ ...options, headers, payload });
}

async function create(resource: Record<string, unknown>, token = t.token): Promise<string> {
  const res = await as(token, { method: 'POST', url: `/fhir/${String(resource.resourceType)}`, payload: resource });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as { id: string }).id;
}

function message(from: string, to: string, about: string, text: string, extra: Partial<Communication> = {}): Communication {
  return {
    resourceType: 'Communication',
    status: 'completed',
    subject: { reference: about },
    sender: { reference: from },
    recipient: [{ reference: to }],
    sent: new Date().toISOString(),
    payload: [{ contentString: text }],
    ...extra,
  };
}

async function ids(token: string, url: string): Promise<string[]> {
  const res = await as(token, { method: 'GET', url });
  expect(res.statusCode, res.body).toBe(200);
  return ((res.json() as Bundle).entry ?? [])
    .map((e) => e.resource as FhirResource)
    .filter((r) => r.resourceType === 'Communication')
    .map((r) => r.id!)
    .sort();
}

async function userToken(username: string, role: string, fhirUser: string, client: string, scope: string): Promise<string> {
  await createUser(t, { username, role, fhirUser });
  const { verifier, challenge } = pkce();
  const redirect = await approve(t, { clientId: client, scope, challenge }, username);
  const token = await exchangeCode(t, { code: redirect.searchParams.get('code')!, client_id: client, code_verifier: verifier });
  expect(token.statusCode, token.body).toBe(200);
  return (token.json() as { access_token: string }).access_token;
}

function openSocket(token?: string): Promise<{ socket: WebSocket; messages: string[]; next: (test?: (m: string) => boolean) => Promise<string> }> {
  const socket = new WebSocket(wsUrl, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  const messages: string[] = [];
  let seen = 0;
  socket.on('message', (d) => messages.push(String(d)));
  const next = async (test: (m: string) => boolean = () => true) => {
    const until = Date.now() + 10_000;
    while (Date.now() < until) {
      const i = messages.findIndex((m, k) => k >= seen && test(m));
      if (i >= 0) {
        seen = i + 1;
        return messages[i]!;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no message; got ${JSON.stringify(messages)}`);
  };
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve({ socket, messages, next }));
    socket.once('error', reject);
  });
}

beforeAll(async () => {
  t = await startTestApp({ SUBSCRIPTION_POLL_MS: '100' });
  await t.server.http.listen({ port: 0, host: '127.0.0.1' });
  wsUrl = `ws://127.0.0.1:${(t.server.http.server.address() as { port: number }).port}/ws/subscriptions`;
  patient1 = await create({ resourceType: 'Patient', name: [{ family: 'Inbox', given: ['Ann'] }] });
  patient2 = await create({ resourceType: 'Patient', name: [{ family: 'Other', given: ['Bob'] }] });
  doctor1 = await create({ resourceType: 'Practitioner', name: [{ family: 'One' }] });
  doctor2 = await create({ resourceType: 'Practitioner', name: [{ family: 'Two' }] });

  const scope = 'openid fhirUser launch/patient patient/*.rs patient/Communication.c user/*.rs user/Communication.cu';
  const client = (await registerClient(t, { client_name: 'Messaging app', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], scope })).client_id;
  patientToken = await userToken('ann.inbox', 'PATIENT', `Patient/${patient1}`, client, 'openid fhirUser launch/patient patient/*.rs patient/Communication.c');
  doctor1Token = await userToken('dr.one', 'DOCTOR', `Practitioner/${doctor1}`, client, 'openid fhirUser user/*.rs user/Communication.cu');
  doctor2Token = await userToken('dr.two', 'DOCTOR', `Practitioner/${doctor2}`, client, 'openid fhirUser user/*.rs user/Communication.cu');

  // The patient writes to a doctor; the doctor answers in the same thread.
  question = await create(message(`Patient/${patient1}`, `Practitioner/${doctor1}`, `Patient/${patient1}`, 'Can I take ibuprofen?') as unknown as Record<string, unknown>, patientToken);
  reply = await create(
    message(`Practitioner/${doctor1}`, `Patient/${patient1}`, `Patient/${patient1}`, 'Yes, with food.', {
      inResponseTo: [{ reference: `Communication/${question}` }],
      partOf: [{ reference: `Communication/${question}` }],
    }) as unknown as Record<string, unknown>,
    doctor1Token,
  );
  otherPatients = await create(message(`Practitioner/${doctor2}`, `Patient/${patient2}`, `Patient/${patient2}`, 'Your results are in.') as unknown as Record<string, unknown>);
  otherDoctor = await create(message(`Practitioner/${doctor2}`, `Patient/${patient1}`, `Patient/${patient1}`, 'Physiotherapy on Monday.') as unknown as Record<string, unknown>);
}, 240_000);

afterAll(async () => {
  await t?.close();
});

describe('who reads which message', () => {
  it('search: each user sees the threads they take part in; a backend client sees all', async () => {
    expect(await ids(patientToken, '/fhir/Communication')).toEqual([question, reply, otherDoctor].sort());
    expect(await ids(doctor1Token, '/fhir/Communication')).toEqual([question, reply].sort());
    expect(await ids(doctor2Token, '/fhir/Communication')).toEqual([otherPatients, otherDoctor].sort());
    expect(await ids(t.token, '/fhir/Communication')).toEqual([question, reply, otherPatients, otherDoctor].sort());
    // Totals count only what is visible.
    const count = await as(doctor1Token, { method: 'GET', url: `/fhir/Communication?subject=Patient/${patient1}&_summary=count` });
    expect((count.json() as Bundle).total).toBe(2);
  });

  it('the thread: replies by partOf / inResponseTo', async () => {
    expect(await ids(patientToken, `/fhir/Communication?part-of=Communication/${question}`)).toEqual([reply]);
    expect(await ids(doctor2Token, `/fhir/Communication?part-of=Communication/${question}`)).toEqual([]);
  });

  it('read: 403 for a message the user does not take part in, even with user/*.rs', async () => {
    expect((await as(doctor1Token, { method: 'GET', url: `/fhir/Communication/${reply}` })).statusCode).toBe(200);
    for (const id of [otherDoctor, otherPatients]) {
      const res = await as(doctor1Token, { method: 'GET', url: `/fhir/Communication/${id}` });
      expect(res.statusCode).toBe(403);
      expect(res.json().resourceType).toBe('OperationOutcome');
    }
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Communication/${otherPatients}` })).statusCode).toBe(403);
    expect((await as(doctor1Token, { method: 'GET', url: `/fhir/Communication/${otherDoctor}/_history/1` })).statusCode).toBe(403);
  });

  it('_revinclude, _include, compartment search and history do not leak other threads', async () => {
    expect(await ids(doctor1Token, `/fhir/Patient?_id=${patient1}&_revinclude=Communication:subject`)).toEqual([question, reply].sort());
    expect(await ids(doctor1Token, `/fhir/Patient/${patient1}/Communication`)).toEqual([question, reply].sort());
    expect(await ids(doctor1Token, `/fhir/Patient/${patient1}/*`)).toEqual([question, reply].sort());
    // A reply of the doctor's own includes the message it answers; another doctor's does not come along.
    expect(await ids(doctor2Token, `/fhir/Communication?_id=${otherDoctor}&_include=Communication:part-of`)).toEqual([otherDoctor]);
    expect(await ids(doctor1Token, `/fhir/Communication?_id=${reply}&_include=Communication:part-of`)).toEqual([question, reply].sort());
    // _has through a message the doctor does not take part in matches nothing.
    const has = await as(doctor1Token, { method: 'GET', url: `/fhir/Patient?_has:Communication:subject:sender=Practitioner/${doctor2}` });
    expect((has.json() as Bundle).entry ?? []).toEqual([]);
    const history = await as(doctor1Token, { method: 'GET', url: '/fhir/Communication/_history' });
    expect(history.statusCode, history.body).toBe(200);
    const historyIds = ((history.json() as Bundle).entry ?? []).map((e) => e.resource?.id).filter(Boolean);
    expect(historyIds).not.toContain(otherDoctor);
    expect(historyIds).not.toContain(otherPatients);
  });

  it('a staff user without a FHIR identity reads no messages', async () => {
    const client = (await registerClient(t, { client_name: 'No identity', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], scope: 'openid user/*.rs' })).client_id;
    await createUser(t, { username: 'nurse.anon', role: 'NURSE' });
    const { verifier, challenge } = pkce();
    const redirect = await approve(t, { clientId: client, scope: 'openid user/Communication.rs user/Patient.rs', challenge }, 'nurse.anon');
    const token = (await exchangeCode(t, { code: redirect.searchParams.get('code')!, client_id: client, code_verifier: verifier })).json().access_token as string;
    expect(await ids(token, '/fhir/Communication')).toEqual([]);
  });
});

describe('messages are sent as their writer', () => {
  it('a user cannot send as someone else; a missing sender is the writer', async () => {
    const forged = await as(patientToken, { method: 'POST', url: '/fhir/Communication', payload: message(`Practitioner/${doctor1}`, `Patient/${patient1}`, `Patient/${patient1}`, 'forged') });
    expect(forged.statusCode).toBe(403);
    expect(forged.json().resourceType).toBe('OperationOutcome');
    const { sender: _omitted, ...anonymous } = message(`Patient/${patient1}`, `Practitioner/${doctor1}`, `Patient/${patient1}`, 'no sender given');
    const created = await as(patientToken, { method: 'POST', url: '/fhir/Communication', payload: anonymous, headers: { prefer: 'return=representation' } });
    expect(created.statusCode, created.body).toBe(201);
    expect((created.json() as Communication).sender?.reference).toBe(`Patient/${patient1}`);
    // In a transaction too.
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ resource: message(`Practitioner/${doctor2}`, `Patient/${patient1}`, `Patient/${patient1}`, 'forged in a Bundle'), request: { method: 'POST', url: 'Communication' } }],
    };
    expect((await as(doctor1Token, { method: 'POST', url: '/fhir', payload: bundle })).statusCode).toBe(403);
    // Cleanup: the backend removes the extra message so later counts stay as they were.
    expect((await as(t.token, { method: 'DELETE', url: `/fhir/Communication/${(created.json() as Communication).id}` })).statusCode).toBe(204);
  });

  it('only the sender may change a message', async () => {
    const theirs = (await as(doctor1Token, { method: 'GET', url: `/fhir/Communication/${question}` })).json() as Communication;
    const edit = await as(doctor1Token, { method: 'PUT', url: `/fhir/Communication/${question}`, payload: { ...theirs, payload: [{ contentString: 'changed' }] } });
    expect(edit.statusCode).toBe(403);
    const own = (await as(doctor1Token, { method: 'GET', url: `/fhir/Communication/${reply}` })).json() as Communication;
    const fixed = await as(doctor1Token, { method: 'PUT', url: `/fhir/Communication/${reply}`, payload: { ...own, payload: [{ contentString: 'Yes, with food (max 3 a day).' }] } });
    expect(fixed.statusCode, fixed.body).toBe(200);
  });
});

describe('bulk paths', () => {
  it('$everything of the patient brings only the threads the doctor takes part in', async () => {
    const res = await as(doctor1Token, { method: 'GET', url: `/fhir/Patient/${patient1}/$everything` });
    expect(res.statusCode, res.body).toBe(200);
    const found = ((res.json() as Bundle).entry ?? []).map((e) => e.resource as FhirResource).filter((r) => r.resourceType === 'Communication').map((r) => r.id!);
    expect(found.sort()).toEqual([question, reply].sort());
  });

  it('a participant-restricted user exports no Communications and no AuditEvents (no per-row filter in exports)', async () => {
    const headers = { authorization: `Bearer ${doctor1Token}`, prefer: 'respond-async', accept: 'application/fhir+json' };
    const refused = await t.server.http.inject({ method: 'GET', url: '/fhir/$export?_type=Communication', headers });
    expect(refused.statusCode).toBe(403);
    const started = await t.server.http.inject({ method: 'GET', url: '/fhir/$export?_type=Patient,Communication,Practitioner', headers });
    expect(started.statusCode).toBe(403);
    // AuditEvents are ADMIN-only and, like private messages, have no row filter in an export.
    const audit = await t.server.http.inject({ method: 'GET', url: '/fhir/$export?_type=AuditEvent', headers });
    expect(audit.statusCode).toBe(403);
    const all = await t.server.http.inject({ method: 'GET', url: '/fhir/$export', headers });
    expect(all.statusCode, all.body).toBe(202);
    const status = new URL(String(all.headers['content-location'])).pathname;
    let manifest: { output: Array<{ type: string }> } | undefined;
    for (let i = 0; i < 600 && !manifest; i++) {
      const res = await t.server.http.inject({ method: 'GET', url: status, headers: { authorization: `Bearer ${doctor1Token}` } });
      if (res.statusCode === 200) manifest = res.json();
      else {
        expect(res.statusCode, res.body).toBe(202);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    expect(manifest!.output.map((o) => o.type)).toContain('Patient');
    expect(manifest!.output.map((o) => o.type)).not.toContain('Communication');
    expect(manifest!.output.map((o) => o.type)).not.toContain('AuditEvent');
  });
});

describe('read status: $mark-read', () => {
  it('a recipient marks a message read once; the mark names the reader and sets received', async () => {
    const res = await as(patientToken, { method: 'POST', url: `/fhir/Communication/${reply}/$mark-read` });
    expect(res.statusCode, res.body).toBe(200);
    const marked = res.json() as Communication;
    const mark = marked.extension?.find((e) => e.url === READ_BY_EXTENSION);
    expect(mark?.extension?.find((e) => e.url === 'reader')?.valueReference?.reference).toBe(`Patient/${patient1}`);
    expect(Date.parse(mark!.extension!.find((e) => e.url === 'at')!.valueDateTime!)).toBeGreaterThan(Date.now() - 60_000);
    expect(marked.received).toBeTruthy();
    expect(marked.meta?.versionId).toBe('3');
    // Again: nothing changes (no new version).
    const again = await as(patientToken, { method: 'POST', url: `/fhir/Communication/${reply}/$mark-read` });
    expect(again.statusCode).toBe(200);
    expect((again.json() as Communication).meta?.versionId).toBe('3');
    // The doctor sees that the patient read it.
    const read = (await as(doctor1Token, { method: 'GET', url: `/fhir/Communication/${reply}` })).json() as Communication;
    expect(read.extension?.some((e) => e.url === READ_BY_EXTENSION)).toBe(true);
  });

  it('the sender, a non-participant, or an unknown id cannot mark it (403 / 404)', async () => {
    expect((await as(doctor1Token, { method: 'POST', url: `/fhir/Communication/${reply}/$mark-read` })).statusCode).toBe(403);
    expect((await as(doctor2Token, { method: 'POST', url: `/fhir/Communication/${question}/$mark-read` })).statusCode).toBe(403);
    const unknown = await as(patientToken, { method: 'POST', url: '/fhir/Communication/nope/$mark-read' });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().resourceType).toBe('OperationOutcome');
    expect((await t.server.http.inject({ method: 'POST', url: `/fhir/Communication/${reply}/$mark-read` })).statusCode).toBe(401);
  });

  it('the doctor marks the question read', async () => {
    const res = await as(doctor1Token, { method: 'POST', url: `/fhir/Communication/${question}/$mark-read` });
    expect(res.statusCode, res.body).toBe(200);
    expect((res.json() as Communication).extension?.[0]?.extension?.[0]?.valueReference?.reference).toBe(`Practitioner/${doctor1}`);
  });
});

describe('live over websocket: Communication?recipient=Patient/x', () => {
  it('the patient and the doctor get a ping only for messages they may read', async () => {
    const res = await as(t.token, {
      method: 'POST',
      url: '/fhir/Subscription',
      payload: { resourceType: 'Subscription', status: 'requested', reason: 'inbox', criteria: `Communication?recipient=Patient/${patient1}`, channel: { type: 'websocket', payload: 'application/fhir+json' } },
    });
    expect(res.statusCode, res.body).toBe(201);
    const sub = (res.json() as { id: string }).id;

    // The patient (patient/ scopes never cover Subscription) binds to their own inbox with a binding token.
    const tokenRes = await as(patientToken, { method: 'GET', url: `/fhir/Subscription/${sub}/$get-ws-binding-token` });
    expect(tokenRes.statusCode, tokenRes.body).toBe(200);
    const bindingToken = (tokenRes.json() as Parameters).parameter!.find((p) => p.name === 'token')!.valueString!;
    const patientSocket = await openSocket();
    patientSocket.socket.send(`bind-with-token ${bindingToken}`);
    expect(await patientSocket.next()).toBe(`bound ${sub}`);
    // …but not to another patient's inbox.
    const foreign = await as(t.token, {
      method: 'POST',
      url: '/fhir/Subscription',
      payload: { resourceType: 'Subscription', status: 'requested', reason: 'inbox', criteria: `Communication?recipient=Patient/${patient2}`, channel: { type: 'websocket' } },
    });
    const foreignId = (foreign.json() as { id: string }).id;
    expect((await as(patientToken, { method: 'GET', url: `/fhir/Subscription/${foreignId}/$get-ws-binding-token` })).statusCode).toBe(403);

    const doctorSocket = await openSocket(doctor1Token);
    doctorSocket.socket.send(`bind ${sub}`);
    expect(await doctorSocket.next()).toBe(`bound ${sub}`);

    // From doctor 2 to the patient: the patient gets it, doctor 1 does not take part.
    await create(message(`Practitioner/${doctor2}`, `Patient/${patient1}`, `Patient/${patient1}`, 'Bring your old X-rays.') as unknown as Record<string, unknown>);
    const bundle = JSON.parse(await patientSocket.next((m) => m.startsWith('{'))) as Bundle;
    expect(bundle.type).toBe('history');
    // Full-resource: the message itself, judged readable for the patient on that very version.
    expect((bundle.entry?.[1]?.resource as Communication | undefined)?.payload?.[0]?.contentString).toBe('Bring your old X-rays.');
    // From doctor 1: both.
    await create(message(`Practitioner/${doctor1}`, `Patient/${patient1}`, `Patient/${patient1}`, 'See you Friday.') as unknown as Record<string, unknown>, doctor1Token);
    await patientSocket.next((m) => m.startsWith('{'));
    expect(await doctorSocket.next()).toBe(`ping ${sub}`);
    // Both events delivered (the socket checks are done by then), then a moment for the sends.
    for (const until = Date.now() + 20_000; ; ) {
      const status = await as(t.token, { method: 'GET', url: `/fhir/Subscription/${sub}/$status` });
      const params = ((status.json() as Bundle).entry?.[0]?.resource as Parameters).parameter ?? [];
      if ((params.find((p) => p.name === 'delivery-delivered')?.valueInteger ?? 0) >= 2) break;
      expect(Date.now()).toBeLessThan(until);
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(doctorSocket.messages).toEqual([`bound ${sub}`, `ping ${sub}`]);
    patientSocket.socket.close();
    doctorSocket.socket.close();
  });
});
