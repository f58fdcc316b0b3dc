import { sql, type Kysely } from 'kysely';

/**
 * Search index tables (see src/search/index-tables.ts for the column meaning and the why).
 * Every table starts with (resource_type, resource_id) — co-location friendly, no FKs.
 * Value columns are COLLATE "C" so prefix LIKE can use plain btree indexes; resource_type and
 * resource_id keep the database collation of `resource` so joins and equivalences line up.
 *
 * Indexes (each one is paid on every write, so each has a job; measured with
 * bench/search.ts at 1M Observations, see src/search/README.md):
 *   - `_res` (resource_type, resource_id, param): deletes on update, correlated probes and
 *     sort joins. Dates and references carry their values (INCLUDE) so those probes are
 *     index-only.
 *   - value indexes led by (resource_type, param, value…) that end in resource_id: a search
 *     is an index-only range, and with the value fixed the ids come out in id order (pages in
 *     the default order stop after one page of index entries, counts need no sort).
 *   - date/number `low`/`high` indexes end in (…, resource_id) with the sort flags included:
 *     the same index walks `_sort` in order (sort rows are filtered inside the index).
 *   - references are looked up by target first (target_id is the selective column): one index
 *     serves `ref=Type/id`, chains, `_has`, `_revinclude` and compartments.
 *   - `resource_live`: the ids of current resources, so searches check "not deleted" and walk
 *     the id order without reading the resource rows.
 * Extended statistics tell the planner how (resource_type, param[, value]) go together (a
 * type's params are not independent of it); without them row estimates for a param are off by
 * the product of two frequencies and the planner picks full sorts over index walks.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const stmts = [
    `CREATE TABLE search_token (
      resource_type text NOT NULL, resource_id text NOT NULL, param text COLLATE "C" NOT NULL,
      system text COLLATE "C", code text COLLATE "C", text text COLLATE "C",
      type_system text COLLATE "C", type_code text COLLATE "C",
      sort_asc boolean NOT NULL DEFAULT false, sort_desc boolean NOT NULL DEFAULT false)`,
    `CREATE INDEX search_token_res ON search_token (resource_type, resource_id, param)`,
    // system after resource_id: `code=X` (any system) also comes out in id order
    `CREATE INDEX search_token_code ON search_token (resource_type, param, code, resource_id, system)`,

    `CREATE TABLE search_string (
      resource_type text NOT NULL, resource_id text NOT NULL, param text COLLATE "C" NOT NULL,
      value text COLLATE "C" NOT NULL, exact text COLLATE "C" NOT NULL,
      sort_asc boolean NOT NULL DEFAULT false, sort_desc boolean NOT NULL DEFAULT false)`,
    // value included: a chain's probe of its target (`subject:Patient.name=…`) stays index-only
    `CREATE INDEX search_string_res ON search_string (resource_type, resource_id, param) INCLUDE (value)`,
    `CREATE INDEX search_string_value ON search_string (resource_type, param, value, resource_id) INCLUDE (sort_asc, sort_desc)`,
    `CREATE INDEX search_string_multi ON search_string (resource_type, param, resource_id) WHERE NOT (sort_asc AND sort_desc)`,

    `CREATE TABLE search_date (
      resource_type text NOT NULL, resource_id text NOT NULL, param text COLLATE "C" NOT NULL,
      low timestamptz NOT NULL, high timestamptz NOT NULL,
      sort_asc boolean NOT NULL DEFAULT false, sort_desc boolean NOT NULL DEFAULT false)`,
    `CREATE INDEX search_date_res ON search_date (resource_type, resource_id, param) INCLUDE (low, high, sort_asc, sort_desc)`,
    `CREATE INDEX search_date_low ON search_date (resource_type, param, low, resource_id) INCLUDE (high, sort_asc)`,
    `CREATE INDEX search_date_high ON search_date (resource_type, param, high, resource_id) INCLUDE (low, sort_desc)`,
    // rows of resources with more than one date for a param: the rare case `_sort` + filter on
    // the same param must check beyond the sort row (search-service.ts#sortRowBranches)
    `CREATE INDEX search_date_multi ON search_date (resource_type, param, resource_id) WHERE NOT (sort_asc AND sort_desc)`,
    // rows wider than a day (periods, partial dates) and open ones: their widest span turns a
    // bound on one column into a bound on the other (src/search/sql/date.ts#widest)
    `CREATE INDEX search_date_span ON search_date (resource_type, param, (CASE WHEN isfinite(low) AND isfinite(high) THEN high - low END))
      WHERE (CASE WHEN isfinite(low) AND isfinite(high) THEN high - low > interval '24 hours' ELSE true END)`,

    `CREATE TABLE search_number (
      resource_type text NOT NULL, resource_id text NOT NULL, param text COLLATE "C" NOT NULL,
      low numeric NOT NULL, high numeric NOT NULL,
      sort_asc boolean NOT NULL DEFAULT false, sort_desc boolean NOT NULL DEFAULT false)`,
    `CREATE INDEX search_number_res ON search_number (resource_type, resource_id, param)`,
    `CREATE INDEX search_number_low ON search_number (resource_type, param, low, resource_id) INCLUDE (high, sort_asc)`,
    `CREATE INDEX search_number_high ON search_number (resource_type, param, high, resource_id) INCLUDE (low, sort_desc)`,

    `CREATE TABLE search_quantity (
      resource_type text NOT NULL, resource_id text NOT NULL, param text COLLATE "C" NOT NULL,
      low numeric, high numeric, system text COLLATE "C", code text COLLATE "C", unit text COLLATE "C",
      canon_code text COLLATE "C", canon_low numeric, canon_high numeric,
      sort_asc boolean NOT NULL DEFAULT false, sort_desc boolean NOT NULL DEFAULT false)`,
    `CREATE INDEX search_quantity_res ON search_quantity (resource_type, resource_id, param)`,
    `CREATE INDEX search_quantity_canon_low ON search_quantity (resource_type, param, canon_code, canon_low, resource_id) INCLUDE (canon_high)`,
    `CREATE INDEX search_quantity_canon_high ON search_quantity (resource_type, param, canon_code, canon_high, resource_id) INCLUDE (canon_low)`,
    // units without a UCUM canonical form (rare): compared on their own code
    `CREATE INDEX search_quantity_code ON search_quantity (resource_type, param, code, low) WHERE canon_code IS NULL`,

    `CREATE TABLE search_reference (
      resource_type text NOT NULL, resource_id text NOT NULL, param text COLLATE "C" NOT NULL,
      target_type text, target_id text, target_version text COLLATE "C", url text COLLATE "C",
      ident_system text COLLATE "C", ident_value text COLLATE "C",
      sort_asc boolean NOT NULL DEFAULT false, sort_desc boolean NOT NULL DEFAULT false)`,
    `CREATE INDEX search_reference_res ON search_reference (resource_type, resource_id, param) INCLUDE (target_type, target_id)`,
    `CREATE INDEX search_reference_target ON search_reference (target_id, target_type, resource_type, param, resource_id)`,
    `CREATE INDEX search_reference_url ON search_reference (resource_type, param, url) WHERE url IS NOT NULL`,
    `CREATE INDEX search_reference_ident ON search_reference (resource_type, param, ident_value) WHERE ident_value IS NOT NULL`,

    `CREATE TABLE search_uri (
      resource_type text NOT NULL, resource_id text NOT NULL, param text COLLATE "C" NOT NULL,
      value text COLLATE "C" NOT NULL,
      sort_asc boolean NOT NULL DEFAULT false, sort_desc boolean NOT NULL DEFAULT false)`,
    `CREATE INDEX search_uri_res ON search_uri (resource_type, resource_id, param)`,
    `CREATE INDEX search_uri_value ON search_uri (resource_type, param, value, resource_id)`,

    `CREATE TABLE search_composite (
      resource_type text NOT NULL, resource_id text NOT NULL, param text COLLATE "C" NOT NULL,
      c1_system text COLLATE "C", c1_code text COLLATE "C", c2_system text COLLATE "C", c2_code text COLLATE "C",
      c2_low numeric, c2_high numeric, c2_date_low timestamptz, c2_date_high timestamptz,
      c3_low numeric, c3_high numeric)`,
    `CREATE INDEX search_composite_res ON search_composite (resource_type, resource_id, param)`,
    `CREATE INDEX search_composite_c1 ON search_composite (resource_type, param, c1_code, c1_system)`,

    `CREATE INDEX resource_live ON resource (resource_type, id) WHERE deleted = false`,

    // Searches read a page (or count) by walking indexes; parallel workers cost more to start
    // (10–20 ms on a busy 2-core host) than the walk itself, and a server serving many users
    // has no idle cores to lend (bench: `code=X&_sort=date` 19–27 ms → 4.6 ms without them).
    ...['search_token', 'search_string', 'search_date', 'search_number', 'search_quantity', 'search_reference', 'search_uri', 'search_composite'].map(
      (t) => `ALTER TABLE ${t} SET (parallel_workers = 0)`,
    ),

    `CREATE STATISTICS search_token_stats (dependencies, mcv) ON resource_type, param, code FROM search_token`,
    `CREATE STATISTICS search_string_stats (dependencies, mcv) ON resource_type, param FROM search_string`,
    `CREATE STATISTICS search_date_stats (dependencies, mcv) ON resource_type, param FROM search_date`,
    `CREATE STATISTICS search_quantity_stats (dependencies, mcv) ON resource_type, param, canon_code FROM search_quantity`,
    `CREATE STATISTICS search_reference_stats (dependencies, mcv) ON resource_type, param, target_type FROM search_reference`,
    `CREATE STATISTICS search_composite_stats (dependencies, mcv) ON resource_type, param, c1_code FROM search_composite`,
  ];
  for (const s of stmts) await sql.raw(s).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql.raw('DROP INDEX IF EXISTS resource_live').execute(db);
  for (const t of ['search_token', 'search_string', 'search_date', 'search_number', 'search_quantity', 'search_reference', 'search_uri', 'search_composite']) {
    await sql.raw(`DROP TABLE IF EXISTS ${t}`).execute(db);
  }
}
