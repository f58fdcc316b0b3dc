import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Appointment, CommunicationRequest } from 'fhir/r4.js';
import { describe, expect, it } from 'vitest';
import { reminderId } from '../../src/workflows/notifications/reminders.js';
import { startTestApp, type TestApp, dropTestSchema } from '../support/test-app.js';
import { create, inDays, until, update, waitForNotifications } from './notifications-helpers.js';

const LEAD_SECONDS = 2 * 86_400;

async function reminder(t: TestApp, appointmentId: string): Promise<CommunicationRequest | undefined> {
  const res = await t.request({ method: 'GET', url: `/fhir/CommunicationRequest/${reminderId(appointmentId)}` });
  return res.statusCode === 200 ? (res.json() as CommunicationRequest) : undefined;
}

describe('appointment reminders survive a restart (004 FR-AS-003)', () => {
  it('a reminder scheduled by a process that stopped is sent by the next one at its time (BullMQ delayed job / in-process sweep of active CommunicationRequests)', async () => {
    const schema = `t_ntf_${randomBytes(5).toString('hex')}`;
    const dir = process.env.DATABASE_URL ? undefined : mkdtempSync(join(tmpdir(), 'notifications-restart-'));
    const env: Record<string, string> = { NOTIFICATIONS: 'on', NOTIFICATION_REMINDER_LEAD_SECONDS: String(LEAD_SECONDS), ...(dir ? { DATA_DIR: dir } : { DATABASE_SCHEMA: schema }) };
    try {
      const first = await startTestApp(env);
      let appointment: string;
      let patient: string;
      try {
        patient = await create(first, { resourceType: 'Patient', name: [{ family: 'Restart' }] });
        const doctor = await create(first, { resourceType: 'Practitioner', name: [{ family: 'Night' }] });
        // Requested first, then booked: the reminder request is at version 1, moved to version 2,
        // so the next process must resume the current version's job, not the first one.
        const start = inDays(2, 8_000);
        appointment = await create(first, {
          resourceType: 'Appointment',
          status: 'booked',
          start: inDays(3),
          end: inDays(3, 1_800_000),
          participant: [{ actor: { reference: `Patient/${patient}` }, status: 'accepted' }, { actor: { reference: `Practitioner/${doctor}` }, status: 'accepted' }],
        });
        await until(() => reminder(first, appointment), 'reminder scheduled');
        await update<Appointment>(first, 'Appointment', appointment, (x) => ({ ...x, start, end: new Date(Date.parse(start) + 1_800_000).toISOString() }));
        await until(async () => ((await reminder(first, appointment))?.meta?.versionId === '2' ? true : undefined), 'reminder rescheduled');
        // This process runs no job from here on (BullMQ: the queues are paused in Redis).
        await first.server.jobs.pause();
        expect((await reminder(first, appointment))?.status).toBe('active');
      } finally {
        await first.close();
      }

      const second = await startTestApp(env);
      try {
        await second.server.jobs.resume();
        await waitForNotifications(second, `Patient/${patient}`, 'APPOINTMENT_REMINDER_PATIENT', ['in-app']);
        await until(async () => ((await reminder(second, appointment))?.status === 'completed' ? true : undefined), 'reminder completed');
      } finally {
        await second.server.close();
      }
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
      await dropTestSchema(schema);
    }
  }, 240_000);
});
