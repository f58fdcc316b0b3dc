import { sql, type Kysely, type RawBuilder } from 'kysely';
import type {
  CodeSystemData,
  ComposePart,
  ConceptMapRow,
  ExpandedRow,
  ExpandQuery,
  MapElementRow,
  StoredCodeSystem,
  StoredConcept,
  StoredValueSet,
  TermSource,
  TranslationRow,
  ValueSetRow,
} from './terminology-rows.js';
import { ExpansionPages } from './terminology-expansion-pages.js';
import { closureOf, filterCond, UnsupportedFilter, wordsOf } from './terminology-sql.js';

/**
 * Terminology tables (migrations/0019-terminology.ts): code systems with their concepts,
 * hierarchy closure and display words, value sets with their expansions computed on first use,
 * concept maps. The logic of the FHIR operations is in src/terminology/; this file only reads
 * and writes rows.
 */

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type TermDb = Kysely<any>;

export type {
  TermSource,
  CodeSystemRow,
  ConceptProperty,
  ConceptDesignation,
  ConceptRow,
  CodeSystemData,
  ValueSetRow,
  ConceptMapRow,
  MapElementRow,
  StoredCodeSystem,
  StoredConcept,
  StoredValueSet,
  ComposePart,
  ExpandQuery,
  ExpandedRow,
  TranslationRow,
} from './terminology-rows.js';
export { closureOf, UnsupportedFilter, wordsOf } from './terminology-sql.js';

/**
 * Where a definition comes from decides which one wins for a URL: an admin-loaded release over
 * stored resources over ours over the spec's.
 */
const RANK: Record<TermSource, number> = { implicit: 0, base: 0, local: 1, resource: 2, loaded: 3 };
/** Sources dropped when the built-in definitions change (made again on demand); never stored resources or loaded releases. */
const BUILT_IN = sql`('base', 'local', 'implicit')`;

const CHUNK = 20_000;
/**
 * Code systems with at least this many concepts get display-word rows, and expansions made of
 * them are filtered through those; smaller ones are filtered by scanning (cheaper to load: the
 * ~1,000 official code systems are small).
 */
export const WORD_INDEX_MIN = 1000;
/** Writes of at least this many rows are followed by ANALYZE of the terminology tables. */
const ANALYZE_AFTER = 10_000;
async function inChunks<T>(rows: readonly T[], write: (chunk: T[]) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < rows.length; i += CHUNK) await write(rows.slice(i, i + CHUNK));
}

const TABLE = { CodeSystem: 'terminology_code_system', ValueSet: 'terminology_value_set', ConceptMap: 'terminology_concept_map' } as const;

export class TerminologyStore {
  private readonly pages: ExpansionPages;

  /**
   * `bulkDb`: the connection for loading definitions and computing expansions, which may run
   * past the per-statement time limit of requests (a 100,000-code expansion on a busy machine).
   */
  constructor(
    readonly db: TermDb,
    readonly bulkDb: TermDb = db,
  ) {
    this.pages = new ExpansionPages(db);
  }

  async meta(key: string, ex: TermDb = this.db): Promise<string | undefined> {
    const r = await sql<{ value: string }>`SELECT value FROM terminology_meta WHERE key = ${key}`.execute(ex);
    return r.rows[0]?.value;
  }

  async setMeta(ex: TermDb, key: string, value: string): Promise<void> {
    await sql`INSERT INTO terminology_meta (key, value) VALUES (${key}, ${value}) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`.execute(ex);
  }

  /** Serialises terminology writers on `key` until the transaction ends (loading, expanding). */
  async lock(ex: TermDb, key: string): Promise<void> {
    await sql`SELECT pg_advisory_xact_lock(hashtextextended(${`terminology:${key}`}, 0))`.execute(ex);
  }

  // ---- writes ---------------------------------------------------------------------------

  /** The source now holding `url` in `table`, or undefined. */
  private async holder(ex: TermDb, table: string, url: string): Promise<{ source: TermSource; resource_id: string | null } | undefined> {
    const r = await sql<{ source: TermSource; resource_id: string | null }>`SELECT source, resource_id FROM ${sql.raw(table)} WHERE url = ${url}`.execute(ex);
    return r.rows[0];
  }

  /** Replaces the code system at `data.row.url` (unless a higher-ranked source holds it). Returns whether it was written. */
  async putCodeSystem(ex: TermDb, data: CodeSystemData): Promise<boolean> {
    const held = await this.holder(ex, 'terminology_code_system', data.row.url);
    if (held && RANK[held.source] > RANK[data.row.source]) return false;
    await this.dropConcepts(ex, [data.row.url]);
    await sql`DELETE FROM terminology_code_system WHERE url = ${data.row.url}`.execute(ex);
    await this.insertCodeSystems(ex, [data]);
    await this.invalidate(ex, [data.row.url], []);
    await this.analyzeIfLarge(ex, data.concepts.length);
    return true;
  }

  /** Removes the code system if resource `resourceId` holds it. Returns whether it did. */
  async deleteCodeSystemOf(ex: TermDb, resourceId: string): Promise<string[]> {
    const r = await sql<{ url: string }>`DELETE FROM terminology_code_system WHERE source = 'resource' AND resource_id = ${resourceId} RETURNING url`.execute(ex);
    const urls = r.rows.map((x) => x.url);
    if (urls.length) {
      await this.dropConcepts(ex, urls);
      await this.invalidate(ex, urls, []);
    }
    return urls;
  }

  private async dropConcepts(ex: TermDb, urls: string[]): Promise<void> {
    for (const t of ['terminology_concept', 'terminology_closure', 'terminology_word']) {
      await sql`DELETE FROM ${sql.raw(t)} WHERE system = ANY(${urls}::text[])`.execute(ex);
    }
  }

  /** Set-based insert of whole code systems (rows, concepts, closure, words): no row of theirs may exist yet. */
  async insertCodeSystems(ex: TermDb, list: readonly CodeSystemData[]): Promise<void> {
    if (list.length === 0) return;
    const rows = list.map((d) => d.row);
    await inChunks(rows, (c) =>
      sql`INSERT INTO terminology_code_system (url, version, name, title, status, source, resource_id, content, hierarchy_meaning, case_sensitive, property_defs, words)
        SELECT * FROM unnest(${c.map((r) => r.url)}::text[], ${c.map((r) => r.version ?? null)}::text[], ${c.map((r) => r.name ?? null)}::text[],
          ${c.map((r) => r.title ?? null)}::text[], ${c.map((r) => r.status ?? null)}::text[], ${c.map((r) => r.source)}::text[],
          ${c.map((r) => r.resourceId ?? null)}::text[], ${c.map((r) => r.content ?? null)}::text[], ${c.map((r) => r.hierarchyMeaning ?? null)}::text[],
          ${c.map((r) => r.caseSensitive ?? null)}::boolean[], ${c.map((r) => (r.propertyDefs?.length ? JSON.stringify(r.propertyDefs) : null))}::jsonb[],
          ${c.map((r) => (list.find((d) => d.row === r)?.concepts.length ?? 0) >= WORD_INDEX_MIN)}::boolean[])`.execute(ex),
    );
    const concepts = list.flatMap((d) => d.concepts.map((c, i) => ({ system: d.row.url, c, i })));
    await inChunks(concepts, (ch) =>
      sql`INSERT INTO terminology_concept (system, code, display, definition, active, seq, properties, designations)
        SELECT * FROM unnest(${ch.map((x) => x.system)}::text[], ${ch.map((x) => x.c.code)}::text[], ${ch.map((x) => x.c.display ?? null)}::text[],
          ${ch.map((x) => x.c.definition ?? null)}::text[], ${ch.map((x) => x.c.active)}::boolean[], ${ch.map((x) => x.i)}::int[],
          ${ch.map((x) => (x.c.properties?.length ? JSON.stringify(x.c.properties) : null))}::jsonb[],
          ${ch.map((x) => (x.c.designations?.length ? JSON.stringify(x.c.designations) : null))}::jsonb[])
        ON CONFLICT DO NOTHING`.execute(ex),
    );
    const closure = list.flatMap((d) =>
      closureOf(
        d.concepts.map((c) => c.code),
        d.edges,
      ).map((r) => ({ system: d.row.url, r })),
    );
    await inChunks(closure, (ch) =>
      sql`INSERT INTO terminology_closure (system, ancestor, descendant, depth)
        SELECT * FROM unnest(${ch.map((x) => x.system)}::text[], ${ch.map((x) => x.r[0])}::text[], ${ch.map((x) => x.r[1])}::text[], ${ch.map((x) => x.r[2])}::int[])
        ON CONFLICT DO NOTHING`.execute(ex),
    );
    const words = list.filter((d) => d.concepts.length >= WORD_INDEX_MIN).flatMap((d) => d.concepts.flatMap((c) => wordsOf(`${c.code} ${c.display ?? ''}`).map((w) => ({ system: d.row.url, w, code: c.code }))));
    await inChunks(words, (ch) =>
      sql`INSERT INTO terminology_word (system, word, code)
        SELECT * FROM unnest(${ch.map((x) => x.system)}::text[], ${ch.map((x) => x.w)}::text[], ${ch.map((x) => x.code)}::text[])
        ON CONFLICT DO NOTHING`.execute(ex),
    );
  }

  async putValueSet(ex: TermDb, row: ValueSetRow): Promise<boolean> {
    const held = await this.holder(ex, 'terminology_value_set', row.url);
    if (held && RANK[held.source] > RANK[row.source]) return false;
    await sql`DELETE FROM terminology_value_set WHERE url = ${row.url}`.execute(ex);
    await this.insertValueSets(ex, [row]);
    await this.invalidate(ex, [], [row.url]);
    return true;
  }

  async insertValueSets(ex: TermDb, rows: readonly ValueSetRow[]): Promise<void> {
    await inChunks(rows, (c) =>
      sql`INSERT INTO terminology_value_set (url, version, name, title, status, source, resource_id, compose, expansion, systems, imports)
        SELECT u, v, n, t, st, so, ri, co, ex, string_to_array(sy, ' '), string_to_array(im, ' ')
        FROM unnest(${c.map((r) => r.url)}::text[], ${c.map((r) => r.version ?? null)}::text[], ${c.map((r) => r.name ?? null)}::text[],
          ${c.map((r) => r.title ?? null)}::text[], ${c.map((r) => r.status ?? null)}::text[], ${c.map((r) => r.source)}::text[],
          ${c.map((r) => r.resourceId ?? null)}::text[], ${c.map((r) => (r.compose ? JSON.stringify(r.compose) : null))}::jsonb[],
          ${c.map((r) => (r.expansion ? JSON.stringify(r.expansion) : null))}::jsonb[],
          ${c.map((r) => r.systems.join(' '))}::text[], ${c.map((r) => r.imports.join(' '))}::text[]) AS x(u, v, n, t, st, so, ri, co, ex, sy, im)
        ON CONFLICT (url) DO NOTHING`.execute(ex),
    );
  }

  async deleteValueSetOf(ex: TermDb, resourceId: string): Promise<void> {
    const r = await sql<{ url: string }>`DELETE FROM terminology_value_set WHERE source = 'resource' AND resource_id = ${resourceId} RETURNING url`.execute(ex);
    const urls = r.rows.map((x) => x.url);
    if (urls.length) {
      await sql`DELETE FROM terminology_vs_member WHERE value_set = ANY(${urls}::text[])`.execute(ex);
      await this.invalidate(ex, [], urls);
    }
  }

  /**
   * Drops the expansions that depend on changed code systems or value sets (and those that
   * import them, transitively): they are computed again on next use.
   */
  async invalidate(ex: TermDb, systems: string[], valueSets: string[]): Promise<void> {
    let changed = valueSets;
    const first = await sql<{ url: string }>`
      UPDATE terminology_value_set SET expanded = false, error = NULL
      WHERE url = ANY(${valueSets}::text[]) OR systems && ${systems}::text[] RETURNING url`.execute(ex);
    changed = [...new Set([...changed, ...first.rows.map((r) => r.url)])];
    let frontier = changed;
    const seen = new Set(changed);
    while (frontier.length) {
      const next = await sql<{ url: string }>`
        UPDATE terminology_value_set SET expanded = false, error = NULL
        WHERE imports && ${frontier}::text[] AND NOT (url = ANY(${[...seen]}::text[])) RETURNING url`.execute(ex);
      frontier = next.rows.map((r) => r.url).filter((u) => !seen.has(u));
      for (const u of frontier) seen.add(u);
    }
    if (seen.size) await sql`DELETE FROM terminology_vs_member WHERE value_set = ANY(${[...seen]}::text[])`.execute(ex);
  }

  async putConceptMap(ex: TermDb, row: ConceptMapRow, elements: readonly MapElementRow[]): Promise<boolean> {
    const held = await this.holder(ex, 'terminology_concept_map', row.url);
    if (held && RANK[held.source] > RANK[row.source]) return false;
    await sql`DELETE FROM terminology_map_element WHERE concept_map = ${row.url}`.execute(ex);
    await sql`DELETE FROM terminology_concept_map WHERE url = ${row.url}`.execute(ex);
    await this.insertConceptMaps(ex, [{ row, elements }]);
    return true;
  }

  async insertConceptMaps(ex: TermDb, maps: ReadonlyArray<{ row: ConceptMapRow; elements: readonly MapElementRow[] }>): Promise<void> {
    for (const { row, elements } of maps) {
      await sql`INSERT INTO terminology_concept_map (url, version, name, source, resource_id, source_scope, target_scope)
        VALUES (${row.url}, ${row.version ?? null}, ${row.name ?? null}, ${row.source}, ${row.resourceId ?? null}, ${row.sourceScope ?? null}, ${row.targetScope ?? null})
        ON CONFLICT (url) DO NOTHING`.execute(ex);
      await inChunks(
        elements.map((e, i) => ({ e, i })),
        (c) =>
          sql`INSERT INTO terminology_map_element (concept_map, source_system, source_code, target_system, target_code, target_display, equivalence, comment, ord)
          SELECT ${row.url}, * FROM unnest(${c.map((x) => x.e.sourceSystem)}::text[], ${c.map((x) => x.e.sourceCode)}::text[], ${c.map((x) => x.e.targetSystem ?? null)}::text[],
            ${c.map((x) => x.e.targetCode ?? null)}::text[], ${c.map((x) => x.e.targetDisplay ?? null)}::text[], ${c.map((x) => x.e.equivalence)}::text[],
            ${c.map((x) => x.e.comment ?? null)}::text[], ${c.map((x) => x.i)}::int[])`.execute(ex),
      );
    }
  }

  async deleteConceptMapOf(ex: TermDb, resourceId: string): Promise<void> {
    const r = await sql<{ url: string }>`DELETE FROM terminology_concept_map WHERE source = 'resource' AND resource_id = ${resourceId} RETURNING url`.execute(ex);
    const urls = r.rows.map((x) => x.url);
    if (urls.length) await sql`DELETE FROM terminology_map_element WHERE concept_map = ANY(${urls}::text[])`.execute(ex);
  }

  /** Whether a definition of this type holds `url`. */
  async exists(type: 'CodeSystem' | 'ValueSet' | 'ConceptMap', url: string, ex: TermDb = this.db): Promise<boolean> {
    return (await sql`SELECT 1 FROM ${sql.raw(TABLE[type])} WHERE url = ${url}`.execute(ex)).rows.length > 0;
  }

  /** Every definition held, as `<type> <url>`. */
  async allUrls(ex: TermDb): Promise<Set<string>> {
    const out = new Set<string>();
    for (const [type, table] of Object.entries(TABLE)) {
      for (const r of (await sql<{ url: string }>`SELECT url FROM ${sql.raw(table)}`.execute(ex)).rows) out.add(`${type} ${r.url}`);
    }
    return out;
  }

  /**
   * Removes every definition of the spec and of terminology/ (not the stored resources'), before
   * they are loaded again: returns the URLs stored resources hold (those are not reloaded).
   */
  async clearBuiltIn(ex: TermDb): Promise<{ codeSystems: Set<string>; valueSets: Set<string>; conceptMaps: Set<string> }> {
    await sql`DELETE FROM terminology_concept WHERE system IN (SELECT url FROM terminology_code_system WHERE source IN ${BUILT_IN})`.execute(ex);
    await sql`DELETE FROM terminology_closure WHERE system IN (SELECT url FROM terminology_code_system WHERE source IN ${BUILT_IN})`.execute(ex);
    await sql`DELETE FROM terminology_word WHERE system IN (SELECT url FROM terminology_code_system WHERE source IN ${BUILT_IN})`.execute(ex);
    await sql`DELETE FROM terminology_code_system WHERE source IN ${BUILT_IN}`.execute(ex);
    await sql`DELETE FROM terminology_value_set WHERE source IN ${BUILT_IN}`.execute(ex);
    await sql`DELETE FROM terminology_map_element WHERE concept_map IN (SELECT url FROM terminology_concept_map WHERE source IN ${BUILT_IN})`.execute(ex);
    await sql`DELETE FROM terminology_concept_map WHERE source IN ${BUILT_IN}`.execute(ex);
    await sql`DELETE FROM terminology_vs_member`.execute(ex);
    await sql`UPDATE terminology_value_set SET expanded = false, error = NULL`.execute(ex);
    const urls = async (t: string) => new Set((await sql<{ url: string }>`SELECT url FROM ${sql.raw(t)}`.execute(ex)).rows.map((r) => r.url));
    return { codeSystems: await urls('terminology_code_system'), valueSets: await urls('terminology_value_set'), conceptMaps: await urls('terminology_concept_map') };
  }

  // ---- expansion ------------------------------------------------------------------------

  /** The SELECT (system, code, display) of one include or exclude's own system part (no valueSet imports). */
  private systemPart(part: ComposePart & { system: string }, hasConcepts: boolean): RawBuilder<unknown> {
    const system = part.system;
    if (part.concept?.length) {
      const codes = part.concept.map((c) => c.code);
      const displays = part.concept.map((c) => c.display ?? null);
      // Enumerated codes: those of a code system we hold must exist in it; others are taken as written.
      return hasConcepts
        ? sql`SELECT ${system}::text AS system, x.code, coalesce(c.display, x.display) AS display, x.n
            FROM unnest(${codes}::text[], ${displays}::text[]) WITH ORDINALITY AS x(code, display, n)
            JOIN terminology_concept c ON c.system = ${system} AND c.code = x.code`
        : sql`SELECT ${system}::text AS system, x.code, x.display, x.n FROM unnest(${codes}::text[], ${displays}::text[]) WITH ORDINALITY AS x(code, display, n)`;
    }
    if (!hasConcepts) return sql`SELECT ${system}::text AS system, ''::text AS code, NULL::text AS display, 0::bigint AS n`;
    const conds = (part.filter ?? []).map((f) => filterCond(system, f));
    const where = conds.length ? sql.join(conds, sql` AND `) : sql`TRUE`;
    return sql`SELECT c.system, c.code, c.display, c.seq::bigint AS n FROM terminology_concept c WHERE c.system = ${system} AND ${where}`;
  }

  /** Which of these systems have concepts here. */
  async systemsWithConcepts(ex: TermDb, systems: string[]): Promise<Set<string>> {
    if (systems.length === 0) return new Set();
    const r = await sql<{ url: string }>`
      SELECT url FROM terminology_code_system s WHERE url = ANY(${systems}::text[]) AND EXISTS (SELECT 1 FROM terminology_concept c WHERE c.system = s.url)`.execute(ex);
    return new Set(r.rows.map((x) => x.url));
  }

  /**
   * Fills the expansion of `url` in compose order: each include appended (imports first expanded
   * themselves), then each exclude removed. `imports` must already be expanded.
   */
  async writeExpansion(ex: TermDb, url: string, include: ComposePart[], exclude: ComposePart[], held: Set<string>): Promise<number> {
    let written = 0;
    await sql`DELETE FROM terminology_vs_member WHERE value_set = ${url}`.execute(ex);
    for (const part of include) {
      const imports = part.valueSet ?? [];
      let select: RawBuilder<unknown> | undefined;
      if (part.system) select = this.systemPart({ ...part, system: part.system }, held.has(part.system));
      for (const vs of imports) {
        const own = sql`SELECT m.system, m.code, m.display, m.ord AS n FROM terminology_vs_member m WHERE m.value_set = ${vs}`;
        // system and imports together: the intersection (a whole-system member '' keeps the other side).
        select = select
          ? sql`SELECT a.system, a.code, a.display, a.n FROM (${select}) a WHERE EXISTS (SELECT 1 FROM terminology_vs_member m WHERE m.value_set = ${vs} AND m.system = a.system AND m.code IN (a.code, ''))`
          : own;
      }
      if (!select) continue;
      const r = await sql`INSERT INTO terminology_vs_member (value_set, system, code, display)
        SELECT ${url}, s.system, s.code, s.display FROM (${select}) s ORDER BY s.n, s.code ON CONFLICT DO NOTHING`.execute(ex);
      written += Number(r.numAffectedRows ?? 0);
    }
    for (const part of exclude) {
      if (part.system) {
        const select = this.systemPart({ ...part, system: part.system }, held.has(part.system));
        await sql`DELETE FROM terminology_vs_member m USING (${select}) s WHERE m.value_set = ${url} AND m.system = s.system AND m.code = s.code`.execute(ex);
      }
      for (const vs of part.valueSet ?? []) {
        await sql`DELETE FROM terminology_vs_member m USING terminology_vs_member x
          WHERE m.value_set = ${url} AND x.value_set = ${vs} AND m.system = x.system AND m.code = x.code`.execute(ex);
      }
    }
    return written;
  }

  /** Writes an expansion given as a list (a ValueSet shipped with its expansion). */
  async writeListedExpansion(ex: TermDb, url: string, rows: ReadonlyArray<{ system: string; code: string; display?: string }>): Promise<void> {
    await sql`DELETE FROM terminology_vs_member WHERE value_set = ${url}`.execute(ex);
    await inChunks(rows, (c) =>
      sql`INSERT INTO terminology_vs_member (value_set, system, code, display)
        SELECT ${url}, s, c, d FROM unnest(${c.map((r) => r.system)}::text[], ${c.map((r) => r.code)}::text[], ${c.map((r) => r.display ?? null)}::text[]) WITH ORDINALITY AS x(s, c, d, n)
        ORDER BY n ON CONFLICT DO NOTHING`.execute(ex),
    );
  }

  /** Fresh statistics after a large write, so the next statements are planned for the new sizes. */
  async analyzeIfLarge(ex: TermDb, rows: number): Promise<void> {
    if (rows >= ANALYZE_AFTER) await this.analyzeTables(ex);
  }

  async analyzeTables(ex: TermDb): Promise<void> {
    for (const t of ['terminology_code_system', 'terminology_concept', 'terminology_closure', 'terminology_word', 'terminology_vs_member']) await sql`ANALYZE ${sql.raw(t)}`.execute(ex);
  }

  /** Removes a value set and its expansion (an inline value set after its operation). */
  async dropValueSet(ex: TermDb, url: string): Promise<void> {
    await sql`DELETE FROM terminology_vs_member WHERE value_set = ${url}`.execute(ex);
    await sql`DELETE FROM terminology_value_set WHERE url = ${url}`.execute(ex);
  }

  async markExpanded(ex: TermDb, url: string, error?: string): Promise<void> {
    // Filtered through display words when it is large and all of its codes have word rows.
    await sql`UPDATE terminology_value_set SET expanded = ${error === undefined}, error = ${error ?? null},
      word_indexed = (SELECT count(*) >= ${WORD_INDEX_MIN} FROM terminology_vs_member m WHERE m.value_set = ${url})
        AND NOT EXISTS (SELECT 1 FROM terminology_vs_member m WHERE m.value_set = ${url}
          AND NOT EXISTS (SELECT 1 FROM terminology_code_system s WHERE s.url = m.system AND s.words))
      WHERE url = ${url}`.execute(ex);
  }

  // ---- reads ----------------------------------------------------------------------------

  async codeSystem(url: string, ex: TermDb = this.db): Promise<StoredCodeSystem | undefined> {
    return (await sql<StoredCodeSystem>`SELECT * FROM terminology_code_system WHERE url = ${url}`.execute(ex)).rows[0];
  }

  async codeSystemOfResource(resourceId: string): Promise<StoredCodeSystem | undefined> {
    return (await sql<StoredCodeSystem>`SELECT * FROM terminology_code_system WHERE source = 'resource' AND resource_id = ${resourceId}`.execute(this.db)).rows[0];
  }

  async valueSet(url: string, ex: TermDb = this.db): Promise<StoredValueSet | undefined> {
    return (await sql<StoredValueSet>`SELECT url, version, name, title, status, source, resource_id, compose, expansion, expanded, word_indexed, error FROM terminology_value_set WHERE url = ${url}`.execute(ex))
      .rows[0];
  }

  async valueSetOfResource(resourceId: string): Promise<StoredValueSet | undefined> {
    return (
      await sql<StoredValueSet>`SELECT url, version, name, title, status, source, resource_id, compose, expansion, expanded, word_indexed, error FROM terminology_value_set WHERE source = 'resource' AND resource_id = ${resourceId}`.execute(
        this.db,
      )
    ).rows[0];
  }

  async conceptMapUrlOfResource(resourceId: string): Promise<string | undefined> {
    return (await sql<{ url: string }>`SELECT url FROM terminology_concept_map WHERE source = 'resource' AND resource_id = ${resourceId}`.execute(this.db)).rows[0]?.url;
  }

  async conceptMapExists(url: string): Promise<boolean> {
    return (await sql`SELECT 1 FROM terminology_concept_map WHERE url = ${url}`.execute(this.db)).rows.length > 0;
  }

  async concept(system: string, code: string): Promise<StoredConcept | undefined> {
    return (await sql<StoredConcept>`SELECT * FROM terminology_concept WHERE system = ${system} AND code = ${code}`.execute(this.db)).rows[0];
  }

  /** A code compared without case (code systems that are not case sensitive). */
  async conceptIgnoringCase(system: string, code: string): Promise<StoredConcept | undefined> {
    return (await sql<StoredConcept>`SELECT * FROM terminology_concept WHERE system = ${system} AND lower(code) = lower(${code}) LIMIT 1`.execute(this.db)).rows[0];
  }

  /** Direct parents and children of a concept. */
  async neighbours(system: string, code: string): Promise<{ parents: StoredConcept[]; children: StoredConcept[] }> {
    const r = await sql<StoredConcept & { rel: string }>`
      SELECT 'parent' AS rel, c.* FROM terminology_closure h JOIN terminology_concept c ON c.system = h.system AND c.code = h.ancestor
        WHERE h.system = ${system} AND h.descendant = ${code} AND h.depth = 1
      UNION ALL
      SELECT 'child' AS rel, c.* FROM terminology_closure h JOIN terminology_concept c ON c.system = h.system AND c.code = h.descendant
        WHERE h.system = ${system} AND h.ancestor = ${code} AND h.depth = 1`.execute(this.db);
    return { parents: r.rows.filter((x) => x.rel === 'parent'), children: r.rows.filter((x) => x.rel === 'child') };
  }

  /** Whether `ancestor` subsumes `descendant` (or is it) in `system`. */
  async subsumes(system: string, ancestor: string, descendant: string): Promise<boolean> {
    return (await sql`SELECT 1 FROM terminology_closure WHERE system = ${system} AND ancestor = ${ancestor} AND descendant = ${descendant}`.execute(this.db)).rows.length > 0;
  }

  /** A page of an expansion, filtered by display words (each a prefix of a word of the display or code), and its total. */
  expandPage(url: string, q: ExpandQuery): Promise<{ total: number | undefined; rows: ExpandedRow[] }> {
    return this.pages.expandPage(url, q);
  }

  /** Systems a value set takes whole because the server holds none of their concepts. */
  async wholeSystems(url: string): Promise<string[]> {
    return (await sql<{ system: string }>`SELECT system FROM terminology_vs_member WHERE value_set = ${url} AND code = ''`.execute(this.db)).rows.map((r) => r.system);
  }

  /** Members of an expansion with this code (in `system` when given, whole-system members included). */
  async members(url: string, system: string | undefined, code: string): Promise<Array<{ system: string; code: string; display: string | null }>> {
    const sys = system === undefined ? sql`TRUE` : sql`m.system = ${system}`;
    return (
      await sql<{ system: string; code: string; display: string | null }>`
        SELECT m.system, m.code, coalesce(c.display, m.display) AS display
        FROM terminology_vs_member m LEFT JOIN terminology_concept c ON c.system = m.system AND c.code = m.code
        WHERE m.value_set = ${url} AND ${sys} AND m.code IN (${code}, '') ORDER BY m.code DESC`.execute(this.db)
    ).rows;
  }

  /**
   * Map elements from `system|code` (to `targetSystem` when given). `reverse`: elements whose
   * target is `system|code`, read backwards (their source as the result; coming from
   * `targetSystem` when given).
   */
  async translations(system: string, code: string, conceptMap: string | undefined, targetSystem: string | undefined, reverse = false): Promise<TranslationRow[]> {
    const [from, to] = reverse ? ['target', 'source'] : ['source', 'target'];
    const conds: RawBuilder<unknown>[] = [sql`${sql.ref(`e.${from}_system`)} = ${system}`, sql`${sql.ref(`e.${from}_code`)} = ${code}`];
    if (conceptMap) conds.push(sql`e.concept_map = ${conceptMap}`);
    if (targetSystem) conds.push(sql`${sql.ref(`e.${to}_system`)} = ${targetSystem}`);
    // Reversed: the display of the source concept, when the server holds its code system.
    const select = reverse
      ? sql`e.source_system AS target_system, e.source_code AS target_code,
          (SELECT c.display FROM terminology_concept c WHERE c.system = e.source_system AND c.code = e.source_code) AS target_display`
      : sql`e.target_system, e.target_code, e.target_display`;
    return (
      await sql<TranslationRow>`SELECT e.concept_map, ${select}, e.equivalence, e.comment
        FROM terminology_map_element e WHERE ${sql.join(conds, sql` AND `)} ORDER BY e.concept_map, e.ord`.execute(this.db)
    ).rows;
  }
}

