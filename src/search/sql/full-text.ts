import { sql } from 'kysely';
import { prefixQueryText, type TextQuery } from '../full-text.js';
import type { ParamValue } from '../request.js';
import { col, FALSE, type Cond } from './util.js';

/**
 * `_content` / `_text` on the `search_text` row (alias `a`): `column @@ <tsquery>`. The tsquery
 * is built in SQL from bound values with the query functions of the configuration
 * (`plainto_tsquery` for a word, `phraseto_tsquery` for a "phrase", `to_tsquery` of quoted
 * letter/digit runs for a prefix), combined with `&&`, `||`, `!!`: user text never reaches the
 * tsquery syntax, and the functions are immutable with a constant configuration, so the planner
 * folds the query to a constant the GIN index takes.
 */
export function textColumn(code: string): 'content' | 'narrative' {
  return code === '_text' ? 'narrative' : 'content';
}

export function tsquerySql(q: TextQuery, config: string): Cond {
  const cfg = sql`${config}::regconfig`;
  switch (q.op) {
    case 'word': {
      if (q.prefix) {
        const text = prefixQueryText(q.text);
        return text ? sql`to_tsquery(${cfg}, ${text})` : sql`''::tsquery`;
      }
      return sql`plainto_tsquery(${cfg}, ${q.text})`;
    }
    case 'phrase':
      return sql`phraseto_tsquery(${cfg}, ${q.text})`;
    case 'not':
      return sql`(!! ${tsquerySql(q.part, config)})`;
    case 'and':
    case 'or':
      return sql`(${sql.join(
        q.parts.map((p) => tsquerySql(p, config)),
        sql.raw(q.op === 'and' ? ' && ' : ' || '),
      )})`;
  }
}

/** The OR of a filter's values (comma-separated queries) as one tsquery, or undefined for none. */
export function valuesTsquery(values: readonly ParamValue[]): Cond | undefined {
  const parts = values.flatMap((v) => (v.kind === 'fulltext' ? [tsquerySql(v.q, v.config)] : []));
  if (parts.length === 0) return undefined;
  return parts.length === 1 ? parts[0] : sql`(${sql.join(parts, sql` || `)})`;
}

/** The condition on row `a` of search_text. */
export function fullTextCond(a: string, code: string, values: readonly ParamValue[]): Cond {
  const q = valuesTsquery(values);
  return q ? sql`${col(a, textColumn(code))} @@ ${q}` : FALSE;
}

/** Relevance of row `a` for one filter (ts_rank, normalised by log of the document length). */
export function rankExpr(a: string, code: string, values: readonly ParamValue[]): Cond {
  const q = valuesTsquery(values);
  return q ? sql`ts_rank(${col(a, textColumn(code))}, ${q}, 1)` : sql`0`;
}
