import type { Bundle, CapabilityStatement, DiagnosticReport, Encounter, Observation, OperationOutcome, Parameters, ParametersParameter, Subscription } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { startReceiver, until, type Receiver, type ReceivedRequest } from './subscriptions-helpers.js';

/**
 * Topic-based Subscriptions (R4 Subscriptions Backport IG) against real local HTTP receivers:
 * topics from conformance/subscription-topics, filter criteria checked at create, handshake,
 * event notifications with the topic and event numbers, FHIRPath criteria on the version before,
 * heartbeats, $status / $events, discovery in the CapabilityStatement and the dead-letter list.
 */
const TOPICS = 'https://fhir.hospital.example.org/SubscriptionTopic';
const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';

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


function topicSubscription(topic: string, endpoint: string, opts: { filters?: string[]; payload?: 'empty' | 'id-only' | 'full-resource'; heartbeat?: number } = {}): Subscription {
  const sub: Subscription & { _criteria?: unknown } = {
    resourceType: 'Subscription',
    meta: { profile: [`${BACKPORT}/backport-subscription`] },
    status: 'requested',
    reason: 'test',
    criteria: `${TOPICS}/${topic}`,
    channel: {
      type: 'rest-hook',
      endpoint,
      payload: 'application/fhir+json',
      _payload: { extension: [{ url: `${BACKPORT}/backport-payload-content`, valueCode: opts.payload ?? 'id-only' }] },
      ...(opts.heartbeat !== undefined ? { extension: [{ url: `${BACKPORT}/backport-heartbeat-period`, valueUnsignedInt: opts.heartbeat }] } : {}),
    } as Subscription['channel'],
  };
  if (opts.filters) sub._criteria = { extension: opts.filters.map((f) => ({ url: `${BACKPORT}/backport-filter-criteria`, valueString: f })) };
  return sub;
}

async function subscribe(sub: Subscription): Promise<Subscription & { id: string }> {
  const res = await app.request({ method: 'POST', url: '/fhir/Subscription', payload: sub });
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as Subscription & { id: string };
}

async function write<T extends { resourceType: string; id?: string }>(resource: T): Promise<T & { id: string; meta: { versionId: string } }> {
  const res = resource.id
    ? await app.request({ method: 'PUT', url: `/fhir/${resource.resourceType}/${resource.id}`, payload: resource })
    : await app.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource });
  expect([200, 201]).toContain(res.statusCode);
  return res.json() as T & { id: string; meta: { versionId: string } };
}

/** The SubscriptionStatus of a received notification Bundle. */
function statusOf(request: ReceivedRequest): { type?: string; topic?: string; events: ParametersParameter[]; since?: string; bundle: Bundle } {
  const bundle = JSON.parse(request.body) as Bundle;
  const params = (bundle.entry![0]!.resource as Parameters).parameter ?? [];
  return {
    type: params.find((p) => p.name === 'type')?.valueCode,
    topic: params.find((p) => p.name === 'topic')?.valueCanonical,
    since: params.find((p) => p.name === 'events-since-subscription-start')?.valueString,
    events: params.filter((p) => p.name === 'notification-event'),
    bundle,
  };
}

const eventsOf = (r: Receiver) => r.received.filter((x) => statusOf(x).type === 'event-notification');
const focusOf = (e: ParametersParameter) => e.part!.find((p) => p.name === 'focus')?.valueReference?.reference ?? '';

async function settle(): Promise<void> {
  await app.server.subscriptions.dispatcher!.flush();
  await new Promise((r) => setTimeout(r, 300));
}

describe('Topic-based Subscriptions (Subscriptions Backport IG)', () => {
  it('are discoverable: topic canonicals, the backport profile and the websocket URL in /metadata; $topics with filters', async () => {
    const cs = (await app.request({ method: 'GET', url: '/fhir/metadata' })).json() as CapabilityStatement;
    const sub = cs.rest![0]!.resource!.find((r) => r.type === 'Subscription')!;
    const canonicals = (sub.extension ?? []).filter((e) => e.url === `${BACKPORT}/capabilitystatement-subscriptiontopic-canonical`).map((e) => e.valueCanonical);
    expect(canonicals).toEqual(expect.arrayContaining([`${TOPICS}/encounter-start`, `${TOPICS}/patient-admission`, `${TOPICS}/lab-result-ready`, `${TOPICS}/appointment-booked`]));
    expect(sub.supportedProfile).toContain(`${BACKPORT}/backport-subscription`);
    const ws = cs.rest![0]!.extension?.find((e) => e.url === 'http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket');
    expect(ws?.valueUri).toBe('ws://localhost:8080/ws/subscriptions');
    expect(sub.operation!.map((o) => o.name)).toEqual(expect.arrayContaining(['status', 'events', 'topics', 'dead-letters']));

    const topics = (await app.request({ method: 'GET', url: '/fhir/Subscription/$topics' })).json() as Parameters;
    const lab = topics.parameter!.find((p) => p.part!.some((x) => x.name === 'url' && x.valueCanonical === `${TOPICS}/lab-result-ready`))!;
    expect(lab.part!.filter((x) => x.name === 'resource-trigger')).toHaveLength(2);
    const filters = lab.part!.filter((x) => x.name === 'can-filter-by').map((f) => `${f.part!.find((x) => x.name === 'resource')?.valueCode}.${f.part!.find((x) => x.name === 'filter-parameter')?.valueString}`);
    expect(filters).toContain('Observation.patient');
  });

  it('refuses unknown topics, filters the topic does not allow and bad filter values (422 OperationOutcome)', async () => {
    const r = await receiver();
    const cases: Array<[Subscription, RegExp]> = [
      [{ ...topicSubscription('encounter-start', r.url), criteria: `${TOPICS}/no-such-topic` }, /unknown subscription topic/],
      [topicSubscription('encounter-start', r.url, { filters: ['Encounter?status=finished'] }), /cannot be filtered by 'status'/],
      [topicSubscription('encounter-start', r.url, { filters: ['Observation?patient=Patient/x'] }), /a type topic .* triggers on/],
      [topicSubscription('encounter-start', r.url, { filters: ['Encounter?patient:missing=true'] }), /does not allow the modifier :missing/],
      [topicSubscription('lab-result-ready', r.url, { filters: ['Observation?code=a|b|c'] }), /not a valid search: .*too many '\|'/],
      [
        { ...topicSubscription('encounter-start', r.url), channel: { ...topicSubscription('encounter-start', r.url).channel, extension: [{ url: `${BACKPORT}/backport-heartbeat-period`, valueString: 'often' }] } as Subscription['channel'] },
        /heartbeat period extension needs valueUnsignedInt/,
      ],
    ];
    for (const [sub, why] of cases) {
      const res = await app.request({ method: 'POST', url: '/fhir/Subscription', payload: sub });
      expect(res.statusCode, res.body).toBe(422);
      const outcome = res.json() as OperationOutcome;
      expect(outcome.resourceType).toBe('OperationOutcome');
      expect(outcome.issue.map((i) => i.diagnostics).join(' ')).toMatch(why);
    }
    // A Subscription that was refused is not stored: nothing reaches the receiver.
    await settle();
    expect(r.received).toHaveLength(0);
  });

  it('handshake on activation, then event notifications only when the topic trigger and the filter hold', async () => {
    const r = await receiver();
    const sub = await subscribe(topicSubscription('encounter-start', r.url, { filters: ['Encounter?patient=Patient/topic-a'] }));
    expect(sub.status).toBe('active');
    const [handshake] = await r.waitFor(1, 30_000);
    const hs = statusOf(handshake!);
    expect(hs.type).toBe('handshake');
    expect(hs.topic).toBe(`${TOPICS}/encounter-start`);
    expect(hs.since).toBe('0');

    const planned = await write<Encounter>({ resourceType: 'Encounter', status: 'planned', class: { code: 'AMB' }, subject: { reference: 'Patient/topic-a' } });
    const other = await write<Encounter>({ resourceType: 'Encounter', status: 'in-progress', class: { code: 'AMB' }, subject: { reference: 'Patient/topic-b' } });
    await settle();
    expect(eventsOf(r)).toHaveLength(0);
    // planned → in-progress: the trigger fires (FHIRPath on the version before)
    const started = await write<Encounter>({ ...planned, status: 'in-progress' });
    await until(async () => (eventsOf(r).length >= 1 ? true : undefined), 30_000, 'the encounter-start notification');
    // in-progress → in-progress (another change): no new start
    await write<Encounter>({ ...started, serviceType: { text: 'changed' } });
    await write<Encounter>({ ...other, serviceType: { text: 'changed' } });
    await settle();
    const events = eventsOf(r);
    expect(events).toHaveLength(1);
    const n = statusOf(events[0]!);
    expect(n.topic).toBe(`${TOPICS}/encounter-start`);
    expect(n.since).toBe('1');
    expect(n.events[0]!.part!.find((p) => p.name === 'event-number')?.valueString).toBe('1');
    expect(focusOf(n.events[0]!)).toMatch(new RegExp(`/Encounter/${planned.id}/_history/2$`));
    // id-only: the focus entry without the resource
    expect(n.bundle.entry![1]!.fullUrl).toMatch(new RegExp(`/Encounter/${planned.id}$`));
    expect(n.bundle.entry![1]!.resource).toBeUndefined();

    const status = (await app.request({ method: 'GET', url: `/fhir/Subscription/${sub.id}/$status` })).json() as Bundle;
    const sp = (status.entry![0]!.resource as Parameters).parameter!;
    expect(sp.find((p) => p.name === 'topic')?.valueCanonical).toBe(`${TOPICS}/encounter-start`);
    expect(sp.find((p) => p.name === 'events-since-subscription-start')?.valueString).toBe('1');
    expect(sp.find((p) => p.name === 'delivery-delivered')?.valueInteger).toBe(1);
    const ev = (await app.request({ method: 'GET', url: `/fhir/Subscription/${sub.id}/$events?eventsSinceNumber=1&eventsUntilNumber=1` })).json() as Bundle;
    const listed = (ev.entry![0]!.resource as Parameters).parameter!.filter((p) => p.name === 'notification-event');
    expect(listed).toHaveLength(1);
    expect(focusOf(listed[0]!)).toMatch(new RegExp(`/Encounter/${planned.id}/_history/2$`));
    const none = (await app.request({ method: 'GET', url: `/fhir/Subscription/${sub.id}/$events?eventsSinceNumber=2` })).json() as Bundle;
    expect((none.entry![0]!.resource as Parameters).parameter!.filter((p) => p.name === 'notification-event')).toHaveLength(0);
  });

  it('a topic with triggers on two types: query criteria on each, a filter on one type leaves the other unfiltered; full-resource', async () => {
    const r = await receiver();
    await subscribe(topicSubscription('lab-result-ready', r.url, { payload: 'full-resource', filters: ['Observation?patient=Patient/lab-a'] }));
    await r.waitFor(1, 30_000);
    const lab = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] };
    const obs = (patient: string, status: Observation['status']): Observation => ({ resourceType: 'Observation', status, category: [lab], code: { text: 'Hb' }, subject: { reference: `Patient/${patient}` } });
    await write(obs('lab-a', 'preliminary'));
    await write(obs('lab-b', 'final'));
    const hit = await write(obs('lab-a', 'final'));
    const report = await write<DiagnosticReport>({ resourceType: 'DiagnosticReport', status: 'final', category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0074', code: 'LAB' }] }], code: { text: 'CBC' }, subject: { reference: 'Patient/lab-b' } });
    await until(async () => (eventsOf(r).length >= 2 ? true : undefined), 30_000, 'two lab notifications').catch((e) => {
      console.log(r.received.map((x) => JSON.stringify(statusOf(x).events)));
      throw e;
    });
    await settle();
    const focuses = eventsOf(r).map((x) => focusOf(statusOf(x).events[0]!));
    expect(focuses).toHaveLength(2);
    expect(focuses.some((f) => f.includes(`/Observation/${hit.id}/_history/1`))).toBe(true);
    expect(focuses.some((f) => f.includes(`/DiagnosticReport/${report.id}/_history/1`))).toBe(true);
    const withObservation = eventsOf(r).map((x) => statusOf(x).bundle).find((b) => b.entry![1]?.resource?.resourceType === 'Observation')!;
    expect((withObservation.entry![1]!.resource as Observation).subject?.reference).toBe('Patient/lab-a');
  });

  it('a filter the search engine refuses when matching puts that Subscription in error; others are still notified', async () => {
    const broken = await receiver();
    const fine = await receiver();
    const bad = await subscribe(topicSubscription('lab-result-ready', broken.url, { filters: ['Observation?code:in=http://example.org/ValueSet/unknown-here'] }));
    await subscribe(topicSubscription('lab-result-ready', fine.url, { filters: ['Observation?patient=Patient/lab-c'] }));
    await broken.waitFor(1, 30_000);
    await fine.waitFor(1, 30_000);
    const lab = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] };
    await write<Observation>({ resourceType: 'Observation', status: 'final', category: [lab], code: { text: 'K' }, subject: { reference: 'Patient/lab-c' } });
    await until(async () => (eventsOf(fine).length >= 1 ? true : undefined), 30_000, 'the notification of the healthy Subscription');
    const now = (await app.request({ method: 'GET', url: `/fhir/Subscription/${bad.id}` })).json() as Subscription;
    if (now.status === 'error') expect(now.error).toMatch(/criteria cannot be searched/);
    else expect(eventsOf(broken)).toHaveLength(0);
  });

  it('heartbeats when nothing was sent for the heartbeat period', async () => {
    const r = await receiver();
    const sub = await subscribe(topicSubscription('appointment-booked', r.url, { heartbeat: 1 }));
    const got = await until(async () => (r.received.some((x) => statusOf(x).type === 'heartbeat') ? r.received : undefined), 30_000, 'a heartbeat');
    const hb = statusOf(got.find((x) => statusOf(x).type === 'heartbeat')!);
    expect(hb.since).toBe('0');
    expect(hb.events).toHaveLength(0);
    expect(statusOf(got[0]!).type).toBe('handshake');
    // Heartbeats are not events.
    const ev = (await app.request({ method: 'GET', url: `/fhir/Subscription/${sub.id}/$events` })).json() as Bundle;
    expect((ev.entry![0]!.resource as Parameters).parameter!.filter((p) => p.name === 'notification-event')).toHaveLength(0);
    // Switched off: no more heartbeats.
    await app.request({ method: 'PUT', url: `/fhir/Subscription/${sub.id}`, payload: { ...sub, status: 'off' } });
    await settle();
    const count = r.received.length;
    await new Promise((res) => setTimeout(res, 2500));
    expect(r.received.length).toBe(count);
  });

  it('a failing handshake puts the Subscription in error; administrators list the dead letters', async () => {
    const r = await receiver(() => 503);
    const sub = await subscribe(topicSubscription('appointment-booked', r.url));
    const errored = await until(async () => {
      const now = (await app.request({ method: 'GET', url: `/fhir/Subscription/${sub.id}` })).json() as Subscription;
      return now.status === 'error' ? now : undefined;
    }, 30_000, 'status error');
    expect(errored.error).toMatch(/handshake failed after 3 attempt\(s\): rest-hook POST answered 503/);
    expect(r.received).toHaveLength(3);

    const dead = await app.request({ method: 'GET', url: '/fhir/Subscription/$dead-letters?_count=50' });
    expect(dead.statusCode).toBe(200);
    const mine = (dead.json() as Parameters).parameter!.find((p) => p.part!.some((x) => x.name === 'subscription' && x.valueReference?.reference?.endsWith(`/Subscription/${sub.id}`)));
    expect(mine?.part!.find((x) => x.name === 'kind')?.valueCode).toBe('handshake');
    expect(mine?.part!.find((x) => x.name === 'error')?.valueString).toMatch(/503/);

    const reader = await app.tokenFor('system/Subscription.read');
    const denied = await app.request({ method: 'GET', url: '/fhir/Subscription/$dead-letters', headers: { authorization: `Bearer ${reader}` } });
    expect(denied.statusCode).toBe(403);
    expect((denied.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
    const bad = await app.request({ method: 'GET', url: '/fhir/Subscription/$dead-letters?_count=abc' });
    expect(bad.statusCode).toBe(400);
  });
});
