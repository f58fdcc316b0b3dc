import { sql, type Kysely } from 'kysely';

/**
 * The audit trail's own append-only table (src/storage/audit-store.ts, src/audit/audit-search.ts).
 *
 * One row per AuditEvent, where the general write path paid two copies of the JSON (`resource`
 * and `resource_history`), six btree entries for them and ~13 search index rows with 2–4 btree
 * entries each: measured ~4× cheaper per event (14k vs 3.2k events/s on PostgreSQL 15).
 *
 * `audit_event` INHERITS both `resource` and `resource_history` (their columns merge: one
 * physical row is the current version and its only history version). Every existing reader of
 * those tables — read, vread, _history (instance, type, system), includes, $everything,
 * $export, history-at — sees AuditEvents unchanged, while no AuditEvent row is written to the
 * parents. The CHECKs let the planner drop the child from queries of any other type (constraint
 * exclusion applies to inheritance children at its default setting, `partition`).
 *
 * Search does not use the generic index tables: `search_keys` holds one text key per indexed
 * value (`param=code`, `param=system|code`, `param>Type/id`, …; see src/audit/audit-keys.ts), under
 * ONE GIN index (fast-update pending list: inserts are batched into the index), plus `recorded`
 * for `date`. Durable: a plain logged table (no UNLOGGED: an audit trail must survive a crash).
 *
 * Indexes (each is paid on every request that reads patient data):
 *   - (resource_type, id) unique: reads, vreads and the joins of searches/includes probe it;
 *   - (last_updated, resource_type, id, version_id): system and type history walk it in order
 *     (with resource_type fixed the planner drops that key), `_lastUpdated`;
 *   - (recorded, id): `date` ranges and `_sort=date`;
 *   - GIN (search_keys): every other AuditEvent parameter.
 *
 * Append-only: a trigger refuses UPDATE and DELETE (the API refuses AuditEvent writes anyway).
 *
 * Citus note: a distributed `resource` cannot have inheritance children; sharding would turn
 * this into a separate distributed table read through the audit store (the search already is).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const stmts = [
    `CREATE TABLE audit_event (
      recorded timestamptz NOT NULL,
      search_keys text[] NOT NULL,
      CONSTRAINT audit_event_type CHECK (resource_type = 'AuditEvent'),
      CONSTRAINT audit_event_one_version CHECK (version_id = 1 AND NOT deleted AND method = 'POST')
    ) INHERITS (resource, resource_history)`,
    `CREATE UNIQUE INDEX audit_event_id ON audit_event (resource_type, id)`,
    `CREATE INDEX audit_event_last_updated ON audit_event (last_updated, resource_type, id, version_id)`,
    `CREATE INDEX audit_event_recorded ON audit_event (recorded, id)`,
    `CREATE INDEX audit_event_keys ON audit_event USING gin (search_keys)`,
    `CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'AuditEvents are append-only' USING ERRCODE = 'insufficient_privilege';
      END $$`,
    `CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event
      FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()`,
    // AuditEvents written the old way (resource + resource_history + index rows) move here,
    // their keys rebuilt from their index rows as keysFromIndexRows (src/audit/audit-keys.ts) does.
    `INSERT INTO audit_event (resource_type, id, version_id, last_updated, deleted, content, method, recorded, search_keys)
      SELECT r.resource_type, r.id, 1, r.last_updated, false, r.content, 'POST',
        coalesce((r.content->>'recorded')::timestamptz, r.last_updated),
        coalesce((SELECT array_agg(DISTINCT k ORDER BY k) FROM (
          SELECT t.param || '=' || t.code AS k FROM search_token t
            WHERE t.resource_type = r.resource_type AND t.resource_id = r.id AND t.code IS NOT NULL AND t.system IS NOT NULL
          UNION ALL SELECT t.param || '=' || coalesce(t.system, '') || '|' || t.code FROM search_token t
            WHERE t.resource_type = r.resource_type AND t.resource_id = r.id AND t.code IS NOT NULL
          UNION ALL SELECT f.param || '>' || f.target_type || '/' || f.target_id FROM search_reference f
            WHERE f.resource_type = r.resource_type AND f.resource_id = r.id AND f.target_type IS NOT NULL AND f.target_id IS NOT NULL
          UNION ALL SELECT f.param || '>' || f.url FROM search_reference f
            WHERE f.resource_type = r.resource_type AND f.resource_id = r.id AND f.url IS NOT NULL
          UNION ALL SELECT f.param || ':identifier=' || f.ident_value FROM search_reference f
            WHERE f.resource_type = r.resource_type AND f.resource_id = r.id AND f.ident_value IS NOT NULL
          UNION ALL SELECT f.param || ':identifier=' || coalesce(f.ident_system, '') || '|' || f.ident_value FROM search_reference f
            WHERE f.resource_type = r.resource_type AND f.resource_id = r.id AND f.ident_value IS NOT NULL
        ) keys), '{}')
      FROM ONLY resource r WHERE r.resource_type = 'AuditEvent' AND NOT r.deleted`,
    ...['search_token', 'search_string', 'search_date', 'search_number', 'search_quantity', 'search_reference', 'search_uri', 'search_composite'].map(
      (t) => `DELETE FROM ${t} WHERE resource_type = 'AuditEvent'`,
    ),
    `DELETE FROM ONLY resource_history WHERE resource_type = 'AuditEvent'`,
    `DELETE FROM ONLY resource WHERE resource_type = 'AuditEvent'`,
  ];
  for (const s of stmts) await sql.raw(s).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql.raw('DROP TABLE audit_event').execute(db);
  await sql.raw('DROP FUNCTION audit_event_append_only()').execute(db);
}
