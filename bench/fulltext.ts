import type { Bundle, DocumentReference, Observation, Resource } from 'fhir/r4.js';
import { sql } from 'kysely';
import type { ServerApp } from '../src/app.js';
import { SearchService } from '../src/search/search-service.js';
import { compare, measure, type Comparison } from './harness.js';
import { writeAll } from './search-load.js';

/**
 * Full-text search (issue 15 §3; aim: `_content` p95 ≤ 100 ms at 1 M resources): a quarter of
 * the resources are DocumentReferences with a generated clinical note (base64 text/plain, ~40
 * words from a skewed vocabulary: a few words in most notes, most words rare), the rest
 * Observations (code display, note). Written through `ResourceStore` transactions (4,000
 * each, 3 in flight, as bench/search.ts), then VACUUM ANALYZE. Each query runs through the HTTP
 * layer (inject, page of 20) and, as the baseline, as hand-written SQL on the same table
 * (`search_text.content @@ websearch_to_tsquery(...)`, the page's ids in id order, then their
 * content) — the ratio is what the FHIR search adds around the tsvector query.
 */
export interface FullTextBenchReport {
  resources: number;
  loadSeconds: number;
  loadPerSecond: number;
  comparisons: Comparison[];
  plans: Record<string, string>;
  aim: string;
  met: boolean;
}

const COMMON = ['patient', 'reports', 'pain', 'history', 'denies', 'follow', 'plan', 'examination', 'normal', 'medication'];
const MEDIUM = ['hypertension', 'diabetes', 'asthma', 'fracture', 'migraine', 'pneumonia', 'anemia', 'arthritis', 'obesity', 'depression', 'anxiety', 'insomnia', 'bronchitis', 'sinusitis', 'dermatitis', 'gastritis', 'hepatitis', 'nephritis', 'otitis', 'tonsillitis'];
const FILLER = ['the', 'was', 'with', 'and', 'of', 'for', 'in', 'no', 'has', 'on'];

/** Deterministic pseudo-random numbers (LCG), so every run writes the same data. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** ~1 in 800 notes has a given rare word `findingNNN` (1,000 of them, as names of rare findings). */
function noteText(i: number): string {
  const r = rng(i * 7919 + 17);
  const words: string[] = [];
  for (let k = 0; k < 40; k++) {
    const x = r();
    if (x < 0.35) words.push(FILLER[Math.floor(r() * FILLER.length)]!);
    else if (x < 0.7) words.push(COMMON[Math.floor(r() * COMMON.length)]!);
    else if (x < 0.97) words.push(MEDIUM[Math.floor(r() * MEDIUM.length) % MEDIUM.length]!);
    else words.push(`finding${String(Math.floor(r() * 1000)).padStart(3, '0')}`);
  }
  if (i % 50 === 0) words.push('chest pain radiating to the left arm');
  return `Note ${i}. ${words.join(' ')}.`;
}

function* generate(total: number): Generator<Resource> {
  for (let i = 0; i < total; i++) {
    const id = `ft${String(i).padStart(8, '0')}`;
    if (i % 4 === 0) {
      const doc: DocumentReference = {
        resourceType: 'DocumentReference',
        id,
        status: i % 40 === 0 ? 'superseded' : 'current',
        type: { coding: [{ system: 'http://loinc.org', code: '34117-2', display: 'History and physical note' }] },
        subject: { reference: `Patient/p${i % 10_000}` },
        content: [{ attachment: { contentType: 'text/plain; charset=utf-8', data: Buffer.from(noteText(i), 'utf8').toString('base64') } }],
      };
      yield doc;
    } else {
      const obs: Observation = {
        resourceType: 'Observation',
        id,
        status: 'final',
        code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }], text: 'Heart rate' },
        subject: { reference: `Patient/p${i % 10_000}` },
        valueQuantity: { value: 60 + (i % 40), unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
        ...(i % 10 === 1 ? { note: [{ text: `Measured after ${COMMON[i % COMMON.length]} ${MEDIUM[i % MEDIUM.length]}` }] } : {}),
      };
      yield obs;
    }
  }
}

interface Query {
  name: string;
  /** FHIR query after `DocumentReference?` */
  fhir: string;
  /** websearch_to_tsquery text of the same search */
  web: string;
  extra?: 'score' | 'status';
}

const QUERIES: Query[] = [
  { name: 'rare word (~0.1 % of notes)', fhir: '_content=finding042', web: 'finding042' },
  { name: 'medium word (~20 % of notes)', fhir: '_content=migraines', web: 'migraines' },
  { name: 'two medium words (AND)', fhir: '_content=asthma%20anemia', web: 'asthma anemia' },
  { name: 'phrase "radiating to the left arm"', fhir: '_content=%22radiating%20to%20the%20left%20arm%22', web: '"radiating to the left arm"' },
  { name: 'prefix finding04* (~1 %)', fhir: '_content=finding04*', web: '' },
  { name: 'rare word, _sort=_score', fhir: '_content=finding042&_sort=_score', web: 'finding042', extra: 'score' },
  { name: 'phrase + status=superseded', fhir: '_content=%22left%20arm%22&status=superseded', web: '"left arm"', extra: 'status' },
];

export async function benchFullText(o: { app: ServerApp; token: string; resources: number; calls: number; log?: (m: string) => void }): Promise<FullTextBenchReport> {
  const headers = { authorization: `Bearer ${o.token}` };
  const db = o.app.database.db;
  const load = await writeAll(o.app.store, generate(o.resources), {
    batch: 4000,
    inFlight: 3,
    onProgress: (n) => {
      if (n % 100_000 < 4000) o.log?.(`  ${n} written`);
    },
  });
  await sql`VACUUM ANALYZE search_text`.execute(o.app.database.unlimitedDb);
  await sql`VACUUM ANALYZE resource`.execute(o.app.database.unlimitedDb);
  const comparisons: Comparison[] = [];
  const plans: Record<string, string> = {};
  const service = new SearchService({ db, registry: o.app.registry });
  for (const q of QUERIES) {
    const url = `/fhir/DocumentReference?${q.fhir}&_count=20`;
    const first = await o.app.http.inject({ method: 'GET', url, headers });
    if (first.statusCode !== 200) throw new Error(`${q.name}: ${first.statusCode} ${first.body.slice(0, 300)}`);
    const found = ((first.json() as Bundle).entry ?? []).length;
    if (found === 0) throw new Error(`${q.name}: nothing found`);
    const fhir = await measure(`${q.name} (HTTP inject)`, o.calls, 1, async () => {
      const res = await o.app.http.inject({ method: 'GET', url, headers });
      if (res.statusCode !== 200) throw new Error(`${q.name}: ${res.statusCode}`);
    });
    // The hand-written tsvector SQL: the page's ids, then their content.
    const tsq = q.web ? sql`websearch_to_tsquery('english', ${q.web})` : sql`to_tsquery('english', ${"'finding04':*"})`;
    const statusCond = q.extra === 'status' ? sql`AND x.resource_id IN (SELECT resource_id FROM search_token WHERE resource_type = 'DocumentReference' AND param = 'status' AND code = 'superseded')` : sql``;
    const order = q.extra === 'score' ? sql`ts_rank(x.content, ${tsq}) DESC, x.resource_id` : sql`x.resource_id`;
    const hand = sql`SELECT r.id, r.content FROM (
        SELECT x.resource_id FROM search_text x
        WHERE x.resource_type = 'DocumentReference' AND x.content @@ ${tsq} ${statusCond}
        ORDER BY ${order} LIMIT 20) p
      JOIN resource r ON r.resource_type = 'DocumentReference' AND r.id = p.resource_id`;
    const raw = await measure(`${q.name} (SQL by hand)`, o.calls, 1, async () => {
      await hand.execute(db);
    });
    const explained = await service.explain({ resourceType: 'DocumentReference', params: [...new URLSearchParams(`${q.fhir}&_count=20`).entries()], baseUrl: 'http://localhost' });
    plans[q.name] = `${explained.page}\n--- count (first page: _total=accurate)\n${explained.count}`;
    comparisons.push(compare(`_content ${q.name} at ${load.resources} resources (${found} on the page)`, fhir, raw, { text: '_content p95 ≤ 100 ms', met: (c) => c.fhir.p95Ms <= 100 }));
  }
  const aim = `_content search p95 ≤ 100 ms at 1 M resources (measured at ${load.resources})`;
  return { resources: load.resources, loadSeconds: load.seconds, loadPerSecond: load.perSecond, comparisons, plans, aim, met: comparisons.every((c) => c.met === true) };
}
