import { sql } from 'kysely';
import type { Db } from './db.js';

/** What an import has done with one input (see migrations/0004-import.ts). */
export interface ImportProgress {
  done: boolean;
  /** NDJSON lines consumed (written or reported as errors) */
  lines: number;
  resources: number;
  errors: number;
}

interface ProgressRow {
  done: boolean;
  lines: string | number;
  resources: string | number;
  errors: number;
}

/**
 * The `import_progress` and `import_input` tables. `record` takes the executor of the store
 * transaction that wrote the resources it accounts for, so progress and data commit together.
 */
export class ImportStateStore {
  constructor(private readonly db: Db) {}

  async get(scope: string, source: string): Promise<ImportProgress | undefined> {
    const r = await sql<ProgressRow>`
      SELECT done, lines, resources, errors FROM import_progress WHERE scope = ${scope} AND source = ${source}`.execute(this.db);
    const row = r.rows[0];
    return row ? { done: row.done, lines: Number(row.lines), resources: Number(row.resources), errors: Number(row.errors) } : undefined;
  }

  async record(executor: Db, scope: string, source: string, name: string, p: ImportProgress): Promise<void> {
    await sql`
      INSERT INTO import_progress (scope, source, name, done, lines, resources, errors, updated_at)
      VALUES (${scope}, ${source}, ${name}, ${p.done}, ${p.lines}, ${p.resources}, ${p.errors}, now())
      ON CONFLICT (scope, source) DO UPDATE SET
        name = excluded.name, done = excluded.done, lines = excluded.lines,
        resources = excluded.resources, errors = excluded.errors, updated_at = now()`.execute(executor);
  }

  /** Forgets an input's progress (`--force`: import it again). */
  async reset(scope: string, source: string): Promise<void> {
    await sql`DELETE FROM import_progress WHERE scope = ${scope} AND source = ${source}`.execute(this.db);
  }

  /** Forgets all progress of a scope (a finished or removed $import job). */
  async removeScope(scope: string): Promise<void> {
    await sql`DELETE FROM import_progress WHERE scope = ${scope}`.execute(this.db);
  }

  async saveInputs(jobId: string, bodies: readonly string[]): Promise<void> {
    if (bodies.length === 0) return;
    await sql`
      INSERT INTO import_input (job_id, input_no, body)
      SELECT ${jobId}, n - 1, b FROM unnest(${[...bodies]}::text[]) WITH ORDINALITY AS x(b, n)`.execute(this.db);
  }

  async input(jobId: string, inputNo: number): Promise<string | undefined> {
    const r = await sql<{ body: string }>`SELECT body FROM import_input WHERE job_id = ${jobId} AND input_no = ${inputNo}`.execute(this.db);
    return r.rows[0]?.body;
  }

  async removeInputs(jobId: string): Promise<void> {
    await sql`DELETE FROM import_input WHERE job_id = ${jobId}`.execute(this.db);
  }
}
