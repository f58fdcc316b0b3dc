import type { Bundle } from 'fhir/r4.js';
import type { ServerApp } from '../src/app.js';
import { analyzeNameWords, explainFuzzyLookup, fuzzyPatientSearch, queryWords } from '../src/search/fuzzy-name.js';
import { compare, measure, type Comparison } from './harness.js';

/**
 * Fuzzy patient name search (issue 12 §1, seed 004 FR-PM: p95 under 2 s at 100,000 patients;
 * aim 50 ms): `GET /fhir/Patient/$fuzzy-search` with misspelled and unaccented names, page of 20
 * with total, one caller (latency, not throughput), over `patients` patients written through the normal write path. Baseline in the
 * same run: the same SQL called directly (src/search/fuzzy-name.ts, no HTTP, no access filter),
 * so the ratio is the cost of the operation around the query.
 */
export interface FuzzyBenchReport {
  patients: number;
  loadSeconds: number;
  /** The candidate lookup's plan at this size (the trigram index should serve it unforced). */
  plan: string;
  comparison: Comparison;
  aim: string;
  met: boolean;
}

const FAMILIES = ['Nguyễn', 'Trần', 'García', 'Müller', 'Smith', 'Johnson', 'O\'Brien', 'Kowalski', 'Dubois', 'Rossi', 'Öztürk', 'Andersson', 'Fernández', 'Lê', 'Phạm', 'Schmidt', 'Novák', 'Silva', 'Kim', 'Haddad'];
const GIVENS = ['José', 'María', 'Thi', 'Lan', 'François', 'Zoë', 'Ahmed', 'Søren', 'Anna', 'John', 'Mei', 'Chloé', 'Jürgen', 'Ines', 'Paolo', 'Aisha', 'Björn', 'Élodie', 'Minh', 'Olga'];
/** Misspelled / unaccented queries a front desk types. */
const QUERIES = ['Ngyuen', 'Jose Garcia', 'Muller Jurgen', 'Fernandes Maria', 'Tran Thi Lan', 'Obrien', 'Kowalsky', 'Dubios Francois', 'Ozturk Ahmed', 'Sorren Andersen'];

export async function benchFuzzySearch(o: { app: ServerApp; token: string; patients: number; calls: number }): Promise<FuzzyBenchReport> {
  const headers = { authorization: `Bearer ${o.token}` };
  const started = Date.now();
  const batch = 500;
  for (let start = 0; start < o.patients; start += batch) {
    const entry = Array.from({ length: Math.min(batch, o.patients - start) }, (_, k) => {
      const i = start + k;
      // Distinct-ish names: a family, two givens and a numbered middle word keep the word table realistic.
      const name = { family: FAMILIES[i % FAMILIES.length], given: [GIVENS[(i * 7) % GIVENS.length], GIVENS[(i * 13 + 3) % GIVENS.length], `N${i % 5000}`] };
      return { resource: { resourceType: 'Patient', name: [name], birthDate: `19${50 + (i % 50)}-0${1 + (i % 9)}-1${i % 10}` }, request: { method: 'POST', url: 'Patient' } };
    });
    const res = await o.app.http.inject({ method: 'POST', url: '/fhir', headers: { ...headers, 'content-type': 'application/fhir+json' }, payload: JSON.stringify({ resourceType: 'Bundle', type: 'batch', entry }) });
    if (res.statusCode !== 200) throw new Error(`patients not created: ${res.statusCode} ${res.body.slice(0, 300)}`);
  }
  const loadSeconds = (Date.now() - started) / 1000;
  await analyzeNameWords(o.app.database.db);
  const plan = await explainFuzzyLookup(o.app.database.db, 'ngyuen', 0, false);
  const fhir = await measure('$fuzzy-search (HTTP inject)', o.calls, 1, async (i) => {
    const res = await o.app.http.inject({ method: 'GET', url: `/fhir/Patient/$fuzzy-search?name=${encodeURIComponent(QUERIES[i % QUERIES.length]!)}`, headers });
    if (res.statusCode !== 200) throw new Error(`fuzzy search failed: ${res.statusCode} ${res.body.slice(0, 200)}`);
    if (!((res.json() as Bundle).entry?.length)) throw new Error(`fuzzy search found nothing for ${QUERIES[i % QUERIES.length]}`);
  });
  const raw = await measure('same SQL called directly', o.calls, 1, async (i) => {
    await fuzzyPatientSearch(o.app.database.db, queryWords(QUERIES[i % QUERIES.length]!), undefined, 20, 0);
  });
  const aim = 'fuzzy search p95 ≤ 50 ms (seed: < 2 s)';
  const comparison = compare(`fuzzy name search at ${o.patients} patients vs its SQL alone`, fhir, raw, { text: aim, met: (c) => c.fhir.p95Ms <= 50 });
  return { patients: o.patients, loadSeconds, plan, comparison, aim, met: comparison.met === true };
}
