import type { AuditEvent } from 'fhir/r4.js';
import { CompiledQuery } from 'kysely';
import type { Db } from './db.js';
import { newResourceId } from './resource-store.js';
import type { SearchIndexSource } from './types.js';

const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;

/** Keeps one statement's JSON parameters modest (events are ~1–2 KB each). */
export const MAX_EVENTS_PER_STATEMENT = 1000;

function checked(name: string): string {
  // Names come from the index layout (our code), never from input; checked all the same.
  if (!IDENTIFIER.test(name)) throw new Error(`invalid identifier ${name}`);
  return name;
}

/**
 * The audit trail's own write path. AuditEvents are built by the server, never sent by a
 * client, so they skip what the general write path does for untrusted input: no validation
 * per event (a test validates samples against the base specification), no read of a current
 * version (ids are fresh), no upsert, no deletes of old index rows, no before-write hooks.
 * A batch is ONE statement: the events as version 1 in `resource` and `resource_history`, and
 * their search index rows, so AuditEvent stays readable, searchable, includable and in
 * history exactly like any other type. Which index rows an AuditEvent gets is the search
 * registry's business (src/audit/audit-search.ts names the parameters it leaves out).
 */
export class AuditStore {
  private readonly texts = new Map<number, string>();

  constructor(
    private readonly db: Db,
    private readonly index: SearchIndexSource,
  ) {}

  /** Appends the events (ids and meta are assigned here); one statement per MAX_EVENTS_PER_STATEMENT. */
  async append(events: readonly AuditEvent[]): Promise<AuditEvent[]> {
    const stored: AuditEvent[] = [];
    for (let start = 0; start < events.length; start += MAX_EVENTS_PER_STATEMENT) {
      const chunk = events.slice(start, start + MAX_EVENTS_PER_STATEMENT).map((event) => {
        const lastUpdated = new Date().toISOString();
        return { ...event, id: newResourceId(), meta: { versionId: '1', lastUpdated } } satisfies AuditEvent;
      });
      await this.writeChunk(chunk);
      stored.push(...chunk);
    }
    return stored;
  }

  private async writeChunk(events: readonly AuditEvent[]): Promise<void> {
    if (events.length === 0) return;
    const versions = events.map((e) => `{"i":${JSON.stringify(e.id)},"u":${JSON.stringify(e.meta!.lastUpdated)},"c":${JSON.stringify(e)}}`);
    const parameters: string[] = [`[${versions.join(',')}]`];
    // Per index table: one element per event, [id, rows] (the type is the same for all).
    let tablesWritten = 0;
    const extracted = events.map((e) => this.index.extract(e));
    this.index.tables.forEach((layout, n) => {
      const parts: string[] = [];
      events.forEach((e, k) => {
        const rows = extracted[k]!.get(layout.table);
        if (rows && rows.length > 0) parts.push(`[${JSON.stringify(e.id)},${JSON.stringify(rows)}]`);
      });
      if (parts.length === 0) return;
      parameters.push(`[${parts.join(',')}]`);
      tablesWritten |= 1 << n;
    });
    const statement = CompiledQuery.raw(this.statementText(tablesWritten), parameters);
    await this.db.executeQuery(statement);
  }

  /** The statement for a set of index tables with rows (the text depends only on that set). */
  private statementText(tablesWritten: number): string {
    let text = this.texts.get(tablesWritten);
    if (text) return text;
    const ctes = [
      `v AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(i text, u timestamptz, c jsonb))`,
      `cur AS (INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content)
        SELECT 'AuditEvent', i, 1, u, false, c FROM v)`,
      `hist AS (INSERT INTO resource_history (resource_type, id, version_id, last_updated, deleted, method, content)
        SELECT 'AuditEvent', i, 1, u, false, 'POST', c FROM v)`,
    ];
    let parameter = 1;
    this.index.tables.forEach((layout, n) => {
      if (!(tablesWritten & (1 << n))) return;
      parameter++;
      const columns = layout.columns.map((c) => checked(c.name));
      const projections = layout.columns.map((c, k) => `(r->>${k})::${c.type}`);
      ctes.push(`ins${n} AS (INSERT INTO ${checked(layout.table)} (resource_type, resource_id, ${columns.join(', ')})
        SELECT 'AuditEvent', w->>0, ${projections.join(', ')}
        FROM jsonb_array_elements($${parameter}::jsonb) AS w, jsonb_array_elements(w->1) AS r)`);
    });
    text = `WITH ${ctes.join(',\n')} SELECT 1`;
    this.texts.set(tablesWritten, text);
    return text;
  }
}
