import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { sql } from 'kysely';
import type { ServerApp } from '../src/app.js';
import { TerminologyStore } from '../src/storage/terminology-store.js';
import { loadRelease } from '../src/terminology/release/load.js';
import { loadNow } from './environment.js';
import { compare, measure, type Comparison } from './harness.js';

/**
 * Issue 15: a 100,000-concept code system in a release-file format (LOINC's Loinc.csv and
 * ComponentHierarchyBySystem.csv, generated), loaded with `npm run terminology:load`'s loader,
 * then `$expand` of the implicit value set `http://loinc.org/vs` with `filter` as a pick list
 * types (1–4 letter prefixes, whole words, a word and a prefix), beside the hand-written SQL for
 * the same page and total.
 */
const WORDS_A = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet', 'kilo', 'lima', 'mike', 'november', 'oscar', 'papa', 'quebec', 'romeo', 'sierra', 'tango', 'uniform', 'victor', 'whiskey', 'xray', 'yankee', 'zulu', 'amber', 'basalt', 'cobalt', 'dune', 'ember'];
const WORDS_B = ['serum', 'plasma', 'urine', 'blood', 'tissue', 'swab', 'saliva', 'sputum', 'stool', 'fluid', 'marrow', 'biopsy', 'culture', 'smear', 'aspirate', 'lavage', 'scraping', 'exudate', 'effusion', 'ascites', 'bile', 'semen', 'milk', 'sweat', 'tears', 'vitreous', 'dialysate', 'drain', 'pus', 'crust', 'hair', 'nail', 'calculus', 'meconium', 'vomit', 'gastric', 'duodenal'];
const VALUE_SET = 'http://loinc.org/vs';

/** LOINC check digit (mod 10 as LOINC computes it) so the codes look like LOINC's. */
function loincCode(n: number): string {
  const digits = String(n).split('').map(Number).reverse();
  let sum = 0;
  digits.forEach((d, i) => {
    const v = i % 2 === 0 ? d * 2 : d;
    sum += v > 9 ? v - 9 : v;
  });
  return `${n}-${(10 - (sum % 10)) % 10}`;
}

async function write(path: string, lines: Iterable<string>): Promise<void> {
  const out = createWriteStream(path);
  for (const line of lines) if (!out.write(`${line}\r\n`)) await once(out, 'drain');
  out.end();
  await once(out, 'finish');
}

/** Writes the release folder: `size` concepts in Loinc.csv (100 LP groups under one root in the hierarchy file). */
async function generate(dir: string, size: number): Promise<void> {
  mkdirSync(join(dir, 'LoincTable'), { recursive: true });
  const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
  const groups = 100;
  const codes = size - groups - 1;
  function* table() {
    yield ['LOINC_NUM', 'COMPONENT', 'PROPERTY', 'TIME_ASPCT', 'SYSTEM', 'SCALE_TYP', 'METHOD_TYP', 'CLASS', 'VersionLastChanged', 'STATUS', 'SHORTNAME', 'LONG_COMMON_NAME'].map(q).join(',');
    for (let i = 0; i < codes; i++) {
      const a = WORDS_A[i % WORDS_A.length]!;
      const b = WORDS_B[i % WORDS_B.length]!;
      yield [loincCode(10_000 + i), `${a} ${i}`, 'MCnc', 'Pt', b, 'Qn', '', 'CHEM', '2.77', i % 50 === 0 ? 'DEPRECATED' : 'ACTIVE', `${a} ${b}`, `${a} ${b} assay ${i}`].map(q).join(',');
    }
  }
  function* hierarchy() {
    yield ['PATH_TO_ROOT', 'SEQUENCE', 'IMMEDIATE_PARENT', 'CODE', 'CODE_TEXT'].map(q).join(',');
    yield ['', '1', '', 'LP1-0', 'Bench root'].map(q).join(',');
    for (let g = 0; g < groups; g++) yield ['LP1-0', String(g + 1), 'LP1-0', `LP${1000 + g}-0`, `Bench group ${g}`].map(q).join(',');
    for (let i = 0; i < codes; i++) yield [`LP1-0.LP${1000 + (i % groups)}-0`, '1', `LP${1000 + (i % groups)}-0`, loincCode(10_000 + i), 'x'].map(q).join(',');
  }
  await write(join(dir, 'LoincTable', 'Loinc.csv'), table());
  await write(join(dir, 'ComponentHierarchyBySystem.csv'), hierarchy());
}

/** What a pick list sends while the user types: 1–4 letters, a whole word, a word and the start of the next. */
export function pickListFilters(): string[] {
  const out: string[] = [];
  for (let i = 0; i < WORDS_A.length; i++) {
    const a = WORDS_A[i]!;
    const b = WORDS_B[(i * 7) % WORDS_B.length]!;
    out.push(a.slice(0, 1), a.slice(0, 2), a.slice(0, 3), a.slice(0, 4), a, `${a} ${b.slice(0, 2)}`, `${a} ${b.slice(0, 4)}`);
  }
  return out;
}

export interface TerminologyLoadReport {
  concepts: number;
  loadSeconds: number;
  conceptsPerSecond: number;
  closurePairs: number;
  comparison: Comparison;
  byLength: Record<string, { p50Ms: number; p95Ms: number }>;
  plan: string;
  aim: string;
  met: boolean;
  load: string;
}

export async function benchTerminologyLoad(o: { app: ServerApp; token: string; size: number; calls: number }): Promise<TerminologyLoadReport> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-loinc-'));
  try {
    await generate(dir, o.size);
    const store = new TerminologyStore(o.app.database.db, o.app.database.unlimitedDb);
    const summary = await loadRelease(store, 'loinc', dir);
    const headers = { authorization: `Bearer ${o.token}` };
    const first = await o.app.http.inject({ method: 'GET', url: `/fhir/ValueSet/$expand?url=${encodeURIComponent(VALUE_SET)}&filter=alpha&count=1`, headers });
    if (first.statusCode !== 200) throw new Error(`$expand failed: ${first.statusCode} ${first.body.slice(0, 300)}`);
    for (const table of ['terminology_concept', 'terminology_word', 'terminology_vs_member', 'terminology_closure']) {
      await sql`VACUUM ANALYZE ${sql.raw(table)}`.execute(o.app.database.unlimitedDb);
    }
    const filters = pickListFilters();
    const perFilter = new Map<string, number[]>();
    const fhir = await measure('$expand filter (HTTP)', o.calls, 1, async (i) => {
      const filter = filters[i % filters.length]!;
      const t0 = performance.now();
      const res = await o.app.http.inject({ method: 'GET', url: `/fhir/ValueSet/$expand?url=${encodeURIComponent(VALUE_SET)}&filter=${encodeURIComponent(filter)}&count=20`, headers });
      if (res.statusCode !== 200) throw new Error(`$expand failed: ${res.statusCode} ${res.body.slice(0, 200)}`);
      const kind = filter.includes(' ') ? 'word + prefix' : filter.length <= 4 ? `${filter.length} letter(s)` : 'whole word';
      (perFilter.get(kind) ?? perFilter.set(kind, []).get(kind)!).push(performance.now() - t0);
    });
    const MAX = String.fromCodePoint(0x10ffff);
    const handWritten = (words: string[]) =>
      sql`SELECT m.code, c.display, count(*) OVER () AS total
        FROM (${sql.join(
          words.map((w) => sql`SELECT ${words.length === 1 ? sql`DISTINCT` : sql``} system, code FROM terminology_word WHERE word >= ${w} AND word < ${w + MAX}`),
          sql` INTERSECT `,
        )}) h
        CROSS JOIN LATERAL (SELECT * FROM terminology_vs_member x WHERE x.value_set = ${VALUE_SET} AND x.system = h.system AND x.code = h.code OFFSET 0) m
        LEFT JOIN terminology_concept c ON c.system = m.system AND c.code = m.code
        ORDER BY m.ord LIMIT 20`;
    const raw = await measure('hand-written SQL', o.calls, 1, async (i) => {
      await handWritten(filters[i % filters.length]!.split(' ')).execute(o.app.database.db);
    });
    // The same page both ways (the frequent-word walk and the word-index intersection must agree).
    for (const filter of filters.slice(0, 21)) {
      const res = await o.app.http.inject({ method: 'GET', url: `/fhir/ValueSet/$expand?url=${encodeURIComponent(VALUE_SET)}&filter=${encodeURIComponent(filter)}&count=20`, headers });
      const viaFhir = ((res.json() as { expansion?: { contains?: Array<{ code: string }> } }).expansion?.contains ?? []).map((c) => c.code);
      const viaSql = (await handWritten(filter.split(' ')).execute(o.app.database.db)).rows.map((r) => (r as { code: string }).code);
      if (viaFhir.join() !== viaSql.join()) throw new Error(`$expand filter '${filter}' disagrees with the hand-written SQL: ${viaFhir.slice(0, 5).join()} vs ${viaSql.slice(0, 5).join()}`);
    }
    const explained = await sql<{ 'QUERY PLAN': string }>`EXPLAIN ${handWritten(['a'])}`.execute(o.app.database.db);
    const plan = explained.rows.map((r) => r['QUERY PLAN']).join('\n');
    const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? 0;
    const byLength = Object.fromEntries([...perFilter].map(([k, xs]) => [k, { p50Ms: pct(xs, 0.5), p95Ms: pct(xs, 0.95) }]));
    const aim = '$expand with a pick-list filter (1–4 letters, words) on a 100,000-concept loaded code system: p95 ≤ 20 ms';
    const comparison = compare(`$expand filter, ${summary.concepts} loaded concepts`, fhir, raw, { text: 'p95 ≤ 20 ms', met: (c) => c.fhir.p95Ms <= 20 });
    return {
      concepts: summary.concepts,
      loadSeconds: summary.seconds,
      conceptsPerSecond: summary.concepts / summary.seconds,
      closurePairs: summary.closurePairs,
      comparison,
      byLength,
      plan,
      aim,
      met: fhir.p95Ms <= 20,
      load: loadNow(),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
