import type { Bundle, Communication, Resource } from 'fhir/r4.js';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { expect } from 'vitest';
import { freePort } from '../support/ports.js';
import type { TestApp } from '../support/test-app.js';

export const TYPE_SYSTEM = 'https://fhir.hospital.example.org/CodeSystem/notification-type';
export const CATEGORY = 'http://terminology.hl7.org/CodeSystem/communication-category';
export const CHANNEL_SYSTEM = 'https://fhir.hospital.example.org/CodeSystem/notification-channel';
export const PREFS = 'https://fhir.hospital.example.org/StructureDefinition/notification-preferences';

export interface Received {
  envelopeTo: string[];
  mail: ParsedMail;
}

/**
 * A local SMTP server (smtp-server from npm): every mail is kept; `refuse(address, n)` makes
 * it refuse the first n deliveries to an address (Infinity: always), with 550.
 */
export async function startSmtp() {
  const inbox: Received[] = [];
  const refusals = new Map<string, number>();
  const port = await freePort();
  const server = new SMTPServer({
    disabledCommands: ['STARTTLS', 'AUTH'],
    onRcptTo(address, _session, callback) {
      const left = refusals.get(address.address) ?? 0;
      if (left > 0) {
        refusals.set(address.address, left - 1);
        return callback(Object.assign(new Error('mailbox unavailable'), { responseCode: 550 }));
      }
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
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port,
    inbox,
    refuse(address: string, times: number) {
      refusals.set(address, times);
    },
    mailTo(address: string) {
      return inbox.filter((r) => r.envelopeTo.includes(address));
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export async function until<T>(probe: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not reached in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function create<T extends Resource>(t: TestApp, resource: T): Promise<string> {
  const res = await t.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as { id: string }).id;
}

export async function update<T extends Resource>(t: TestApp, type: string, id: string, edit: (r: T) => T): Promise<T> {
  const got = await t.request({ method: 'GET', url: `/fhir/${type}/${id}` });
  expect(got.statusCode, got.body).toBe(200);
  const next = edit(got.json() as T);
  const res = await t.request({ method: 'PUT', url: `/fhir/${type}/${id}`, payload: next });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as T;
}

/** Notification Communications to `recipient` (optionally of one notification type). */
export async function notificationsTo(t: TestApp, recipient: string, type?: string): Promise<Communication[]> {
  const res = await t.request({ method: 'GET', url: `/fhir/Communication?recipient=${recipient}&category=${CATEGORY}|notification&_count=200` });
  expect(res.statusCode, res.body).toBe(200);
  const all = ((res.json() as Bundle).entry ?? []).map((e) => e.resource as Communication);
  return type ? all.filter((c) => typeOf(c) === type) : all;
}

export function typeOf(c: Communication): string | undefined {
  return c.category?.flatMap((x) => x.coding ?? []).find((x) => x.system === TYPE_SYSTEM)?.code;
}

export function channelOf(c: Communication): string | undefined {
  return c.medium?.flatMap((x) => x.coding ?? []).find((x) => x.system === CHANNEL_SYSTEM)?.code;
}

/** Waits until `recipient` has Communications of `type` on every channel in `channels` with the given status. */
export function waitForNotifications(t: TestApp, recipient: string, type: string, channels: string[], status = 'completed'): Promise<Communication[]> {
  return until(async () => {
    const list = await notificationsTo(t, recipient, type);
    const ok = channels.every((ch) => list.some((c) => channelOf(c) === ch && c.status === status));
    return ok ? list : undefined;
  }, `${type} for ${recipient} on ${channels.join(', ')} (${status})`);
}

export const inDays = (days: number, extraMs = 0) => new Date(Date.now() + days * 86_400_000 + extraMs).toISOString().replace(/\.\d{3}Z$/, 'Z');
