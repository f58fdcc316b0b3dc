import { createHash } from 'node:crypto';
import type { Appointment, CommunicationRequest, Reference } from 'fhir/r4.js';
import { RetryLaterError } from '../../jobs/types.js';
import type { ResourceStore } from '../../storage/resource-store.js';
import { asSystem } from '../../subscriptions/write-context.js';
import { COMMUNICATION_CATEGORY } from './communications.js';
import type { NotificationConfig } from './config.js';
import type { NotificationPlanner, PlannedSend } from './planner.js';
import { readResource } from './recipients.js';
import type { NotificationRules } from './rules.js';

/**
 * APPOINTMENT_REMINDER (seed 004 FR-AS-003: 24 h before; NOTIFICATION_REMINDER_LEAD_SECONDS).
 * A scheduled reminder is a CommunicationRequest (domain map: "CommunicationRequest
 * (scheduled)"), one per Appointment with a stable id: status active, occurrenceDateTime = when
 * it goes, about = the Appointment. Admins see what is scheduled with
 * `GET /fhir/CommunicationRequest?category=…communication-category|reminder&status=active`.
 *
 * The delayed job's id is `<request id>_<request version>`: the job sleeps in the job runner
 * (BullMQ delayed job / in-process timer, via RetryLaterError, which counts no attempt) until
 * occurrenceDateTime. Moving the appointment writes a new version of the request and queues a
 * new job; the old job wakes up, sees a newer version and ends. Cancelling (any status but
 * booked, or a delete) revokes the request. When it fires the Appointment is read again, the
 * notifications are made (basedOn the request) and the request is completed.
 */
export const REMINDER_CATEGORY = 'reminder';
/** A sleeping job wakes at least this often (setTimeout's limit is 24.8 days; clocks drift). */
const MAX_SLEEP_MS = 6 * 3600_000;

export function reminderId(appointmentId: string): string {
  return `rem-${createHash('sha256').update(appointmentId).digest('hex').slice(0, 40)}`;
}

export interface ReminderDeps {
  store: ResourceStore;
  config: NotificationConfig;
  rules: NotificationRules;
  planner: NotificationPlanner;
}

export class ReminderScheduler {
  constructor(private readonly deps: ReminderDeps) {}

  /**
   * Brings the Appointment's reminder in line with the Appointment as it is now (whatever
   * version raised the call: jobs of two quick edits may run in either order). Returns the id
   * of the job to queue, if any.
   */
  sync(appointmentId: string): Promise<string | undefined> {
    return asSystem(() =>
      this.deps.store.transaction(async (tx) => {
        const stored = await tx.readForUpdate('Appointment', appointmentId);
        const appt = stored?.json && !stored.deleted ? (JSON.parse(stored.json) as Appointment) : undefined;
        const id = reminderId(appointmentId);
        const existing = await tx.readForUpdate('CommunicationRequest', id);
        const request = existing?.json && !existing.deleted ? (JSON.parse(existing.json) as CommunicationRequest) : undefined;
        const start = appt?.status === 'booked' && appt.start ? Date.parse(appt.start) : NaN;
        if (Number.isNaN(start) || start <= Date.now()) {
          if (request?.status === 'active') await tx.update(withStatus(request, 'revoked'), existing!);
          return undefined;
        }
        const due = new Date(start - this.deps.config.reminderLeadMs).toISOString();
        if (request?.status === 'active' && request.occurrenceDateTime === due) return `${id}_${existing!.versionId}`;
        const next: CommunicationRequest = {
          resourceType: 'CommunicationRequest',
          id,
          status: 'active',
          category: [{ coding: [{ system: COMMUNICATION_CATEGORY, code: REMINDER_CATEGORY }] }, { coding: [{ system: this.deps.rules.notificationTypeSystem, code: 'APPOINTMENT_REMINDER_PATIENT' }] }],
          priority: 'routine',
          about: [{ reference: `Appointment/${appointmentId}` }],
          ...(patientOf(appt!) ? { subject: patientOf(appt!)! } : {}),
          occurrenceDateTime: due,
          authoredOn: new Date().toISOString(),
        };
        const change = existing ? await tx.create(next, 'PUT', id, existing) : await tx.create(next, 'PUT', id);
        return `${id}_${change.versionId}`;
      }),
    );
  }

  /** The delayed job: sleeps until due, then reminds (see the class comment). */
  fire(jobId: string): Promise<PlannedSend[]> {
    return asSystem(async () => {
      const [id, version] = jobId.split('_') as [string, string];
      const stored = await this.deps.store.read('CommunicationRequest', id);
      if (!stored?.json || stored.deleted || stored.versionId !== version) return [];
      const request = JSON.parse(stored.json) as CommunicationRequest;
      if (request.status !== 'active' || !request.occurrenceDateTime) return [];
      const wait = Date.parse(request.occurrenceDateTime) - Date.now();
      if (wait > 0) throw new RetryLaterError('reminder not due yet', Math.min(wait, MAX_SLEEP_MS));
      const apptId = request.about?.[0]?.reference?.split('/')[1] ?? '';
      const appt = await this.deps.store.read('Appointment', apptId);
      const current = appt?.json && !appt.deleted ? (JSON.parse(appt.json) as Appointment & { id: string }) : undefined;
      let sends: PlannedSend[] = [];
      if (current?.status === 'booked' && current.start && Date.parse(current.start) > Date.now()) {
        sends = await this.deps.planner.plan({
          event: 'APPOINTMENT_REMINDER',
          focus: current,
          focusReference: `Appointment/${apptId}/_history/${appt!.versionId}`,
          basedOn: `CommunicationRequest/${id}`,
          key: `CommunicationRequest/${id}/_history/${version}#APPOINTMENT_REMINDER`,
        });
      }
      await this.deps.store.transaction(async (tx) => {
        const now = await tx.readForUpdate('CommunicationRequest', id);
        if (!now?.json || now.versionId !== version) return;
        await tx.update(withStatus(JSON.parse(now.json) as CommunicationRequest, current?.status === 'booked' ? 'completed' : 'revoked'), now);
      });
      return sends;
    });
  }
}

function patientOf(appt: Appointment): Reference | undefined {
  const ref = appt.participant?.find((p) => p.actor?.reference?.startsWith('Patient/'))?.actor?.reference;
  return ref ? { reference: ref } : undefined;
}

function withStatus(request: CommunicationRequest, status: CommunicationRequest['status']): CommunicationRequest {
  return { ...request, status };
}
