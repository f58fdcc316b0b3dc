import { sql, type Kysely } from 'kysely';

/**
 * System-level search (`GET /fhir?_lastUpdated=…`, `_sort=_lastUpdated`) and composite
 * quantities without a unit.
 *
 * - `resource_live_updated`: live resources of every type in `last_updated` order. A system
 *   search has no type to lead an index with; `_lastUpdated` ranges, their counts and
 *   `_sort=_lastUpdated` walk this one (index-only for counts).
 * - `search_composite.c2_value_low/high`: a quantity component as written (c2_low/high hold the
 *   UCUM-canonical value when the unit converts), so `code-value-quantity=X$gt70` compares with
 *   the stored value as the plain quantity parameter does. Rows of non-UCUM units were stored as
 *   written and are copied here; UCUM rows written before this migration get their value when
 *   the resource is written again or reindexed.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX resource_live_updated ON resource (last_updated, resource_type, id) WHERE deleted = false`.execute(db);
  await sql`ALTER TABLE search_composite ADD COLUMN c2_value_low numeric, ADD COLUMN c2_value_high numeric`.execute(db);
  await sql`UPDATE search_composite SET c2_value_low = c2_low, c2_value_high = c2_high
    WHERE (c2_low IS NOT NULL OR c2_high IS NOT NULL) AND c2_system IS DISTINCT FROM 'http://unitsofmeasure.org'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE search_composite DROP COLUMN c2_value_low, DROP COLUMN c2_value_high`.execute(db);
  await sql`DROP INDEX IF EXISTS resource_live_updated`.execute(db);
}
