import { sql, type RawBuilder } from 'kysely';
import type { ExpandedRow, ExpandQuery } from './terminology-rows.js';
import { escapeRegex, likeEscape } from './terminology-sql.js';
import type { TermDb } from './terminology-store.js';

/**
 * Filters served by walking the expansion in order (expandDense): one word starting at least
 * DENSE_ONE indexed words, or several words each starting at least DENSE (several frequent words
 * may still have few codes in common, which the word-index intersection finds faster).
 */
const DENSE_ONE = 100;
const DENSE = 5000;
/** The page size a pick list asks for, in the cost estimate of denseFilter. */
const PAGE_GUESS = 20;
/** Upper bound of a prefix range in C collation (the largest code point sorts after every other). */
const MAX_CHAR = String.fromCodePoint(0x10ffff);

/**
 * Pages of stored expansions for `$expand` with a text filter (a pick list as the user types):
 * the plan is chosen by how frequent the filter's words are, so neither a rare word nor the
 * first letters of a common one read the whole expansion.
 */
export class ExpansionPages {
  private readonly sizes = new Map<string, { n: number; at: number }>();

  constructor(private readonly db: TermDb) {}

  /** A page of an expansion, filtered by display words (each a prefix of a word of the display or code), and its total. */
  async expandPage(url: string, q: ExpandQuery): Promise<{ total: number | undefined; rows: ExpandedRow[] }> {
    const conds: RawBuilder<unknown>[] = [sql`m.value_set = ${url}`, sql`m.code <> ''`];
    if (q.activeOnly) conds.push(sql`c.active IS NOT FALSE`);
    const notSelectable = sql`coalesce(c.properties @> '[{"code":"notSelectable","value":true}]'::jsonb, false)`;
    if (q.excludeNotSelectable) conds.push(sql`NOT ${notSelectable}`);
    const indexed = q.words.length > 0 && q.indexed;
    if (indexed && (await this.denseFilter(url, q.words))) return this.expandDense(url, q, conds, notSelectable);
    // Large expansion: the codes whose words start with every filter word (index ranges,
    // intersected), then their members by primary key; never a scan of the whole expansion.
    // (LATERAL … OFFSET 0 keeps that order: the planner would otherwise walk the expansion in
    // `ord` order for the LIMIT and probe the words for each member.)
    const from = indexed
      ? sql`(${sql.join(
          // (INTERSECT removes duplicates itself; one word needs DISTINCT: "blood blood")
          q.words.map((w) => sql`SELECT ${q.words.length === 1 ? sql`DISTINCT` : sql``} w.system, w.code FROM terminology_word w WHERE w.word >= ${w} AND w.word < ${w + MAX_CHAR}`),
          sql` INTERSECT `,
        )}) h CROSS JOIN LATERAL (SELECT * FROM terminology_vs_member x WHERE x.value_set = ${url} AND x.system = h.system AND x.code = h.code OFFSET 0) m`
      : sql`terminology_vs_member m`;
    for (const w of indexed ? [] : q.words) {
      // Small expansion: each filter word starts the code or a word of the display (after folding).
      const display = sql`lower(coalesce(c.display, m.display, ''))`;
      const p = likeEscape(w);
      conds.push(sql`(lower(m.code) LIKE ${`${p}%`} OR ${display} LIKE ${`${p}%`} OR ${display} ~ ${`[^[:alnum:]]${escapeRegex(w)}`})`);
    }
    const where = sql.join(conds, sql` AND `);
    const designations = q.withDesignations ? sql`c.designations` : sql`NULL::jsonb AS designations`;
    const page = await sql<ExpandedRow & { total: string | number }>`
      SELECT m.system, m.code, coalesce(c.display, m.display) AS display, c.active, ${notSelectable} AS "notSelectable", ${designations}, count(*) OVER () AS total
      FROM ${from} LEFT JOIN terminology_concept c ON c.system = m.system AND c.code = m.code
      WHERE ${where} ORDER BY m.ord LIMIT ${q.count} OFFSET ${q.offset}`.execute(this.db);
    let total = page.rows.length ? Number(page.rows[0]!.total) : 0;
    if (page.rows.length === 0 && q.offset > 0) {
      const c = await sql<{ n: string | number }>`
        SELECT count(*) AS n FROM ${from} LEFT JOIN terminology_concept c ON c.system = m.system AND c.code = m.code WHERE ${where}`.execute(this.db);
      total = Number(c.rows[0]?.n ?? 0);
    }
    return { total, rows: page.rows.map(({ total: _t, ...r }) => r) };
  }

  /**
   * Whether a filter is better served by walking the expansion in order (expandDense): one word
   * starting enough indexed words (a pick list's first letters), or several words each starting
   * at least DENSE. Counted with a LIMIT: at most that many index entries per word.
   */
  private async denseFilter(url: string, words: readonly string[]): Promise<boolean> {
    // One word: walking costs ~20 × size / matches probes, the intersection ~matches probes; equal at sqrt(20 × size).
    const need = words.length === 1 ? Math.max(DENSE_ONE, Math.ceil(Math.sqrt(PAGE_GUESS * (await this.memberCount(url))))) : DENSE;
    for (const w of words) {
      const r = await sql<{ n: string | number }>`SELECT count(*) AS n FROM (SELECT 1 FROM terminology_word w WHERE w.word >= ${w} AND w.word < ${w + MAX_CHAR} LIMIT ${need}) x`.execute(this.db);
      if (Number(r.rows[0]?.n ?? 0) < need) return false;
    }
    return true;
  }

  /**
   * A filter whose words are frequent: walk the expansion in its order and keep the members
   * having each word (an index probe per member and word, terminology_word_code of 0029), so the
   * page costs about (offset + count) / share-of-matches probes instead of probing and sorting
   * every match. The total is not counted (that would probe every match; FHIR: expansion.total
   * is optional), except on the last page, where it is known.
   */
  private async expandDense(url: string, q: ExpandQuery, conds: RawBuilder<unknown>[], notSelectable: RawBuilder<unknown>): Promise<{ total: number | undefined; rows: ExpandedRow[] }> {
    const has = q.words.map(
      (w) => sql`EXISTS (SELECT 1 FROM terminology_word w WHERE w.system = m.system AND w.code = m.code AND w.word >= ${w} AND w.word < ${w + MAX_CHAR})`,
    );
    const where = sql.join([...conds, ...has], sql` AND `);
    const designations = q.withDesignations ? sql`c.designations` : sql`NULL::jsonb AS designations`;
    const page = await sql<ExpandedRow>`
      SELECT m.system, m.code, coalesce(c.display, m.display) AS display, c.active, ${notSelectable} AS "notSelectable", ${designations}
      FROM terminology_vs_member m LEFT JOIN terminology_concept c ON c.system = m.system AND c.code = m.code
      WHERE ${where} ORDER BY m.ord LIMIT ${q.count} OFFSET ${q.offset}`.execute(this.db);
    const last = page.rows.length < q.count && (page.rows.length > 0 || q.offset === 0);
    return { total: last ? q.offset + page.rows.length : undefined, rows: page.rows };
  }

  /** Members of an expansion, remembered a minute (it only steers the choice of plan). */
  private async memberCount(url: string): Promise<number> {
    const known = this.sizes.get(url);
    if (known && Date.now() - known.at < 60_000) return known.n;
    const r = await sql<{ n: string | number }>`SELECT count(*) AS n FROM terminology_vs_member WHERE value_set = ${url}`.execute(this.db);
    const n = Number(r.rows[0]?.n ?? 0);
    if (this.sizes.size > 1000) this.sizes.clear();
    this.sizes.set(url, { n, at: Date.now() });
    return n;
  }
}
