import type { Bundle, Parameters, Patient, Subscription } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { DATA_ABSENT_REASON, MASKED_LABEL } from '../../src/workflows/patient-masking.js';
import { startTestApp, TEST_CLIENT, type TestApp } from '../support/test-app.js';
import { startReceiver, type Receiver } from './subscriptions-helpers.js';

/**
 * Issue 12 leftover (FR-PM-002, role-based masking) on the subscription paths: a subscriber whose
 * role sees Patients masked (conformance/smart-roles.json `mask`) receives the masked copy on
 * rest-hook full-resource and websocket notification Bundles, and a socket bound with a masked
 * role's token gets the masked copy even of a Subscription written by an unmasked client.
 */

const NATIONAL_ID = 'https://fhir.hospital.example.org/sid/national-id';
let t: TestApp;
let wsUrl: string;
let labTech: string;
const receivers: Receiver[] = [];

/** National ids are unique per patient (FR-PM-001): one per Patient written here. */
let written = 0;
const nationalIds = new Map<string, string>();

const patient = (family: string, nationalId: string): Patient => ({
  resourceType: 'Patient',
  name: [{ family, given: ['Mia'] }],
  identifier: [
    { system: NATIONAL_ID, value: nationalId },
    { system: 'https://other.example.org/mrn', value: 'MRN-1' },
  ],
  telecom: [
    { system: 'phone', value: '+84 90 123 4567', use: 'mobile' },
    { system: 'email', value: 'mia@example.org' },
  ],
  address: [{ use: 'home', line: ['12 Hidden Street'], city: 'Hanoi' }],
  birthDate: '1990-02-03',
});

function expectMasked(p: Patient): void {
  const text = JSON.stringify(p);
  for (const secret of [nationalIds.get(p.id!)!, '123 4567', 'Hidden Street', 'Hanoi']) expect(text).not.toContain(secret);
  const national = p.identifier!.find((i) => i.system === NATIONAL_ID)!;
  expect(national.value).toBeUndefined();
  expect((national as { _value?: { extension?: unknown[] } })._value?.extension?.[0]).toEqual({ url: DATA_ABSENT_REASON, valueCode: 'masked' });
  expect(p.telecom!.find((c) => c.system === 'email')!.value).toBe('mia@example.org');
  expect(p.birthDate).toBe('1990-02-03');
  expect(p.meta?.security).toContainEqual(MASKED_LABEL);
}

function expectClear(p: Patient): void {
  const text = JSON.stringify(p);
  expect(text).toContain(nationalIds.get(p.id!)!);
  expect(text).toContain('Hidden Street');
  expect(p.meta?.security ?? []).not.toContainEqual(MASKED_LABEL);
}

async function subscribe(sub: Partial<Subscription>, token = t.token): Promise<string> {
  const res = await t.request({
    method: 'POST',
    url: '/fhir/Subscription',
    headers: { authorization: `Bearer ${token}` },
    payload: { resourceType: 'Subscription', status: 'requested', reason: 'masking test', ...sub },
  });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as { id: string }).id;
}

async function createPatient(family: string): Promise<string> {
  const nationalId = `0791${String(++written).padStart(8, '0')}`;
  const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: patient(family, nationalId) });
  expect(res.statusCode, res.body).toBe(201);
  const id = (res.json() as { id: string }).id;
  nationalIds.set(id, nationalId);
  return id;
}

const fullResourceWebsocket = {
  type: 'websocket',
  payload: 'application/fhir+json',
  _payload: { extension: [{ url: 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content', valueCode: 'full-resource' }] },
} as Subscription['channel'];

/** Opens a socket, binds with a binding token fetched with `token`, and resolves the first notification Bundle. */
async function firstBundle(subscriptionId: string, token: string, trigger: () => Promise<unknown>): Promise<Bundle> {
  const res = await t.request({ method: 'GET', url: `/fhir/Subscription/${subscriptionId}/$get-ws-binding-token`, headers: { authorization: `Bearer ${token}` } });
  expect(res.statusCode, res.body).toBe(200);
  const binding = (res.json() as Parameters).parameter!.find((p) => p.name === 'token')!.valueString!;
  const socket = new WebSocket(wsUrl);
  try {
    const messages: string[] = [];
    socket.on('message', (d) => messages.push(String(d)));
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    socket.send(`bind-with-token ${binding}`);
    const wait = async (test: (m: string) => boolean, what: string) => {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const found = messages.find(test);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no ${what}; got ${JSON.stringify(messages).slice(0, 300)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await wait((m) => m === `bound ${subscriptionId}`, 'bound');
    await trigger();
    return JSON.parse(await wait((m) => m.startsWith('{'), 'notification Bundle')) as Bundle;
  } finally {
    socket.close();
  }
}

beforeAll(async () => {
  t = await startTestApp({ SUBSCRIPTION_POLL_MS: '100', SUBSCRIPTION_BACKOFF_MS: '50' });
  await t.server.http.listen({ port: 0, host: '127.0.0.1' });
  wsUrl = `ws://127.0.0.1:${(t.server.http.server.address() as { port: number }).port}/ws/subscriptions`;
  // A signed-in LAB_TECHNICIAN (its role masks national id, phone and address) whose token may
  // also manage Subscriptions, as a deployment granting that role subscriptions would issue.
  labTech = await t.server.tokens.issue({ sub: 'lab-tech-1', clientId: TEST_CLIENT.id, scope: 'user/Subscription.cruds user/Patient.rs', fhirUser: 'Practitioner/lab-tech-1', role: 'LAB_TECHNICIAN' });
}, 300_000);

afterAll(async () => {
  for (const r of receivers) await r.close();
  await t?.close();
});

describe('issue 12 FR-PM-002: masking reaches Subscription payloads', () => {
  it('rest-hook full-resource: the masked role gets the masked Patient, an unmasked client the clear one', async () => {
    const masked = await startReceiver();
    const clear = await startReceiver();
    receivers.push(masked, clear);
    const channel = (endpoint: string) => ({ type: 'rest-hook' as const, endpoint, payload: 'application/fhir+json' });
    await subscribe({ criteria: 'Patient?family=MaskedHook', channel: channel(masked.url) }, labTech);
    await subscribe({ criteria: 'Patient?family=MaskedHook', channel: channel(clear.url) });
    const id = await createPatient('MaskedHook');
    const [toMasked] = await masked.waitFor(1);
    const [toClear] = await clear.waitFor(1);
    const maskedBody = JSON.parse(toMasked!.body) as Patient;
    expect(maskedBody.id).toBe(id);
    expectMasked(maskedBody);
    expectClear(JSON.parse(toClear!.body) as Patient);
  });

  it('websocket full-resource: the notification Bundle carries the masked Patient for a masked subscriber', async () => {
    const sub = await subscribe({ criteria: 'Patient?family=MaskedSocket', channel: fullResourceWebsocket }, labTech);
    const bundle = await firstBundle(sub, labTech, () => createPatient('MaskedSocket'));
    const focus = bundle.entry![1]!.resource as Patient;
    expect(focus.resourceType).toBe('Patient');
    expectMasked(focus);
  });

  it("websocket: a socket bound with a masked role's token gets the masked copy of an unmasked client's Subscription", async () => {
    const sub = await subscribe({ criteria: 'Patient?family=MaskedBinder', channel: fullResourceWebsocket });
    const asClient = await firstBundle(sub, t.token, () => createPatient('MaskedBinder'));
    expectClear(asClient.entry![1]!.resource as Patient);
    const asLabTech = await firstBundle(sub, labTech, () => createPatient('MaskedBinder'));
    expectMasked(asLabTech.entry![1]!.resource as Patient);
  });
});
