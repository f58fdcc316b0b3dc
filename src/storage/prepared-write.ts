import { createHash } from 'node:crypto';
import { CompiledQuery, type QueryResult } from 'kysely';
import type { Db } from './db.js';
import { pgErrorCode } from './pg-errors.js';
import type { IndexTableLayout } from './types.js';
import type { BlindResult, WriteStatement } from './write-sql.js';

/** SQLSTATE of EXECUTE naming a statement this session has not prepared. */
const UNDEFINED_PREPARED_STATEMENT = '26000';
/** SQLSTATE of PREPARE naming a statement the session already has. */
const DUPLICATE_PREPARED_STATEMENT = '42P05';

const layoutKeys = new WeakMap<readonly IndexTableLayout[], string>();

/** A short digest of the index layout: a statement's text depends on it, so its name does too. */
function layoutKey(tables: readonly IndexTableLayout[]): string {
  let key = layoutKeys.get(tables);
  if (!key) {
    key = createHash('sha1').update(JSON.stringify(tables)).digest('hex').slice(0, 10);
    layoutKeys.set(tables, key);
  }
  return key;
}

/**
 * An escape string constant (E'…'): backslashes and quotes doubled, so the value is the same
 * whatever standard_conforming_strings says. NUL cannot occur (bodies with one are refused and
 * JSON.stringify writes control characters as escapes).
 */
function escapeLiteral(value: string): string {
  return `E'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/**
 * Runs a write statement by name (SQL-level PREPARE / EXECUTE), for writes that are their own
 * transaction (no BEGIN sent): PostgreSQL then parses and plans the ~20-CTE write statement
 * once per connection and shape instead of on every write (measured: about a quarter less
 * database CPU per single-resource create), and the statement's text is not sent again.
 * EXECUTE takes no bind parameters, so the JSON values go as escaped constants; PostgreSQL
 * reads them as it reads bound text. A connection that has not prepared the shape yet answers 26000 and
 * has done nothing (an autocommit statement that failed), so the statement is prepared and
 * executed again. Never inside a transaction block: a failed EXECUTE would abort it.
 */
export async function executePrepared(connection: Db, tables: readonly IndexTableLayout[], statement: WriteStatement): Promise<QueryResult<BlindResult>> {
  const name = `fhir_write_${layoutKey(tables)}_${statement.shape}`;
  const execute = CompiledQuery.raw(`EXECUTE ${name}(${statement.parameters.map(escapeLiteral).join(', ')})`, []);
  try {
    return await connection.executeQuery<BlindResult>(execute);
  } catch (e) {
    if (!isMissingStatement(e)) throw e;
  }
  try {
    await connection.executeQuery(CompiledQuery.raw(`PREPARE ${name} AS ${statement.sql}`, []));
    return await connection.executeQuery<BlindResult>(execute);
  } catch (e) {
    // A pooler that hands each statement to another server session (PgBouncer in transaction
    // mode) loses prepared statements between them: send the statement itself.
    if (!isMissingStatement(e) && pgErrorCode(e) !== DUPLICATE_PREPARED_STATEMENT) throw e;
    return connection.executeQuery<BlindResult>(CompiledQuery.raw(statement.sql, statement.parameters));
  }
}

function isMissingStatement(e: unknown): boolean {
  // (the message too: an error passed on from a worker thread may arrive without its code)
  return pgErrorCode(e) === UNDEFINED_PREPARED_STATEMENT || (e instanceof Error && /prepared statement .* does not exist/.test(e.message));
}
