/**
 * Query-plan check for every search path on a large synthetic data set (PostgreSQL):
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx tsx bench/search-explain.ts [observations]
 *
 * Builds schema `search_explain` (reused when it already holds the same count), generates
 * Observations + Patients with their index rows in SQL, ANALYZEs, then prints the plan and the
 * timing of each search. Findings are summarised in src/search/README.md.
 */
import { sql } from 'kysely';
import { openDatabase } from '../src/storage/db.js';
import { migrateToLatest } from '../src/storage/migrate.js';
import { SearchParameterRegistry } from '../src/search/registry.js';
import { SearchService } from '../src/search/search-service.js';

const url = process.env.DATABASE_URL;
if (!url) {
  console.error('DATABASE_URL is required');
  process.exit(2);
}
const N = Number(process.argv[2] ?? 1_000_000);
const P = Math.max(10, Math.floor(N / 100));
const schema = 'search_explain';
const BASE = 'http://localhost:8080/fhir';

const handle = await openDatabase({ databaseUrl: url, dataDir: 'memory', schema, poolSize: 2 });
const db = handle.db;
await migrateToLatest(handle.unlimitedDb);

const have = Number((await sql<{ n: string }>`SELECT count(*) AS n FROM resource WHERE resource_type = 'Observation'`.execute(db)).rows[0]!.n);
if (have !== N) {
  const t0 = Date.now();
  for (const tbl of ['resource', 'search_token', 'search_string', 'search_date', 'search_number', 'search_quantity', 'search_reference', 'search_uri', 'search_composite']) {
    await sql.raw(`TRUNCATE ${tbl}`).execute(db);
  }
  await sql`INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content)
    SELECT 'Patient', 'p' || g, 1, timestamptz '2023-01-01' + g * interval '1 second', false,
      jsonb_build_object('resourceType', 'Patient', 'id', 'p' || g, 'gender', CASE WHEN g % 2 = 0 THEN 'female' ELSE 'male' END,
        'name', jsonb_build_array(jsonb_build_object('family', 'Fam' || (g % 1000), 'given', jsonb_build_array('Giv' || (g % 97)))),
        'birthDate', to_char(date '1930-01-01' + (g % 30000), 'YYYY-MM-DD'))
    FROM generate_series(1, ${P}) g`.execute(db);
  await sql`INSERT INTO search_string (resource_type, resource_id, param, value, exact, sort_asc, sort_desc)
    SELECT 'Patient', 'p' || g, x.param, lower(x.v), x.v, x.s, x.s FROM generate_series(1, ${P}) g,
      LATERAL (VALUES ('family', 'Fam' || (g % 1000), true), ('name', 'Fam' || (g % 1000), true), ('name', 'Giv' || (g % 97), false), ('given', 'Giv' || (g % 97), true)) AS x(param, v, s)`.execute(db);
  await sql`INSERT INTO search_token (resource_type, resource_id, param, code, sort_asc, sort_desc)
    SELECT 'Patient', 'p' || g, 'gender', CASE WHEN g % 2 = 0 THEN 'female' ELSE 'male' END, true, true FROM generate_series(1, ${P}) g`.execute(db);
  await sql`INSERT INTO search_date (resource_type, resource_id, param, low, high, sort_asc, sort_desc)
    SELECT 'Patient', 'p' || g, 'birthdate', (date '1930-01-01' + (g % 30000))::timestamp AT TIME ZONE 'UTC', ((date '1930-01-01' + (g % 30000) + 1)::timestamp) AT TIME ZONE 'UTC', true, true FROM generate_series(1, ${P}) g`.execute(db);

  await sql`INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content)
    SELECT 'Observation', 'o' || g, 1, timestamptz '2024-01-01' + g * interval '1 second', false,
      jsonb_build_object('resourceType', 'Observation', 'id', 'o' || g, 'status', CASE WHEN g % 10 = 0 THEN 'preliminary' ELSE 'final' END,
        'code', jsonb_build_object('coding', jsonb_build_array(jsonb_build_object('system', 'http://loinc.org', 'code', 'C' || (g % 50)))),
        'subject', jsonb_build_object('reference', 'Patient/p' || (1 + g % ${P})),
        'effectiveDateTime', to_char((timestamptz '2015-01-01' + (g % 3650) * interval '1 day' + (g % 86400) * interval '1 second') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'valueQuantity', jsonb_build_object('value', (g % 300)::numeric / 10, 'system', 'http://unitsofmeasure.org', 'code', 'mg/dL'))
    FROM generate_series(1, ${N}) g`.execute(db);
  await sql`INSERT INTO search_token (resource_type, resource_id, param, system, code, sort_asc, sort_desc)
    SELECT 'Observation', 'o' || g, x.param, x.sys, x.code, true, true FROM generate_series(1, ${N}) g,
      LATERAL (VALUES ('code', 'http://loinc.org', 'C' || (g % 50)), ('status', NULL, CASE WHEN g % 10 = 0 THEN 'preliminary' ELSE 'final' END)) AS x(param, sys, code)`.execute(db);
  await sql`INSERT INTO search_reference (resource_type, resource_id, param, target_type, target_id, sort_asc, sort_desc)
    SELECT 'Observation', 'o' || g, x.param, 'Patient', 'p' || (1 + g % ${P}), true, true FROM generate_series(1, ${N}) g,
      LATERAL (VALUES ('subject'), ('patient')) AS x(param)`.execute(db);
  await sql`INSERT INTO search_date (resource_type, resource_id, param, low, high, sort_asc, sort_desc)
    SELECT 'Observation', 'o' || g, 'date', t, t + interval '1 second', true, true FROM generate_series(1, ${N}) g,
      LATERAL (SELECT timestamptz '2015-01-01' + (g % 3650) * interval '1 day' + (g % 86400) * interval '1 second' AS t) x`.execute(db);
  await sql`INSERT INTO search_quantity (resource_type, resource_id, param, low, high, system, code, unit, canon_code, canon_low, canon_high, sort_asc, sort_desc)
    SELECT 'Observation', 'o' || g, 'value-quantity', v, v, 'http://unitsofmeasure.org', 'mg/dL', 'mg/dL', 'g/L', v / 100, v / 100, true, true FROM generate_series(1, ${N}) g,
      LATERAL (SELECT (g % 300)::numeric / 10 AS v) x`.execute(db);
  await sql`ANALYZE`.execute(db);
  console.log(`generated ${N} Observations + ${P} Patients in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

const service = new SearchService({ db, registry: new SearchParameterRegistry() });
const searches: Array<[string, string, { type: string; id: string }?]> = [
  ['Observation', '_count=20&_total=none'],
  ['Observation', '_id=o12345'],
  ['Observation', 'code=http://loinc.org|C7&_count=20&_total=none'],
  ['Observation', 'code=http://loinc.org|C7&_count=20'],
  ['Observation', 'code=C7&date=ge2024-01-01&_count=20&_total=none'],
  ['Observation', 'subject=Patient/p123'],
  ['Observation', 'patient=Patient/p123&_sort=-date'],
  ['Observation', 'date=2020-06-01&_total=none'],
  ['Observation', 'date=2020-06-01T10:00:00Z'],
  ['Observation', 'value-quantity=gt2.5|http://unitsofmeasure.org|g/L&_count=20&_total=none'],
  ['Observation', '_sort=-date&_count=20&_total=none'],
  ['Observation', '_sort=date&code=C7&_count=20&_total=none'],
  ['Observation', '_lastUpdated=gt2024-01-05&_count=20&_total=none'],
  ['Observation', 'subject:Patient.name=fam12&_total=none&_count=20'],
  ['Observation', 'code=C7&_include=Observation:patient&_count=20&_total=none'],
  ['Observation', 'status:not=final&_count=20&_total=none'],
  ['Observation', '', { type: 'Patient', id: 'p123' }],
  ['Patient', 'name=fam12&_count=20'],
  ['Patient', 'name:contains=am12&_count=20&_total=none'],
  ['Patient', '_has:Observation:patient:code=C7&_count=20&_total=none'],
  ['Patient', 'birthdate=1950&_sort=family&_count=20&_total=none'],
];
for (const [type, q, compartment] of searches) {
  const input = { resourceType: type, params: [...new URLSearchParams(q)] as [string, string][], baseUrl: BASE, compartment };
  const t0 = performance.now();
  const bundle = await service.search(input);
  const ms = performance.now() - t0;
  const plan = await service.explain(input);
  const label = `${compartment ? `${compartment.type}/${compartment.id}/` : ''}${type}?${q}`;
  console.log(`\n=== ${label}  → ${bundle.entry?.length ?? 0} entries, total ${bundle.total ?? '-'}, ${ms.toFixed(1)} ms (page+count+includes)`);
  console.log(plan.page.split('\n').filter((l) => /Scan|Join|Sort|Limit|Execution|Nested|Hash|Aggregate|SubPlan/.test(l)).slice(0, 14).join('\n'));
}
await handle.close();
