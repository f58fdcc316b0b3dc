import type { Bundle, Observation, OperationOutcome, Parameters, Subscription } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { xmlToResource } from '../../src/fhir/xml/from-xml.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { startReceiver, until, type Receiver } from './subscriptions-helpers.js';

/**
 * R4 Subscriptions with the rest-hook channel against real local HTTP receivers: criteria
 * matching through the search engine, payloads, custom headers, retries with backoff, the
 * dead letter and error status, deletes, and the subscriber's grant limiting what it receives.
 */
let app: TestApp;
const receivers: Receiver[] = [];

beforeAll(async () => {
  app = await startTestApp({ SUBSCRIPTION_BACKOFF_MS: '50', SUBSCRIPTION_POLL_MS: '100' });
});

afterAll(async () => {
  await app?.close();
  for (const r of receivers) await r.close();
});

async function receiver(answer?: (n: number) => number): Promise<Receiver> {
  const r = await startReceiver(answer);
  receivers.push(r);
  return r;
}


function subscription(criteria: string, endpoint: string, extra: Partial<Subscription> = {}): Subscription {
  return { resourceType: 'Subscription', status: 'requested', reason: 'test', criteria, channel: { type: 'rest-hook', endpoint, payload: 'application/fhir+json' }, ...extra };
}

async function subscribe(sub: Subscription, token?: string): Promise<Subscription & { id: string }> {
  const res = await app.request({ method: 'POST', url: '/fhir/Subscription', payload: sub, ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as Subscription & { id: string };
}

function observation(code: string, value = 1): Observation {
  return { resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code }] }, valueQuantity: { value } };
}

async function create(resource: Observation): Promise<Observation & { id: string }> {
  const res = await app.request({ method: 'POST', url: '/fhir/Observation', payload: resource });
  expect(res.statusCode).toBe(201);
  return res.json() as Observation & { id: string };
}

async function read(id: string): Promise<Subscription> {
  return (await app.request({ method: 'GET', url: `/fhir/Subscription/${id}` })).json() as Subscription;
}

describe('Subscription resources', () => {
  it('are activated on create and refuse bad criteria, channels and headers with an OperationOutcome', async () => {
    const r = await receiver();
    const created = await subscribe(subscription('Observation?code=http://loinc.org|1111-1', r.url));
    expect(created.status).toBe('active');
    for (const [bad, status] of [
      [subscription('Observation?no-such-param=1', r.url), 400],
      [subscription('NotAType?code=1', r.url), 400],
      [subscription('Observation?_sort=date', r.url), 400],
      [subscription('Observation?date=notadate', r.url), 400],
      [{ ...subscription('Observation', r.url), channel: { type: 'sms' as 'rest-hook', endpoint: r.url } }, 422],
      [{ ...subscription('Observation', r.url), channel: { type: 'rest-hook' as const, endpoint: 'ftp://x.org/' } }, 422],
      [{ ...subscription('Observation', r.url), channel: { type: 'rest-hook' as const, endpoint: r.url, header: ['X-Bad\r\nInjected: 1'] } }, 422],
    ] as const) {
      const res = await app.request({ method: 'POST', url: '/fhir/Subscription', payload: bad });
      expect(res.statusCode, JSON.stringify(bad)).toBe(status);
      expect((res.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
    }
    const off = await app.request({ method: 'PUT', url: `/fhir/Subscription/${created.id}`, payload: { ...created, status: 'off' } });
    expect(off.statusCode).toBe(200);
  });

  it('an end time in the past switches the Subscription off', async () => {
    const r = await receiver();
    const created = await subscribe(subscription('Observation', r.url, { end: '2001-01-01T00:00:00Z' }));
    expect(created.status).toBe('off');
  });
});

describe('rest-hook deliveries', () => {
  it('PUT the matching resource with the custom headers; non-matching writes send nothing', async () => {
    const r = await receiver();
    const sub = await subscribe(subscription('Observation?code=http://loinc.org|2222-2&value-quantity=gt5', r.url, {
      channel: { type: 'rest-hook', endpoint: r.url, payload: 'application/fhir+json', header: ['Authorization: Bearer receiver-secret', 'X-Custom: yes'] },
    }));
    await create(observation('2222-2', 1)); // value too small
    await create(observation('3333-3', 9)); // other code
    const hit = await create(observation('2222-2', 9));
    const [got] = await r.waitFor(1);
    expect(got!.method).toBe('PUT');
    expect(got!.path).toBe(`/hook/Observation/${hit.id}`);
    expect(got!.headers.authorization).toBe('Bearer receiver-secret');
    expect(got!.headers['x-custom']).toBe('yes');
    expect((JSON.parse(got!.body) as Observation).id).toBe(hit.id);
    await app.server.subscriptions.dispatcher!.flush();
    await new Promise((res) => setTimeout(res, 300));
    expect(r.received).toHaveLength(1);
    // an update that still matches is notified, an update that no longer matches is not
    await app.request({ method: 'PUT', url: `/fhir/Observation/${hit.id}`, payload: { ...observation('2222-2', 10), id: hit.id } });
    await r.waitFor(2);
    await app.request({ method: 'PUT', url: `/fhir/Observation/${hit.id}`, payload: { ...observation('2222-2', 1), id: hit.id } });
    await app.server.subscriptions.dispatcher!.flush();
    await new Promise((res) => setTimeout(res, 300));
    expect(r.received).toHaveLength(2);
    const status = (await app.request({ method: 'GET', url: `/fhir/Subscription/${sub.id}/$status` })).json() as Bundle;
    const params = (status.entry![0]!.resource as Parameters).parameter!;
    expect(params.find((p) => p.name === 'events-since-subscription-start')?.valueString).toBe('2');
    expect(params.find((p) => p.name === 'delivery-delivered')?.valueInteger).toBe(2);
  });

  it('plain R4 without payload: an empty POST', async () => {
    const r = await receiver();
    const sub = subscription('Observation?code=http://loinc.org|4444-4', r.url);
    delete sub.channel.payload;
    await subscribe(sub);
    await create(observation('4444-4'));
    const [got] = await r.waitFor(1);
    expect(got!.method).toBe('POST');
    expect(got!.path).toBe('/hook');
    expect(got!.body).toBe('');
  });

  it('channel.payload application/fhir+xml: the resource PUT as FHIR XML, a backport notification POSTed as XML; XML on other channels is refused', async () => {
    const plain = await receiver();
    const backport = await receiver();
    await subscribe(subscription('Observation?code=http://loinc.org|4545-4', plain.url, { channel: { type: 'rest-hook', endpoint: plain.url, payload: 'application/fhir+xml' } }));
    await subscribe({
      ...subscription('Observation?code=http://loinc.org|4545-4', backport.url),
      meta: { profile: ['http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription'] },
      channel: {
        type: 'rest-hook',
        endpoint: backport.url,
        payload: 'application/fhir+xml',
        _payload: { extension: [{ url: 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content', valueCode: 'full-resource' }] },
      } as Subscription['channel'],
    });
    const hit = await create(observation('4545-4', 7.25));
    const [put] = await plain.waitFor(1);
    expect(put!.method).toBe('PUT');
    expect(put!.headers['content-type']).toBe('application/fhir+xml');
    expect(xmlToResource(put!.body)).toEqual((await app.request({ method: 'GET', url: `/fhir/Observation/${hit.id}` })).json());
    const [post] = await backport.waitFor(1);
    expect(post!.headers['content-type']).toBe('application/fhir+xml');
    const bundle = xmlToResource(post!.body) as unknown as Bundle;
    expect(bundle.type).toBe('history');
    expect(bundle.entry![1]!.resource).toMatchObject({ resourceType: 'Observation', id: hit.id, valueQuantity: { value: 7.25 } });
    const websocketXml = await app.request({ method: 'POST', url: '/fhir/Subscription', payload: { ...subscription('Observation', plain.url), channel: { type: 'websocket', payload: 'application/fhir+xml' } } });
    expect(websocketXml.statusCode).toBe(422);
    expect(websocketXml.body).toMatch(/rest-hook channels only/);
  });

  it('backport id-only and full-resource: notification Bundles with event numbers; a delete is notified', async () => {
    const idOnly = await receiver();
    const full = await receiver();
    const backport = (endpoint: string, content: string): Subscription => ({
      ...subscription('Observation?code=http://loinc.org|5555-5', endpoint),
      meta: { profile: ['http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription'] },
      channel: {
        type: 'rest-hook',
        endpoint,
        payload: 'application/fhir+json',
        _payload: { extension: [{ url: 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content', valueCode: content }] },
      } as Subscription['channel'],
    });
    const a = await subscribe(backport(idOnly.url, 'id-only'));
    await subscribe(backport(full.url, 'full-resource'));
    const first = await create(observation('5555-5'));
    const second = await create(observation('5555-5'));
    await idOnly.waitFor(2);
    await full.waitFor(2);
    const bundles = idOnly.received.map((x) => JSON.parse(x.body) as Bundle);
    for (const b of bundles) {
      expect(b.type).toBe('history');
      expect(b.entry![0]!.resource!.resourceType).toBe('Parameters');
      expect(b.entry![1]!.resource).toBeUndefined();
    }
    const numbers = bundles.map((b) => (b.entry![0]!.resource as Parameters).parameter!.find((p) => p.name === 'notification-event')!.part!.find((p) => p.name === 'event-number')!.valueString).sort();
    expect(numbers).toEqual(['1', '2']);
    const fullBodies = full.received.map((x) => JSON.parse(x.body) as Bundle);
    expect(fullBodies.map((b) => b.entry![1]!.resource?.id).sort()).toEqual([first.id, second.id].sort());
    // delete: notified to the subscriptions notified of an earlier version
    expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${first.id}` })).statusCode).toBe(204);
    await idOnly.waitFor(3);
    const deleted = JSON.parse(idOnly.received[2]!.body) as Bundle;
    expect(deleted.entry![1]!.request).toEqual({ method: 'DELETE', url: `Observation/${first.id}` });
    const events = (await app.request({ method: 'GET', url: `/fhir/Subscription/${a.id}/$events?eventsSinceNumber=2` })).json() as Bundle;
    expect(events.entry).toHaveLength(3);
  });

  it('retries a failing receiver with backoff until it accepts (fails twice, then 200)', async () => {
    const r = await receiver((n) => (n <= 2 ? 503 : 200));
    const sub = await subscribe(subscription('Observation?code=http://loinc.org|6666-6', r.url));
    await create(observation('6666-6'));
    await r.waitFor(1, 15_000, true);
    expect(r.received).toHaveLength(3);
    // exponential: the 2nd gap is about twice the 1st (50 ms, then 100 ms)
    expect(r.received[2]!.at - r.received[1]!.at).toBeGreaterThanOrEqual(90);
    expect((await read(sub.id)).status).toBe('active');
    const status = (await app.request({ method: 'GET', url: `/fhir/Subscription/${sub.id}/$status` })).json() as Bundle;
    const params = (status.entry![0]!.resource as Parameters).parameter!;
    expect(params.find((p) => p.name === 'delivery-delivered')?.valueInteger).toBe(1);
  });

  it('a receiver that always fails: 3 attempts, a dead letter, the Subscription in error with the reason', async () => {
    const r = await receiver(() => 500);
    const sub = await subscribe(subscription('Observation?code=http://loinc.org|7777-7', r.url));
    await create(observation('7777-7'));
    const errored = await until(async () => {
      const now = await read(sub.id);
      return now.status === 'error' ? now : undefined;
    });
    expect(r.received).toHaveLength(3);
    expect(errored.error).toMatch(/failed after 3 attempt\(s\): rest-hook PUT answered 500/);
    const events = (await app.request({ method: 'GET', url: `/fhir/Subscription/${sub.id}/$events` })).json() as Bundle;
    const event = (events.entry![0]!.resource as Parameters).parameter!.find((p) => p.name === 'notification-event')!;
    expect(event.part!.find((p) => p.name === 'delivery-status')?.valueCode).toBe('dead-letter');
    // in error, nothing more is sent; setting it active again resumes
    await create(observation('7777-7'));
    await app.server.subscriptions.dispatcher!.flush();
    await new Promise((res) => setTimeout(res, 300));
    expect(r.received).toHaveLength(3);
  });

  it("a subscriber whose token cannot read a resource receives no notification carrying it", async () => {
    const allowed = await receiver();
    const denied = await receiver();
    const narrow = await app.tokenFor('system/Subscription.cruds system/Patient.rs');
    await subscribe(subscription('Observation?code=http://loinc.org|8888-8', denied.url), narrow);
    const criteriaAll = subscription('Observation?code=http://loinc.org|8888-8', allowed.url);
    await subscribe(criteriaAll);
    // the narrow token's Patient subscription works: the grant is applied per type
    const patients = await receiver();
    await subscribe(subscription('Patient?family=Subscribable', patients.url), narrow);
    await create(observation('8888-8'));
    await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: 'Subscribable' }] } });
    await allowed.waitFor(1);
    await patients.waitFor(1);
    await app.server.subscriptions.dispatcher!.flush();
    await new Promise((res) => setTimeout(res, 300));
    expect(denied.received).toHaveLength(0);
  });
});

describe('large transactions', () => {
  it('every entry of a 1100-entry transaction Bundle is notified once (batches end inside one timestamp)', { timeout: 180_000 }, async () => {
    const r = await receiver();
    await subscribe(subscription('Observation?code=http://loinc.org|1100-0', r.url));
    const entry = Array.from({ length: 1100 }, () => ({ resource: observation('1100-0'), request: { method: 'POST' as const, url: 'Observation' } }));
    const res = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'transaction', entry } });
    expect(res.statusCode).toBe(200);
    const ids = ((res.json() as Bundle).entry ?? []).map((e) => /Observation\/([^/]+)/.exec(e.response!.location!)![1]);
    await r.waitFor(1100, 150_000);
    await new Promise((res2) => setTimeout(res2, 500));
    const got = r.received.map((x) => x.path.split('/').pop());
    expect(got).toHaveLength(1100);
    expect(new Set(got)).toEqual(new Set(ids));
  });
});

describe('batched deliveries', () => {
  it('the events of one transaction go out as one batch; a failed one is retried alone', async () => {
    // The 2nd request fails once: that event is retried, the others are not sent again.
    const r = await receiver((n) => (n === 2 ? 500 : 200));
    const sub = await subscribe(subscription('Observation?code=http://loinc.org|5555-5', r.url));
    const entry = Array.from({ length: 5 }, (_, i) => ({ resource: observation('5555-5', i), request: { method: 'POST' as const, url: 'Observation' } }));
    const res = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'transaction', entry } });
    expect(res.statusCode).toBe(200);
    const ids = ((res.json() as Bundle).entry ?? []).map((e) => /Observation\/([^/]+)/.exec(e.response!.location!)![1]);
    await r.waitFor(5, 30_000, true);
    await app.server.subscriptions.dispatcher!.flush();
    await new Promise((res2) => setTimeout(res2, 500));
    expect(r.received).toHaveLength(6);
    const accepted = r.accepted().map((x) => x.path.split('/').pop());
    expect(accepted).toHaveLength(5);
    expect(new Set(accepted)).toEqual(new Set(ids));
    const rows = await app.server.subscriptions.state.events(sub.id, 1, 100, 100);
    expect(rows.map((x) => x.status)).toEqual(['delivered', 'delivered', 'delivered', 'delivered', 'delivered']);
    // one dispatch round stored them: one batch (one job)
    expect(new Set(rows.map((x) => x.batchId)).size).toBe(1);
    expect(rows.reduce((n, x) => n + x.attempts, 0)).toBe(6);
    expect((await read(sub.id)).status).toBe('active');
  });
});

describe('late commits', () => {
  // The embedded database runs one transaction at a time: no version can commit late there.
  it.runIf(process.env.DATABASE_URL)('a version committed after the dispatcher moved past its time is still notified once', async () => {
    const r = await receiver();
    await subscribe(subscription('Observation?code=http://loinc.org|6666-6', r.url));
    const before = await create(observation('6666-6', 1));
    await r.waitFor(1, 30_000, true);
    // Stamped now, committed only when released: its version lands behind the dispatch cursor.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const late = app.server.store.transaction(async (tx) => {
      const change = await tx.create(observation('6666-6', 2));
      await gate;
      return change;
    });
    // Far enough behind that it is neither in the cursor's time bucket nor in the window's first.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const after = await create(observation('6666-6', 3));
    await until(async () => (r.accepted().some((x) => x.path.endsWith(`/${after.id}`)) ? true : undefined), 30_000, 'the later write delivered');
    release();
    const { id } = await late;
    await until(async () => (r.accepted().some((x) => x.path.endsWith(`/${id}`)) ? true : undefined), 30_000, 'the late version delivered');
    await app.server.subscriptions.dispatcher!.flush();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const paths = r.accepted().map((x) => x.path.split('/').pop());
    expect(paths.filter((p) => p === id)).toHaveLength(1);
    expect(new Set(paths)).toEqual(new Set([before.id, id, after.id]));
  });
});

describe('Subscription housekeeping', () => {
  it('the CapabilityStatement declares Subscription, its channels and $status / $events', async () => {
    const cs = (await app.request({ method: 'GET', url: '/fhir/metadata' })).json() as { rest: Array<{ resource: Array<{ type: string; documentation?: string; operation?: Array<{ name: string }> }> }> };
    const sub = cs.rest[0]!.resource.find((r) => r.type === 'Subscription')!;
    expect(sub.documentation).toMatch(/Channels: .*rest-hook/);
    expect(sub.operation!.map((o) => o.name)).toEqual(expect.arrayContaining(['status', 'events']));
  });

  it('a deleted Subscription is gone for $status and its pending deliveries are not sent', async () => {
    const r = await receiver(() => 500);
    const sub = await subscribe(subscription('Observation?code=http://loinc.org|9999-9', r.url));
    const del = await app.request({ method: 'DELETE', url: `/fhir/Subscription/${sub.id}` });
    expect(del.statusCode, del.body).toBe(204);
    expect((await app.request({ method: 'GET', url: `/fhir/Subscription/${sub.id}/$status` })).statusCode).toBe(410);
    await create(observation('9999-9'));
    await app.server.subscriptions.dispatcher!.flush();
    await new Promise((res) => setTimeout(res, 300));
    expect(r.received).toHaveLength(0);
  });
});

describe('SUBSCRIPTION_ENDPOINT_ALLOWLIST', () => {
  it('refuses endpoints on other hosts (422) and accepts listed hosts and subdomains', async () => {
    const limited = await startTestApp({ SUBSCRIPTION_ENDPOINT_ALLOWLIST: 'hooks.example.org, *.hospital.internal' });
    try {
      const post = (endpoint: string) => limited.request({ method: 'POST', url: '/fhir/Subscription', payload: subscription('Observation', endpoint) });
      const refused = await post('http://127.0.0.1:9/hook');
      expect(refused.statusCode).toBe(422);
      expect(JSON.stringify(refused.json())).toMatch(/SUBSCRIPTION_ENDPOINT_ALLOWLIST/);
      expect((await post('https://evil.example.org/hook')).statusCode).toBe(422);
      expect((await post('https://hooks.example.org/hook')).statusCode).toBe(201);
      expect((await post('https://lab.hospital.internal/hook')).statusCode).toBe(201);
    } finally {
      await limited.close();
    }
  });
});
