import { createHash } from 'node:crypto';
import type { PractitionerRole, Schedule, Slot } from 'fhir/r4.js';
import { errors } from '../fhir/errors.js';
import type { JobRunner, QueueDefinition } from '../jobs/types.js';
import { referencing } from '../storage/front-desk-store.js';
import type { ResourceStore, StoreTransaction } from '../storage/resource-store.js';
import { schedulesWithExtension } from '../storage/schedule-store.js';
import { asSystem, detached } from '../subscriptions/write-context.js';
import { referenceTo } from './scheduling-rules.js';
import { EMERGENCY, planSlots, SLOT_LENGTH_URL, type PlanOptions } from './schedules.js';

/**
 * Slot generation (issue 12 §2): the Slots a Schedule's recurring pattern asks for, written
 * ahead of time through the horizon (SLOT_GENERATION_HORIZON_DAYS).
 *
 * Idempotent and safe with several processes: a generated Slot's id is derived from its
 * Schedule and start (`slot-<sha256>`), and one Schedule is generated at a time (a transaction
 * advisory lock on the Schedule), so running twice — or in two processes at once — writes every
 * slot once. A slot that exists (whatever became of it: booked, blocked, deleted) is left alone.
 *
 * Runs as a job of the project's job runner (queue `slot-generation`, BullMQ with REDIS_URL,
 * else in-process): every SLOT_GENERATION_INTERVAL_MINUTES (and at start) each process queues
 * one sweep job whose id is the time bucket, so with BullMQ the processes sharing Redis run it
 * once per interval; `POST /fhir/Schedule/{id}/$generate-slots` runs it now for one Schedule.
 */

export const SLOT_QUEUE = 'slot-generation';

export interface SlotGenerationSettings {
  horizonDays: number;
  intervalMinutes: number;
  timeZone: string;
  emergencyReservePercent: number;
}

export interface GenerationResult {
  planned: number;
  created: number;
  emergency: number;
}

export function generatedSlotId(scheduleId: string, start: number): string {
  return `slot-${createHash('sha256').update(`${scheduleId}|${new Date(start).toISOString()}`).digest('hex').slice(0, 40)}`;
}

/** The PractitionerRoles whose availability a Schedule follows: its actors, or the roles of its Practitioner actors. */
export async function rolesOfSchedule(tx: StoreTransaction, schedule: Schedule): Promise<PractitionerRole[]> {
  const roles = new Map<string, PractitionerRole>();
  for (const actor of schedule.actor ?? []) {
    const roleId = referenceTo('PractitionerRole', actor.reference);
    if (roleId) {
      const found = await tx.read('PractitionerRole', roleId);
      if (found?.json && !found.deleted) roles.set(roleId, JSON.parse(found.json) as PractitionerRole);
      continue;
    }
    const practitionerId = referenceTo('Practitioner', actor.reference);
    if (!practitionerId) continue;
    for (const row of await referencing(await tx.executor(), 'PractitionerRole', 'practitioner', 'Practitioner', practitionerId)) roles.set(row.id, JSON.parse(row.json) as PractitionerRole);
  }
  return [...roles.values()];
}

/** Writes the missing Slots of one Schedule (see the file comment). 404 for an unknown Schedule. */
export function generateSlots(store: ResourceStore, scheduleId: string, settings: SlotGenerationSettings, now = Date.now()): Promise<GenerationResult> {
  return asSystem(() =>
    store.transaction(async (tx) => {
      await tx.lockCondition(`slot-generation/Schedule/${scheduleId}`);
      const stored = await tx.read('Schedule', scheduleId);
      if (!stored?.json || stored.deleted) throw errors.notFound(`Schedule/${scheduleId} is not known`);
      const schedule = JSON.parse(stored.json) as Schedule;
      const options: PlanOptions = { horizonDays: settings.horizonDays, timeZone: settings.timeZone, emergencyReservePercent: settings.emergencyReservePercent, now };
      const plan = planSlots(schedule, await rolesOfSchedule(tx, schedule), options);
      const keyed = plan.map((p) => ({ ...p, id: generatedSlotId(scheduleId, p.start) }));
      await tx.prefetchForUpdate(keyed.map((p) => ({ resourceType: 'Slot', id: p.id })));
      const result: GenerationResult = { planned: plan.length, created: 0, emergency: 0 };
      for (const p of keyed) {
        if (await tx.readForUpdate('Slot', p.id)) continue;
        const slot: Slot = {
          resourceType: 'Slot',
          schedule: { reference: `Schedule/${scheduleId}` },
          status: 'free',
          start: new Date(p.start).toISOString(),
          end: new Date(p.end).toISOString(),
          ...(schedule.serviceType ? { serviceType: schedule.serviceType } : {}),
          ...(schedule.specialty ? { specialty: schedule.specialty } : {}),
          ...(p.emergency ? { appointmentType: { coding: [EMERGENCY], text: 'Reserved for emergencies' } } : {}),
        };
        await tx.create(slot, 'PUT', p.id);
        result.created++;
        if (p.emergency) result.emergency++;
      }
      return result;
    }),
  );
}

export interface SlotGenerationDeps {
  store: ResourceStore;
  db: Parameters<typeof schedulesWithExtension>[0];
  settings: SlotGenerationSettings;
  log: (message: string, error?: unknown) => void;
}

/** The `slot-generation` queue and its timer (wired by app.ts `eventDelivery`, as the notification queues). */
export function createSlotGeneration(deps: SlotGenerationDeps) {
  let timer: NodeJS.Timeout | undefined;
  let runner: JobRunner | undefined;
  const sweep = async () => {
    for (const id of await schedulesWithExtension(deps.db, SLOT_LENGTH_URL)) {
      try {
        await generateSlots(deps.store, id, deps.settings);
      } catch (e) {
        // One broken Schedule does not stop the others; the next sweep tries again.
        deps.log(`slot generation for Schedule/${id} failed`, e);
      }
    }
  };
  const queue: QueueDefinition = {
    name: SLOT_QUEUE,
    attempts: 3,
    backoffMs: 60_000,
    concurrency: 1,
    handler: async (payload) => {
      const [kind, id] = payload.jobId.split('_') as [string, string?];
      if (kind === 'schedule' && id) await generateSlots(deps.store, id, deps.settings);
      else await sweep();
    },
    onGiveUp: async (payload, error) => deps.log(`slot generation ${payload.jobId} given up`, error),
  };
  const intervalMs = deps.settings.intervalMinutes * 60_000;
  const enqueueSweep = () => {
    if (!runner) return;
    const r = runner;
    detached(() => r.enqueue(SLOT_QUEUE, { jobId: `all_${Math.floor(Date.now() / intervalMs)}` })).catch((e: unknown) => deps.log('slot generation not queued', e));
  };
  return {
    queue,
    start(r: JobRunner): void {
      runner = r;
      if (intervalMs <= 0) return;
      enqueueSweep();
      timer = setInterval(enqueueSweep, intervalMs);
      timer.unref();
    },
    close(): void {
      if (timer) clearInterval(timer);
      timer = undefined;
      runner = undefined;
    },
  };
}
