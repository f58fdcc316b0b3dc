import { sql } from 'kysely';
import type { Db } from './db.js';
import { MAX_INDEXED_TEXT } from '../search/indexer.js';

/** One identifier an HL7 v2 mapping looks up: resources of `resourceType` whose `identifier` is system|value. */
export interface IdentifierKey {
  resourceType: string;
  /** undefined / empty: an identifier without a system (matches index rows without one). */
  system?: string;
  value: string;
}

/**
 * Current (not deleted) resources carrying any of `keys` as `identifier`, in ONE statement over
 * the token index: what `identifier=system|value` searches find, for every type of a mapping
 * batch at once (the search service would compile and send one query per type). Values are
 * compared as the index stores them (cut at MAX_INDEXED_TEXT): callers check the exact
 * identifier in the content they read next, so a cut value can only add candidates.
 * Runs on the mapping transaction's connection, after its condition locks.
 */
export async function findByIdentifiers(executor: Db, keys: readonly IdentifierKey[], limit = 1000): Promise<Array<{ resourceType: string; id: string }>> {
  if (keys.length === 0) return [];
  const result = await sql<{ resource_type: string; resource_id: string }>`
    SELECT DISTINCT t.resource_type, t.resource_id
    FROM unnest(${keys.map((k) => k.resourceType)}::text[], ${keys.map((k) => k.system || null)}::text[],
                ${keys.map((k) => k.value.slice(0, MAX_INDEXED_TEXT))}::text[]) AS k(rt, s, v)
    JOIN search_token t ON t.resource_type = k.rt AND t.param = 'identifier' AND t.code = k.v
      AND (t.system = k.s OR (k.s IS NULL AND t.system IS NULL))
    JOIN resource r ON r.resource_type = t.resource_type AND r.id = t.resource_id AND r.deleted = false
    LIMIT ${limit}`.execute(executor);
  return result.rows.map((r) => ({ resourceType: r.resource_type, id: r.resource_id }));
}
