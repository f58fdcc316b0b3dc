import { sql, type Kysely } from 'kysely';

/**
 * Background jobs and bulk export output.
 *
 * `job` is the state clients poll (status, progress, manifest, errors). It lives in the
 * database, not in Redis or in process memory, so every server process answers a status
 * request the same way whichever process (or BullMQ worker) runs the job. `run_id` +
 * `heartbeat_at` are the claim of the run currently working on it: a second delivery of the
 * same job (BullMQ stall recovery, a restart) can only take over once the claim went stale.
 *
 * `export_output` holds the NDJSON files an export wrote, as ordered chunks (one row per
 * keyset page written), each a gzip member (a file is their concatenation, itself valid gzip).
 * Files are in the database rather than on a local disk so any process can serve a download
 * and removing a job removes its files in the same place; gzip (done by the job, off the
 * database) cuts what PostgreSQL writes (heap, TOAST, WAL) several times over.
 * No foreign keys (see 0001): outputs are removed explicitly with their job.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE job (
      id text PRIMARY KEY,
      queue text NOT NULL,
      status text NOT NULL,
      owner text,
      request jsonb NOT NULL,
      progress text,
      result jsonb,
      error jsonb,
      attempts integer NOT NULL DEFAULT 0,
      run_id text,
      heartbeat_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      finished_at timestamptz,
      expires_at timestamptz
    )`.execute(db);
  // Recovery sweeps look for unfinished jobs of a queue; retention looks for expired ones.
  await sql`CREATE INDEX job_unfinished ON job (queue, status) WHERE status IN ('accepted', 'in-progress')`.execute(db);
  await sql`CREATE INDEX job_expires ON job (expires_at) WHERE expires_at IS NOT NULL`.execute(db);
  await sql`
    CREATE TABLE export_output (
      job_id text NOT NULL,
      file_no integer NOT NULL,
      seq integer NOT NULL,
      kind text NOT NULL,
      resource_type text NOT NULL,
      count integer NOT NULL,
      body bytea NOT NULL,
      PRIMARY KEY (job_id, file_no, seq)
    )`.execute(db);
  // Chunks arrive gzip-compressed: PostgreSQL must not try to compress them again.
  await sql`ALTER TABLE export_output ALTER COLUMN body SET STORAGE EXTERNAL`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE export_output`.execute(db);
  await sql`DROP TABLE job`.execute(db);
}
