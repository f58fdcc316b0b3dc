import type { Bundle, Patient, Subscription } from 'fhir/r4.js';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, ConfigError } from '../../src/config/config.js';
import { EmailSender, emailMessage, mailtoAddresses } from '../../src/subscriptions/channels/email.js';
import { smtpConfigFrom } from '../../src/subscriptions/channels/email-config.js';
import type { Delivery } from '../../src/subscriptions/channels/types.js';
import { PermanentJobError } from '../../src/jobs/types.js';
import { freePort } from '../support/ports.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * The email channel against a real SMTP server (smtp-server from npm, with authentication):
 * Subscriptions with `mailto:` endpoints get real mail whose content follows the payload
 * (empty: a notice only; id-only: the reference; full-resource: the resource attached), SMTP
 * settings come from the environment only, and a refusing server is a failed delivery.
 */

const USER = 'fhir-notify';
const PASSWORD = 'smtp-test-password';

interface Received {
  envelopeTo: string[];
  mail: ParsedMail;
}

let smtp: SMTPServer;
let smtpPort: number;
const inbox: Received[] = [];
/** Recipients the server refuses (to test failures). */
const refused = new Set<string>(['bounce@example.org']);
let t: TestApp;

function waitForMail(test: (r: Received) => boolean, timeoutMs = 15_000): Promise<Received> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const poll = () => {
      const found = inbox.find(test);
      if (found) return resolve(found);
      if (Date.now() - started > timeoutMs) return reject(new Error(`no such mail within ${timeoutMs} ms; inbox: ${inbox.map((r) => r.mail.subject).join(' | ')}`));
      setTimeout(poll, 50);
    };
    poll();
  });
}

async function createSubscription(criteria: string, endpoint: string, channel: Partial<Subscription['channel']> = {}): Promise<string> {
  const res = await t.request({
    method: 'POST',
    url: '/fhir/Subscription',
    payload: { resourceType: 'Subscription', status: 'requested', reason: 'test', criteria, channel: { type: 'email', endpoint, ...channel } },
  });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as { id: string }).id;
}

async function createObservation(code: string): Promise<string> {
  const res = await t.request({
    method: 'POST',
    url: '/fhir/Observation',
    payload: { resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code }], text: 'Haemoglobin' }, valueQuantity: { value: 13.2, unit: 'g/dL' } },
  });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as { id: string }).id;
}

const ID_ONLY = { _payload: { extension: [{ url: 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content', valueCode: 'id-only' }] } };

beforeAll(async () => {
  smtpPort = await freePort();
  smtp = new SMTPServer({
    // Plain SMTP on loopback with AUTH (test only): no STARTTLS offered.
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    authMethods: ['PLAIN', 'LOGIN'],
    onAuth(auth, _session, callback) {
      if (auth.username === USER && auth.password === PASSWORD) return callback(null, { user: USER });
      callback(new Error('invalid credentials'));
    },
    onRcptTo(address, _session, callback) {
      if (refused.has(address.address)) return callback(Object.assign(new Error('mailbox unavailable'), { responseCode: 550 }));
      callback();
    },
    onData(stream, session, callback) {
      simpleParser(stream)
        .then((mail) => {
          inbox.push({ envelopeTo: session.envelope.rcptTo.map((r) => r.address), mail });
          callback();
        })
        .catch(callback);
    },
  });
  await new Promise<void>((resolve) => smtp.listen(smtpPort, '127.0.0.1', resolve));
  t = await startTestApp({
    SMTP_HOST: '127.0.0.1',
    SMTP_PORT: String(smtpPort),
    SMTP_USER: USER,
    SMTP_PASSWORD: PASSWORD,
    SMTP_FROM: 'fhir@hospital.example',
    SUBSCRIPTION_POLL_MS: '100',
    SUBSCRIPTION_BACKOFF_MS: '50',
  });
}, 120_000);

afterAll(async () => {
  await t?.close();
  await new Promise<void>((resolve) => smtp?.close(() => resolve()));
});

describe('email Subscriptions deliver real mail', () => {
  it('payload empty (plain R4 without channel.payload): a notice without the resource', async () => {
    const sub = await createSubscription('Observation?code=http://loinc.org|718-7', 'mailto:ward7@example.org');
    const obs = await createObservation('718-7');
    const got = await waitForMail((r) => r.envelopeTo.includes('ward7@example.org'));
    expect(got.mail.from?.text).toBe('fhir@hospital.example');
    expect(got.mail.subject).toBe(`FHIR notification: Subscription ${sub}, event 1`);
    expect(got.mail.text).toContain(`Subscription ${sub} has a new event`);
    expect(got.mail.text).not.toContain(obs);
    expect(got.mail.text).not.toContain('Observation');
    expect(got.mail.attachments).toHaveLength(0);
  });

  it('an email channel without a valid mailto: endpoint is refused at create (422), not failed later', async () => {
    for (const endpoint of ['https://hooks.example.org/x', 'mailto:', 'mailto:not-an-address']) {
      const res = await t.request({
        method: 'POST',
        url: '/fhir/Subscription',
        payload: { resourceType: 'Subscription', status: 'requested', reason: 'x', criteria: 'Patient?name=x', channel: { type: 'email', endpoint } },
      });
      expect(res.statusCode, endpoint).toBe(422);
      expect(JSON.stringify(res.json())).toContain('Subscription.channel.endpoint');
    }
  });

  it('id-only: the reference, no content; full-resource: the resource attached as FHIR JSON', async () => {
    await createSubscription('Observation?code=http://loinc.org|789-8', 'mailto:ids@example.org', ID_ONLY);
    await createSubscription('Observation?code=http://loinc.org|789-8', 'mailto:full@example.org,copy@example.org', { payload: 'application/fhir+json' });
    const obs = await createObservation('789-8');

    const idOnly = await waitForMail((r) => r.envelopeTo.includes('ids@example.org'));
    expect(idOnly.mail.text).toContain(`/Observation/${obs}/_history/1 (create)`);
    expect(idOnly.mail.text).not.toContain('Haemoglobin');
    expect(idOnly.mail.subject).not.toContain('Observation');
    expect(idOnly.mail.attachments).toHaveLength(0);

    const full = await waitForMail((r) => r.envelopeTo.includes('full@example.org'));
    expect(full.envelopeTo.sort()).toEqual(['copy@example.org', 'full@example.org']);
    expect(full.mail.attachments).toHaveLength(1);
    const attachment = full.mail.attachments[0]!;
    expect(attachment.contentType).toBe('application/fhir+json');
    expect(attachment.filename).toBe(`Observation-${obs}.json`);
    expect(JSON.parse(attachment.content.toString('utf8'))).toMatchObject({ resourceType: 'Observation', id: obs, code: { text: 'Haemoglobin' } });
  });

  it('a refused recipient is a failed delivery: retried, then dead-lettered, visible in $status', async () => {
    const sub = await createSubscription('Observation?code=http://loinc.org|2345-7', 'mailto:bounce@example.org');
    await createObservation('2345-7');
    const started = Date.now();
    let status: Array<{ name: string; valueInteger?: number; valueCode?: string; valueString?: string }> = [];
    while (Date.now() - started < 20_000) {
      const res = await t.request({ method: 'GET', url: `/fhir/Subscription/${sub}/$status` });
      expect(res.statusCode, res.body).toBe(200);
      status = ((res.json() as Bundle).entry![0]!.resource as { parameter: typeof status }).parameter;
      if (status.some((p) => p.name === 'delivery-dead-letter' && (p.valueInteger ?? 0) > 0)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(status.find((p) => p.name === 'delivery-dead-letter')?.valueInteger, JSON.stringify(status)).toBe(1);
    expect(status.find((p) => p.name === 'last-delivery-error')?.valueString).toMatch(/550|mailbox/);
    expect(inbox.some((r) => r.envelopeTo.includes('bounce@example.org'))).toBe(false);
  });

  it('mailto: endpoints are parsed strictly; anything else is a permanent failure (not retried)', () => {
    expect(() => mailtoAddresses('https://example.org')).toThrow(PermanentJobError);
    expect(() => mailtoAddresses('mailto:')).toThrow(PermanentJobError);
    expect(() => mailtoAddresses('mailto:a@example.org%0Abcc:evil@example.org')).toThrow(PermanentJobError);
    expect(mailtoAddresses('mailto:a@example.org,b%40example.org?subject=x')).toEqual(['a@example.org', 'b@example.org']);
  });
});

describe('the email ChannelSender directly', () => {
  const delivery = (payload: Delivery['payload'], endpoint: string): Delivery => ({
    subscription: { resourceType: 'Subscription', id: 'direct-1', status: 'active', reason: 'x', criteria: 'Patient?', channel: { type: 'email', endpoint } },
    eventNumber: 3,
    focus: { reference: 'Patient/p1/_history/2', resourceType: 'Patient', id: 'p1', versionId: '2' },
    action: 'update',
    payload,
    ...(payload === 'full-resource' ? { resource: { resourceType: 'Patient', id: 'p1', name: [{ family: 'Secret' }] } as Patient } : {}),
  });

  it('sends through SMTP with the configured credentials; wrong credentials fail the delivery', async () => {
    const good = new EmailSender({ smtp: smtpConfigFrom({ SMTP_URL: `smtp://${USER}:${PASSWORD}@127.0.0.1:${smtpPort}`, SMTP_FROM: 'fhir@hospital.example' })! });
    await good.deliver(delivery('id-only', 'mailto:direct@example.org'));
    const got = await waitForMail((r) => r.envelopeTo.includes('direct@example.org'));
    expect(got.mail.messageId).toBe('<subscription-direct-1-event-3@fhir-server>');
    expect(got.mail.text).toContain('Patient/p1/_history/2');
    await good.close();

    const bad = new EmailSender({ smtp: smtpConfigFrom({ SMTP_HOST: '127.0.0.1', SMTP_PORT: String(smtpPort), SMTP_USER: USER, SMTP_PASSWORD: 'wrong', SMTP_FROM: 'fhir@hospital.example' })!, timeoutMs: 5_000 });
    await expect(bad.deliver(delivery('empty', 'mailto:never@example.org'))).rejects.toThrow();
    await bad.close();
  });

  it('message content by payload (no name in empty or id-only mail)', () => {
    expect(emailMessage(delivery('empty', 'mailto:x@example.org')).text).not.toContain('p1');
    expect(emailMessage(delivery('id-only', 'mailto:x@example.org')).text).toContain('Patient/p1/_history/2');
    expect(emailMessage(delivery('id-only', 'mailto:x@example.org')).attachment).toBeUndefined();
    const full = emailMessage(delivery('full-resource', 'mailto:x@example.org'));
    expect(full.attachment?.content).toContain('Secret');
    expect(full.text).not.toContain('Secret');
    expect(full.subject).not.toContain('Patient');
  });
});

describe('SMTP configuration from the environment', () => {
  it('nothing configured: no email channel, and email Subscriptions are refused (422)', async () => {
    expect(smtpConfigFrom({})).toBeUndefined();
    const plain = await startTestApp();
    try {
      expect(plain.server.subscriptions.channels.get('email')).toBeUndefined();
      const res = await plain.request({
        method: 'POST',
        url: '/fhir/Subscription',
        payload: { resourceType: 'Subscription', status: 'requested', reason: 'x', criteria: 'Patient?name=x', channel: { type: 'email', endpoint: 'mailto:a@example.org' } },
      });
      expect(res.statusCode).toBe(422);
      expect(res.json().resourceType).toBe('OperationOutcome');
    } finally {
      await plain.close();
    }
  });

  it('incomplete or contradictory settings stop the server from starting', () => {
    const base = { SMTP_FROM: 'fhir@hospital.example' };
    expect(() => loadConfig({ SMTP_HOST: 'mail', SMTP_USER: 'u' , ...base })).toThrow(ConfigError);
    expect(() => loadConfig({ SMTP_HOST: 'mail' })).toThrow(/SMTP_FROM/);
    expect(() => loadConfig({ SMTP_USER: 'u', SMTP_PASSWORD: 'p' })).toThrow(/SMTP_URL or SMTP_HOST/);
    expect(() => loadConfig({ SMTP_URL: 'http://mail', ...base })).toThrow(/smtp:\/\//);
    expect(() => loadConfig({ SMTP_HOST: 'mail', SMTP_PORT: 'x', ...base })).toThrow(/SMTP_PORT/);
    expect(() => loadConfig({ SMTP_HOST: 'mail', SMTP_URL: 'smtp://mail', ...base })).toThrow(/not both/);
    expect(loadConfig({ SMTP_HOST: 'mail', SMTP_PORT: '465', ...base }).smtp).toMatchObject({ host: 'mail', port: 465, secure: true });
    expect(loadConfig({ SMTP_HOST: 'mail', ...base }).smtp).toMatchObject({ port: 587, secure: false });
  });
});
