import { sql } from 'kysely';
import type { Db } from './db.js';

/**
 * SQL of recurring schedules and leave (src/workflows/schedules-generate.ts, schedules-leave.ts).
 * Like front-desk-store.ts: each function takes the executor of the transaction it runs in.
 */

/** Ids of the live Schedules that carry extension `url` (those the slot generator keeps), in id order. */
export async function schedulesWithExtension(db: Db, url: string): Promise<string[]> {
  const result = await sql<{ id: string }>`
    SELECT r.id FROM resource r
    WHERE r.resource_type = 'Schedule' AND NOT r.deleted
      AND r.content->'extension' @> ${JSON.stringify([{ url }])}::jsonb
    ORDER BY r.id`.execute(db);
  return result.rows.map((r) => r.id);
}

/** Ids of the live Slots of these Schedules that overlap [start, end) (open ends: null). */
export async function slotsOverlapping(db: Db, scheduleIds: readonly string[], start: string | null, end: string | null): Promise<string[]> {
  if (scheduleIds.length === 0) return [];
  const result = await sql<{ id: string }>`
    SELECT r.id FROM resource r
    WHERE r.resource_type = 'Slot' AND NOT r.deleted
      AND r.id IN (
        SELECT x.resource_id FROM search_reference x
        WHERE x.resource_type = 'Slot' AND x.param = 'schedule' AND x.target_type = 'Schedule' AND x.target_id = ANY(${[...scheduleIds]}::text[]))
      AND (${end}::timestamptz IS NULL OR (r.content->>'start')::timestamptz < ${end}::timestamptz)
      AND (${start}::timestamptz IS NULL OR (r.content->>'end')::timestamptz > ${start}::timestamptz)
    ORDER BY r.id`.execute(db);
  return result.rows.map((r) => r.id);
}
