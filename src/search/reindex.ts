import type { Resource } from 'fhir/r4.js';
import { CompiledQuery, sql, type Kysely } from 'kysely';
import { indexTables, rowsToColumns, unnestInsertSql } from './index-tables.js';
import type { SearchIndexer } from './indexer.js';
import { pdfTextHook } from './pdf-text.js';
import type { SearchParameterRegistry } from './registry.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

/**
 * Replaces the index rows of the given resources: one DELETE and one unnest INSERT per table.
 * Used by reindex and by tests; storage has its own batched writer with the same row format.
 */
export async function replaceIndexRows(executor: AnyDb, indexer: SearchIndexer, resources: readonly Resource[]): Promise<void> {
  if (resources.length === 0) return;
  const types = resources.map((r) => r.resourceType);
  const ids = resources.map((r) => r.id!);
  const perTable = new Map<string, Array<readonly [string, string, readonly unknown[]]>>(indexTables.map((s) => [s.table, []]));
  for (const r of resources) {
    // PDF attachments' text (full text) comes from the same extraction as on a write.
    const pdf = pdfTextHook(undefined, { resource: r });
    if (pdf) await pdf;
    for (const [table, rows] of indexer.extract(r)) {
      const list = perTable.get(table)!;
      for (const row of rows) list.push([r.resourceType, r.id!, row]);
    }
  }
  for (const spec of indexTables) {
    await sql`DELETE FROM ${sql.raw(spec.table)} WHERE (resource_type, resource_id) IN (SELECT * FROM unnest(${types}::text[], ${ids}::text[]))`.execute(executor);
    const rows = perTable.get(spec.table)!;
    if (rows.length) await executor.executeQuery(CompiledQuery.raw(unnestInsertSql(spec), rowsToColumns(spec, rows)));
  }
}

export interface ReindexOptions {
  /** Reindex for this SearchParameter url (its base types) and mark it ready when done. */
  url?: string;
  /** Or explicit resource types ('*' = all). */
  resourceTypes?: string[];
  batchSize?: number;
  onProgress?: (done: number) => void;
}

/**
 * The reindex hook: rebuilds the index rows of every current resource of the affected types in
 * batches (each batch one transaction, rows locked FOR UPDATE so a concurrent write of the same
 * resource waits), then marks the parameter ready so searches accept it.
 */
export async function reindex(deps: { db: AnyDb; registry: SearchParameterRegistry; indexer: SearchIndexer }, options: ReindexOptions): Promise<{ resources: number }> {
  const types = options.resourceTypes ?? (options.url ? deps.registry.typesFor(options.url) : ['*']);
  const all = types.includes('*');
  const batch = options.batchSize ?? 500;
  let done = 0;
  let after: [string, string] = ['', ''];
  for (;;) {
    const n = await deps.db.transaction().execute(async (trx) => {
      const rows = (
        await sql<{ resource_type: string; id: string; content: Resource | string }>`
          SELECT resource_type, id, content FROM resource
          WHERE deleted = false AND (resource_type, id) > (${after[0]}, ${after[1]})
          ${all ? sql`` : sql`AND resource_type = ANY(${types}::text[])`}
          ORDER BY resource_type, id LIMIT ${batch} FOR UPDATE`.execute(trx)
      ).rows;
      if (rows.length === 0) return 0;
      const resources = rows.map((r) => (typeof r.content === 'string' ? (JSON.parse(r.content) as Resource) : r.content));
      await replaceIndexRows(trx, deps.indexer, resources);
      const last = rows[rows.length - 1]!;
      after = [last.resource_type, last.id];
      return rows.length;
    });
    if (n === 0) break;
    done += n;
    options.onProgress?.(done);
  }
  if (options.url) deps.registry.markReady(options.url);
  return { resources: done };
}
