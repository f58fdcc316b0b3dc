import { sql, type Kysely } from 'kysely';

/**
 * The audit trail's archival (`npm run audit:archive`, src/audit/audit-archive.ts): events moved
 * to archive files may then be deleted, and only by it. The append-only trigger of migration 0014
 * still refuses every UPDATE, and every DELETE unless the deleting transaction has set
 * `fhir.audit_archive` to `on` (SET LOCAL), which only the archival does, after the events are in
 * a file on disk. This guards against the server's own code paths, not against the database's
 * owner (who could drop the trigger anyway): the archival leaves an AuditEvent of its own.
 *
 * Only the trigger function's body changes: the previous release runs unchanged on this schema.
 */
const ARCHIVE_ALLOWED = `CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF TG_OP = 'DELETE' AND current_setting('fhir.audit_archive', true) = 'on' THEN
      RETURN OLD;
    END IF;
    RAISE EXCEPTION 'AuditEvents are append-only' USING ERRCODE = 'insufficient_privilege';
  END $$`;

const APPEND_ONLY = `CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    RAISE EXCEPTION 'AuditEvents are append-only' USING ERRCODE = 'insufficient_privilege';
  END $$`;

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql.raw(ARCHIVE_ALLOWED).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql.raw(APPEND_ONLY).execute(db);
}
