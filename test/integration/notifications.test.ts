import type { Appointment, Communication, CommunicationRequest, Observation, Patient, Practitioner, ServiceRequest } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reminderId } from '../../src/workflows/notifications/reminders.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { startReceiver, type Receiver } from './subscriptions-helpers.js';
import { CATEGORY, channelOf, create, inDays, notificationsTo, PREFS, startSmtp, until, update, waitForNotifications } from './notifications-helpers.js';

/**
 * Hospital notifications (issue 11 §4; seeds 000 §1.4.7, 003 §7, 004 FR-AS-003 / FR-LAB-002)
 * over real HTTP with a real SMTP server: events from committed writes become Communications
 * per recipient and channel, email goes out through SMTP, reminders are delayed jobs that
 * follow the appointment, opt-outs hold except for clinicians' critical results, and failed
 * sends are retried and end visible as not-done.
 */

/** Reminder lead: 2 days, so an appointment 2 days + a few seconds ahead is reminded within seconds. */
const LEAD_SECONDS = 2 * 86_400;

let smtp: Awaited<ReturnType<typeof startSmtp>>;
let sms: Receiver;
let t: TestApp;

beforeAll(async () => {
  smtp = await startSmtp();
  sms = await startReceiver();
  t = await startTestApp({
    NOTIFICATIONS: 'on',
    NOTIFICATION_SMS_WEBHOOK_URL: sms.url,
    NOTIFICATION_SMS_WEBHOOK_HEADER: 'Authorization: Bearer sms-gateway-key',
    SMTP_HOST: '127.0.0.1',
    SMTP_PORT: String(smtp.port),
    SMTP_FROM: 'notify@hospital.example',
    NOTIFICATION_BACKOFF_MS: '50',
    NOTIFICATION_ATTEMPTS: '3',
    NOTIFICATION_REMINDER_LEAD_SECONDS: String(LEAD_SECONDS),
    NOTIFICATION_HOSPITAL_NAME: 'Bach Mai',
  });
}, 120_000);

afterAll(async () => {
  await t?.close();
  await smtp?.close();
  await sms?.close();
});

function patient(family: string, email: string, extra: Partial<Patient> = {}): Patient {
  return { resourceType: 'Patient', name: [{ family, given: ['Van'] }], telecom: [{ system: 'email', value: email }], ...extra };
}

function doctor(family: string, email: string, extra: Partial<Practitioner> = {}): Practitioner {
  return { resourceType: 'Practitioner', name: [{ family, given: ['Thi'], prefix: ['Dr.'] }], telecom: [{ system: 'email', value: email }], ...extra };
}

function appointment(patientId: string, doctorId: string, status: Appointment['status'], start: string): Appointment {
  const end = new Date(Date.parse(start) + 30 * 60_000).toISOString();
  return {
    resourceType: 'Appointment',
    status,
    start,
    end,
    participant: [
      { actor: { reference: `Patient/${patientId}` }, status: 'accepted' },
      { actor: { reference: `Practitioner/${doctorId}` }, status: 'accepted' },
    ],
  };
}

async function readReminder(appointmentId: string): Promise<CommunicationRequest & { meta: { versionId: string } }> {
  const res = await t.request({ method: 'GET', url: `/fhir/CommunicationRequest/${reminderId(appointmentId)}` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as CommunicationRequest & { meta: { versionId: string } };
}

describe('appointments (003 §3/§7, 004 FR-AS-003)', () => {
  it('requested then booked: a Communication per recipient and channel, real email in the user language, no PHI in subjects', async () => {
    const p = await create(t, patient('Nguyen', 'nguyen@example.org', { communication: [{ language: { coding: [{ system: 'urn:ietf:bcp:47', code: 'vi' }] }, preferred: true }] }));
    const d = await create(t, doctor('Tran', 'tran@example.org'));
    const start = inDays(5);
    const a = await create(t, appointment(p, d, 'proposed', start));

    const toPatient = await waitForNotifications(t, `Patient/${p}`, 'APPOINTMENT_REQUESTED_PATIENT', ['email', 'in-app']);
    await waitForNotifications(t, `Practitioner/${d}`, 'APPOINTMENT_REQUESTED_DOCTOR', ['email', 'in-app']);
    const email = toPatient.find((c) => channelOf(c) === 'email')!;
    expect(email.about?.[0]?.reference).toBe(`Appointment/${a}/_history/1`);
    expect(email.subject?.reference).toBe(`Patient/${p}`);
    expect(email.recipient).toEqual([{ reference: `Patient/${p}` }]);
    expect(email.category?.[0]?.coding?.[0]).toMatchObject({ system: CATEGORY, code: 'notification' });
    expect(email.sent).toBeDefined();
    // Vietnamese: the patient's preferred language.
    expect(email.payload?.[0]?.contentString).toContain('Xin chào Van Nguyen');
    const requestMail = await until(() => smtp.mailTo('nguyen@example.org')[0], 'request mail');
    expect(requestMail.mail.subject).toBe('Bach Mai: đã nhận yêu cầu đặt lịch hẹn');

    await update<Appointment>(t, 'Appointment', a, (x) => ({ ...x, status: 'booked' }));
    const confirmed = await waitForNotifications(t, `Patient/${p}`, 'APPOINTMENT_CONFIRMED_PATIENT', ['email', 'in-app']);
    expect(confirmed.find((c) => channelOf(c) === 'email')?.about?.[0]?.reference).toBe(`Appointment/${a}/_history/2`);
    const mail = await until(() => smtp.mailTo('nguyen@example.org').find((m) => m.mail.subject?.includes('xác nhận')), 'confirmation mail');
    expect(mail.mail.from?.text).toBe('notify@hospital.example');
    expect(mail.mail.text).toContain('Dr. Thi Tran');
    expect(mail.mail.text).toContain(start.slice(0, 10));
    // The subject names neither the patient, the doctor nor the time.
    for (const phi of ['Nguyen', 'Tran', start.slice(0, 10)]) expect(mail.mail.subject).not.toContain(phi);
    // Booked: the reminder is scheduled LEAD before the start.
    const reminder = await until(async () => {
      const r = await t.request({ method: 'GET', url: `/fhir/CommunicationRequest/${reminderId(a)}` });
      return r.statusCode === 200 ? (r.json() as CommunicationRequest) : undefined;
    }, 'reminder scheduled');
    expect(reminder.status).toBe('active');
    expect(Date.parse(reminder.occurrenceDateTime!)).toBe(Date.parse(start) - LEAD_SECONDS * 1000);
    expect(reminder.about?.[0]?.reference).toBe(`Appointment/${a}`);
    // The doctor is not told of the confirmation (rules.json: patient only).
    expect(await notificationsTo(t, `Practitioner/${d}`, 'APPOINTMENT_CONFIRMED_PATIENT')).toHaveLength(0);
  });

  it('the reminder is a delayed job that follows the appointment: moved → rescheduled, sent once at the new time', async () => {
    const p = await create(t, patient('Le', 'le@example.org'));
    const d = await create(t, doctor('Pham', 'pham@example.org'));
    // Due in 10 minutes: never during this test unless the move reschedules it.
    const a = await create(t, appointment(p, d, 'booked', inDays(2, 10 * 60_000)));
    const first = await until(async () => {
      const r = await t.request({ method: 'GET', url: `/fhir/CommunicationRequest/${reminderId(a)}` });
      return r.statusCode === 200 ? (r.json() as CommunicationRequest & { meta: { versionId: string } }) : undefined;
    }, 'reminder scheduled');
    expect(first.status).toBe('active');

    const newStart = inDays(2, 4_000);
    await update<Appointment>(t, 'Appointment', a, (x) => ({ ...x, start: newStart, end: new Date(Date.parse(newStart) + 1_800_000).toISOString() }));
    const moved = await until(async () => {
      const r = await readReminder(a);
      return r.meta.versionId !== first.meta.versionId ? r : undefined;
    }, 'reminder rescheduled');
    expect(Date.parse(moved.occurrenceDateTime!)).toBe(Date.parse(newStart) - LEAD_SECONDS * 1000);

    const sent = await waitForNotifications(t, `Patient/${p}`, 'APPOINTMENT_REMINDER_PATIENT', ['email', 'in-app']);
    expect(sent.every((c) => c.basedOn?.[0]?.reference === `CommunicationRequest/${reminderId(a)}`)).toBe(true);
    await waitForNotifications(t, `Practitioner/${d}`, 'APPOINTMENT_REMINDER_DOCTOR', ['email', 'in-app']);
    await until(() => smtp.mailTo('le@example.org').find((m) => m.mail.subject === 'Bach Mai: appointment reminder'), 'reminder mail');
    expect((await readReminder(a)).status).toBe('completed');
    // Once per channel, although two jobs were queued (the first one ends when it wakes).
    expect(sent.filter((c) => channelOf(c) === 'email')).toHaveLength(1);
  });

  it('cancelled: patient and doctor told, the reminder revoked', async () => {
    const p = await create(t, patient('Vo', 'vo@example.org'));
    const d = await create(t, doctor('Dang', 'dang@example.org'));
    const a = await create(t, appointment(p, d, 'booked', inDays(6)));
    await until(async () => ((await t.request({ method: 'GET', url: `/fhir/CommunicationRequest/${reminderId(a)}` })).statusCode === 200 ? true : undefined), 'reminder scheduled');
    await update<Appointment>(t, 'Appointment', a, (x) => ({ ...x, status: 'cancelled' }));
    await waitForNotifications(t, `Patient/${p}`, 'APPOINTMENT_CANCELLED_PATIENT', ['email', 'in-app']);
    await waitForNotifications(t, `Practitioner/${d}`, 'APPOINTMENT_CANCELLED_DOCTOR', ['email', 'in-app']);
    await until(async () => ((await readReminder(a)).status === 'revoked' ? true : undefined), 'reminder revoked');
  });
});

describe('preferences and opt-out (stored on the Patient / Practitioner)', () => {
  it('an opted-out event makes no Communication; the chosen channels replace the defaults', async () => {
    const p = await create(
      t,
      patient('Hoang', 'hoang@example.org', { extension: [{ url: PREFS, extension: [{ url: 'channel', valueCode: 'email' }, { url: 'optOut', valueCode: 'APPOINTMENT_REQUESTED' }] }] }),
    );
    const d = await create(t, doctor('Bui', 'bui@example.org'));
    const a = await create(t, appointment(p, d, 'pending', inDays(7)));
    // The doctor's notification of the same event shows the event was processed.
    await waitForNotifications(t, `Practitioner/${d}`, 'APPOINTMENT_REQUESTED_DOCTOR', ['in-app']);
    expect(await notificationsTo(t, `Patient/${p}`)).toHaveLength(0);

    await update<Appointment>(t, 'Appointment', a, (x) => ({ ...x, status: 'booked' }));
    const confirmed = await waitForNotifications(t, `Patient/${p}`, 'APPOINTMENT_CONFIRMED_PATIENT', ['email']);
    expect(confirmed.map(channelOf)).toEqual(['email']);
    expect(smtp.mailTo('hoang@example.org').map((m) => m.mail.subject)).not.toContain('Bach Mai: appointment request received');
  });
});

describe('laboratory (004 FR-LAB-002: critical results notify at once)', () => {
  it('a critical result reaches the ordering doctor at once, with priority stat, even though the doctor opted out of everything', async () => {
    const p = await create(t, patient('Ngo', 'ngo@example.org'));
    const d = await create(t, doctor('Do', 'do@example.org', { extension: [{ url: PREFS, extension: [{ url: 'optOut', valueCode: '*' }] }] }));
    const order = await create<ServiceRequest>(t, { resourceType: 'ServiceRequest', status: 'active', intent: 'order', subject: { reference: `Patient/${p}` }, requester: { reference: `Practitioner/${d}` }, code: { text: 'Potassium' } });
    const obs: Observation = {
      resourceType: 'Observation',
      status: 'final',
      basedOn: [{ reference: `ServiceRequest/${order}` }],
      subject: { reference: `Patient/${p}` },
      code: { coding: [{ system: 'http://loinc.org', code: '2823-3' }], text: 'Potassium' },
      valueQuantity: { value: 7.1, unit: 'mmol/L' },
      interpretation: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: 'HH', display: 'Critical high' }] }],
    };
    const o = await create(t, obs);
    const got = await waitForNotifications(t, `Practitioner/${d}`, 'CRITICAL_LAB_RESULT_DOCTOR', ['email', 'in-app']);
    expect(got.every((c) => c.priority === 'stat')).toBe(true);
    const inApp = got.find((c) => channelOf(c) === 'in-app')!;
    expect(inApp.payload?.[0]?.contentString).toBe('Critical result for Van Ngo: Potassium 7.1 mmol/L (Critical high).');
    const mail = await until(() => smtp.mailTo('do@example.org')[0], 'critical mail');
    expect(mail.mail.subject).toBe('Bach Mai: URGENT critical result');
    // Email carries the reference only, not the patient or the value.
    expect(mail.mail.text).toContain(`Observation/${o}`);
    expect(mail.mail.text).not.toContain('Ngo');
    expect(mail.mail.text).not.toContain('7.1');
    // Seed 004 §9.2: the patient is not notified of a critical result directly, not even by
    // the final report holding it (the doctor is).
    // (A second orderer, who did not opt out, shows the report was processed.)
    const d2 = await create(t, doctor('Vu', 'vu@example.org'));
    const order2 = await create<ServiceRequest>(t, { resourceType: 'ServiceRequest', status: 'active', intent: 'order', subject: { reference: `Patient/${p}` }, requester: { reference: `Practitioner/${d2}` } });
    await create(t, { resourceType: 'DiagnosticReport', status: 'final', code: { text: 'Electrolytes' }, basedOn: [{ reference: `ServiceRequest/${order}` }, { reference: `ServiceRequest/${order2}` }], subject: { reference: `Patient/${p}` }, result: [{ reference: `Observation/${o}` }] });
    await waitForNotifications(t, `Practitioner/${d2}`, 'LAB_RESULT_READY_DOCTOR', ['in-app']);
    expect(await notificationsTo(t, `Practitioner/${d}`, 'LAB_RESULT_READY_DOCTOR')).toHaveLength(0);
    expect(await notificationsTo(t, `Patient/${p}`)).toHaveLength(0);
  });

  it('an HL7 v2 result past a critical limit, without an OBX-8 flag, raises the critical notification too', async () => {
    const oru = [
      'MSH|^~\\&|LAB|HOSP|FHIR|HOSP|20261204120000||ORU^R01|NTF-CRIT-1|P|2.5.1',
      'PID|1||NTF-PID-77^^^HOSP^MR||Critical^Kim||19800101|F',
      'OBR|1|NTF-PLC-77|NTF-FIL-77|2823-3^Potassium^LN|||20261204110000|||||||||||||||20261204115000|||F',
      'OBX|1|NM|2823-3^Potassium^LN||7.6|mmol/L|3.5-5.1||||F',
    ].join('\r');
    const res = await t.request({ method: 'POST', url: '/hl7v2', headers: { 'content-type': 'x-application/hl7-v2+er7' }, payload: oru });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.body).toContain('MSA|AA');
    // No order and no general practitioner to tell: visible as a failed critical notification.
    const failed = await until(async () => {
      const r = await t.request({ method: 'GET', url: `/fhir/Communication?category=${CATEGORY}|notification&status=not-done&_count=100` });
      return ((r.json() as { entry?: Array<{ resource: Communication }> }).entry ?? []).map((e) => e.resource).find((c) => c.payload?.[0]?.contentString?.includes('CRITICAL_LAB_RESULT') && c.about?.[0]?.reference?.startsWith('Observation/'));
    }, 'critical notification of the HL7 v2 result');
    const obs = await t.request({ method: 'GET', url: `/fhir/${failed.about![0]!.reference!.split('/_history/')[0]}` });
    expect((obs.json() as Observation).code.coding?.[0]?.code).toBe('2823-3');
    expect((obs.json() as Observation).interpretation).toBeUndefined();
    expect(failed.priority).toBe('stat');
  });

  it('an HL7 v2 result flagged HH is notified once, by one event job (the catalog announcement adds none)', async () => {
    const queued: string[] = [];
    const enqueue = t.server.jobs.enqueue.bind(t.server.jobs);
    t.server.jobs.enqueue = (queue, payload, ...rest) => {
      queued.push(`${queue} ${payload.jobId}`);
      return enqueue(queue, payload, ...rest);
    };
    try {
      const oru = [
        'MSH|^~\\&|LAB|HOSP|FHIR|HOSP|20261204121000||ORU^R01|NTF-CRIT-2|P|2.5.1',
        'PID|1||NTF-PID-78^^^HOSP^MR||Critical^Lan||19800101|F',
        'OBR|1|NTF-PLC-78|NTF-FIL-78|2823-3^Potassium^LN|||20261204110000|||||||||||||||20261204115000|||F',
        'OBX|1|NM|2823-3^Potassium^LN||7.7|mmol/L|3.5-5.1|HH|||F',
      ].join('\r');
      const res = await t.request({ method: 'POST', url: '/hl7v2', headers: { 'content-type': 'x-application/hl7-v2+er7' }, payload: oru });
      expect(res.body).toContain('MSA|AA');
      const failed = await until(async () => {
        const r = await t.request({ method: 'GET', url: `/fhir/Communication?category=${CATEGORY}|notification&status=not-done&_count=100` });
        const all = ((r.json() as { entry?: Array<{ resource: Communication }> }).entry ?? []).map((e) => e.resource);
        const mine = all.filter((c) => c.payload?.[0]?.contentString?.includes('CRITICAL_LAB_RESULT') && c.about?.[0]?.reference?.startsWith('Observation/'));
        for (const c of mine) {
          const o = await t.request({ method: 'GET', url: `/fhir/${c.about![0]!.reference!.split('/_history/')[0]}` });
          if ((o.json() as Observation).valueQuantity?.value === 7.7) return c;
        }
        return undefined;
      }, 'critical notification of the flagged HL7 v2 result');
      const observation = failed.about![0]!.reference!;
      const id = observation.split('/')[1]!;
      // The plain event job makes the critical event; the catalog's announcement is not queued again.
      expect(queued.filter((q) => q.includes(`_${id}_`))).toEqual([`notification-event Observation_${id}_1`]);
      const all = await t.request({ method: 'GET', url: `/fhir/Communication?category=${CATEGORY}|notification&_count=200` });
      expect(((all.json() as { entry?: Array<{ resource: Communication }> }).entry ?? []).filter((e) => e.resource.about?.[0]?.reference === observation)).toHaveLength(1);
    } finally {
      t.server.jobs.enqueue = enqueue;
    }
  });

  it('a non-critical final result notifies nobody; a final DiagnosticReport tells patient and ordering doctor', async () => {
    const p = await create(t, patient('Duong', 'duong@example.org'));
    const d = await create(t, doctor('Ly', 'ly@example.org'));
    const order = await create<ServiceRequest>(t, { resourceType: 'ServiceRequest', status: 'active', intent: 'order', subject: { reference: `Patient/${p}` }, requester: { reference: `Practitioner/${d}` } });
    await create<Observation>(t, { resourceType: 'Observation', status: 'final', basedOn: [{ reference: `ServiceRequest/${order}` }], subject: { reference: `Patient/${p}` }, code: { text: 'Sodium' }, valueQuantity: { value: 140, unit: 'mmol/L' }, interpretation: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: 'N' }] }] });
    await create(t, { resourceType: 'DiagnosticReport', status: 'final', code: { text: 'Electrolytes' }, basedOn: [{ reference: `ServiceRequest/${order}` }], subject: { reference: `Patient/${p}` } });
    await waitForNotifications(t, `Patient/${p}`, 'LAB_RESULT_READY_PATIENT', ['email', 'in-app']);
    await waitForNotifications(t, `Practitioner/${d}`, 'LAB_RESULT_READY_DOCTOR', ['email', 'in-app']);
    expect(await notificationsTo(t, `Practitioner/${d}`, 'CRITICAL_LAB_RESULT_DOCTOR')).toHaveLength(0);
  });
});

describe('failed sends (004 FR-AS-003: retried, every attempt logged)', () => {
  it('a send refused twice succeeds on the third attempt; the failed attempts are noted on the Communication', async () => {
    smtp.refuse('flaky@example.org', 2);
    const p = await create(t, patient('Trinh', 'flaky@example.org'));
    const d = await create(t, doctor('Mai', 'mai@example.org'));
    await create(t, appointment(p, d, 'proposed', inDays(8)));
    const list = await waitForNotifications(t, `Patient/${p}`, 'APPOINTMENT_REQUESTED_PATIENT', ['email']);
    const email = list.find((c) => channelOf(c) === 'email')!;
    expect(email.note?.map((n) => n.text)).toEqual([expect.stringMatching(/^attempt 1 of 3 failed: .*550/), expect.stringMatching(/^attempt 2 of 3 failed: .*550/)]);
    expect(smtp.mailTo('flaky@example.org')).toHaveLength(1);
  });

  it('a send refused every time ends not-done with statusReason, listed for admins; a chosen channel without an address is not-done too', async () => {
    smtp.refuse('bounce@example.org', Number.POSITIVE_INFINITY);
    const p = await create(t, patient('Cao', 'bounce@example.org'));
    // Chose SMS but has no SMS number.
    const p2 = await create(t, patient('Lam', 'lam@example.org', { extension: [{ url: PREFS, extension: [{ url: 'channel', valueCode: 'sms' }] }] }));
    const d = await create(t, doctor('Chu', 'chu@example.org'));
    const a = await create(t, appointment(p, d, 'proposed', inDays(9)));
    await create(t, appointment(p2, d, 'proposed', inDays(9, 3_600_000)));
    const failed = (await waitForNotifications(t, `Patient/${p}`, 'APPOINTMENT_REQUESTED_PATIENT', ['email'], 'not-done')).find((c) => channelOf(c) === 'email')!;
    expect(failed.statusReason?.coding?.[0]?.code).toBe('delivery-failed');
    expect(failed.statusReason?.text).toMatch(/^delivery failed after 3 attempts: .*550/);
    expect(failed.note).toHaveLength(2);
    const noNumber = (await waitForNotifications(t, `Patient/${p2}`, 'APPOINTMENT_REQUESTED_PATIENT', ['sms'], 'not-done'))[0]!;
    expect(noNumber.statusReason).toMatchObject({ coding: [{ code: 'undeliverable' }], text: `Patient/${p2} has no SMS number in telecom` });

    const res = await t.request({ method: 'GET', url: `/fhir/Communication?category=${CATEGORY}|notification&status=not-done&_count=100` });
    expect(res.statusCode).toBe(200);
    const ids = ((res.json() as { entry?: Array<{ resource: Communication }> }).entry ?? []).map((e) => e.resource.id);
    expect(ids).toEqual(expect.arrayContaining([failed.id, noNumber.id]));
    expect(failed.about?.[0]?.reference).toBe(`Appointment/${a}/_history/1`);
  });
});

describe('SMS through the gateway (rest-hook sender)', () => {
  it('the Communication is PUT to the gateway with its header; the number travels in the address extension', async () => {
    const p = await create(t, patient('Kieu', 'kieu@example.org', { telecom: [{ system: 'phone', use: 'mobile', value: '+84901234567' }], extension: [{ url: PREFS, extension: [{ url: 'channel', valueCode: 'sms' }] }] }));
    const d = await create(t, doctor('Ha', 'ha@example.org'));
    await create(t, appointment(p, d, 'booked', inDays(10)));
    const [c] = await waitForNotifications(t, `Patient/${p}`, 'APPOINTMENT_CONFIRMED_PATIENT', ['sms']);
    const request = sms.received.find((r) => r.path === `/hook/Communication/${c!.id}`)!;
    expect(request.method).toBe('PUT');
    expect(request.headers.authorization).toBe('Bearer sms-gateway-key');
    const body = JSON.parse(request.body) as Communication;
    expect(body.extension?.[0]?.valueContactPoint).toEqual({ system: 'sms', value: '+84901234567' });
    expect(body.payload?.[0]?.contentString).toMatch(/^Bach Mai: your appointment on .* is confirmed\.$/);
  });
});

describe('pharmacy, billing and insurance events (003 §4, §5)', () => {
  it('dispense ready, invoice issued then balanced, claim response, stock low: each its notification type', async () => {
    const p = await create(t, patient('Tang', 'tang@example.org'));
    const pharmacist = await create(t, doctor('Quach', 'quach@example.org'));
    await create(t, { resourceType: 'PractitionerRole', active: true, practitioner: { reference: `Practitioner/${pharmacist}` }, code: [{ coding: [{ system: 'https://fhir.hospital.example.org/CodeSystem/user-role', code: 'PHARMACIST' }] }] });

    await create(t, { resourceType: 'MedicationDispense', status: 'in-progress', subject: { reference: `Patient/${p}` }, medicationCodeableConcept: { text: 'Amoxicillin 500 mg' } });
    await waitForNotifications(t, `Patient/${p}`, 'PRESCRIPTION_READY_FOR_PICKUP', ['email', 'in-app']);

    const inv = await create(t, { resourceType: 'Invoice', status: 'draft', subject: { reference: `Patient/${p}` }, identifier: [{ value: 'INV-2026-0042' }], totalGross: { value: 350000, currency: 'VND' } });
    await update(t, 'Invoice', inv, (x) => ({ ...x, status: 'issued' }));
    const issued = await waitForNotifications(t, `Patient/${p}`, 'INVOICE_GENERATED', ['in-app']);
    expect(issued.find((c) => channelOf(c) === 'in-app')!.payload?.[0]?.contentString).toContain('Invoice INV-2026-0042 of 350000 VND was issued');
    await update(t, 'Invoice', inv, (x) => ({ ...x, status: 'balanced' }));
    await waitForNotifications(t, `Patient/${p}`, 'PAYMENT_SUCCESSFUL', ['in-app']);

    await create(t, { resourceType: 'ClaimResponse', status: 'active', type: { text: 'institutional' }, use: 'claim', patient: { reference: `Patient/${p}` }, created: '2026-12-04', insurer: { display: 'VSS' }, outcome: 'partial', disposition: 'Partly covered' });
    const claim = await waitForNotifications(t, `Patient/${p}`, 'INSURANCE_CLAIM_STATUS_UPDATED', ['in-app']);
    expect(claim.find((c) => channelOf(c) === 'in-app')!.payload?.[0]?.contentString).toContain('partial: Partly covered');

    const stock = (quantity: number) => [
      { url: 'https://fhir.hospital.example.org/StructureDefinition/medication-stock-quantity', valueQuantity: { value: quantity } },
      { url: 'https://fhir.hospital.example.org/StructureDefinition/medication-reorder-level', valueQuantity: { value: 20 } },
    ];
    const med = await create(t, { resourceType: 'Medication', status: 'active', code: { text: 'Paracetamol 500 mg' }, batch: { lotNumber: 'LOT-7' }, extension: stock(100) });
    await update(t, 'Medication', med, (x) => ({ ...x, extension: stock(12) }));
    const low = await waitForNotifications(t, `Practitioner/${pharmacist}`, 'PHARMACY_STOCK_LOW', ['in-app']);
    expect(low.find((c) => channelOf(c) === 'in-app')!.payload?.[0]?.contentString).toBe('Stock of Paracetamol 500 mg (lot LOT-7) is 12, reorder level 20.');
    // Still low: no second alert for the same fall.
    await update(t, 'Medication', med, (x) => ({ ...x, extension: stock(8) }));
    await update(t, 'Invoice', inv, (x) => ({ ...x, note: [{ text: 'filed' }] }));
    await new Promise((r) => setTimeout(r, 500));
    expect((await notificationsTo(t, `Practitioner/${pharmacist}`, 'PHARMACY_STOCK_LOW')).filter((c) => channelOf(c) === 'in-app')).toHaveLength(1);
  });

  it('a critical result with nobody to tell is itself a visible failure', async () => {
    const p = await create(t, patient('Mac', 'mac@example.org'));
    const o = await create<Observation>(t, { resourceType: 'Observation', status: 'final', subject: { reference: `Patient/${p}` }, code: { text: 'Glucose' }, valueQuantity: { value: 1.1, unit: 'mmol/L' }, interpretation: [{ text: 'critical' }] });
    const failed = await until(async () => {
      const res = await t.request({ method: 'GET', url: `/fhir/Communication?category=${CATEGORY}|notification&status=not-done&subject=Patient/${p}` });
      return ((res.json() as { entry?: Array<{ resource: Communication }> }).entry ?? [])[0]?.resource;
    }, 'no-clinician failure');
    expect(failed.about?.[0]?.reference).toBe(`Observation/${o}/_history/1`);
    expect(failed.priority).toBe('stat');
    expect(failed.statusReason?.text).toBe('no clinician to notify');
  });
});
