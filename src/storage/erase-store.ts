import { sql } from 'kysely';
import type { Db } from './db.js';

export interface EraseResult {
  /** Resources removed (the Patient and its compartment's members). */
  resources: number;
  /** Stored versions removed with them (current and history). */
  versions: number;
}

/**
 * GDPR erasure of one patient's record (docs/backup.md): the Patient and every resource in its
 * compartment (`pairs`: member type → reference params, as $everything uses them), each with all
 * its versions and index rows, in one transaction. `check` runs first, on the Patient locked
 * FOR UPDATE (legal hold), and may throw. The audit trail (AuditEvent) is kept: it lives in
 * audit_event, which DELETE FROM ONLY resource / resource_history does not reach.
 */
export async function erasePatientRecord(
  db: Db,
  patientId: string,
  pairs: ReadonlyArray<readonly [string, string]>,
  indexTables: readonly string[],
  check: (content: unknown) => void,
): Promise<EraseResult | undefined> {
  return db.transaction().execute(async (tx) => {
    const owner = await sql<{ content: unknown }>`
      SELECT content FROM ONLY resource WHERE resource_type = 'Patient' AND id = ${patientId} FOR UPDATE`.execute(tx);
    if (owner.rows.length === 0) return undefined;
    check(owner.rows[0]!.content);
    const members = pairs.length === 0 ? { rows: [] } : await sql<{ resource_type: string; resource_id: string }>`
      SELECT DISTINCT resource_type, resource_id FROM search_reference
      WHERE target_type = 'Patient' AND target_id = ${patientId}
        AND (resource_type, param) IN (SELECT * FROM unnest(${pairs.map((p) => p[0])}::text[], ${pairs.map((p) => p[1])}::text[]))`.execute(tx);
    const types = ['Patient', ...members.rows.map((m) => m.resource_type)];
    const ids = [patientId, ...members.rows.map((m) => m.resource_id)];
    const keys = sql`(SELECT * FROM unnest(${types}::text[], ${ids}::text[]))`;
    for (const table of indexTables) {
      await sql`DELETE FROM ${sql.table(table)} WHERE (resource_type, resource_id) IN ${keys}`.execute(tx);
    }
    await sql`DELETE FROM patient_name_token WHERE resource_id = ${patientId}`.execute(tx);
    const versions = await sql`DELETE FROM ONLY resource_history WHERE (resource_type, id) IN ${keys}`.execute(tx);
    const resources = await sql`DELETE FROM ONLY resource WHERE (resource_type, id) IN ${keys}`.execute(tx);
    return { resources: Number(resources.numAffectedRows ?? 0), versions: Number(versions.numAffectedRows ?? 0) };
  });
}
