import type { Bundle, Observation } from 'fhir/r4.js';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SearchService } from '../../src/search/search-service.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { loadGenerated, searchMix } from './maintenance-data.js';

/**
 * The server keeps its own planner statistics (issue 8): after data arrives through the API,
 * with nobody running ANALYZE (PGlite has no autovacuum; the test PostgreSQL runs with
 * autovacuum off), the tables get statistics and the search mix is planned on them.
 * Assertions are on the statistics and plans, never on timings.
 */
const BUNDLES = 4;
const SEARCH_TABLES = ['resource', 'search_token', 'search_string', 'search_date', 'search_quantity', 'search_reference'];

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('own database maintenance', () => {
  let app: TestApp;

  beforeAll(async () => {
    app = await startTestApp();
    await loadGenerated(app, BUNDLES);
  }, 180_000);

  afterAll(async () => {
    await app?.close();
  });

  it('analyzes the loaded tables without any manual step', async () => {
    const db = app.server.database.db;
    const reltuples = await waitFor('statistics of the search tables', async () => {
      const rows = (
        await sql<{ relname: string; reltuples: number }>`
          SELECT relname, reltuples::float8 AS reltuples FROM pg_class
          WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r' AND relname = ANY(${SEARCH_TABLES}::text[])`.execute(db)
      ).rows;
      const byTable = new Map(rows.map((r) => [r.relname, Number(r.reltuples)]));
      // 4 × (50 Patients + 500 Observations); ANALYZE of a table this small counts every row.
      // Earlier checks saw part of the load; the last one (after the last Bundle) sees it all.
      return rows.length === SEARCH_TABLES.length && rows.every((r) => Number(r.reltuples) > 0) && byTable.get('resource') === BUNDLES * 550 ? byTable : undefined;
    });
    expect(reltuples.get('search_token')).toBeGreaterThan(BUNDLES * 550);

    // Column statistics: the frequent codes are known to the planner. (Row counts alone may come
    // from a VACUUM, which sets reltuples; the column statistics are ANALYZE's, possibly a moment later.)
    const codes = await waitFor('column statistics of search_token', async () => {
      const r = await sql<{ vals: string }>`
        SELECT most_common_vals::text AS vals FROM pg_stats
        WHERE schemaname = current_schema() AND tablename = 'search_token' AND attname = 'code'`.execute(db);
      return r.rows[0]?.vals?.includes('8302-2') ? r.rows[0].vals : undefined;
    });
    expect(codes).toContain('8302-2');
    // The extended statistics of the migrations (resource_type, param, code) are built by ANALYZE too.
    const extended = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_stats_ext WHERE schemaname = current_schema() AND statistics_name = 'search_token_stats'`.execute(db);
    expect(extended.rows[0]?.n).toBeGreaterThan(0);

    // The planner's estimate for one code now matches the data (without statistics it guesses 0.5 %).
    const plan = await sql<{ 'QUERY PLAN': Array<{ Plan: { 'Plan Rows': number } }> }>`
      EXPLAIN (FORMAT JSON) SELECT 1 FROM search_token WHERE resource_type = 'Observation' AND param = 'code' AND code = '8302-2'`.execute(db);
    const estimated = plan.rows[0]!['QUERY PLAN'][0]!.Plan['Plan Rows'];
    const actual = BUNDLES * 50 * 5;
    expect(estimated).toBeGreaterThan(actual / 2);
    expect(estimated).toBeLessThan(actual * 2);

    // The runs are visible to operators (table names and durations only).
    const metrics = await app.server.http.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toMatch(/db_maintenance_runs_total\{table="search_token",action="(vacuum )?analyze"\} [1-9]/);
  }, 120_000);

  it('answers the search mix correctly, planned without nested loops over whole tables', async () => {
    const search = new SearchService({ db: app.server.database.db, registry: app.server.registry });
    for (const { type, query, expected } of searchMix(BUNDLES)) {
      expect(expected).toBeGreaterThan(0);
      const count = await app.request({ method: 'GET', url: `/fhir/${type}?${query}&_summary=count` });
      expect(count.statusCode, query).toBe(200);
      expect((count.json() as Bundle).total, query).toBe(expected);

      const page = await app.request({ method: 'GET', url: `/fhir/${type}?${query}&_count=10` });
      expect(page.statusCode, query).toBe(200);
      const entries = (page.json() as Bundle).entry ?? [];
      expect(entries.length, query).toBe(Math.min(10, expected));
      if (query.startsWith('code=8302-2')) {
        for (const e of entries) expect((e.resource as Observation).valueQuantity?.value).toBeGreaterThan(180);
      }

      const params = [...new URLSearchParams(`${query}&_count=10`)] as [string, string][];
      const plans = await search.explain({ resourceType: type, params, baseUrl: 'http://localhost:8080/fhir' }, false);
      for (const text of [plans.page, plans.count]) {
        // The shape of a planner that believes the tables are empty: a nested loop whose inner
        // side is re-read for every outer row and matched by a filter on the ids.
        // (A sequential scan feeding a hash join is fine: it reads each row once.)
        expect(text, `${query}\n${text}`).not.toMatch(/Join Filter: \(\w+\.(resource_)?id = \w+\.(resource_)?id\)/);
      }
    }
  });
});
