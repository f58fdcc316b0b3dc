import type { Bundle, Parameters, Subscription } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startTestApp, TEST_CLIENT, type TestApp } from '../support/test-app.js';
import { criteriaConfinedTo, WebSocketHub } from '../../src/subscriptions/channels/websocket-hub.js';
import type { ChannelSender, Delivery } from '../../src/subscriptions/channels/types.js';

/**
 * The websocket channel over real sockets against a listening server: R4 `bind` / `bound` /
 * `ping`, the Backport IG's `$get-ws-binding-token` and `bind-with-token` with notification
 * Bundles, several Subscriptions on one socket, the socket token's scopes limiting what is
 * pushed, and (PostgreSQL + Redis) fan-out between two server processes on one database.
 */

let t: TestApp;
let wsUrl: string;

async function clientToken(app: TestApp, scope: string): Promise<string> {
  const res = await app.server.http.inject({
    method: 'POST',
    url: '/auth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${TEST_CLIENT.id}:${TEST_CLIENT.secret}`).toString('base64')}` },
    payload: `grant_type=client_credentials&scope=${encodeURIComponent(scope)}`,
  });
  expect(res.statusCode, res.body).toBe(200);
  return (res.json() as { access_token: string }).access_token;
}

/** A socket that keeps every text message; `next` waits for the next one matching. */
class Client {
  readonly messages: string[] = [];
  private waiters: Array<{ test: (m: string) => boolean; resolve: (m: string) => void }> = [];
  private seen = 0;

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const text = String(data);
      this.messages.push(text);
      for (const w of [...this.waiters]) {
        if (w.test(text)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(text);
        }
      }
    });
  }

  static async open(url: string, token?: string): Promise<Client> {
    const socket = new WebSocket(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
    const client = new Client(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
      socket.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
    return client;
  }

  /** The first message from now on (or already received after the last `next`) that passes `test`. */
  next(test: (m: string) => boolean = () => true, timeoutMs = 10_000): Promise<string> {
    const earlier = this.messages.slice(this.seen).find(test);
    if (earlier) {
      this.seen = this.messages.indexOf(earlier) + 1;
      return Promise.resolve(earlier);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no message within ${timeoutMs} ms; got ${JSON.stringify(this.messages).slice(0, 500)}`)), timeoutMs);
      this.waiters.push({
        test,
        resolve: (m) => {
          clearTimeout(timer);
          this.seen = this.messages.length;
          resolve(m);
        },
      });
    });
  }

  send(text: string): void {
    this.socket.send(text);
  }

  close(): void {
    this.socket.close();
  }
}

async function createSubscription(app: TestApp, criteria: string, extra: Partial<Subscription> = {}): Promise<string> {
  const res = await app.request({
    method: 'POST',
    url: '/fhir/Subscription',
    payload: { resourceType: 'Subscription', status: 'requested', reason: 'test', criteria, channel: { type: 'websocket' }, ...extra },
  });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as { id: string }).id;
}

async function createObservation(app: TestApp, code: string, token?: string): Promise<string> {
  const res = await app.request({
    method: 'POST',
    url: '/fhir/Observation',
    headers: token ? { authorization: `Bearer ${token}` } : {},
    payload: { resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code }] } },
  });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as { id: string }).id;
}

/** Waits until the delivery layer counts `n` delivered events of `sub` ($status), then a little more for fan-out. */
async function waitDelivered(app: TestApp, sub: string, n: number): Promise<void> {
  const until = Date.now() + 20_000;
  for (;;) {
    const res = await app.request({ method: 'GET', url: `/fhir/Subscription/${sub}/$status` });
    const params = ((res.json() as Bundle).entry?.[0]?.resource as Parameters | undefined)?.parameter ?? [];
    if ((params.find((p) => p.name === 'delivery-delivered')?.valueInteger ?? 0) >= n) break;
    if (Date.now() > until) throw new Error(`not ${n} deliveries: ${JSON.stringify(params)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 300));
}

async function bindingToken(app: TestApp, url: string, token = app.token) {
  const res = await app.request({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
  return res;
}

beforeAll(async () => {
  t = await startTestApp({ SUBSCRIPTION_POLL_MS: '100', SUBSCRIPTION_BACKOFF_MS: '50' });
  await t.server.http.listen({ port: 0, host: '127.0.0.1' });
  const port = (t.server.http.server.address() as { port: number }).port;
  wsUrl = `ws://127.0.0.1:${port}/ws/subscriptions`;
}, 120_000);

afterAll(async () => {
  await t?.close();
});

describe('R4 websocket: bind <id> with the upgrade request\'s token', () => {
  it('answers bound <id> and pushes ping <id> for each matching write, nothing for others', async () => {
    const sub = await createSubscription(t, 'Observation?code=http://loinc.org|1111-1');
    const client = await Client.open(wsUrl, t.token);
    client.send(`bind ${sub}`);
    expect(await client.next()).toBe(`bound ${sub}`);
    await createObservation(t, '9999-9');
    await createObservation(t, '1111-1');
    expect(await client.next()).toBe(`ping ${sub}`);
    await createObservation(t, '1111-1');
    expect(await client.next()).toBe(`ping ${sub}`);
    expect(client.messages).toEqual([`bound ${sub}`, `ping ${sub}`, `ping ${sub}`]);
    client.close();
  });

  it('refuses bind without a token on the upgrade, unknown commands and ids, and a forged upgrade token (401)', async () => {
    const sub = await createSubscription(t, 'Observation?code=http://loinc.org|2222-2');
    const anonymous = await Client.open(wsUrl);
    anonymous.send(`bind ${sub}`);
    expect(await anonymous.next()).toMatch(new RegExp(`^error ${sub} bind needs .*access token`));
    anonymous.send('hello world');
    expect(await anonymous.next()).toMatch(/^error unknown command "hello"/);
    anonymous.send('bind');
    expect(await anonymous.next()).toMatch(/^error expected/);
    anonymous.send('bind-with-token not-a-token');
    expect(await anonymous.next()).toBe('error the binding token is invalid or expired');
    anonymous.close();

    const authed = await Client.open(wsUrl, t.token);
    authed.send('bind no-such-subscription');
    expect(await authed.next()).toBe('error no-such-subscription unknown Subscription');
    authed.send('bind ../../x');
    expect(await authed.next()).toMatch(/^error .* not a Subscription id/);
    authed.close();

    await expect(Client.open(wsUrl, 'a.b.c')).rejects.toThrow(/HTTP 401/);
  });

  it('a rest-hook Subscription cannot be bound', async () => {
    const res = await t.request({
      method: 'POST',
      url: '/fhir/Subscription',
      payload: { resourceType: 'Subscription', status: 'requested', reason: 'test', criteria: 'Patient?name=x', channel: { type: 'rest-hook', endpoint: 'http://127.0.0.1:9/hook' } },
    });
    expect(res.statusCode, res.body).toBe(201);
    const id = (res.json() as { id: string }).id;
    const client = await Client.open(wsUrl, t.token);
    client.send(`bind ${id}`);
    expect(await client.next()).toBe(`error ${id} the Subscription does not use the websocket channel`);
    client.close();
    const token = await bindingToken(t, `/fhir/Subscription/${id}/$get-ws-binding-token`);
    expect(token.statusCode).toBe(400);
    expect(token.json().resourceType).toBe('OperationOutcome');
  });
});

describe('Backport IG: $get-ws-binding-token and bind-with-token', () => {
  it('issues a short-lived token naming the Subscription and the socket URL', async () => {
    const sub = await createSubscription(t, 'Observation?code=http://loinc.org|3333-3');
    const res = await bindingToken(t, `/fhir/Subscription/${sub}/$get-ws-binding-token`);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    const p = res.json() as Parameters;
    const value = (name: string) => p.parameter?.find((x) => x.name === name);
    expect(value('token')?.valueString).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    expect(value('subscription')?.valueString).toBe(sub);
    expect(value('websocket-url')?.valueUrl).toBe('ws://localhost:8080/ws/subscriptions');
    const expires = Date.parse(value('expiration')!.valueDateTime!);
    expect(expires).toBeGreaterThan(Date.now());
    expect(expires).toBeLessThanOrEqual(Date.now() + 61_000);
    const metadata = (await t.request({ method: 'GET', url: '/fhir/metadata' })).json() as { rest: Array<{ resource: Array<{ type: string; operation?: Array<{ name: string }> }> }> };
    const subscription = metadata.rest[0]!.resource.find((r) => r.type === 'Subscription');
    expect(subscription?.operation?.map((o) => o.name)).toContain('get-ws-binding-token');
  });

  it('binds several Subscriptions on one socket and pushes notification Bundles for each', async () => {
    const first = await createSubscription(t, 'Observation?code=http://loinc.org|4444-4', {
      meta: { profile: ['http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription'] },
      channel: { type: 'websocket', payload: 'application/fhir+json', _payload: { extension: [{ url: 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content', valueCode: 'full-resource' }] } } as Subscription['channel'],
    });
    const second = await createSubscription(t, 'Observation?code=http://loinc.org|5555-5');
    const res = await bindingToken(t, `/fhir/Subscription/$get-ws-binding-token?id=${first}&id=${second}`);
    expect(res.statusCode, res.body).toBe(200);
    const token = (res.json() as Parameters).parameter!.find((x) => x.name === 'token')!.valueString!;

    // No bearer token on the socket: the binding token carries the grant.
    const client = await Client.open(wsUrl);
    client.send(`bind-with-token ${token}`);
    const bound = [await client.next(), await client.next()].sort();
    expect(bound).toEqual([`bound ${first}`, `bound ${second}`].sort());

    const obs = await createObservation(t, '4444-4');
    const bundle = JSON.parse(await client.next((m) => m.startsWith('{'))) as Bundle;
    expect(bundle.resourceType).toBe('Bundle');
    expect(bundle.type).toBe('history');
    const status = bundle.entry![0]!.resource as Parameters;
    expect(status.parameter!.find((x) => x.name === 'subscription')?.valueReference?.reference).toMatch(new RegExp(`/Subscription/${first}$`));
    expect(status.parameter!.find((x) => x.name === 'events-since-subscription-start')?.valueString).toBe('1');
    expect(bundle.entry![1]!.resource).toMatchObject({ resourceType: 'Observation', id: obs });

    await createObservation(t, '5555-5');
    const other = JSON.parse(await client.next((m) => m.startsWith('{'))) as Bundle;
    const otherStatus = other.entry![0]!.resource as Parameters;
    expect(otherStatus.parameter!.find((x) => x.name === 'subscription')?.valueReference?.reference).toMatch(new RegExp(`/Subscription/${second}$`));
    // Payload empty (plain R4 without channel.payload): no resource in the Bundle.
    expect(other.entry!.length).toBe(1);

    client.send(`unbind ${second}`);
    expect(await client.next()).toBe(`unbound ${second}`);
    client.close();
  });

  it('needs an access token that may read the Subscription (401 / 403 / 404 as OperationOutcome)', async () => {
    const sub = await createSubscription(t, 'Observation?code=http://loinc.org|6666-6');
    const none = await t.server.http.inject({ method: 'GET', url: `/fhir/Subscription/${sub}/$get-ws-binding-token` });
    expect(none.statusCode).toBe(401);
    expect(none.json().resourceType).toBe('OperationOutcome');
    const observationsOnly = await clientToken(t, 'system/Observation.rs');
    const forbidden = await bindingToken(t, `/fhir/Subscription/${sub}/$get-ws-binding-token`, observationsOnly);
    expect(forbidden.statusCode).toBe(403);
    expect(forbidden.json().resourceType).toBe('OperationOutcome');
    const unknown = await bindingToken(t, '/fhir/Subscription/nope/$get-ws-binding-token');
    expect(unknown.statusCode).toBe(404);
    const noIds = await bindingToken(t, '/fhir/Subscription/$get-ws-binding-token');
    expect(noIds.statusCode).toBe(400);
    // A binding token altered by one character binds nothing.
    const good = (await bindingToken(t, `/fhir/Subscription/${sub}/$get-ws-binding-token`)).json() as Parameters;
    const token = good.parameter!.find((x) => x.name === 'token')!.valueString!;
    const tampered = `${token.slice(0, 5)}${token[5] === 'A' ? 'B' : 'A'}${token.slice(6)}`;
    const client = await Client.open(wsUrl);
    client.send(`bind-with-token ${tampered}`);
    expect(await client.next()).toBe('error the binding token is invalid or expired');
    client.close();
  });
});

describe('the socket token limits what is pushed', () => {
  it('a socket whose token cannot read Observation gets no ping, while a full-access socket does', async () => {
    const sub = await createSubscription(t, 'Observation?code=http://loinc.org|7777-7');
    const narrow = await Client.open(wsUrl, await clientToken(t, 'system/Subscription.rs'));
    narrow.send(`bind ${sub}`);
    expect(await narrow.next()).toBe(`bound ${sub}`);
    const full = await Client.open(wsUrl, t.token);
    full.send(`bind ${sub}`);
    expect(await full.next()).toBe(`bound ${sub}`);

    await createObservation(t, '7777-7');
    await createObservation(t, '7777-7');
    expect(await full.next()).toBe(`ping ${sub}`);
    expect(await full.next()).toBe(`ping ${sub}`);
    // The same events reached this process's hub for both sockets: the narrow one got nothing.
    await waitDelivered(t, sub, 2);
    expect(narrow.messages).toEqual([`bound ${sub}`]);
    narrow.close();
    full.close();
  });

  it('granular scopes: only the matching category is pushed', async () => {
    const sub = await createSubscription(t, 'Observation?code=http://loinc.org|8888-8');
    const lab = await Client.open(wsUrl, await clientToken(t, 'system/Subscription.rs system/Observation.rs?category=laboratory'));
    lab.send(`bind ${sub}`);
    expect(await lab.next()).toBe(`bound ${sub}`);
    const category = (code: string) => [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code }] }];
    for (const c of ['vital-signs', 'laboratory']) {
      const res = await t.request({ method: 'POST', url: '/fhir/Observation', payload: { resourceType: 'Observation', status: 'final', category: category(c), code: { coding: [{ system: 'http://loinc.org', code: '8888-8' }] } } });
      expect(res.statusCode).toBe(201);
    }
    expect(await lab.next()).toBe(`ping ${sub}`);
    await waitDelivered(t, sub, 2);
    expect(lab.messages).toEqual([`bound ${sub}`, `ping ${sub}`]);
    lab.close();
  });
});

describe('abuse and edge cases', () => {
  it('a socket flooding commands is closed (1008)', async () => {
    const client = await Client.open(wsUrl);
    const closed = new Promise<number>((resolve) => client.socket.once('close', (code) => resolve(code)));
    for (let i = 0; i < 150; i++) client.send('unbind x');
    expect(await closed).toBe(1008);
  });

  it('a message larger than 16 KiB closes the socket', async () => {
    const client = await Client.open(wsUrl);
    const closed = new Promise<number>((resolve) => client.socket.once('close', (code) => resolve(code)));
    client.send(`bind-with-token ${'a'.repeat(20_000)}`);
    expect(await closed).toBe(1009);
  });

  it('criteria confined to one patient: a compartment param naming only that patient, no modifier', () => {
    expect(criteriaConfinedTo('Communication?recipient=Patient/p1', 'p1')).toBe(true);
    expect(criteriaConfinedTo('Communication?status=completed&subject=http://localhost:8080/fhir/Patient/p1', 'p1')).toBe(true);
    expect(criteriaConfinedTo('Observation?subject=Patient/p1&code=1-1', 'p1')).toBe(true);
    expect(criteriaConfinedTo('Patient?_id=p1', 'p1')).toBe(true);
    expect(criteriaConfinedTo('Communication?recipient=Patient/p1,Patient/p2', 'p1')).toBe(false);
    expect(criteriaConfinedTo('Communication?recipient:missing=Patient/p1', 'p1')).toBe(false);
    expect(criteriaConfinedTo('Communication?recipient=Patient/p2', 'p1')).toBe(false);
    expect(criteriaConfinedTo('Communication?category=x', 'p1')).toBe(false);
    expect(criteriaConfinedTo('Practitioner?name=Patient/p1', 'p1')).toBe(false);
    expect(criteriaConfinedTo(undefined, 'p1')).toBe(false);
  });
});

describe('the websocket ChannelSender directly', () => {
  it('is registered as the websocket channel and pushes a Delivery to bound sockets', async () => {
    const sender = t.server.subscriptions.channels.get('websocket') as ChannelSender & { hub?: WebSocketHub };
    expect(sender?.type).toBe('websocket');
    const sub = await createSubscription(t, 'Observation?code=http://loinc.org|0000-1');
    const obs = await createObservation(t, '0000-0');
    const client = await Client.open(wsUrl, t.token);
    client.send(`bind ${sub}`);
    expect(await client.next()).toBe(`bound ${sub}`);
    const stored = (await t.request({ method: 'GET', url: `/fhir/Subscription/${sub}` })).json() as Subscription & { id: string };
    const delivery: Delivery = {
      subscription: stored,
      eventNumber: 99,
      focus: { reference: `Observation/${obs}/_history/1`, resourceType: 'Observation', id: obs, versionId: '1' },
      action: 'create',
      payload: 'empty',
      notificationBundle: { resourceType: 'Bundle' } as Bundle,
    };
    await sender.deliver(delivery);
    expect(await client.next()).toBe(`ping ${sub}`);
    expect(sender.hub?.boundCount(sub)).toBe(1);
    client.close();
    await new Promise((r) => setTimeout(r, 100));
    expect(sender.hub?.boundCount(sub)).toBe(0);
  });
});

describe.runIf(Boolean(process.env.REDIS_URL && process.env.DATABASE_URL))('two server processes on one database and Redis', () => {
  let other: TestApp;
  let otherUrl: string;

  beforeAll(async () => {
    // Same schema as `t`: the second process shares the database, keys and Redis channel.
    other = await startTestApp({ DATABASE_SCHEMA: t.config.databaseSchema!, SUBSCRIPTION_POLL_MS: '100' });
    await other.server.http.listen({ port: 0, host: '127.0.0.1' });
    otherUrl = `ws://127.0.0.1:${(other.server.http.server.address() as { port: number }).port}/ws/subscriptions`;
  }, 120_000);

  afterAll(async () => {
    await other?.close();
  });

  it('a socket on one process receives events written through the other, once each', async () => {
    const sub = await createSubscription(t, 'Observation?code=http://loinc.org|1212-1');
    // Binding token from process 1, socket on process 2.
    const res = await bindingToken(t, `/fhir/Subscription/${sub}/$get-ws-binding-token`);
    const token = (res.json() as Parameters).parameter!.find((x) => x.name === 'token')!.valueString!;
    const client = await Client.open(otherUrl);
    client.send(`bind-with-token ${token}`);
    expect(await client.next()).toBe(`bound ${sub}`);
    for (let i = 0; i < 5; i++) await createObservation(t, '1212-1');
    const numbers: string[] = [];
    for (let i = 0; i < 5; i++) {
      const bundle = JSON.parse(await client.next((m) => m.startsWith('{'))) as Bundle;
      numbers.push((bundle.entry![0]!.resource as Parameters).parameter!.find((x) => x.name === 'events-since-subscription-start')!.valueString!);
    }
    expect(numbers.sort()).toEqual(['1', '2', '3', '4', '5']);
    await waitDelivered(t, sub, 5);
    expect(client.messages.filter((m) => m.startsWith('{')).length).toBe(5);
    client.close();
  });

  it("process 1's sender reaches a socket of process 2 through Redis", async () => {
    const sub = await createSubscription(t, 'Observation?code=http://loinc.org|1313-1');
    const obs = await createObservation(t, '0000-0');
    const client = await Client.open(otherUrl, t.token);
    client.send(`bind ${sub}`);
    expect(await client.next()).toBe(`bound ${sub}`);
    const stored = (await t.request({ method: 'GET', url: `/fhir/Subscription/${sub}` })).json() as Subscription & { id: string };
    await t.server.subscriptions.channels.get('websocket')!.deliver({
      subscription: stored,
      eventNumber: 7,
      focus: { reference: `Observation/${obs}/_history/1`, resourceType: 'Observation', id: obs, versionId: '1' },
      action: 'create',
      payload: 'empty',
      notificationBundle: { resourceType: 'Bundle' } as Bundle,
    });
    expect(await client.next()).toBe(`ping ${sub}`);
    client.close();
  });
});
