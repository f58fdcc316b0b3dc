import { FhirError } from '../fhir/errors.js';

/** PostgreSQL error codes we act on (https://www.postgresql.org/docs/current/errcodes-appendix.html). */
const SERIALIZATION_FAILURE = '40001';
const DEADLOCK_DETECTED = '40P01';
const UNIQUE_VIOLATION = '23505';
const QUERY_CANCELED = '57014';
const LOCK_NOT_AVAILABLE = '55P03';
/** The server session does not know a prepared statement of that name. */
export const UNDEFINED_PREPARED_STATEMENT = '26000';
/** The server session has a prepared statement of that name already. */
const DUPLICATE_PREPARED_STATEMENT = '42P05';
/** "cached plan must not change result type": a table changed under a prepared statement. */
const CACHED_PLAN_CHANGED = '0A000';

export function pgErrorCode(e: unknown): string | undefined {
  if (typeof e === 'object' && e !== null && 'code' in e) {
    const code = (e as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/**
 * The server session does not have a prepared statement the client thinks it has (26000: a
 * pooler switched sessions), has one of the name already (42P05: another client prepared it in
 * that session), or a table changed under it (0A000 "cached plan must not change result type"):
 * the client sends its statements unnamed from then on (PreparingClient in db.ts).
 */
export function lostPreparedStatement(e: unknown): boolean {
  const code = pgErrorCode(e);
  return code === UNDEFINED_PREPARED_STATEMENT || code === DUPLICATE_PREPARED_STATEMENT || code === CACHED_PLAN_CHANGED;
}

/**
 * A transaction that failed only because another one raced it, or because its session lost a
 * prepared statement (its client sends them unnamed from then on): running it again is safe.
 */
export function isRetryable(e: unknown): boolean {
  const code = pgErrorCode(e);
  return code === SERIALIZATION_FAILURE || code === DEADLOCK_DETECTED || code === UNIQUE_VIOLATION || lostPreparedStatement(e);
}

/**
 * Maps database errors at the storage edge to FHIR errors; anything else stays a fault.
 * Class 22 (data exception: a NUL character, an out-of-range date or number) can only come
 * from a value the client sent, so it is the client's 400, not a server fault.
 */
export function mapDatabaseError(e: unknown): unknown {
  if (e instanceof FhirError) return e;
  const code = pgErrorCode(e);
  if (code?.startsWith('22')) {
    const detail = e instanceof Error ? e.message.slice(0, 200) : '';
    return new FhirError('incorrect', `a value in the request cannot be stored or searched: ${detail}`);
  }
  if (isConnectionLost(e)) {
    // The database restarted, failed over or ended the session: the request may be sent again.
    return new FhirError('unavailable', 'the database connection was lost (restart or failover); retry', { 'Retry-After': '2' });
  }
  if (isPoolTimeout(e)) {
    return new FhirError('unavailable', 'the server is busy: no database connection became free in time; retry later', { 'Retry-After': '2' });
  }
  switch (code) {
    case UNIQUE_VIOLATION:
    case SERIALIZATION_FAILURE:
    case DEADLOCK_DETECTED:
      return new FhirError('conflict', 'the resource was changed by a concurrent request; retry');
    case QUERY_CANCELED:
      // The statement time limit (DATABASE_STATEMENT_TIMEOUT_MS) stopped it. The same request
      // would be stopped again, so this is not "retry later": the client should narrow it.
      return new FhirError('too-costly', 'the request took longer than the server allows for one database statement; narrow the search (more specific parameters, a smaller _count)');
    case LOCK_NOT_AVAILABLE:
      return new FhirError('unavailable', 'the database did not answer in time; retry later', { 'Retry-After': '5' });
    default:
      return e;
  }
}

/** node-postgres' pool gave up waiting for a free connection (DATABASE_POOL_TIMEOUT_MS). */
function isPoolTimeout(e: unknown): boolean {
  return e instanceof Error && /^timeout exceeded when trying to connect$|^Connection terminated due to connection timeout$/.test(e.message);
}

/**
 * The session ended under the request: an administrator or a restart ended it (class 57P:
 * admin_shutdown, crash_shutdown, cannot_connect_now), the connection broke (class 08), or the
 * socket closed before an answer.
 */
function isConnectionLost(e: unknown): boolean {
  const code = pgErrorCode(e);
  if (code === '57P01' || code === '57P02' || code === '57P03' || code?.startsWith('08')) return true;
  if (!(e instanceof Error)) return false;
  const text = e.message;
  return /^Connection terminated unexpectedly$|^Client has encountered a connection error and is not queryable$|^Client was closed and is not queryable$|ECONNREFUSED|ECONNRESET/.test(text);
}
