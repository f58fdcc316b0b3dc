import { sql, type Kysely } from 'kysely';

/**
 * Current versions and full history of every resource, all types in one pair of tables.
 * Every row carries (resource_type, id) first so the tables can be co-located shards
 * (Citus distribution column `id`) and no foreign keys are used.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE resource (
      resource_type text NOT NULL,
      id text NOT NULL,
      version_id bigint NOT NULL,
      last_updated timestamptz NOT NULL,
      deleted boolean NOT NULL DEFAULT false,
      content jsonb,
      PRIMARY KEY (resource_type, id)
    )`.execute(db);
  await sql`CREATE INDEX resource_type_last_updated ON resource (resource_type, last_updated, id)`.execute(db);
  await sql`
    CREATE TABLE resource_history (
      resource_type text NOT NULL,
      id text NOT NULL,
      version_id bigint NOT NULL,
      last_updated timestamptz NOT NULL,
      deleted boolean NOT NULL DEFAULT false,
      method text NOT NULL,
      content jsonb,
      PRIMARY KEY (resource_type, id, version_id)
    )`.execute(db);
  await sql`CREATE INDEX resource_history_last_updated ON resource_history (last_updated, resource_type, id, version_id)`.execute(db);
  await sql`CREATE INDEX resource_history_type_last_updated ON resource_history (resource_type, last_updated, id, version_id)`.execute(db);
  // Keys shared by every server process (token signing), created once at first start.
  await sql`
    CREATE TABLE server_key (
      name text PRIMARY KEY,
      value jsonb NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE server_key`.execute(db);
  await sql`DROP TABLE resource_history`.execute(db);
  await sql`DROP TABLE resource`.execute(db);
}
