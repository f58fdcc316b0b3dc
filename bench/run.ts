/**
 * `npm run bench`: every figure beside a raw baseline measured in the same run, printed as a
 * ratio beside its aim and written to bench/report-<timestamp>.json. Uses DATABASE_URL when set
 * (each section in a schema of its own, dropped afterwards), else the embedded database in memory.
 *
 *   npm run bench                          all sections (crud, export, ingest, import, search, http, hl7v2, audit, subscriptions, terminology, booking, fuzzy, prescribing, pharmacy, console)
 *   npm run bench -- crud,http             some sections (or BENCH_SECTIONS=crud,http); hl7v2: ORU^R01 over MLLP
 *   npm run bench -- --quick               every section at a small scale, ~2 minutes (or BENCH_QUICK=1)
 *   npm run bench -- fulltext              _content search at 1 M resources (BENCH_FULLTEXT_RESOURCES; 100 k on PGlite)
 *
 * Sizes: BENCH_INGEST_COPIES (default 9 on PostgreSQL, 0 on PGlite), BENCH_SEARCH_PATIENTS
 * (default 100000 on PostgreSQL = 1 M Observations, 2000 on PGlite = 20 k), BENCH_HTTP_SECONDS
 * (default 4 per figure), BENCH_HTTP_CONNECTIONS (default 1,8,32), BENCH_HTTP_PATIENTS (500),
 * BENCH_HTTP_SAMPLES (400); BENCH_REPORT chooses the report file. docs/benchmarks.md describes
 * each section and its baseline.
 */
import { mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServerApp } from '../src/app.js';
import { benchBooking } from './booking.js';
import { benchPrescribing } from './prescribing.js';
import { benchPharmacy } from './pharmacy.js';
import { benchFuzzySearch } from './fuzzy-search.js';
import { benchFullText } from './fulltext.js';
import { benchReports } from './reports.js';
import { benchAuthOverhead, printAuthOverhead, type AuthOverheadOptions } from './auth-overhead.js';
import { benchAuditedWrites, benchCrud } from './crud.js';
import { benchEnvironment, loadNow, printEnvironment } from './environment.js';
import { benchExport, printExportBench } from './export.js';
import { printComparisons, withAim, type Comparison } from './harness.js';
import { benchHl7v2 } from './hl7v2.js';
import { benchHttp, type HttpBenchReport } from './http.js';
import { benchImport, type ImportBenchResult } from './import.js';
import { benchIngest } from './ingest.js';
import { SHARED_DATA, syntheaResources } from './samples.js';
import { benchSearch, type SearchBenchReport } from './search.js';
import { benchSubscriptions } from './subscriptions.js';
import { benchTerminology } from './terminology.js';
import { benchTerminologyLoad } from './terminology-load.js';
import { benchConsole } from './console.js';
import { openBenchApp } from './bench-app.js';
import { buildConsole } from '../scripts/build-console.js';
import { buildDemoHospital } from '../scripts/demo-hospital.js';
import { freePort } from '../test/support/ports.js';

const SECTIONS = ['crud', 'export', 'ingest', 'import', 'search', 'http', 'hl7v2', 'audit', 'subscriptions', 'terminology', 'terminology-load', 'booking', 'fuzzy', 'prescribing', 'pharmacy', 'reports', 'console', 'fulltext'] as const;
type Section = (typeof SECTIONS)[number];

/**
 * A fresh app (own schema on PostgreSQL) with a token source, closed and dropped afterwards.
 * `env` overrides the process environment for this app (e.g. AUDIT_EVENTS).
 */
async function withApp<T>(work: (app: ServerApp, token: () => Promise<string>) => Promise<T>, env: Record<string, string> = {}): Promise<T> {
  const { app, secret, close } = await openBenchApp(env);
  let current = { token: '', at: 0 };
  // Long sections outlive one access token: fetch a fresh one every minute.
  const token = async () => {
    if (Date.now() - current.at > 60_000) {
      const res = await app.http.inject({
        method: 'POST',
        url: '/auth/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: `grant_type=client_credentials&client_id=bench&client_secret=${secret}&scope=system/*.*`,
      });
      current = { token: (res.json() as { access_token: string }).access_token, at: Date.now() };
    }
    return current.token;
  };
  try {
    return await work(app, token);
  } finally {
    await close();
  }
}

function chosenSections(): Section[] {
  const raw = process.argv.slice(2).find((a) => !a.startsWith('--')) ?? process.env.BENCH_SECTIONS ?? SECTIONS.join(',');
  const chosen = raw.split(',').map((s) => s.trim()) as Section[];
  for (const s of chosen) if (!SECTIONS.includes(s)) throw new Error(`unknown bench section "${s}"; choose from ${SECTIONS.join(', ')}`);
  return chosen;
}

/** A Synthea folder holding the reference-data batches and the `bundles` smallest transaction Bundles (symlinks). */
function syntheaSubset(bundles: number): { dir: string; remove: () => void } {
  const source = join(SHARED_DATA, 'synthea');
  const dir = mkdtempSync(join(tmpdir(), 'bench-synthea-'));
  const files = readdirSync(source).filter((f) => f.endsWith('.json.gz')).sort();
  const bySize = files.filter((f) => !f.startsWith('0-')).sort((x, y) => statSync(join(source, x)).size - statSync(join(source, y)).size);
  const chosen = [...files.filter((f) => f.startsWith('0-')), ...bySize.slice(0, bundles)];
  for (const f of chosen) symlinkSync(join(source, f), join(dir, f));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

const QUICK_BUNDLES = 10;

interface AimLine {
  section: string;
  aim: string;
  figure: string;
  met: boolean;
}

const f2 = (n: number) => n.toFixed(2);

function comparisonAims(section: string, rows: Comparison[]): AimLine[] {
  return rows
    .filter((r) => r.aim)
    .map((r) => ({ section, aim: `${r.what}: ${r.aim}`, figure: `throughput ${f2(r.throughputRatio)}×, p50 ${f2(r.p50Ratio)}×`, met: r.met === true }));
}

async function main(): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL;
  const quick = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
  const started = Date.now();
  const environment = await benchEnvironment(databaseUrl);
  const database = environment.database;
  const report: Record<string, unknown> = { startedAt: new Date().toISOString(), quick, environment };
  const sections = chosenSections();
  const aims: AimLine[] = [];
  const tookSeconds: Partial<Record<Section, number>> = {};
  // Quick runs ingest and import the same few Bundles.
  const subset = quick ? syntheaSubset(QUICK_BUNDLES) : undefined;
  try {
    await runSections();
  } finally {
    subset?.remove();
  }

  async function runSections(): Promise<void> {
    console.log(`npm run bench${quick ? ' --quick (small scale: figures are indicative only)' : ''}: ${sections.join(', ')}`);
    printEnvironment(environment);

    if (sections.includes('crud')) {
      const t0 = Date.now();
      const scale = quick ? 0.1 : databaseUrl ? 1 : 0.5;
      const samples = syntheaResources(['Patient', 'Observation'], 400);
      // Calls of each operation before it is measured: steady state, not the JIT (bench/harness.ts warmUp).
      const crudWarmUp = quick ? 1000 : 4000;
      // The write path's own figures: without the audit trail (its cost is the audit bench's).
      report.crud = await withApp(async (app, token) => {
        const rows = await benchCrud({
          app,
          token: await token(),
          samples,
          creates: Math.round(3000 * scale),
          reads: Math.round(6000 * scale),
          updates: Math.round(2000 * scale),
          concurrency: 8,
          warmUp: crudWarmUp,
        });
        withAim(rows, /^update/, { text: 'throughput ≥ 0.3 × raw', met: (c) => c.throughputRatio >= 0.3 });
        printComparisons(`CRUD on ${database}, AUDIT_EVENTS=off (concurrency 8, fastify inject, Synthea Patient/Observation JSON; load ${loadNow()})`, rows);
        aims.push(...comparisonAims('crud (inject, audit off)', rows));
        return rows;
      }, { AUDIT_EVENTS: 'off' });
      // The same writes as a default server runs them (one AuditEvent per request), for reference.
      report.crudAudited = await withApp(async (app, token) => {
        const rows = await benchAuditedWrites({ app, token: await token(), samples, creates: Math.round(1500 * scale), updates: Math.round(1000 * scale), concurrency: 8, warmUp: crudWarmUp });
        printComparisons(`create and update on ${database}, AUDIT_EVENTS=on (the default; AuditEvents written before the clock stops; no aim here; load ${loadNow()})`, rows);
        return rows;
      }, { AUDIT_EVENTS: 'on' });
      tookSeconds.crud = (Date.now() - t0) / 1000;
    }
    if (sections.includes('export')) {
      const t0 = Date.now();
      report.export = await withApp(async (app, token) => {
        const result = await benchExport({ app, token: await token(), patients: quick ? 5 : databaseUrl ? 100 : 20, ...(quick ? { repeats: 1 } : {}) });
        printExportBench(`Bulk Data export on ${database}`, result);
        return result;
      });
      tookSeconds.export = (Date.now() - t0) / 1000;
    }
    if (sections.includes('ingest')) {
      const t0 = Date.now();
      report.ingest = await withApp(async (app, token) => {
        const copies = quick ? 0 : Number(process.env.BENCH_INGEST_COPIES ?? (databaseUrl ? 9 : 0));
        const rows = await benchIngest({ app, token, concurrency: 2, copies, ...(subset ? { dir: subset.dir } : {}) });
        printComparisons(`Transaction ingest on ${database}, AUDIT_EVENTS=off (Synthea Bundles${subset ? `, the ${QUICK_BUNDLES} smallest` : ''}, concurrency 2; load ${loadNow()})`, rows);
        aims.push(...comparisonAims('ingest (inject, audit off)', rows));
        return rows;
      }, { AUDIT_EVENTS: 'off' });
      tookSeconds.ingest = (Date.now() - t0) / 1000;
    }
    if (sections.includes('import')) {
      const t0 = Date.now();
      const result: ImportBenchResult = await benchImport({ databaseUrl, dir: subset?.dir ?? join(SHARED_DATA, 'synthea') });
      const ingest = (report.ingest as Comparison[] | undefined)?.[0];
      console.log(
        `\nnpm run import on ${database} (Synthea${subset ? `, the ${QUICK_BUNDLES} smallest Bundles` : ''}, empty database, own process): ` +
          `${result.resources} resources in ${result.seconds.toFixed(1)} s = ${result.perSecond.toFixed(0)} resources/s (whole command ${result.wallSeconds.toFixed(1)} s)` +
          (ingest ? `; transaction ingest ${ingest.fhir.perSecond.toFixed(0)}/s, multi-row INSERT ${ingest.raw.perSecond.toFixed(0)}/s in this run` : ' (run with the ingest section for its baselines)'),
      );
      report.import = result;
      if (ingest) {
        aims.push({ section: 'import (CLI)', aim: 'npm run import ≥ transaction ingest', figure: `${f2(result.perSecond / ingest.fhir.perSecond)}×`, met: result.perSecond >= ingest.fhir.perSecond });
        aims.push({ section: 'import (CLI)', aim: 'npm run import ≥ 0.3 × multi-row INSERT', figure: `${f2(result.perSecond / ingest.raw.perSecond)}×`, met: result.perSecond >= 0.3 * ingest.raw.perSecond });
      }
      tookSeconds.import = (Date.now() - t0) / 1000;
    }
    if (sections.includes('search')) {
      const t0 = Date.now();
      // PostgreSQL: 10 k and 1 M Observations. PGlite holds everything in memory and loads
      // ~300 resources/s, so it runs the same mix at a scale it loads in a minute or two.
      const patients = Number(process.env.BENCH_SEARCH_PATIENTS ?? (quick ? (databaseUrl ? 1000 : 200) : databaseUrl ? 100_000 : 2000));
      const search: SearchBenchReport = await benchSearch({ databaseUrl, patients, runs: quick ? 5 : databaseUrl ? 60 : 30 });
      report.search = search;
      aims.push(...search.aims.map((a) => ({ section: `search (${search.database})`, aim: a.aim, figure: a.detail, met: a.met })));
      tookSeconds.search = (Date.now() - t0) / 1000;
    }
    if (sections.includes('http')) {
      const t0 = Date.now();
      const http: HttpBenchReport = await benchHttp({
        databaseUrl,
        seconds: Number(process.env.BENCH_HTTP_SECONDS ?? (quick ? 1 : 4)),
        connections: (process.env.BENCH_HTTP_CONNECTIONS ?? '1,8,32').split(',').map(Number),
        patients: Number(process.env.BENCH_HTTP_PATIENTS ?? (quick ? 100 : 500)),
        samples: Number(process.env.BENCH_HTTP_SAMPLES ?? (quick ? 100 : 400)),
      });
      report.http = http;
      for (const r of http.rows.filter((x) => x.aim)) {
        aims.push({ section: 'http (socket)', aim: r.aim!, figure: `throughput ${f2(r.vsRaw)}×, p50 ${f2(r.p50VsRaw)}× (${r.connections} connection${r.connections > 1 ? 's' : ''})`, met: r.met === true });
      }
      tookSeconds.http = (Date.now() - t0) / 1000;
    }
    if (sections.includes('subscriptions')) {
      const t0 = Date.now();
      report.subscriptions = await withApp(async (app, token) => {
        console.log(`\nSubscriptions on ${database}: creates with 0, 10 and 100 active rest-hook Subscriptions (concurrency 8, inject; receiver on a worker thread; 3 × 0,10,100 matching none,100,100,100 matching none,10,0 after a warm-up; load ${loadNow()})`);
        const result = await benchSubscriptions({ app, token: await token(), writes: quick ? 300 : 1500, concurrency: 8, palindromes: 3 });
        const m = result.mean;
        console.log(
          `  mean until delivered: 0 → ${m['0']!.drainedPerSecond.toFixed(0)}/s, 10 → ${m['10']!.drainedPerSecond.toFixed(0)}/s, 100 → ${m['100']!.drainedPerSecond.toFixed(0)}/s; ` +
            `ratio (median of the palindromes' ratios) 10: ${f2(result.ratio10)}×, 100: ${f2(result.ratio100)}× (each: ${result.ratios100.map(f2).join(', ')}), 100 matching no write: ${f2(result.ratio100Unmatched)}×; ` +
            `creates as clients saw them: 100 vs 0 ${f2(result.writesRatio100)}×; ` +
            `CPU of this process per create 0 / 10 / 100: ${m['0']!.cpuMicrosPerWrite.toFixed(0)} / ${m['10']!.cpuMicrosPerWrite.toFixed(0)} / ${m['100']!.cpuMicrosPerWrite.toFixed(0)} µs` +
            (m['0']!.dbMicrosPerWrite === undefined ? '; ' : `, of PostgreSQL ${m['0']!.dbMicrosPerWrite.toFixed(0)} / ${m['10']!.dbMicrosPerWrite!.toFixed(0)} / ${m['100']!.dbMicrosPerWrite!.toFixed(0)} µs; `) +
            `delivery latency commit → receiver p50 ${result.latency.p50Ms.toFixed(0)} ms, p95 ${result.latency.p95Ms.toFixed(0)} ms (${result.latency.samples} deliveries)`,
        );
        aims.push({ section: 'subscriptions', aim: result.aim, figure: `${f2(result.ratio100)}× throughput until delivered (${f2(result.writesRatio100)}× as clients saw it; 100 subscriptions matching no write: ${f2(result.ratio100Unmatched)}×); latency p50 ${result.latency.p50Ms.toFixed(0)} ms, p95 ${result.latency.p95Ms.toFixed(0)} ms`, met: result.met });
        return result;
      }, { AUDIT_EVENTS: 'off', SUBSCRIPTION_POLL_MS: '200' });
      tookSeconds.subscriptions = (Date.now() - t0) / 1000;
    }
    if (sections.includes('terminology')) {
      const t0 = Date.now();
      report.terminology = await withApp(async (app, token) => {
        const size = quick ? 20_000 : 100_000;
        console.log(`\nTerminology on ${database}: ValueSet/$expand with a two-word filter, page of 20 with total, on a ${size}-concept code system (inject, one caller; load ${loadNow()})`);
        const result = await benchTerminology({ app, token: await token(), size, calls: quick ? 100 : 400 });
        console.log(`  code system written in ${result.loadSeconds.toFixed(1)} s, first expansion computed in ${result.firstExpansionSeconds.toFixed(1)} s`);
        printComparisons('$expand vs hand-written SQL on the same tables', [result.comparison]);
        aims.push({ section: 'terminology', aim: result.aim, figure: `p95 ${result.comparison.fhir.p95Ms.toFixed(1)} ms (SQL alone p95 ${result.comparison.raw.p95Ms.toFixed(1)} ms; p50 ratio ${f2(result.comparison.p50Ratio)}×)`, met: result.met });
        return result;
      }, { AUDIT_EVENTS: 'off' });
      tookSeconds.terminology = (Date.now() - t0) / 1000;
    }
    if (sections.includes('terminology-load')) {
      const t0 = Date.now();
      report['terminology-load'] = await withApp(async (app, token) => {
        const size = quick ? 20_000 : 100_000;
        console.log(`\nTerminology load on ${database}: a ${size}-concept LOINC-format release loaded (npm run terminology:load's loader), then $expand of http://loinc.org/vs with pick-list filters (1–4 letters, words), page of 20 with total (inject, one caller; load ${loadNow()})`);
        const result = await benchTerminologyLoad({ app, token: await token(), size, calls: quick ? 140 : 700 });
        console.log(`  loaded ${result.concepts} concepts (${result.closurePairs} hierarchy pairs) in ${result.loadSeconds.toFixed(1)} s: ${result.conceptsPerSecond.toFixed(0)} concepts/s`);
        printComparisons('$expand vs hand-written SQL on the same tables', [result.comparison]);
        for (const [kind, m] of Object.entries(result.byLength)) console.log(`  filter ${kind}: p50 ${m.p50Ms.toFixed(1)} ms, p95 ${m.p95Ms.toFixed(1)} ms`);
        console.log(`  plan of the hand-written SQL for a one-letter filter:\n    ${result.plan.split('\n').join('\n    ')}`);
        aims.push({ section: 'terminology-load', aim: result.aim, figure: `p95 ${result.comparison.fhir.p95Ms.toFixed(1)} ms (SQL alone p95 ${result.comparison.raw.p95Ms.toFixed(1)} ms); load ${result.conceptsPerSecond.toFixed(0)} concepts/s`, met: result.met });
        return result;
      }, { AUDIT_EVENTS: 'off' });
      tookSeconds['terminology-load'] = (Date.now() - t0) / 1000;
    }
    if (sections.includes('booking')) {
      const t0 = Date.now();
      report.booking = await withApp(async (app, token) => {
        const slots = quick ? 20 : 100;
        console.log(`\nBooking on ${database}: 8 callers race for each of ${slots} slots, beside uncontended bookings and plain creates (inject; load ${loadNow()})`);
        const result = await benchBooking({ app, token: await token(), slots, contenders: 8 });
        console.log(`  ${result.bookingsPerSecond.toFixed(0)} bookings/s won under contention (${result.attemptsPerSecond.toFixed(0)} attempts/s, exactly one winner per slot)`);
        printComparisons('booking (rules on) vs plain Appointment create', result.comparisons);
        aims.push(...comparisonAims('booking (inject)', result.comparisons));
        return result;
      }, { AUDIT_EVENTS: 'off' });
      tookSeconds.booking = (Date.now() - t0) / 1000;
    }
    if (sections.includes('pharmacy')) {
      const t0 = Date.now();
      report.pharmacy = await withApp(async (app, token) => {
        const dispenses = quick ? 200 : 2_000;
        console.log(`\nPharmacy on ${database}: ${dispenses} dispenses by 8 pharmacists at once from the same two batches (prescription check, FIFO, stock locks), beside plain MedicationDispense creates (inject; load ${loadNow()})`);
        const result = await benchPharmacy({ app, token: await token(), dispenses, pharmacists: 8 });
        console.log(`  ${result.dispensesPerSecond.toFixed(0)} dispenses/s; stock ${result.initialStock} → ${result.finalStock} (exactly initial − dispensed)`);
        printComparisons('dispense (stock rules on) vs plain MedicationDispense create', result.comparisons);
        aims.push(...comparisonAims('pharmacy (inject)', result.comparisons));
        return result;
      }, { AUDIT_EVENTS: 'off', NOTIFICATIONS: 'off' });
      tookSeconds.pharmacy = (Date.now() - t0) / 1000;
    }
    if (sections.includes('prescribing')) {
      const t0 = Date.now();
      report.prescribing = await withApp(async (app, token) => {
        const patients = quick ? 20 : 200;
        const creates = quick ? 200 : 2_000;
        console.log(`\nPrescribing safety on ${database}: MedicationRequest create with allergy, interaction, duplicate and dose checks (${patients} patients, each 3 allergies, 5 active prescriptions, 12 Observations) beside plain creates (inject, 8 callers; load ${loadNow()})`);
        const result = await benchPrescribing({ app, token: await token(), patients, creates, concurrency: 8 });
        printComparisons('checked MedicationRequest create vs plain create of the same resource', result.comparisons);
        aims.push(...comparisonAims('prescribing (inject)', result.comparisons));
        return result;
      }, { AUDIT_EVENTS: 'off' });
      tookSeconds.prescribing = (Date.now() - t0) / 1000;
    }
    if (sections.includes('fuzzy')) {
      const t0 = Date.now();
      report.fuzzy = await withApp(async (app, token) => {
        const patients = quick ? 5_000 : 100_000;
        console.log(`\nFuzzy patient name search on ${database}: misspelled / unaccented names, page of 20 with total, ${patients} patients (inject, one caller; load ${loadNow()})`);
        const result = await benchFuzzySearch({ app, token: await token(), patients, calls: quick ? 100 : 400 });
        console.log(`  ${patients} patients written in ${result.loadSeconds.toFixed(1)} s; candidate lookup plan: ${result.plan.split('\n')[0]}`);
        printComparisons('$fuzzy-search vs its SQL alone', [result.comparison]);
        aims.push({ section: 'fuzzy search', aim: result.aim, figure: `p95 ${result.comparison.fhir.p95Ms.toFixed(1)} ms (SQL alone p95 ${result.comparison.raw.p95Ms.toFixed(1)} ms; p50 ratio ${f2(result.comparison.p50Ratio)}×)`, met: result.met });
        return result;
      }, { AUDIT_EVENTS: 'off' });
      tookSeconds.fuzzy = (Date.now() - t0) / 1000;
    }
    if (sections.includes('fulltext')) {
      const t0 = Date.now();
      report.fulltext = await withApp(async (app, token) => {
        // 1 M resources on PostgreSQL (BENCH_FULLTEXT_RESOURCES); PGlite writes far slower, so 100 k there.
        const resources = Number(process.env.BENCH_FULLTEXT_RESOURCES ?? (quick ? 20_000 : databaseUrl ? 1_000_000 : 100_000));
        console.log(`\nFull-text search on ${database}: DocumentReference?_content=… (page of 20) over ${resources} resources, a quarter notes (inject, one caller; load ${loadNow()})`);
        const result = await benchFullText({ app, token: await token(), resources, calls: quick ? 20 : 60, log: (m) => console.log(m) });
        console.log(`  ${result.resources} resources written in ${result.loadSeconds.toFixed(1)} s (${result.loadPerSecond.toFixed(0)}/s)`);
        printComparisons('_content search vs the hand-written tsvector SQL', result.comparisons);
        if (process.env.SEARCH_BENCH_PLANS === '1') for (const [name, plan] of Object.entries(result.plans)) console.log(`\n${name}\n${plan}`);
        aims.push(...result.comparisons.map((c) => ({ section: 'fulltext', aim: `${c.what}: ${result.aim}`, figure: `p95 ${c.fhir.p95Ms.toFixed(1)} ms (SQL by hand p95 ${c.raw.p95Ms.toFixed(1)} ms; p50 ratio ${f2(c.p50Ratio)}×)`, met: c.met === true })));
        return result;
      }, { AUDIT_EVENTS: 'off', NOTIFICATIONS: 'off' });
      tookSeconds.fulltext = (Date.now() - t0) / 1000;
    }
    if (sections.includes('reports')) {
      const t0 = Date.now();
      report.reports = await withApp(async (app, token) => {
        // 1 M resources on PostgreSQL (BENCH_REPORTS_RESOURCES); PGlite loads ~300/s, so 100 k there.
        const total = Number(process.env.BENCH_REPORTS_RESOURCES ?? (quick ? 20_000 : databaseUrl ? 1_000_000 : 100_000));
        console.log(`\nHospital reports on ${database}: MeasureReport/$revenue, $appointment-statistics, $bed-occupancy, $lab-turnaround over one month of ${total} resources (inject, one caller; load ${loadNow()})`);
        const result = await benchReports({ app, token: await token(), total, calls: quick ? 10 : 40 });
        printComparisons('report operation vs the hand-written SQL of its headline figure', result.comparisons);
        aims.push(...result.comparisons.map((c) => ({ section: 'reports', aim: `${c.what}: ${c.aim}`, figure: `p95 ${c.fhir.p95Ms.toFixed(1)} ms (SQL by hand p95 ${c.raw.p95Ms.toFixed(1)} ms; p50 ratio ${f2(c.p50Ratio)}×)`, met: c.met === true })));
        return result;
      }, { AUDIT_EVENTS: 'off', NOTIFICATIONS: 'off' });
      tookSeconds.reports = (Date.now() - t0) / 1000;
    }
    if (sections.includes('console')) {
      const t0 = Date.now();
      const port = await freePort();
      const baseUrl = `http://127.0.0.1:${port}`;
      report.console = await withApp(async (app, token) => {
        await app.http.listen({ port, host: '127.0.0.1' });
        await buildConsole();
        const synthea = quick ? 0 : 10;
        console.log(`\nConsole on ${database}: each view in headless Chromium on the demo hospital (${synthea} Synthea patients), time to a filled view and API requests, beside the same requests from Node (load ${loadNow()})`);
        const demo = await buildDemoHospital({ baseUrl, token: await token(), syntheaPatients: synthea, historyDays: quick ? 7 : 30, log: () => undefined });
        const result = await benchConsole({ baseUrl, accounts: demo.accounts, rounds: quick ? 2 : 5 });
        if (result.skipped) console.log(`  skipped: ${result.skipped}`);
        for (const v of result.views) console.log(`  ${`${v.role} ${v.view}`.padEnd(28)} ${String(v.ms).padStart(5)} ms filled, ${String(v.requests).padStart(2)} API requests; the requests alone ${v.apiMs} ms (${f2(v.ratio)}×)`);
        aims.push({ section: 'console', aim: result.aim, figure: `slowest view ${Math.max(0, ...result.views.map((v) => v.ms))} ms, at most ${Math.max(0, ...result.views.map((v) => v.requests))} API requests per view`, met: result.met });
        return result;
      }, { AUDIT_EVENTS: 'off', NOTIFICATIONS: 'off', PORT: String(port), BASE_URL: baseUrl, HL7_MLLP_PORT: '0' });
      tookSeconds.console = (Date.now() - t0) / 1000;
    }
    if (sections.includes('hl7v2')) {
      const t0 = Date.now();
      report.hl7v2 = await withApp(async (app) =>
        withApp(async (receiptApp) => {
          console.log(`\nHL7 v2 ORU^R01 over MLLP on ${database} (each sender waits for its ACK; load ${loadNow()})`);
          const single = Number(process.env.BENCH_HL7_SINGLE ?? (quick ? 50 : 300));
          const concurrent = Number(process.env.BENCH_HL7_MESSAGES ?? (quick ? 200 : 2000));
          const result = await benchHl7v2({ app, receiptApp, single, concurrent, connections: 8 });
          aims.push({ section: 'hl7v2 (MLLP)', aim: result.aim, figure: result.figure, met: result.met });
          return result;
        }, { HL7_ACK_ON_RECEIPT: 'on' }),
      );
      tookSeconds.hl7v2 = (Date.now() - t0) / 1000;
    }
    if (sections.includes('audit')) {
      const t0 = Date.now();
      // Reads and searches with auth and audit on beside auth off (issue 9: aim ≥ 0.8), three servers in one process.
      const options: AuthOverheadOptions = {
        databaseUrl,
        seconds: Number(process.env.BENCH_AUDIT_SECONDS ?? (quick ? 1 : 3)),
        rounds: quick ? 3 : 5,
        concurrency: 8,
        patients: quick ? 50 : 200,
      };
      const audit = await benchAuthOverhead(options);
      printAuthOverhead(audit, options);
      report.audit = audit;
      for (const row of audit.rows) {
        aims.push({ section: 'audit (inject)', aim: `${row.what}: auth + audit on ≥ 0.8 × auth off`, figure: `${f2(row.ratio)}× (audit on ÷ off ${f2(row.auditRatio)}×, auth on ÷ off ${f2(row.authRatio)}×)`, met: row.met });
      }
      tookSeconds.audit = (Date.now() - t0) / 1000;
    }
  }

  report.aims = aims;
  report.tookSeconds = tookSeconds;
  console.log(`\nsection times: ${Object.entries(tookSeconds).map(([k, v]) => `${k} ${v.toFixed(0)} s`).join(', ')}`);
  console.log(`\nAims on ${database}${quick ? ' (quick run: small scale)' : ''}; load average now ${loadNow()}`);
  console.log(['section', 'aim', 'figure', ''].join(' | '));
  for (const a of aims) console.log([a.section, a.aim, a.figure, a.met ? 'met' : 'NOT met'].join(' | '));
  const file = process.env.BENCH_REPORT ?? join('bench', `report-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(report, null, 2));
  console.log(`\nreport written to ${file} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
