import type { CodeableConcept, MeasureReport, MeasureReportGroup, MeasureReportGroupPopulation, MeasureReportGroupStratifierStratum, Quantity } from 'fhir/r4.js';

/**
 * Building blocks of the report MeasureReports (status complete, type summary) and their CSV
 * form. Each report is a few groups, one figure each (its `measureScore`) with its populations
 * (counts), and stratifiers (day, ward, test, …) with one stratum per value holding the same
 * figure for that value. Group and stratifier codes come from REPORT_CODES; population codes
 * are the R4 measure-population codes.
 */

export const REPORT_CODES = 'https://fhir.hospital.example.org/CodeSystem/report-figure';
export const MEASURE_BASE = 'https://fhir.hospital.example.org/Measure';
const POPULATION_SYSTEM = 'http://terminology.hl7.org/CodeSystem/measure-population';

export type PopulationCode = 'initial-population' | 'denominator' | 'numerator' | 'denominator-exclusion';

/** Counts of one group or stratum; undefined entries are left out. */
export type Populations = Partial<Record<PopulationCode, number>>;

export interface Figure {
  populations: Populations;
  score?: Quantity;
}

export interface StratumFigure extends Figure {
  /** One value, or several components (code → value) for a stratifier over two things. */
  value: string | Record<string, string>;
}

const concept = (system: string, code: string, display?: string): CodeableConcept => ({ coding: [{ system, code, ...(display ? { display } : {}) }] });

function populations(p: Populations): MeasureReportGroupPopulation[] {
  return (Object.entries(p) as Array<[PopulationCode, number | undefined]>)
    .filter((e): e is [PopulationCode, number] => e[1] !== undefined)
    .map(([code, count]) => ({ code: concept(POPULATION_SYSTEM, code), count }));
}

function stratum(s: StratumFigure): MeasureReportGroupStratifierStratum {
  const out: MeasureReportGroupStratifierStratum =
    typeof s.value === 'string'
      ? { value: { text: s.value } }
      : { component: Object.entries(s.value).map(([code, value]) => ({ code: concept(REPORT_CODES, code), value: { text: value } })) };
  const pops = populations(s.populations);
  if (pops.length) out.population = pops;
  if (s.score) out.measureScore = s.score;
  return out;
}

export function group(code: string, display: string, figure: Figure, stratifiers: Array<{ code: string; strata: StratumFigure[] }> = []): MeasureReportGroup {
  const g: MeasureReportGroup = { code: concept(REPORT_CODES, code, display) };
  const pops = populations(figure.populations);
  if (pops.length) g.population = pops;
  if (figure.score) g.measureScore = figure.score;
  if (stratifiers.length) g.stratifier = stratifiers.map((s) => ({ code: [concept(REPORT_CODES, s.code)], stratum: s.strata.map(stratum) }));
  return g;
}

export function measureReport(measure: string, period: { start: string; end: string }, groups: MeasureReportGroup[]): MeasureReport {
  return {
    resourceType: 'MeasureReport',
    status: 'complete',
    type: 'summary',
    measure: `${MEASURE_BASE}/${measure}`,
    date: new Date().toISOString(),
    period,
    group: groups,
  };
}

export const money = (value: number, currency: string | null): Quantity =>
  currency ? { value: round(value, 6), unit: currency, system: 'urn:iso:std:iso:4217', code: currency } : { value: round(value, 6) };
export const minutes = (value: number): Quantity => ({ value: round(value, 2), unit: 'min', system: 'http://unitsofmeasure.org', code: 'min' });
export const days = (value: number): Quantity => ({ value: round(value, 4), unit: 'd', system: 'http://unitsofmeasure.org', code: 'd' });
export const proportion = (numerator: number, denominator: number): Quantity | undefined =>
  denominator > 0 ? { value: round(numerator / denominator, 4), unit: '1', system: 'http://unitsofmeasure.org', code: '1' } : undefined;

/** Rounds to `digits` decimals (money: removes float noise of numeric → number). */
export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

// ---------------------------------------------------------------- CSV

/** Header of every report's CSV: one row per figure of a group (overall) or of a stratum. */
export const CSV_HEADER = ['group', 'stratifier', 'stratum', 'figure', 'value', 'unit'] as const;

function cell(v: string): string {
  // Text a spreadsheet would run as a formula gets a leading apostrophe (OWASP CSV injection).
  const s = /^[=+\-@\t\r]/.test(v) && !/^-?[0-9.]+(e-?[0-9]+)?$/i.test(v) ? `'${v}` : v;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function stratumText(s: MeasureReportGroupStratifierStratum): string {
  if (s.value) return s.value.text ?? s.value.coding?.[0]?.code ?? '';
  return (s.component ?? []).map((c) => `${c.code.coding?.[0]?.code ?? ''}=${c.value.text ?? ''}`).join(';');
}

function rows(groupCode: string, stratifier: string, stratumValue: string, p: MeasureReportGroupPopulation[] | undefined, score: Quantity | undefined): string[][] {
  const out = (p ?? []).map((x) => [groupCode, stratifier, stratumValue, x.code?.coding?.[0]?.code ?? '', String(x.count ?? 0), '']);
  if (score?.value !== undefined) out.push([groupCode, stratifier, stratumValue, 'score', String(score.value), score.code ?? score.unit ?? '']);
  return out;
}

/**
 * The same figures as the MeasureReport, one per line (long format, easy to pivot in a
 * spreadsheet): `group,stratifier,stratum,figure,value,unit`, figure = a population code
 * (value its count) or `score` (value the measureScore, unit its code). Text cells that a
 * spreadsheet would run as formulas get a leading apostrophe.
 */
export function measureReportCsv(report: MeasureReport): string {
  const lines: string[][] = [[...CSV_HEADER]];
  for (const g of report.group ?? []) {
    const code = g.code?.coding?.[0]?.code ?? '';
    lines.push(...rows(code, '', '', g.population, g.measureScore));
    for (const s of g.stratifier ?? []) {
      const sCode = s.code?.[0]?.coding?.[0]?.code ?? '';
      for (const st of s.stratum ?? []) lines.push(...rows(code, sCode, stratumText(st), st.population, st.measureScore));
    }
  }
  return lines.map((l) => l.map(cell).join(',')).join('\r\n') + '\r\n';
}
