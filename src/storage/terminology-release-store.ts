import { sql } from 'kysely';
import type { CodeSystemRow, ConceptDesignation, ConceptProperty } from './terminology-rows.js';
import type { TermDb } from './terminology-store.js';
import { wordsOf } from './terminology-sql.js';

/**
 * Loading a large code system from its release files (src/terminology/release/): the rows are
 * streamed into temporary staging tables of one transaction, then the code system's old rows
 * are replaced by them (concepts, closure, display words) in the same transaction, so readers
 * see the old version or the new one, never a half-loaded one, and a failure leaves the old one.
 */

export interface StagedConcept {
  code: string;
  display?: string;
  active: boolean;
  properties?: ConceptProperty[];
  designations?: ConceptDesignation[];
}

/** An RF2 description (SNOMED CT): FSN or synonym of a concept. */
export interface StagedDescription {
  id: string;
  concept: string;
  term: string;
  type: string;
  language: string;
}

/** Rows of concepts per display-word page (keyset paging: never the whole system in memory). */
const WORD_PAGE = 5000;
/** SNOMED CT description types and acceptability (RF2 metadata concepts). */
export const SCT_FSN = '900000000000003001';
export const SCT_SYNONYM = '900000000000013009';
export const SCT_PREFERRED = '900000000000548007';

export class ReleaseStaging {
  private seq = 0;

  private constructor(private readonly ex: TermDb) {}

  /** Creates the staging tables (dropped at commit) on the transaction `ex`. */
  static async open(ex: TermDb): Promise<ReleaseStaging> {
    await sql`CREATE TEMP TABLE tl_concept (code text PRIMARY KEY, display text, active boolean NOT NULL, seq integer NOT NULL, properties jsonb, designations jsonb) ON COMMIT DROP`.execute(ex);
    await sql`CREATE TEMP TABLE tl_edge (parent text NOT NULL, child text NOT NULL) ON COMMIT DROP`.execute(ex);
    await sql`CREATE TEMP TABLE tl_desc (id text NOT NULL, concept text NOT NULL, term text NOT NULL, type text NOT NULL, lang text NOT NULL) ON COMMIT DROP`.execute(ex);
    await sql`CREATE TEMP TABLE tl_pref (description text NOT NULL, refset text NOT NULL) ON COMMIT DROP`.execute(ex);
    return new ReleaseStaging(ex);
  }

  /**
   * Concepts in file order (their expansion order); a code seen again keeps its first row.
   * Each batch is one JSON document read by json_to_recordset: far cheaper to send and parse
   * than arrays of jsonb (measured: the array form spent most of a LOINC load escaping).
   */
  async concepts(rows: readonly StagedConcept[]): Promise<void> {
    if (rows.length === 0) return;
    const first = this.seq;
    this.seq += rows.length;
    const doc = JSON.stringify(rows.map((r, i) => ({ c: r.code, d: r.display ?? null, a: r.active, n: first + i, p: r.properties?.length ? r.properties : null, g: r.designations?.length ? r.designations : null })));
    await sql`INSERT INTO tl_concept (code, display, active, seq, properties, designations)
      SELECT c, d, a, n, p, g FROM json_to_recordset(${doc}::json) AS x(c text, d text, a boolean, n integer, p jsonb, g jsonb)
      ON CONFLICT (code) DO NOTHING`.execute(this.ex);
  }

  /** Hierarchy edges [parent, child]. */
  async edges(rows: ReadonlyArray<readonly [string, string]>): Promise<void> {
    if (rows.length === 0) return;
    await sql`INSERT INTO tl_edge (parent, child) SELECT x->>0, x->>1 FROM json_array_elements(${JSON.stringify(rows)}::json) AS x`.execute(this.ex);
  }

  async descriptions(rows: readonly StagedDescription[]): Promise<void> {
    if (rows.length === 0) return;
    await sql`INSERT INTO tl_desc (id, concept, term, type, lang)
      SELECT id, concept, term, type, language FROM json_to_recordset(${JSON.stringify(rows)}::json) AS x(id text, concept text, term text, type text, language text)`.execute(this.ex);
  }

  /** Descriptions a language reference set marks preferred. */
  async preferred(rows: ReadonlyArray<{ description: string; refset: string }>): Promise<void> {
    if (rows.length === 0) return;
    await sql`INSERT INTO tl_pref (description, refset) SELECT description, refset FROM json_to_recordset(${JSON.stringify(rows)}::json) AS x(description text, refset text)`.execute(this.ex);
  }

  /**
   * SNOMED CT: each concept's display (the synonym preferred in the first of `refsets` that has
   * one, else the FSN without its semantic tag) and its designations (FSN and synonyms).
   */
  async describeFromDescriptions(refsets: readonly string[]): Promise<void> {
    await sql`ANALYZE tl_desc`.execute(this.ex);
    await sql`ANALYZE tl_pref`.execute(this.ex);
    await sql`CREATE INDEX ON tl_desc (concept)`.execute(this.ex);
    await sql`CREATE INDEX ON tl_pref (description)`.execute(this.ex);
    await sql`UPDATE tl_concept c SET
        designations = d.designations,
        display = coalesce(d.preferred, regexp_replace(d.fsn, '\\s*\\([^()]*\\)$', ''), d.synonym)
      FROM (
        SELECT x.concept,
          jsonb_agg(jsonb_build_object('language', x.lang, 'use', jsonb_build_object('system', 'http://snomed.info/sct', 'code', x.type,
              'display', CASE WHEN x.type = ${SCT_FSN} THEN 'Fully specified name' ELSE 'Synonym' END), 'value', x.term)
            ORDER BY x.type, x.id) AS designations,
          (array_agg(x.term ORDER BY x.rank, x.id) FILTER (WHERE x.rank IS NOT NULL))[1] AS preferred,
          min(x.term) FILTER (WHERE x.type = ${SCT_FSN}) AS fsn,
          min(x.term) FILTER (WHERE x.type = ${SCT_SYNONYM}) AS synonym
        FROM (SELECT t.*, (SELECT min(array_position(${refsets}::text[], p.refset)) FROM tl_pref p WHERE p.description = t.id AND t.type = ${SCT_SYNONYM}) AS rank FROM tl_desc t) x
        GROUP BY x.concept
      ) d WHERE d.concept = c.code`.execute(this.ex);
  }

  async conceptCount(): Promise<number> {
    return Number((await sql<{ n: string | number }>`SELECT count(*) AS n FROM tl_concept`.execute(this.ex)).rows[0]?.n ?? 0);
  }

  /**
   * Replaces the code system `row.url` by the staged rows: concepts, the transitive closure of
   * the edges (computed level by level in SQL, each pair at its shortest depth), display words.
   * `onPhase` reports each step (for the progress bar). Returns the number of concepts.
   */
  async replace(row: CodeSystemRow, wordIndexMin: number, onPhase: (phase: string) => void = () => undefined): Promise<{ concepts: number; closure: number; words: number }> {
    const ex = this.ex;
    const url = row.url;
    onPhase('replacing');
    for (const t of ['terminology_concept', 'terminology_closure', 'terminology_word']) await sql`DELETE FROM ${sql.raw(t)} WHERE system = ${url}`.execute(ex);
    await sql`DELETE FROM terminology_code_system WHERE url = ${url}`.execute(ex);
    await sql`ANALYZE tl_concept`.execute(ex);
    const concepts = Number(
      (
        await sql`INSERT INTO terminology_concept (system, code, display, definition, active, seq, properties, designations)
          SELECT ${url}, code, display, NULL, active, seq, properties, designations FROM tl_concept`.execute(ex)
      ).numAffectedRows ?? 0,
    );
    await sql`INSERT INTO terminology_code_system (url, version, name, title, status, source, resource_id, content, hierarchy_meaning, case_sensitive, property_defs, words)
      VALUES (${url}, ${row.version ?? null}, ${row.name ?? null}, ${row.title ?? null}, ${row.status ?? null}, ${row.source}, NULL, ${row.content ?? null},
        ${row.hierarchyMeaning ?? null}, ${row.caseSensitive ?? null}, ${row.propertyDefs?.length ? JSON.stringify(row.propertyDefs) : null}::jsonb, ${concepts >= wordIndexMin})`.execute(ex);

    onPhase('hierarchy');
    // Edges between codes the release defines, once each (a cycle in bad data ends at the pairs already there).
    await sql`CREATE TEMP TABLE tl_e ON COMMIT DROP AS SELECT DISTINCT e.parent, e.child FROM tl_edge e
      WHERE e.parent <> e.child AND EXISTS (SELECT 1 FROM tl_concept c WHERE c.code = e.parent) AND EXISTS (SELECT 1 FROM tl_concept c WHERE c.code = e.child)`.execute(ex);
    await sql`CREATE INDEX ON tl_e (child)`.execute(ex);
    await sql`ANALYZE tl_e`.execute(ex);
    await sql`CREATE TEMP TABLE tl_front (ancestor text NOT NULL, descendant text NOT NULL) ON COMMIT DROP`.execute(ex);
    await sql`CREATE TEMP TABLE tl_next (ancestor text NOT NULL, descendant text NOT NULL) ON COMMIT DROP`.execute(ex);
    let closure = Number((await sql`INSERT INTO terminology_closure (system, ancestor, descendant, depth) SELECT ${url}, code, code, 0 FROM tl_concept`.execute(ex)).numAffectedRows ?? 0);
    await sql`INSERT INTO tl_front SELECT code, code FROM tl_concept`.execute(ex);
    for (let depth = 1; ; depth++) {
      await sql`ANALYZE tl_front`.execute(ex);
      // Pairs one edge further up; those already present were reached by a shorter path.
      const r = await sql`WITH ins AS (
          INSERT INTO terminology_closure (system, ancestor, descendant, depth)
          SELECT DISTINCT ${url}, e.parent, f.descendant, ${depth}::int FROM tl_front f JOIN tl_e e ON e.child = f.ancestor
          ON CONFLICT DO NOTHING RETURNING ancestor, descendant)
        INSERT INTO tl_next SELECT ancestor, descendant FROM ins`.execute(ex);
      const added = Number(r.numAffectedRows ?? 0);
      if (added === 0) break;
      closure += added;
      await sql`TRUNCATE tl_front`.execute(ex);
      await sql`INSERT INTO tl_front SELECT * FROM tl_next`.execute(ex);
      await sql`TRUNCATE tl_next`.execute(ex);
      onPhase(`hierarchy (depth ${depth}, ${closure} pairs)`);
    }

    let words = 0;
    if (concepts >= wordIndexMin) {
      onPhase('display words');
      let after = '';
      for (;;) {
        const page = await sql<{ code: string; display: string | null }>`
          SELECT code, display FROM terminology_concept WHERE system = ${url} AND code > ${after} ORDER BY code LIMIT ${WORD_PAGE}`.execute(ex);
        if (page.rows.length === 0) break;
        after = page.rows[page.rows.length - 1]!.code;
        const ws = page.rows.flatMap((c) => wordsOf(`${c.code} ${c.display ?? ''}`).map((w) => [w, c.code] as const));
        await sql`INSERT INTO terminology_word (system, word, code) SELECT ${url}, x->>0, x->>1 FROM json_array_elements(${JSON.stringify(ws)}::json) AS x ON CONFLICT DO NOTHING`.execute(ex);
        words += ws.length;
      }
    }
    return { concepts, closure, words };
  }
}
