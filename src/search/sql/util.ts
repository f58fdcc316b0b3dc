import { sql, type RawBuilder } from 'kysely';

/** A boolean SQL fragment. Values inside are always bound parameters. */
export type Cond = RawBuilder<unknown>;

export const TRUE: Cond = sql`TRUE`;
export const FALSE: Cond = sql`FALSE`;

/** A column of a table alias; both parts come from our own code, never from input. */
export function col(alias: string, column: string): Cond {
  if (!/^[a-z_][a-z0-9_]*$/.test(alias) || !/^[a-z_][a-z0-9_]*$/.test(column)) throw new Error(`bad identifier ${alias}.${column}`);
  return sql.raw(`${alias}.${column}`);
}

/**
 * The index rows of a parameter (alias `alias` of its table): its own code, or for a parameter
 * derived from others (registry.ts, storedAs) the codes it reads.
 */
export function paramIs(alias: string, codes: readonly string[]): Cond {
  return codes.length === 1 ? sql`${col(alias, 'param')} = ${codes[0]}` : sql`${col(alias, 'param')} = ANY(${[...codes]}::text[])`;
}

export function and(conds: Cond[]): Cond {
  const list = conds.filter((c) => c !== TRUE);
  if (list.length === 0) return TRUE;
  if (list.length === 1) return list[0]!;
  return sql`(${sql.join(list, sql` AND `)})`;
}

export function or(conds: Cond[]): Cond {
  if (conds.length === 0) return FALSE;
  if (conds.length === 1) return conds[0]!;
  return sql`(${sql.join(conds, sql` OR `)})`;
}

/** Escapes LIKE wildcards so user text matches literally (backslash is PostgreSQL's default escape). */
export function likeEscape(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/** Generates unique table aliases (t1, t2, …) for one query. */
export class Aliases {
  private n = 0;
  next(prefix: string): string {
    this.n++;
    return `${prefix}${this.n}`;
  }
}
