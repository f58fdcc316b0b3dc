import { createHash } from 'node:crypto';
import type { Communication, ContactPoint, Reference } from 'fhir/r4.js';
import type { NotificationChannel } from './config.js';
import type { NotificationRules } from './rules.js';

/**
 * Each notification is one Communication per recipient and channel (issue 11 §4):
 *  - category: communication-category `notification` + the notification-type code;
 *  - medium: the channel (notification-channel code system; v3 ParticipationMode where one fits);
 *  - recipient, subject (the patient), about (the resource that raised the event, versioned),
 *    basedOn (the reminder's CommunicationRequest);
 *  - identifier: the event key, so a notification of an event is found (and made) only once;
 *  - priority: stat for urgent events (CRITICAL_LAB_RESULT), else routine;
 *  - topic.text: the rendered subject; payload: the rendered body;
 *  - the address sent to (ContactPoint) as extension rules.json `addressExtension`;
 *  - status: in-progress while a send is due, completed (with `sent`) once sent, not-done with
 *    statusReason when given up or impossible (no address, channel not configured).
 * Admins list failures with
 * `GET /fhir/Communication?category=http://terminology.hl7.org/CodeSystem/communication-category|notification&status=not-done`.
 */
export const COMMUNICATION_CATEGORY = 'http://terminology.hl7.org/CodeSystem/communication-category';
export const CHANNEL_SYSTEM = 'https://fhir.hospital.example.org/CodeSystem/notification-channel';
export const EVENT_KEY_SYSTEM = 'https://fhir.hospital.example.org/sid/notification-event';
export const FAILURE_SYSTEM = 'https://fhir.hospital.example.org/CodeSystem/notification-failure';
const PARTICIPATION_MODE = 'http://terminology.hl7.org/CodeSystem/v3-ParticipationMode';
const MODE: Record<NotificationChannel, string | undefined> = { email: 'EMAILWRIT', sms: undefined, 'in-app': 'ONLINEWRIT' };

export interface NotificationDraft {
  /** event key, e.g. `Appointment/1/_history/2#APPOINTMENT_CONFIRMED` */
  key: string;
  type: string;
  channel: NotificationChannel;
  recipient: string;
  patient?: string;
  about: string;
  basedOn?: string;
  urgent: boolean;
  subject?: string;
  body: string;
  address?: ContactPoint;
  /** set when it cannot be sent at all */
  impossible?: string;
}

/** Stable id: reprocessing an event finds the Communications it already made. */
export function notificationId(key: string, recipient: string, channel: string): string {
  return `ntf-${createHash('sha256').update(`${key}\n${recipient}\n${channel}`).digest('hex').slice(0, 40)}`;
}

export function channelOf(c: Communication): NotificationChannel | undefined {
  return c.medium?.flatMap((m) => m.coding ?? []).find((x) => x.system === CHANNEL_SYSTEM)?.code as NotificationChannel | undefined;
}

export function buildCommunication(d: NotificationDraft, rules: NotificationRules, now: string): Communication & { id: string } {
  const mode = MODE[d.channel];
  const ref = (reference: string): Reference => ({ reference });
  const status: Communication['status'] = d.impossible ? 'not-done' : d.channel === 'in-app' ? 'completed' : 'in-progress';
  return {
    resourceType: 'Communication',
    id: notificationId(d.key, d.recipient, d.channel),
    identifier: [{ system: EVENT_KEY_SYSTEM, value: d.key }],
    ...(d.basedOn ? { basedOn: [ref(d.basedOn)] } : {}),
    status,
    ...(d.impossible ? { statusReason: failureReason('undeliverable', d.impossible) } : {}),
    category: [{ coding: [{ system: COMMUNICATION_CATEGORY, code: 'notification' }] }, { coding: [{ system: rules.notificationTypeSystem, code: d.type }] }],
    priority: d.urgent ? 'stat' : 'routine',
    medium: [{ coding: [{ system: CHANNEL_SYSTEM, code: d.channel }, ...(mode ? [{ system: PARTICIPATION_MODE, code: mode }] : [])] }],
    ...(d.patient ? { subject: ref(d.patient) } : {}),
    about: [ref(d.about)],
    recipient: [ref(d.recipient)],
    // In-app: delivered by being stored (the inbox is Communication?recipient=…; live push via websocket Subscriptions).
    ...(status === 'completed' ? { sent: now } : {}),
    ...(d.subject ? { topic: { text: d.subject } } : {}),
    payload: [{ contentString: d.body }],
    ...(d.address ? { extension: [{ url: rules.addressExtension, valueContactPoint: d.address }] } : {}),
  };
}

export function failureReason(code: 'undeliverable' | 'delivery-failed', text: string) {
  return { coding: [{ system: FAILURE_SYSTEM, code }], text: text.slice(0, 1000) };
}
