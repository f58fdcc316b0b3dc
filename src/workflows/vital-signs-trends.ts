import type { Bundle, BundleEntry, Observation, ObservationComponent, Parameters, ParametersParameter } from 'fhir/r4.js';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { scopesAllow } from '../auth/scopes.js';
import type { AuthContext, TokenService } from '../auth/token-service.js';
import { errors } from '../fhir/errors.js';
import { outputOptions, sendResult } from '../http/respond.js';
import { queryOf } from '../http/fhir-routes.js';
import { toCanonical } from '../search/ucum.js';
import type { Db } from '../storage/db.js';
import { lastn, stats, type CodeFilter, type StatsRow, type TrendQuery } from '../storage/vital-trends-store.js';
import { UCUM } from './vital-signs-ranges.js';
import { VITAL_UNITS } from './vital-signs.js';

/**
 * Vital-sign trends (seed 004 FR-EMR-004 "maintain vital sign trends", issue 13 §2), computed in
 * SQL over the search index (src/storage/vital-trends-store.ts), GET or POST (Parameters):
 *
 *   Observation/$lastn  patient (or subject=Patient/x), category, code (token lists), max
 *     (default 1, at most 1000): the `max` newest Observations per code, a searchset Bundle.
 *   Observation/$stats  subject (or patient), code (list) + system, or coding; duration (hours
 *     back from now) or period (start / end, or a Period); statistic (list: average, minimum /
 *     min, maximum / max, count, median, sum, std-dev): Parameters with one `statistics`
 *     Observation per code and unit, one component per statistic (observation-statistics
 *     codes), values in the code's vital-sign unit (kg, cm, /min …) when the data was.
 */
export interface TrendDeps {
  db: Db;
  tokens: TokenService;
  fhirBase: string;
}

const STATISTICS_SYSTEM = 'http://terminology.hl7.org/CodeSystem/observation-statistics';
const STATISTIC: Record<string, keyof StatsRow> = {
  average: 'average',
  minimum: 'minimum',
  min: 'minimum',
  maximum: 'maximum',
  max: 'maximum',
  count: 'count',
  median: 'median',
  sum: 'sum',
  'std-dev': 'std_dev',
};
const CANONICAL_STAT: Record<string, string> = { min: 'minimum', max: 'maximum' };

/** Inputs from the query string (GET) or a Parameters body (POST), each as a list of strings. */
function inputs(request: FastifyRequest): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const add = (name: string, value: string | undefined) => {
    if (value !== undefined && value !== '') out.set(name, [...(out.get(name) ?? []), value]);
  };
  if (request.method === 'POST' && request.body !== undefined && request.body !== '') {
    const body = (typeof request.body === 'object' ? request.body : undefined) as Parameters | undefined;
    if (body?.resourceType !== 'Parameters') throw errors.incorrect('the body must be a Parameters resource');
    for (const p of body.parameter ?? []) {
      if (p.valueCoding) add(p.name, `${p.valueCoding.system ?? ''}|${p.valueCoding.code ?? ''}`);
      else if (p.valuePeriod) {
        add('start', p.valuePeriod.start);
        add('end', p.valuePeriod.end);
      } else {
        const value = p.valueString ?? p.valueCode ?? p.valueUri ?? p.valueReference?.reference ?? p.valueDecimal ?? p.valuePositiveInt ?? p.valueInteger ?? p.valueBoolean;
        add(p.name, value === undefined ? undefined : String(value));
      }
    }
  }
  for (const [k, v] of queryOf(request)) add(k, v);
  return out;
}

function list(values: string[] | undefined): string[] {
  return (values ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
}

function tokens(values: string[] | undefined, defaultSystem = ''): CodeFilter[] {
  return list(values).map((v) => {
    const bar = v.lastIndexOf('|');
    return bar < 0 ? { system: defaultSystem, code: v } : { system: v.slice(0, bar), code: v.slice(bar + 1) };
  });
}

function patientOf(input: Map<string, string[]>): string {
  const raw = input.get('patient')?.[0] ?? input.get('subject')?.[0];
  if (!raw) throw errors.incorrect("'patient' (or 'subject') is required", ['Parameters.parameter']);
  const match = /^(?:.*\/)?(?:Patient\/)?([A-Za-z0-9\-.]{1,64})$/.exec(raw);
  if (!match || (raw.includes('/') && !/(^|\/)Patient\/[^/]+$/.test(raw))) throw errors.incorrect(`'${raw.slice(0, 80)}' is not a Patient reference`);
  return match[1]!;
}

function checkAccess(auth: AuthContext, patientId: string): void {
  if (scopesAllow(auth.scopes.filter((s) => s.context !== 'patient'), 'Observation', 'r')) return;
  if (scopesAllow(auth.scopes.filter((s) => s.context === 'patient'), 'Observation', 'r') && auth.patient === patientId) return;
  throw errors.forbidden("the access token's scopes do not allow reading this patient's Observations");
}

/** An ISO instant for SQL: a partial date (2026, 2026-01) starts its period ('start') or ends it ('end'). */
function instant(value: string | undefined, name: 'start' | 'end'): string | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/.test(value) || Number.isNaN(Date.parse(value))) {
    throw errors.incorrect(`'${name}' is not a date or dateTime: ${value.slice(0, 40)}`);
  }
  const [year, month, day] = value.split(/[-T]/).map(Number);
  if (value.length > 10) return new Date(value).toISOString();
  const from = new Date(Date.UTC(year!, (month ?? 1) - 1, day ?? 1));
  if (name === 'start') return from.toISOString();
  const next = new Date(Date.UTC(year! + (month === undefined ? 1 : 0), (month ?? 1) - 1 + (month !== undefined && day === undefined ? 1 : 0), (day ?? 1) + (day !== undefined ? 1 : 0)));
  return new Date(next.getTime() - 1).toISOString();
}

function periodOf(input: Map<string, string[]>): { start?: string; end?: string } {
  const duration = input.get('duration')?.[0];
  if (duration !== undefined) {
    const hours = Number(duration);
    if (!Number.isFinite(hours) || hours <= 0) throw errors.incorrect("'duration' is a positive number of hours");
    return { start: new Date(Date.now() - hours * 3600_000).toISOString() };
  }
  // GET: `period` is not a simple type; start / end (or date=ge…&date=le…) stand for it.
  const dates = input.get('date') ?? [];
  const start = input.get('start')?.[0] ?? dates.find((d) => d.startsWith('ge'))?.slice(2);
  const end = input.get('end')?.[0] ?? dates.find((d) => d.startsWith('le'))?.slice(2);
  return { start: instant(start, 'start'), end: instant(end, 'end') };
}

function round(value: number): number {
  return Math.round(value * 1e4) / 1e4;
}

/** The stats of one row in the code's vital-sign unit when the row holds that unit's canonical form. */
function inPreferredUnit(row: StatsRow): { unit: string | null; factor: number } {
  const preferred = VITAL_UNITS[row.code]?.[0];
  if (!preferred || row.unit === preferred) return { unit: row.unit, factor: 1 };
  const canonical = toCanonical('1', preferred);
  return canonical && canonical.code === row.unit ? { unit: preferred, factor: Number(canonical.value) } : { unit: row.unit, factor: 1 };
}

function statisticsObservation(row: StatsRow, wanted: string[], patientId: string): Observation {
  const { unit, factor } = inPreferredUnit(row);
  const component: ObservationComponent[] = wanted.map((name) => {
    const code = { coding: [{ system: STATISTICS_SYSTEM, code: CANONICAL_STAT[name] ?? name }] };
    const raw = row[STATISTIC[name]!];
    if (name === 'count') return { code, valueInteger: Number(raw) };
    if (raw === null || raw === undefined) return { code, dataAbsentReason: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/data-absent-reason', code: 'not-applicable' }] } };
    // Every statistic but count scales with the unit (none of the vital units has an offset in canonical form).
    const value = round(Number(raw) / factor);
    return { code, valueQuantity: { value, ...(unit ? { unit, code: unit, system: UCUM } : {}) } };
  });
  const iso = (d: Date | string | null) => (d === null ? undefined : new Date(d).toISOString());
  const first = row.first === null ? undefined : iso(row.first);
  const last = row.last === null ? undefined : iso(row.last);
  return {
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ ...(row.system ? { system: row.system } : {}), code: row.code }] },
    subject: { reference: `Patient/${patientId}` },
    ...(first || last ? { effectivePeriod: { ...(first && Number.isFinite(Date.parse(first)) ? { start: first } : {}), ...(last && Number.isFinite(Date.parse(last)) ? { end: last } : {}) } } : {}),
    component,
  };
}

export async function registerVitalTrends(http: FastifyInstance, deps: TrendDeps): Promise<void> {
  await http.register(
    async (app) => {
      app.addHook('onRequest', async (request) => {
        request.auth = await deps.tokens.verify(request.headers.authorization);
      });
      const lastnHandler = async (request: FastifyRequest, reply: import('fastify').FastifyReply) => {
        const input = inputs(request);
        const patientId = patientOf(input);
        checkAccess(request.auth!, patientId);
        const maxText = input.get('max')?.[0] ?? '1';
        const max = Number(maxText);
        if (!Number.isInteger(max) || max < 1 || max > 1000) throw errors.incorrect("'max' is a whole number from 1 to 1000");
        const query: TrendQuery = { patientId, codes: tokens(input.get('code')), categories: tokens(input.get('category')).map((c) => c.code), ...periodOf(input) };
        const rows = await lastn(deps.db, query, max);
        const seen = new Set<string>();
        const entry: BundleEntry[] = [];
        for (const row of rows) {
          if (seen.has(row.id)) continue;
          seen.add(row.id);
          entry.push({ fullUrl: `${deps.fhirBase}/Observation/${row.id}`, resource: JSON.parse(row.json) as Observation, search: { mode: 'match' } });
        }
        const bundle: Bundle = { resourceType: 'Bundle', type: 'searchset', total: entry.length, entry };
        return sendResult(request, reply, { status: 200, body: bundle }, outputOptions(queryOf(request)), deps.fhirBase);
      };
      const statsHandler = async (request: FastifyRequest, reply: import('fastify').FastifyReply) => {
        const input = inputs(request);
        const patientId = patientOf(input);
        checkAccess(request.auth!, patientId);
        const wanted = list(input.get('statistic'));
        if (wanted.length === 0) throw errors.incorrect(`'statistic' is required (${Object.keys(STATISTIC).join(', ')})`);
        const unknown = wanted.filter((s) => !(s in STATISTIC));
        if (unknown.length > 0) throw errors.incorrect(`unsupported statistic: ${unknown.join(', ')} (supported: ${Object.keys(STATISTIC).join(', ')})`);
        const system = input.get('system')?.[0] ?? '';
        const codes = [...tokens(input.get('code'), system), ...tokens(input.get('coding'))];
        if (codes.length === 0) throw errors.incorrect("'code' (with 'system') or 'coding' is required");
        const query: TrendQuery = { patientId, codes, categories: tokens(input.get('category')).map((c) => c.code), ...periodOf(input) };
        const rows = await stats(deps.db, query);
        const parameter: ParametersParameter[] = rows.map((row) => ({ name: 'statistics', resource: statisticsObservation(row, wanted, patientId) }));
        const body: Parameters = { resourceType: 'Parameters', parameter };
        return sendResult(request, reply, { status: 200, body }, outputOptions(queryOf(request)), deps.fhirBase);
      };
      app.get('/Observation/$lastn', lastnHandler);
      app.post('/Observation/$lastn', lastnHandler);
      app.get('/Observation/$stats', statsHandler);
      app.post('/Observation/$stats', statsHandler);
    },
    { prefix: '/fhir' },
  );
}

export const VITAL_TREND_OPERATIONS = {
  Observation: [
    { name: 'lastn', definition: 'http://hl7.org/fhir/OperationDefinition/Observation-lastn' },
    { name: 'stats', definition: 'http://hl7.org/fhir/OperationDefinition/Observation-stats' },
  ],
};
