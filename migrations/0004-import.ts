import { sql, type Kysely } from 'kysely';

/**
 * Bulk import bookkeeping (scripts/import.ts and POST /fhir/$import).
 *
 * `import_progress`: what an import has done, per input. `scope` is whose progress it is
 * ('cli' for the command line, `job:<id>` for an $import job) and `source` identifies the input
 * by its content (sha256), so a renamed copy of a file already imported is recognised. Rows
 * are written in the same database transaction as the resources they account for: after an
 * interruption, a re-run skips what is done (`done`, or the first `lines` NDJSON lines) and
 * never writes anything twice.
 *
 * `import_input`: the inline NDJSON of an $import request, kept until its job is finished, so a
 * job resumed by another process (or after a restart) still has its input.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE import_progress (
      scope text NOT NULL,
      source text NOT NULL,
      name text NOT NULL,
      done boolean NOT NULL DEFAULT false,
      lines bigint NOT NULL DEFAULT 0,
      resources bigint NOT NULL DEFAULT 0,
      errors integer NOT NULL DEFAULT 0,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (scope, source)
    )`.execute(db);
  await sql`
    CREATE TABLE import_input (
      job_id text NOT NULL,
      input_no integer NOT NULL,
      body text NOT NULL,
      PRIMARY KEY (job_id, input_no)
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE import_input`.execute(db);
  await sql`DROP TABLE import_progress`.execute(db);
}
