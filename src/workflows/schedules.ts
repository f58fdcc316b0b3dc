import type { Period, PractitionerRole, Schedule, Slot } from 'fhir/r4.js';

/**
 * Recurring availability → Slots (seed 004 FR-AS-001 "recurring schedule patterns", "reserve
 * 20% slots for emergency appointments"; issue 12 §2). Pure planning, no I/O: the generator
 * (schedules-generate.ts) reads the data and writes what this plans.
 *
 * The pattern is standard R4 data on the PractitionerRole(s) of the Schedule's actor:
 * `availableTime` (daysOfWeek, allDay, availableStartTime, availableEndTime; local times of
 * SCHEDULE_TIME_ZONE) and `notAvailable` (leave and other exceptions: description, during). The
 * slot length is the Schedule's extension `slot-length` (profiles/
 * StructureDefinition-slot-length.json, a Duration in minutes); a Schedule without it is not
 * generated (slots kept by hand or by another system stay as they are).
 */

export const SLOT_LENGTH_URL = 'https://fhir.hospital.example.org/StructureDefinition/slot-length';
export const APPOINTMENT_TYPE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v2-0276';
export const EMERGENCY = { system: APPOINTMENT_TYPE_SYSTEM, code: 'EMERGENCY', display: 'Emergency appointment' };
/** Slot.comment of the slots a leave blocks (the leave's description follows). */
export const LEAVE_COMMENT = 'Unavailable (leave)';

const MINUTE = 60_000;
const DAY_CODES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;

/** Slot length in minutes from the Schedule's extension (min, h; UCUM or plain units), or undefined. */
export function slotLengthMinutes(schedule: Schedule): number | undefined {
  const ext = schedule.extension?.find((e) => e.url === SLOT_LENGTH_URL);
  const d = ext?.valueDuration;
  if (!d || typeof d.value !== 'number' || d.value <= 0) return undefined;
  const unit = d.code ?? d.unit ?? 'min';
  const minutes = unit === 'h' || unit === 'hour' || unit === 'hours' ? d.value * 60 : unit === 'min' || unit === 'minute' || unit === 'minutes' ? d.value : NaN;
  return Number.isFinite(minutes) && minutes >= 5 && minutes <= 24 * 60 ? minutes : undefined;
}

/** Offset of `zone` from UTC at instant `t` (ms to add to UTC to get the local wall clock). */
function zoneOffset(t: number, zone: string): number {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' })
      .formatToParts(new Date(t))
      .map((p) => [p.type, Number(p.value)]),
  );
  return Date.UTC(parts.year!, parts.month! - 1, parts.day!, parts.hour!, parts.minute!, parts.second!) - Math.floor(t / 1000) * 1000;
}

/** The instant of a local wall-clock time (`day` YYYY-MM-DD, `minutes` after midnight) in `zone`. */
export function localInstant(day: string, minutes: number, zone: string): number {
  const [y, m, d] = day.split('-').map(Number) as [number, number, number];
  const guess = Date.UTC(y, m - 1, d) + minutes * MINUTE;
  const first = guess - zoneOffset(guess, zone);
  return guess - zoneOffset(first, zone);
}

/** The local calendar day (YYYY-MM-DD) of instant `t` in `zone`. */
export function localDay(t: number, zone: string): string {
  return new Date(t + zoneOffset(t, zone)).toISOString().slice(0, 10);
}

function addDays(day: string, n: number): string {
  return new Date(Date.parse(`${day}T00:00:00Z`) + n * 86_400_000).toISOString().slice(0, 10);
}

function minutesOf(time: string | undefined): number | undefined {
  const m = /^([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?$/.exec(time ?? '');
  return m ? Number(m[1]) * 60 + Number(m[2]) : undefined;
}

export function overlaps(startMs: number, endMs: number, period: Period | undefined): boolean {
  if (!period) return false;
  const from = period.start ? Date.parse(period.start) : -Infinity;
  const to = period.end ? Date.parse(period.end) : Infinity;
  return startMs < to && endMs > from;
}

export interface PlannedSlot {
  start: number;
  end: number;
  /** One of the day's emergency reserve. */
  emergency: boolean;
}

export interface PlanOptions {
  /** Days ahead, today included. */
  horizonDays: number;
  timeZone: string;
  emergencyReservePercent: number;
  now: number;
}

/**
 * The slots the pattern asks for from today through the horizon (only those starting after
 * `now`, and not during a leave of any of the roles), each day's emergency reserve marked:
 * ceil(percent × the day's slots), spread evenly over the day. The reserve is chosen from the
 * day's whole pattern (leave and past slots included), so running again, or after a leave is
 * recorded, marks the same slots.
 */
export function planSlots(schedule: Schedule, roles: readonly PractitionerRole[], options: PlanOptions): PlannedSlot[] {
  const length = slotLengthMinutes(schedule);
  if (!length || schedule.active === false) return [];
  const active = roles.filter((r) => r.active !== false);
  const today = localDay(options.now, options.timeZone);
  const horizonStart = schedule.planningHorizon?.start ? Date.parse(schedule.planningHorizon.start) : -Infinity;
  const horizonEnd = schedule.planningHorizon?.end ? Date.parse(schedule.planningHorizon.end) : Infinity;
  const out: PlannedSlot[] = [];
  for (let i = 0; i < options.horizonDays; i++) {
    const day = addDays(today, i);
    const weekday = DAY_CODES[new Date(`${day}T00:00:00Z`).getUTCDay()]!;
    const starts = new Set<number>();
    for (const role of active) {
      for (const hours of role.availableTime ?? []) {
        if (hours.daysOfWeek && !hours.daysOfWeek.includes(weekday)) continue;
        const from = hours.allDay ? 0 : minutesOf(hours.availableStartTime);
        const to = hours.allDay ? 24 * 60 : minutesOf(hours.availableEndTime);
        if (from === undefined || to === undefined) continue;
        for (let m = from; m + length <= to; m += length) starts.add(localInstant(day, m, options.timeZone));
      }
    }
    const daySlots = [...starts].sort((a, b) => a - b).map((start) => ({ start, end: start + length * MINUTE }));
    const reserved = reserveIndexes(daySlots.length, options.emergencyReservePercent);
    daySlots.forEach((s, index) => {
      if (s.start <= options.now || s.start < horizonStart || s.end > horizonEnd) return;
      if (active.some((r) => (r.notAvailable ?? []).some((n) => overlaps(s.start, s.end, n.during)))) return;
      out.push({ ...s, emergency: reserved.has(index) });
    });
  }
  return out;
}

/** Indexes of ceil(percent × n) slots of n, spread evenly (the middle of each equal share). */
export function reserveIndexes(n: number, percent: number): Set<number> {
  const count = Math.min(n, Math.ceil((n * percent) / 100 - 1e-9));
  const out = new Set<number>();
  for (let k = 0; k < count; k++) out.add(Math.floor(((k + 0.5) * n) / count));
  return out;
}

/** Whether a Slot is one of the emergency reserve. */
export function isEmergencySlot(slot: Pick<Slot, 'appointmentType'>): boolean {
  return (slot.appointmentType?.coding ?? []).some((c) => c.system === APPOINTMENT_TYPE_SYSTEM && c.code === EMERGENCY.code);
}
