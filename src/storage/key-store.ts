import { sql } from 'kysely';
import type { Db } from './db.js';

/**
 * Returns the named key, creating it with `generate` when absent. Every server process
 * sharing the database gets the same key (the first writer wins), so tokens issued by one
 * process verify in all of them.
 */
export async function loadOrCreateKey<T>(db: Db, name: string, generate: () => Promise<T>): Promise<T> {
  const existing = await sql<{ value: T }>`SELECT value FROM server_key WHERE name = ${name}`.execute(db);
  if (existing.rows[0]) return existing.rows[0].value;
  const fresh = await generate();
  await sql`INSERT INTO server_key (name, value) VALUES (${name}, ${JSON.stringify(fresh)}::jsonb) ON CONFLICT (name) DO NOTHING`.execute(db);
  const stored = await sql<{ value: T }>`SELECT value FROM server_key WHERE name = ${name}`.execute(db);
  return stored.rows[0].value;
}
