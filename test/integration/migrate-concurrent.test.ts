import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { migrations } from '../../migrations/index.js';
import { openDatabase, type DatabaseHandle } from '../../src/storage/db.js';
import { migrateToLatest } from '../../src/storage/migrate.js';
import { dropTestSchema } from '../support/test-app.js';

/**
 * Migrations of several schemas of one PostgreSQL database at once (tenants side by side,
 * test workers): each schema has a lock of its own, a long migration of one schema does not
 * hold up another, and no migration looks at other schemas (which other sessions may drop).
 */
const URL = process.env.DATABASE_URL;
const schemas: string[] = [];
const handles: DatabaseHandle[] = [];

function newSchema(): string {
  const s = `t_${randomBytes(6).toString('hex')}`;
  schemas.push(s);
  return s;
}

async function open(schema: string): Promise<DatabaseHandle> {
  const h = await openDatabase({ databaseUrl: URL, dataDir: 'memory', schema, poolSize: 2 });
  handles.push(h);
  return h;
}

async function applied(h: DatabaseHandle): Promise<string[]> {
  const r = await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`.execute(h.unlimitedDb);
  return r.rows.map((x) => x.name);
}

afterAll(async () => {
  for (const h of handles) await h.close();
  for (const s of schemas) await dropTestSchema(s);
});

describe('migrations on the embedded database', () => {
  it.skipIf(URL !== undefined)('migrate twice: all applied once, the second run does nothing', async () => {
    const h = await openDatabase({ dataDir: 'memory' });
    handles.push(h);
    await migrateToLatest(h.unlimitedDb);
    await migrateToLatest(h.unlimitedDb);
    expect(await applied(h)).toEqual(Object.keys(migrations).sort());
  });
});

describe.skipIf(URL === undefined)('migrations of several schemas of one PostgreSQL database at once', () => {
  it("one schema's migration waits only for its own schema's lock, not for another schema's", async () => {
    const [a, b] = [newSchema(), newSchema()];
    const [ha, hb] = [await open(a), await open(b)];
    // Another session holds schema a's migration lock, as a long migration of a would.
    const holder = new pg.Client({ connectionString: URL });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`fhir-server:migrate:${a}`]);
      let aDone = false;
      const migratingA = migrateToLatest(ha.unlimitedDb).then(() => (aDone = true));
      await migrateToLatest(hb.unlimitedDb);
      expect(await applied(hb)).toEqual(Object.keys(migrations).sort());
      expect(aDone).toBe(false);
      await holder.query('COMMIT');
      await migratingA;
      expect(await applied(ha)).toEqual(Object.keys(migrations).sort());
    } finally {
      await holder.end();
    }
  });

  it('two start-ups of the same schema at once: each migration applied once, both succeed', async () => {
    const s = newSchema();
    const [h1, h2] = [await open(s), await open(s)];
    await Promise.all([migrateToLatest(h1.unlimitedDb), migrateToLatest(h2.unlimitedDb)]);
    expect(await applied(h1)).toEqual(Object.keys(migrations).sort());
  });

  it('schemas migrate while other sessions create and drop schemas', async () => {
    const admin = new pg.Client({ connectionString: URL });
    await admin.connect();
    let stop = false;
    // Other tenants / test files coming and going: each schema with tables (the catalog rows a
    // look over all schemas would meet) dropped again at once.
    const churn = (async () => {
      let n = 0;
      while (!stop && n < 500) {
        const other = `t_churn_${randomBytes(4).toString('hex')}`;
        await admin.query(`CREATE SCHEMA "${other}"; CREATE TABLE "${other}".x (id serial PRIMARY KEY, v text); CREATE TABLE "${other}".y (id serial PRIMARY KEY)`);
        await admin.query(`DROP SCHEMA "${other}" CASCADE`);
        n++;
      }
      return n;
    })();
    try {
      const targets = [newSchema(), newSchema(), newSchema()];
      const opened = await Promise.all(targets.map(open));
      await Promise.all(opened.map((h) => migrateToLatest(h.unlimitedDb)));
      for (const h of opened) expect(await applied(h)).toEqual(Object.keys(migrations).sort());
    } finally {
      stop = true;
      const rounds = await churn;
      await admin.end();
      expect(rounds).toBeGreaterThan(0);
    }
  });
});
