/**
 * Search benchmark on PostgreSQL (DATABASE_URL) or the embedded PGlite (in memory): a
 * hospital-shaped population (Patients, Practitioners, Encounters, Observations; see
 * search-data.ts) written through the server's own write path, then a fixed query mix through
 * `SearchService.search` beside hand-written SQL on the same tables, at two sizes of the same
 * data set (it grows from the small one to the large one).
 *
 *   DATABASE_URL=postgres://… npx tsx bench/search.ts [--patients 100000] [--small 1000]
 *       [--schema name] [--keep] [--stages small,large] [--runs 60]
 *
 * `benchSearch()` is what `npm run bench` calls. The schema is dropped afterwards unless
 * `--keep`; an existing schema given with `--schema` is reused and only grown.
 * Without DATABASE_URL it runs on PGlite in memory, by default at 2,000 patients (≈ 20 k
 * Observations: PGlite loads that in a minute or two; BENCH_SEARCH_PATIENTS in `npm run bench`).
 */
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Bundle } from 'fhir/r4.js';
import { sql, type Kysely, type KyselyPlugin, type PluginTransformQueryArgs, type PluginTransformResultArgs, type QueryResult, type RootOperationNode, type UnknownRow } from 'kysely';
import pg from 'pg';
import { buildApp, type ServerApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { SearchService, type SearchInput } from '../src/search/search-service.js';
import { compare, measure, type Comparison, type Measurement } from './harness.js';
import { loadPopulation, type LoadResult } from './search-load.js';
import { benchQueries, countQuery, type BenchQuery } from './search-queries.js';

const BASE = 'http://localhost:8080/fhir';
/** Tables whose sequential scan would be a bug at this size. */
const BIG_TABLES = /^(resource|resource_history|search_[a-z]+)$/;

export interface SearchBenchOptions {
  /** a PostgreSQL URL; undefined: the embedded PGlite, in memory */
  databaseUrl?: string;
  /** patients of the large stage (≈ 10 Observations each) */
  patients?: number;
  /** patients of the small stage */
  smallPatients?: number;
  practitioners?: number;
  schema?: string;
  keep?: boolean;
  stages?: Array<'small' | 'large'>;
  /** timed runs per query and side, per round (two rounds, the better is kept) */
  runs?: number;
  log?: (line: string) => void;
}

export interface PlanSummary {
  indexes: string[];
  seqScans: string[];
}

export interface QueryFigures {
  name: string;
  mix: boolean;
  comparison: Comparison;
  p95Ratio: number;
  /** SQL statements one search sent (most seen over the timed runs) */
  statements: number;
  maxStatements: number;
  plans: { fhirPage: PlanSummary; fhirCount?: PlanSummary; sql: PlanSummary };
  matchesOnFirstPage: number;
}

export interface StageFigures {
  label: string;
  patients: number;
  counts: Record<string, number>;
  load?: LoadResult;
  vacuumAnalyzeSeconds: number;
  queries: QueryFigures[];
  mix: { fhir: Measurement; sql: Measurement };
  countRate: { matches: number; ms: number; matchesPerSecond: number; sqlMs: number };
}

export interface SearchBenchReport {
  database: string;
  schema: string;
  stages: StageFigures[];
  aims: Array<{ aim: string; met: boolean; detail: string }>;
}

/** Counts statements sent through a Kysely instance (every query passes transformResult once). */
class StatementCounter implements KyselyPlugin {
  n = 0;
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return args.node;
  }
  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    this.n++;
    return args.result;
  }
}

function summarizePlan(text: string): PlanSummary {
  const indexes = new Set<string>();
  const seqScans = new Set<string>();
  for (const m of text.matchAll(/(?:Index Scan|Index Only Scan)(?: Backward)? using (\S+) on (\S+)/g)) indexes.add(m[1]!);
  for (const m of text.matchAll(/Bitmap Index Scan on (\S+)/g)) indexes.add(m[1]!);
  for (const m of text.matchAll(/Seq Scan on (\S+)/g)) if (BIG_TABLES.test(m[1]!)) seqScans.add(m[1]!);
  return { indexes: [...indexes], seqScans: [...seqScans] };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

async function explainText(db: AnyDb, q: ReturnType<BenchQuery['sql']>[number]): Promise<string> {
  const r = await sql<Record<string, string>>`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ${q}`.execute(db);
  return r.rows.map((row) => Object.values(row)[0]).join('\n');
}

async function tableCounts(db: AnyDb): Promise<Record<string, number>> {
  const r = await sql<{ t: string; n: string }>`SELECT resource_type AS t, count(*) AS n FROM resource GROUP BY 1`.execute(db);
  return Object.fromEntries(r.rows.map((x) => [x.t, Number(x.n)]));
}

/** The better (lower p95) of two measurements of the same thing: the machine is shared. */
function better(a: Measurement, b: Measurement): Measurement {
  return a.p95Ms <= b.p95Ms ? a : b;
}

const f = (n: number, d = 2) => n.toFixed(d);

export async function benchSearch(o: SearchBenchOptions): Promise<SearchBenchReport> {
  const log = o.log ?? ((s: string) => console.log(s));
  const largePatients = o.patients ?? 100_000;
  const smallPatients = o.smallPatients ?? Math.max(100, Math.round(largePatients / 100));
  const practitioners = o.practitioners ?? Math.max(20, Math.round(largePatients / 200));
  const schema = o.schema ?? `search_bench_${randomBytes(4).toString('hex')}`;
  const stages = o.stages ?? ['small', 'large'];
  const runs = o.runs ?? 60;
  const database = o.databaseUrl ? 'postgresql' : 'pglite (embedded, memory)';
  const config = loadConfig({
    ...process.env,
    // '' (not undefined) so a DATABASE_URL in the environment does not win over "PGlite".
    DATABASE_URL: o.databaseUrl ?? '',
    DATABASE_SCHEMA: o.databaseUrl ? schema : '',
    DATA_DIR: 'memory',
    // Benchmarks send far more than one client's per-minute API limit.
    API_RATE_LIMIT_PER_CLIENT: '0',
    API_RATE_LIMIT_PER_IP: '0',
    LOG_LEVEL: 'silent',
    FHIR_BOOTSTRAP_CLIENT_ID: 'bench',
    FHIR_BOOTSTRAP_CLIENT_SECRET: randomBytes(18).toString('base64url'),
  });
  const app: ServerApp = await buildApp(config);
  const db = app.database.db as AnyDb;
  const counter = new StatementCounter();
  // Built exactly as app.ts builds the one the HTTP layer calls, on a counting handle.
  const service = new SearchService({ db: db.withPlugin(counter), registry: app.registry });
  const report: SearchBenchReport = { database, schema: o.databaseUrl ? schema : '', stages: [], aims: [] };
  try {
    for (const stage of stages) {
      const target = stage === 'small' ? smallPatients : largePatients;
      const before = await tableCounts(db);
      const have = before.Patient ?? 0;
      if (have > target) {
        log(`\nstage ${stage}: schema already holds ${have} patients (> ${target}); skipped`);
        continue;
      }
      let load: LoadResult | undefined;
      if (have < target) {
        const pracFrom = before.Practitioner ?? 0;
        log(`\nstage ${stage}: writing patients ${have}…${target} (+ practitioners ${pracFrom}…${practitioners}) through ResourceStore transactions`);
        let last = 0;
        const t0 = performance.now();
        load = await loadPopulation(
          app.store,
          { practitioners: [pracFrom, practitioners], patients: [have, target], practitionerTotal: practitioners },
          {
            batch: 4000,
            inFlight: 3,
            onProgress: (n) => {
              if (n - last >= 100_000) {
                last = n;
                log(`  ${n} resources, ${f(n / ((performance.now() - t0) / 1000), 0)}/s`);
              }
            },
          },
        );
        log(`  wrote ${load.resources} resources in ${f(load.seconds, 0)} s (${f(load.perSecond, 0)}/s)`);
      }
      const tv = performance.now();
      // Only this schema's tables (a bare VACUUM would walk every schema of the database).
      const tables = await sql<{ t: string }>`SELECT tablename AS t FROM pg_tables WHERE schemaname = current_schema()`.execute(db);
      await sql`VACUUM (ANALYZE) ${sql.join(tables.rows.map((t) => sql.id(t.t)))}`.execute(db);
      const vacuumAnalyzeSeconds = (performance.now() - tv) / 1000;
      const counts = await tableCounts(db);
      log(`  VACUUM ANALYZE ${f(vacuumAnalyzeSeconds, 1)} s; ${Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(', ')}`);
      report.stages.push(await measureStage(stage, target, counts, load, vacuumAnalyzeSeconds));
    }
  } finally {
    await app.close();
    if (o.databaseUrl && !o.keep && !o.schema) {
      const client = new pg.Client({ connectionString: o.databaseUrl });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
    }
  }
  report.aims = aims(report);
  log('\naims:');
  for (const a of report.aims) log(`  ${a.met ? 'met    ' : 'NOT met'}  ${a.aim}: ${a.detail}`);
  return report;

  async function measureStage(label: string, patients: number, counts: Record<string, number>, load: LoadResult | undefined, vacuumAnalyzeSeconds: number): Promise<StageFigures> {
    const queries = benchQueries(patients);
    const input = (bq: BenchQuery, i: number): SearchInput => ({ resourceType: bq.resourceType, params: bq.params(i), baseUrl: BASE, compartment: bq.compartment?.(i) });
    const figures: QueryFigures[] = [];
    for (const bq of queries) {
      const plan = await service.explain(input(bq, 0));
      const sqlPlans = await Promise.all(bq.sql(0).map((s) => explainText(db, s)));
      const first = await service.search(input(bq, 0));
      let statements = 0;
      const fhirOp = async (i: number) => {
        const n0 = counter.n;
        const b: Bundle = await service.search(input(bq, i));
        statements = Math.max(statements, counter.n - n0);
        if (b.resourceType !== 'Bundle') throw new Error('not a bundle');
      };
      const sqlOp = async (i: number) => {
        for (const s of bq.sql(i)) await s.execute(db);
      };
      // warm: plans, caches, JIT
      for (let i = 0; i < 5; i++) {
        await fhirOp(i);
        await sqlOp(i);
      }
      let fhirM: Measurement | undefined;
      let sqlM: Measurement | undefined;
      for (let round = 0; round < 2; round++) {
        const fm = await measure(bq.name, runs, 1, fhirOp);
        const sm = await measure(`${bq.name} (SQL)`, runs, 1, sqlOp);
        fhirM = fhirM ? better(fhirM, fm) : fm;
        sqlM = sqlM ? better(sqlM, sm) : sm;
      }
      const comparison = compare(bq.name, fhirM!, sqlM!);
      figures.push({
        name: bq.name,
        mix: bq.mix,
        comparison,
        p95Ratio: fhirM!.p95Ms / sqlM!.p95Ms,
        statements,
        maxStatements: bq.maxStatements,
        plans: {
          fhirPage: summarizePlan(plan.page),
          fhirCount: /_total=accurate|_summary=count/.test(new URLSearchParams(bq.params(0)).toString()) ? summarizePlan(plan.count) : undefined,
          sql: summarizePlan(sqlPlans.join('\n')),
        },
        matchesOnFirstPage: (first.entry ?? []).filter((e) => e.search?.mode === 'match').length,
      });
      if (process.env.SEARCH_BENCH_PLANS) log(`\n--- ${bq.name}\n${plan.page}\n--- count\n${plan.count}\n--- SQL\n${sqlPlans.join('\n')}`);
    }

    // Mix throughput: every mix query in turn, 4 in flight (2 cores: enough to keep both busy).
    const mixQueries = queries.filter((q) => q.mix);
    const mixOps = mixQueries.length * Math.max(10, Math.round(runs / 2));
    const mixFhirOp = async (i: number) => {
      await service.search(input(mixQueries[i % mixQueries.length]!, Math.floor(i / mixQueries.length)));
    };
    const mixSqlOp = async (i: number) => {
      for (const s of mixQueries[i % mixQueries.length]!.sql(Math.floor(i / mixQueries.length))) await s.execute(db);
    };
    let mixFhir: Measurement | undefined;
    let mixSql: Measurement | undefined;
    for (let round = 0; round < 2; round++) {
      const fm = await measure('mix', mixOps, 4, mixFhirOp);
      const sm = await measure('mix (SQL)', mixOps, 4, mixSqlOp);
      mixFhir = !mixFhir || fm.perSecond > mixFhir.perSecond ? fm : mixFhir;
      mixSql = !mixSql || sm.perSecond > mixSql.perSecond ? sm : mixSql;
    }

    // _summary=count over a large match: matches counted per second (best of 3).
    const cq = countQuery();
    let best = Infinity;
    let matches = 0;
    for (let k = 0; k < 3; k++) {
      const t0 = performance.now();
      const b = await service.search({ resourceType: cq.resourceType, params: cq.params, baseUrl: BASE });
      best = Math.min(best, performance.now() - t0);
      matches = b.total ?? 0;
    }
    let sqlBest = Infinity;
    for (let k = 0; k < 3; k++) {
      const t0 = performance.now();
      await cq.sql.execute(db);
      sqlBest = Math.min(sqlBest, performance.now() - t0);
    }
    const countRate = { matches, ms: best, matchesPerSecond: matches / (best / 1000), sqlMs: sqlBest };

    const obs = counts.Observation ?? 0;
    log(`\nSearch on ${database} at ${obs} Observations, ${counts.Patient ?? 0} Patients (${label}; latency 1 in flight, ${runs} runs × 2 rounds, better round kept)`);
    log(['query', 'fhir p50', 'fhir p95', 'sql p50', 'sql p95', 'p50 ratio', 'p95 ratio', 'stmts', 'page', 'FHIR plan: indexes', 'seq scans'].join(' | '));
    for (const q of figures) {
      const c = q.comparison;
      log(
        [
          `${q.mix ? '' : '(extra) '}${q.name}`,
          f(c.fhir.p50Ms), f(c.fhir.p95Ms), f(c.raw.p50Ms), f(c.raw.p95Ms), f(c.p50Ratio), f(q.p95Ratio),
          `${q.statements}/${q.maxStatements}`,
          String(q.matchesOnFirstPage),
          [...q.plans.fhirPage.indexes, ...(q.plans.fhirCount ? ['count:', ...q.plans.fhirCount.indexes] : [])].join(' '),
          [...q.plans.fhirPage.seqScans, ...(q.plans.fhirCount?.seqScans ?? []), ...q.plans.sql.seqScans].join(' ') || '-',
        ].join(' | '),
      );
    }
    log(`mix throughput (4 in flight): FHIR ${f(mixFhir!.perSecond, 1)}/s, SQL ${f(mixSql!.perSecond, 1)}/s`);
    log(`_summary=count: ${matches} matches in ${f(best, 1)} ms = ${f(countRate.matchesPerSecond / 1e6, 2)} M/s (SQL count ${f(sqlBest, 1)} ms)`);
    return { label, patients, counts, load, vacuumAnalyzeSeconds, queries: figures, mix: { fhir: mixFhir!, sql: mixSql! }, countRate };
  }
}

function aims(r: SearchBenchReport): SearchBenchReport['aims'] {
  const out: SearchBenchReport['aims'] = [];
  const small = r.stages.find((s) => s.label === 'small');
  const large = r.stages.find((s) => s.label === 'large');
  const top = large ?? small;
  if (!top) return out;
  const mix = top.queries.filter((q) => q.mix);
  const slow = mix.filter((q) => q.comparison.fhir.p95Ms > 50);
  out.push({ aim: 'every mix query p95 ≤ 50 ms', met: slow.length === 0, detail: mix.map((q) => `${q.name} ${f(q.comparison.fhir.p95Ms, 1)}`).join(', ') });
  const farP50 = mix.filter((q) => q.comparison.p50Ratio > 3);
  out.push({ aim: 'every mix query p50 ≤ 3 × hand-written SQL', met: farP50.length === 0, detail: mix.map((q) => `${q.name} ${f(q.comparison.p50Ratio)}×`).join(', ') });
  const far = mix.filter((q) => q.p95Ratio > 3);
  out.push({ aim: 'every mix query p95 ≤ 3 × hand-written SQL', met: far.length === 0, detail: mix.map((q) => `${q.name} ${f(q.p95Ratio)}×`).join(', ') });
  const chain = top.queries.find((q) => q.name.startsWith('chain '));
  if (chain) {
    out.push({ aim: 'single-level chain p95 ≤ 3 × hand-written SQL', met: chain.p95Ratio <= 3, detail: `${chain.name}: ${f(chain.comparison.fhir.p95Ms, 1)} ms vs ${f(chain.comparison.raw.p95Ms, 1)} ms = ${f(chain.p95Ratio)}×` });
  }
  if (small && large) {
    const ratio = large.mix.fhir.perSecond / small.mix.fhir.perSecond;
    const obs = (s: StageFigures) => (s.counts.Observation ?? 0).toLocaleString('en');
    out.push({
      aim: `mix throughput at ${obs(large)} Observations ≥ 0.65 × at ${obs(small)}`,
      met: ratio >= 0.65,
      detail: `${f(large.mix.fhir.perSecond, 1)}/s vs ${f(small.mix.fhir.perSecond, 1)}/s = ${f(ratio)}×`,
    });
  }
  out.push({ aim: '_summary=count ≥ 1,000,000 matches/s', met: top.countRate.matchesPerSecond >= 1e6, detail: `${top.countRate.matches} in ${f(top.countRate.ms, 1)} ms` });
  const inc = top.queries.filter((q) => q.statements > q.maxStatements);
  out.push({ aim: 'one SQL round trip per page + count + include path', met: inc.length === 0, detail: top.queries.map((q) => `${q.name} ${q.statements}/${q.maxStatements}`).join(', ') });
  const seq = top.queries.filter((q) => q.plans.fhirPage.seqScans.length || q.plans.fhirCount?.seqScans.length);
  out.push({ aim: 'no Seq Scan on big tables (FHIR plans)', met: seq.length === 0, detail: seq.map((q) => q.name).join(', ') || 'none' });
  return out;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const databaseUrl = process.env.DATABASE_URL;
  const started = Date.now();
  benchSearch({
    databaseUrl,
    patients: arg('patients') ? Number(arg('patients')) : databaseUrl ? undefined : 2000,
    smallPatients: arg('small') ? Number(arg('small')) : undefined,
    schema: arg('schema'),
    keep: process.argv.includes('--keep'),
    stages: arg('stages')?.split(',') as SearchBenchOptions['stages'],
    runs: arg('runs') ? Number(arg('runs')) : undefined,
  })
    .then((report) => {
      const file = join('bench', `search-report-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
      writeFileSync(file, JSON.stringify(report, null, 2));
      console.log(`\nreport written to ${file} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
    })
    .catch((e: unknown) => {
      console.error(e);
      process.exit(1);
    });
}
