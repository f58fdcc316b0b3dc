import { sql } from 'kysely';
import type { Db } from './db.js';

export interface EraseResult {
  /** Resources removed (the Patient and its compartment's members). */
  resources: number;
  /** Stored versions removed with them (current and history). */
  versions: number;
  /**
   * Raw HL7 v2 messages removed: those that wrote any version of an erased resource, and those
   * that wrote nothing (rejected, failed) but name the patient in a PID segment.
   */
  hl7Messages: number;
  /** Pharmacy stock movements whose link to an erased dispense was removed (quantities kept). */
  stockMovements: number;
}

/** Tells which raw HL7 v2 messages that wrote nothing are about the patient being erased. */
export interface UnwrittenMessageJudge {
  /** Values one of which such a message must contain (the patient's identifier values): the SQL pre-filter. */
  identifierValues(patient: unknown): string[];
  /** Whether the message (parsed) names the patient. */
  namesPatient(raw: string, patient: unknown): boolean;
}

/**
 * GDPR erasure of one patient's record (docs/backup.md): the Patient and every resource in its
 * compartment (`pairs`: member type → reference params, as $everything uses them), each with all
 * its versions and index rows, in one transaction. `check` runs first, on the Patient locked
 * FOR UPDATE (legal hold), and may throw. The audit trail (AuditEvent) is kept: it lives in
 * audit_event, which DELETE FROM ONLY resource / resource_history does not reach.
 *
 * Beyond the resource tables: the raw HL7 v2 messages that wrote any erased version (their text
 * is the patient's data) are deleted, and pharmacy stock movements made by an erased
 * MedicationDispense lose their link to it and its reason; their quantities and balances stay, so
 * the stock ledger still adds up and holds nothing of the patient.
 */
export async function erasePatientRecord(
  db: Db,
  patientId: string,
  pairs: ReadonlyArray<readonly [string, string]>,
  indexTables: readonly string[],
  check: (content: unknown) => void,
  unwrittenMessages?: UnwrittenMessageJudge,
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
    const versions = await sql<{ key: string }>`
      DELETE FROM ONLY resource_history WHERE (resource_type, id) IN ${keys}
      RETURNING resource_type || '/' || id || '/_history/' || version_id AS key`.execute(tx);
    const resources = await sql`DELETE FROM ONLY resource WHERE (resource_type, id) IN ${keys}`.execute(tx);
    // hl7_message.resources lists `Type/id/_history/v` of what each message wrote (GIN index, 0032).
    const messages = await sql`DELETE FROM hl7_message WHERE resources ?| ${versions.rows.map((r) => r.key)}::text[]`.execute(tx);
    // Messages that wrote nothing hold the patient's data too when their PID names the patient:
    // those containing one of its identifier values are read and judged by the caller's parser.
    let unwritten = 0;
    const patient = owner.rows[0]!.content;
    const identifierValues = unwrittenMessages?.identifierValues(patient) ?? [];
    if (unwrittenMessages && identifierValues.length > 0) {
      const patterns = identifierValues.map((v) => `%${v.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
      const candidates = await sql<{ id: string; raw: string }>`
        SELECT id, raw FROM hl7_message WHERE resources = '[]'::jsonb AND raw LIKE ANY(${patterns}::text[])`.execute(tx);
      const ids = candidates.rows.filter((m) => unwrittenMessages.namesPatient(m.raw, patient)).map((m) => m.id);
      if (ids.length > 0) unwritten = Number((await sql`DELETE FROM hl7_message WHERE id = ANY(${ids}::text[])`.execute(tx)).numAffectedRows ?? 0);
    }
    const dispenses = members.rows.filter((m) => m.resource_type === 'MedicationDispense').map((m) => `MedicationDispense/${m.resource_id}`);
    const movements = dispenses.length === 0 ? undefined : await sql`
      UPDATE pharmacy_stock_movement SET source = NULL, reason = NULL WHERE source = ANY(${dispenses}::text[])`.execute(tx);
    return {
      resources: Number(resources.numAffectedRows ?? 0),
      versions: versions.rows.length,
      hl7Messages: Number(messages.numAffectedRows ?? 0) + unwritten,
      stockMovements: Number(movements?.numAffectedRows ?? 0),
    };
  });
}
