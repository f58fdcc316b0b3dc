import type { Resource } from 'fhir/r4.js';
import { CompiledQuery, sql, type Kysely } from 'kysely';
import { DEFAULT_TEXT_SEARCH_LANGUAGE, fullTextRow } from '../search/full-text.js';
import { FULLTEXT, indexTableByName, REFERENCE, rowsToColumns, unnestInsertSql } from '../search/index-tables.js';
import { pdfTextHook } from '../search/pdf-text.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

/**
 * Derived rows that a migration introduced and that resources stored BEFORE it lack: the
 * full-text row of each resource (0028), the report facts (0030) and the reference display
 * column (0036). On a small database the
 * migration fills them at once; on a large one that would hold the start-up (and the migration
 * lock, and writes to `resource`) for minutes, so the migration only records the work in
 * `backfill` and the server does it after start-up, in batches, while serving (`Backfills`).
 *
 * A batch locks its resources (FOR UPDATE) and rewrites their rows from the current content,
 * so it cannot interleave with a write of the same resource, and redoing a batch (a crash
 * between two) changes nothing. Writes made meanwhile keep their rows themselves (write path,
 * trigger); the back-fill only repeats the same rows for them.
 */
export type BackfillName = 'search-text' | 'report-facts' | 'reference-display';

export const BACKFILL_NAMES: readonly BackfillName[] = ['search-text', 'report-facts', 'reference-display'];

/** The search index rows of one resource (SearchIndexer.extract), for back-fills of an index table. */
export type ExtractIndexRows = (resource: Resource) => Map<string, unknown[][]>;

/** Resources a migration fills in itself; above this the work is left to the running server. */
const DEFAULT_INLINE_LIMIT = 20_000;
const BATCH = 500;

/** The resource types whose report facts exist (the trigger's WHEN list of migration 0030). */
export const REPORT_FACT_TYPES = ['Invoice', 'ChargeItem', 'PaymentReconciliation', 'Appointment', 'Encounter', 'ServiceRequest', 'DiagnosticReport'];
// ChargeItems have no facts of their own (their refresh re-categorises invoice lines, which the
// invoices' own refresh reads from the ChargeItems anyway).
const REPORT_FACT_OWNERS = REPORT_FACT_TYPES.filter((t) => t !== 'ChargeItem');

export async function createBackfillTable(db: AnyDb): Promise<void> {
  await sql`
    CREATE TABLE IF NOT EXISTS backfill (
      name text PRIMARY KEY,
      after_type text NOT NULL DEFAULT '',
      after_id text NOT NULL DEFAULT '',
      done bigint NOT NULL DEFAULT 0,
      total bigint NOT NULL DEFAULT 0,
      started_at timestamptz NOT NULL DEFAULT now())`.execute(db);
}

function typesOf(name: BackfillName): readonly string[] | undefined {
  return name === 'report-facts' ? REPORT_FACT_OWNERS : undefined;
}

/**
 * For a migration: fills `name` at once when at most MIGRATION_INLINE_BACKFILL_LIMIT (default
 * 20,000) resources need it, else records it for the server to do after start-up.
 */
export async function fillOrDefer(db: AnyDb, name: BackfillName): Promise<void> {
  const limit = Number(process.env.MIGRATION_INLINE_BACKFILL_LIMIT || DEFAULT_INLINE_LIMIT);
  const types = typesOf(name);
  // Counting stops past the limit: a 10 M-row table is not counted in full at start-up.
  const counted = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM (
      SELECT 1 FROM ONLY resource WHERE NOT deleted ${types ? sql`AND resource_type IN (${sql.join(types)})` : sql``} LIMIT ${limit + 1}) s`.execute(db);
  const n = counted.rows[0]?.n ?? 0;
  if (n === 0) return;
  if (n <= limit) {
    let after: [string, string] = ['', ''];
    for (;;) {
      const batch = await fillBatch(db, name, after);
      if (!batch) return;
      after = batch.last;
    }
  }
  await record(db, name, n);
}

/**
 * For a migration whose rows need the server's search index extraction: always left to the
 * running server (when any resource exists), which does a small database within seconds.
 */
export async function deferBackfill(db: AnyDb, name: BackfillName): Promise<void> {
  const any = await sql<{ one: number }>`SELECT 1 AS one FROM ONLY resource WHERE NOT deleted LIMIT 1`.execute(db);
  if (any.rows.length > 0) await record(db, name, 1);
}

async function record(db: AnyDb, name: BackfillName, counted: number): Promise<void> {
  // The total shown while it runs: the planner's row estimate when there is one (counting a
  // large table exactly is what this avoids), never below what was counted.
  const estimate = await sql<{ n: number }>`SELECT greatest(reltuples, 0)::bigint::int AS n FROM pg_class WHERE oid = to_regclass('resource')`.execute(db);
  const total = Math.max(counted, estimate.rows[0]?.n ?? 0);
  await createBackfillTable(db);
  await sql`INSERT INTO backfill (name, total) VALUES (${name}, ${total}) ON CONFLICT (name) DO NOTHING`.execute(db);
}

/**
 * Rewrites the derived rows of the next BATCH live resources after `after` (key order) on
 * `executor`; undefined when there are none left. Run inside a transaction by `Backfills`.
 */
async function fillBatch(executor: AnyDb, name: BackfillName, after: [string, string], lock = false, extract?: ExtractIndexRows): Promise<{ last: [string, string]; count: number } | undefined> {
  const types = typesOf(name);
  const page = await sql<{ resource_type: string; id: string; json: string }>`
    SELECT resource_type, id, content::text AS json FROM ONLY resource
    WHERE NOT deleted AND (resource_type, id) > (${after[0]}, ${after[1]})
      ${types ? sql`AND resource_type IN (${sql.join(types)})` : sql``}
    ORDER BY resource_type, id LIMIT ${BATCH}
    ${lock ? sql`FOR UPDATE` : sql``}`.execute(executor);
  if (page.rows.length === 0) return undefined;
  if (name === 'search-text') {
    const language = process.env.FHIR_TEXT_SEARCH_LANGUAGE || DEFAULT_TEXT_SEARCH_LANGUAGE;
    await replaceTableRows(executor, FULLTEXT, page.rows, async (resource) => {
      // Inline PDFs are read as on a write (pdf-text.ts) before the text is gathered.
      const pdf = pdfTextHook(undefined, { resource });
      if (pdf) await pdf;
      const row = fullTextRow(resource, language);
      return row ? [row] : [];
    });
  } else if (name === 'reference-display') {
    if (!extract) throw new Error('the reference-display back-fill needs the search index extraction');
    await replaceTableRows(executor, REFERENCE, page.rows, (resource) => extract(resource).get(REFERENCE) ?? []);
  } else {
    await sql`
      SELECT count(report_facts_refresh(r.resource_type, r.id, r.content)) FROM ONLY resource r
      JOIN unnest(${page.rows.map((r) => r.resource_type)}::text[], ${page.rows.map((r) => r.id)}::text[]) AS k(t, i)
        ON r.resource_type = k.t AND r.id = k.i`.execute(executor);
  }
  const last = page.rows[page.rows.length - 1]!;
  return { last: [last.resource_type, last.id], count: page.rows.length };
}

/** Rewrites one index table's rows of these resources from their current content (`rowsOf`). */
async function replaceTableRows(
  executor: AnyDb,
  table: string,
  rows: ReadonlyArray<{ resource_type: string; id: string; json: string }>,
  rowsOf: (resource: Resource) => readonly unknown[][] | Promise<readonly unknown[][]>,
): Promise<void> {
  const spec = indexTableByName.get(table)!;
  const out: Array<readonly [string, string, readonly unknown[]]> = [];
  for (const r of rows) {
    for (const row of await rowsOf(JSON.parse(r.json) as Resource)) out.push([r.resource_type, r.id, row]);
  }
  await sql`DELETE FROM ${sql.table(table)} WHERE (resource_type, resource_id) IN (
    SELECT * FROM unnest(${rows.map((r) => r.resource_type)}::text[], ${rows.map((r) => r.id)}::text[]))`.execute(executor);
  if (out.length > 0) await executor.executeQuery(CompiledQuery.raw(unnestInsertSql(spec), rowsToColumns(spec, out)));
}

export interface BackfillProgress {
  done: number;
  total: number;
}

/**
 * The server's side: runs the recorded back-fills after start-up, one batch per transaction,
 * until none is left. Several processes may run it at once: a batch takes the back-fill's row
 * with SKIP LOCKED, so each batch is done by one of them.
 */
export class Backfills {
  private readonly pending = new Map<BackfillName, BackfillProgress>();
  private stopped = false;
  private running?: Promise<void>;

  constructor(private readonly deps: { db: AnyDb; log: (message: string) => void; extract: ExtractIndexRows; pauseMs?: number; afterDone?: () => void }) {}

  /** Reads what is left to do and starts working on it in the background. */
  async start(): Promise<void> {
    const table = await sql<{ t: string | null }>`SELECT to_regclass('backfill')::text AS t`.execute(this.deps.db);
    if (!table.rows[0]?.t) return;
    const rows = await sql<{ name: BackfillName; done: string; total: string }>`SELECT name, done::text, total::text FROM backfill`.execute(this.deps.db);
    for (const r of rows.rows) {
      if (BACKFILL_NAMES.includes(r.name)) this.pending.set(r.name, { done: Number(r.done), total: Number(r.total) });
    }
    if (this.pending.size === 0) return;
    this.deps.log(`back-filling after an upgrade: ${[...this.pending].map(([n, p]) => `${n} (${p.done} of about ${p.total})`).join(', ')}`);
    this.running = this.work();
  }

  /** Progress of `name` while it is still being filled; undefined once done (or never needed). */
  progress(name: BackfillName): BackfillProgress | undefined {
    return this.pending.get(name);
  }

  /** Resolves when every back-fill is done (tests) or the runner was stopped. */
  async idle(): Promise<void> {
    await this.running;
  }

  async close(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  private async work(): Promise<void> {
    for (const name of [...this.pending.keys()]) {
      while (!this.stopped && this.pending.has(name)) {
        try {
          const step = await this.step(name);
          if (step === 'done') this.finished(name);
          if (step === 'busy') await new Promise((resolve) => setTimeout(resolve, this.deps.pauseMs ?? 1000));
        } catch (e) {
          // A failed batch changed nothing; try again after a pause (the database may be restarting).
          this.deps.log(`back-fill ${name}: ${(e as Error).message}; retrying`);
          await new Promise((resolve) => setTimeout(resolve, 5000));
        }
      }
    }
    if (!this.stopped && this.pending.size === 0) this.deps.afterDone?.();
  }

  /** One batch in its own transaction: 'busy' when another process holds the back-fill. */
  private async step(name: BackfillName): Promise<'busy' | 'ok' | 'done'> {
    return this.deps.db.transaction().execute(async (trx) => {
      const row = await sql<{ after_type: string; after_id: string; done: string; total: string }>`
        SELECT after_type, after_id, done::text, total::text FROM backfill WHERE name = ${name} FOR UPDATE SKIP LOCKED`.execute(trx);
      const state = row.rows[0];
      if (!state) {
        // Held by another process, or finished by it.
        const still = await sql<{ one: number }>`SELECT 1 AS one FROM backfill WHERE name = ${name}`.execute(trx);
        return still.rows.length === 0 ? 'done' : 'busy';
      }
      const batch = await fillBatch(trx, name, [state.after_type, state.after_id], true, this.deps.extract);
      if (!batch) {
        await sql`DELETE FROM backfill WHERE name = ${name}`.execute(trx);
        return 'done';
      }
      await sql`UPDATE backfill SET after_type = ${batch.last[0]}, after_id = ${batch.last[1]}, done = done + ${batch.count} WHERE name = ${name}`.execute(trx);
      this.pending.set(name, { done: Number(state.done) + batch.count, total: Math.max(Number(state.total), Number(state.done) + batch.count) });
      return 'ok';
    });
  }

  private finished(name: BackfillName): void {
    if (this.pending.delete(name)) this.deps.log(`back-fill ${name} done`);
  }
}
