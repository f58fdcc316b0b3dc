import type { Bundle, BundleEntry, Parameters, Patient } from 'fhir/r4.js';
import { errors } from '../fhir/errors.js';
import type { AccessFilter } from '../search/sql/access.js';
import type { SearchService } from '../search/search-service.js';
import { normalizeString } from '../search/values.js';
import type { RegistrationSystems } from './patient-registration.js';

/**
 * `POST /fhir/Patient/$match` (FHIR R4 Patient-match, https://hl7.org/fhir/R4/patient-operation-match.html):
 * duplicate detection at registration (issue 12 §1, seed 004 FR-PM-001). Candidates are the
 * patients sharing the family name, birth date, phone or a unique identifier with the input
 * (indexed searches); each is scored 0..1 in memory:
 *
 *   unique identifier (national id, patient number) equal → 1 (certain)
 *   family name 0.35, given name 0.25 (both by string similarity, so misspellings and
 *   accents still count), birth date 0.25, phone (digits) 0.15
 *
 * Grades (the match-grade extension): ≥ 0.95 certain, ≥ 0.7 probable, ≥ 0.45 possible;
 * lower scores are not returned. Answer: a searchset Bundle, best first, with
 * `search.mode = match`, `search.score` and the grade.
 */

export const MATCH_GRADE_URL = 'http://hl7.org/fhir/StructureDefinition/match-grade';
const CANDIDATES_PER_QUERY = 100;
const DEFAULT_COUNT = 10;

type Grade = 'certain' | 'probable' | 'possible';

function grade(score: number): Grade | undefined {
  if (score >= 0.95) return 'certain';
  if (score >= 0.7) return 'probable';
  if (score >= 0.45) return 'possible';
  return undefined;
}

/** Jaro-Winkler similarity of two folded strings (1 = equal). */
export function similarity(a: string, b: string): number {
  if (a === b) return a.length > 0 ? 1 : 0;
  if (!a || !b) return 0;
  const range = Math.max(0, Math.floor(Math.max(a.length, b.length) / 2) - 1);
  const aMatch = new Array<boolean>(a.length).fill(false);
  const bMatch = new Array<boolean>(b.length).fill(false);
  let matches = 0;
  for (let i = 0; i < a.length; i++) {
    for (let j = Math.max(0, i - range); j < Math.min(b.length, i + range + 1); j++) {
      if (bMatch[j] || a[i] !== b[j]) continue;
      aMatch[i] = bMatch[j] = true;
      matches++;
      break;
    }
  }
  if (matches === 0) return 0;
  let transpositions = 0;
  for (let i = 0, k = 0; i < a.length; i++) {
    if (!aMatch[i]) continue;
    while (!bMatch[k]) k++;
    if (a[i] !== b[k]) transpositions++;
    k++;
  }
  const jaro = (matches / a.length + matches / b.length + (matches - transpositions / 2) / matches) / 3;
  let prefix = 0;
  while (prefix < 4 && a[prefix] === b[prefix]) prefix++;
  return jaro + prefix * 0.1 * (1 - jaro);
}

const fold = (s: string | undefined) => normalizeString(s ?? '').replace(/[^a-z0-9]/g, '');
const digits = (s: string | undefined) => (s ?? '').replace(/\D/g, '').slice(-9);

function families(p: Patient): string[] {
  return (p.name ?? []).map((n) => fold(n.family)).filter((s) => s.length > 0);
}
function givens(p: Patient): string[] {
  return (p.name ?? []).flatMap((n) => n.given ?? []).map(fold).filter((s) => s.length > 0);
}
function phones(p: Patient): string[] {
  return (p.telecom ?? []).filter((t) => t.system === 'phone' || t.system === 'sms' || t.system === undefined).map((t) => digits(t.value)).filter((s) => s.length >= 6);
}
function best(xs: string[], ys: string[]): number {
  let top = 0;
  for (const x of xs) for (const y of ys) top = Math.max(top, similarity(x, y));
  return top;
}

export function matchScore(input: Patient, candidate: Patient, systems: RegistrationSystems): number {
  const unique = (p: Patient) => (p.identifier ?? []).filter((i) => i.value && systems.unique.includes(i.system ?? '')).map((i) => `${i.system}|${i.value}`);
  const theirs = unique(candidate);
  if (unique(input).some((k) => theirs.includes(k))) return 1;
  // A weak name resemblance (Jaro-Winkler < 0.8) counts for nothing.
  const nameScore = (s: number) => (s >= 0.8 ? s : 0);
  let score = 0.35 * nameScore(best(families(input), families(candidate))) + 0.25 * nameScore(best(givens(input), givens(candidate)));
  if (input.birthDate && input.birthDate === candidate.birthDate) score += 0.25;
  const phone = phones(input);
  if (phone.length > 0 && phones(candidate).some((p) => phone.includes(p))) score += 0.15;
  return Math.round(score * 1000) / 1000;
}

export interface MatchDeps {
  search: SearchService;
  fhirBase: string;
  systems: RegistrationSystems;
}

/** The $match input: `resource` (a Patient), `onlyCertainMatches`, `count` (Parameters or a bare Patient). */
function readInput(body: unknown): { patient: Patient; onlyCertain: boolean; count: number } {
  const resource = body as { resourceType?: string } | undefined;
  if (resource?.resourceType === 'Patient') return { patient: resource as Patient, onlyCertain: false, count: DEFAULT_COUNT };
  if (resource?.resourceType !== 'Parameters') throw errors.incorrect('$match takes a Parameters resource with a Patient in parameter "resource"');
  const params = (resource as Parameters).parameter ?? [];
  const patient = params.find((p) => p.name === 'resource')?.resource;
  if (patient?.resourceType !== 'Patient') throw errors.incorrect('$match needs parameter "resource" holding a Patient');
  const onlyCertain = params.find((p) => p.name === 'onlyCertainMatches')?.valueBoolean === true;
  const count = params.find((p) => p.name === 'count')?.valueInteger ?? DEFAULT_COUNT;
  if (!Number.isInteger(count) || count < 1) throw errors.incorrect('$match parameter "count" must be a positive integer');
  return { patient, onlyCertain, count: Math.min(count, 100) };
}

export async function matchPatients(deps: MatchDeps, body: unknown, accessFilter: AccessFilter | undefined): Promise<Bundle> {
  const { patient, onlyCertain, count } = readInput(body);
  const queries: Array<[string, string][]> = [];
  for (const family of new Set((patient.name ?? []).map((n) => n.family).filter((f): f is string => Boolean(f)))) queries.push([['family', family.slice(0, 3)]]);
  if (patient.birthDate && /^\d{4}-\d{2}-\d{2}$/.test(patient.birthDate)) queries.push([['birthdate', patient.birthDate]]);
  for (const t of patient.telecom ?? []) if (t.value && (t.system === 'phone' || t.system === 'sms')) queries.push([['phone', t.value]]);
  for (const i of patient.identifier ?? []) if (i.system && i.value && deps.systems.unique.includes(i.system)) queries.push([['identifier', `${i.system}|${i.value}`]]);
  if (queries.length === 0) throw errors.incorrect('$match needs at least a family name, birth date, phone or national id on the Patient');
  const candidates = new Map<string, Patient>();
  for (const params of queries) {
    const found = await deps.search.search({ resourceType: 'Patient', params: [...params, ['_count', String(CANDIDATES_PER_QUERY)]], baseUrl: deps.fhirBase, accessFilter });
    for (const e of found.entry ?? []) if (e.resource?.resourceType === 'Patient' && e.resource.id) candidates.set(e.resource.id, e.resource);
  }
  const scored = [...candidates.values()]
    .map((candidate) => ({ candidate, score: matchScore(patient, candidate, deps.systems) }))
    .map((s) => ({ ...s, grade: grade(s.score) }))
    .filter((s): s is typeof s & { grade: Grade } => s.grade !== undefined && (!onlyCertain || s.grade === 'certain'))
    .sort((a, b) => b.score - a.score || (a.candidate.id! < b.candidate.id! ? -1 : 1))
    .slice(0, count);
  const entry: BundleEntry[] = scored.map(({ candidate, score, grade: g }) => ({
    fullUrl: `${deps.fhirBase}/Patient/${candidate.id}`,
    resource: candidate,
    search: { mode: 'match', score, extension: [{ url: MATCH_GRADE_URL, valueCode: g }] },
  }));
  return { resourceType: 'Bundle', type: 'searchset', total: entry.length, entry };
}
