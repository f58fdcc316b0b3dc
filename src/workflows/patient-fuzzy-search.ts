import type { FastifyInstance } from 'fastify';
import type { Bundle, BundleEntry, Patient } from 'fhir/r4.js';
import { scopesAllow } from '../auth/scopes.js';
import type { TokenService } from '../auth/token-service.js';
import { errors } from '../fhir/errors.js';
import { queryOf } from '../http/fhir-routes.js';
import { outputOptions, sendResult } from '../http/respond.js';
import { fuzzyPatientSearch, MAX_QUERY_WORDS, patientNameWords, queryWords, storePatientNameWords } from '../search/fuzzy-name.js';
import type { SearchService } from '../search/search-service.js';
import { accessFilterFor } from '../search/sql/access.js';
import type { Db } from '../storage/db.js';
import type { BeforeWriteHook, StoreTransaction } from '../storage/resource-store.js';

/**
 * Fuzzy patient name search (issue 12 §1, seed 004 FR-PM): `GET /fhir/Patient/$fuzzy-search?name=…`
 * beside the FHIR string search (`Patient?name=`, prefix match). Tolerates misspellings and
 * accents (trigram similarity over folded name words, src/search/fuzzy-name.ts).
 *
 * Answer: a searchset Bundle, best first, each entry with `search.mode = match` and
 * `search.score` (0..1: mean over the query words of the best similarity of a name word).
 * Paging: `_count` default 20, at most 100 (a larger `_count` is served as 100, as FHIR lets a
 * server return fewer than asked; the `self` link shows the count used); `_offset` for the next
 * pages (`next` link), at most 10,000 deep. Only patients the caller may read are found (the
 * SMART access filter is part of the query, so totals and pages never count hidden patients).
 */

export const FUZZY_DEFAULT_COUNT = 20;
export const FUZZY_MAX_COUNT = 100;
const MAX_OFFSET = 10_000;

/** The name words of the Patients each open transaction wrote (the last write of each wins). */
const pendingNameWords = new WeakMap<StoreTransaction, Map<string, string[]>>();

/**
 * Before write: keeps `patient_name_token` equal to the current names of each live Patient. The
 * words are written once per transaction, for all its Patients, just before it commits: a
 * statement per Patient made a round trip each and flushed the writes queued before it.
 */
export const patientNameIndexHook: BeforeWriteHook = (tx, change) => {
  if (change.resourceType !== 'Patient') return;
  let pending = pendingNameWords.get(tx);
  if (!pending) {
    const words = new Map<string, string[]>();
    pendingNameWords.set(tx, words);
    tx.beforeCommit((db) => storePatientNameWords(db, words));
    pending = words;
  }
  pending.set(change.id, change.resource ? patientNameWords(change.resource as Patient) : []);
};

function intParam(query: URLSearchParams, name: string, fallback: number): number {
  const raw = query.get(name);
  if (raw === null || raw === '') return fallback;
  if (!/^[0-9]{1,9}$/.test(raw)) throw errors.incorrect(`${name} must be a non-negative integer, got "${raw.slice(0, 40)}"`, [name]);
  return Number(raw);
}

export interface FuzzySearchDeps {
  db: Db;
  search: SearchService;
  tokens: TokenService;
  fhirBase: string;
}

export async function registerFuzzySearch(http: FastifyInstance, deps: FuzzySearchDeps): Promise<void> {
  await http.register(
    async (app) => {
      app.addHook('onRequest', async (request) => {
        request.auth = await deps.tokens.verify(request.headers.authorization);
      });
      app.get('/Patient/$fuzzy-search', async (request, reply) => {
        const auth = request.auth!;
        // Like Patient?name=: a whole-type or a granular search scope; the access filter below applies the rest.
        const granular = auth.scopes.some((s) => s.filter !== undefined && s.resourceType === 'Patient' && s.permissions.has('s'));
        if (!scopesAllow(auth.scopes, 'Patient', 's') && !granular) {
          throw errors.forbidden("the access token's scopes do not allow searching Patient");
        }
        const query = queryOf(request);
        const known = new Set(['name', '_count', '_offset', '_format', '_pretty', '_summary', '_elements']);
        const unknown = [...query.keys()].find((k) => !known.has(k));
        if (unknown) throw errors.incorrect(`$fuzzy-search takes name, _count and _offset; "${unknown.slice(0, 40)}" is not supported`, [unknown.slice(0, 40)]);
        const names = query.getAll('name');
        if (names.length !== 1 || !names[0]!.trim()) throw errors.incorrect('$fuzzy-search needs exactly one parameter "name" (one or more words)', ['name']);
        const name = names[0]!;
        if (name.length > 200) throw errors.incorrect('"name" is limited to 200 characters', ['name']);
        const words = queryWords(name);
        if (words.length === 0) throw errors.incorrect('"name" needs a word of at least 2 letters', ['name']);
        if (words.length > MAX_QUERY_WORDS) throw errors.incorrect(`"name" has more than ${MAX_QUERY_WORDS} words`, ['name']);
        const count = Math.min(intParam(query, '_count', FUZZY_DEFAULT_COUNT), FUZZY_MAX_COUNT);
        const offset = intParam(query, '_offset', 0);
        if (offset > MAX_OFFSET) throw errors.incorrect(`_offset is limited to ${MAX_OFFSET}: refine the name instead`, ['_offset']);
        const access = deps.search.accessSql(accessFilterFor(auth), deps.fhirBase, 'r');
        const { hits, total } = await fuzzyPatientSearch(deps.db, words, access, count, offset);
        const link = (o: number) => {
          const q = new URLSearchParams({ name, _count: String(count) });
          if (o > 0) q.set('_offset', String(o));
          return `${deps.fhirBase}/Patient/$fuzzy-search?${q.toString()}`;
        };
        const entry: BundleEntry[] = hits.map((h) => ({
          fullUrl: `${deps.fhirBase}/Patient/${h.id}`,
          resource: JSON.parse(h.json) as Patient,
          search: { mode: 'match', score: h.score },
        }));
        const links: Bundle['link'] = [{ relation: 'self', url: link(offset) }];
        if (count > 0 && offset + count < total && offset + count <= MAX_OFFSET) links.push({ relation: 'next', url: link(offset + count) });
        if (offset > 0) links.push({ relation: 'previous', url: link(Math.max(0, offset - Math.max(count, 1))) });
        const bundle: Bundle = { resourceType: 'Bundle', type: 'searchset', total, link: links, entry };
        return sendResult(request, reply, { status: 200, body: bundle }, outputOptions(query), deps.fhirBase);
      });
    },
    { prefix: '/fhir' },
  );
}

/** For the CapabilityStatement (app.ts `typeOperations.Patient`). */
export const FUZZY_SEARCH_OPERATION = { name: 'fuzzy-search', definition: 'https://fhir.hospital.example.org/OperationDefinition/Patient-fuzzy-search' };
