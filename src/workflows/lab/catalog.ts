import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ActivityDefinition, Bundle, CodeableConcept, ObservationDefinition, ObservationDefinitionQualifiedInterval, ObservationReferenceRange, Quantity } from 'fhir/r4.js';
import { toCanonical } from '../../search/ucum.js';

/**
 * The laboratory catalogue (issue 14 §1, seed 004 FR-LAB-001): data in
 * terminology/lab-catalog/Bundle-lab-catalog.json, read once at start-up.
 *
 * - ActivityDefinition per orderable test or panel (code of the lab-test CodeSystem);
 *   `observationResultRequirement` lists the ObservationDefinitions of its results (one for a
 *   test, the member tests for a panel such as CBC).
 * - ObservationDefinition per test: permitted value type, UCUM unit, reference intervals (by
 *   gender and age where they differ) and critical intervals. A critical interval holds the
 *   critical values: `range.high` only = at or below it (LL), `range.low` only = at or above it (HH).
 */

export const LAB_TEST_SYSTEM = 'https://fhir.hospital.example.org/CodeSystem/lab-test';
export const INTERPRETATION_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation';
export const UCUM = 'http://unitsofmeasure.org';

export type Flag = 'N' | 'L' | 'H' | 'LL' | 'HH';

export interface LabTest {
  code: string;
  display: string;
  activity: ActivityDefinition;
  /** The result definitions: one for a test, its members for a panel. */
  results: ObservationDefinition[];
  isPanel: boolean;
}

export interface LabCatalog {
  system: string;
  test(code: string): LabTest | undefined;
  /** The result definition of a test code (not of a panel). */
  definition(code: string): ObservationDefinition | undefined;
}

export function catalogCode(concept: CodeableConcept | undefined, system = LAB_TEST_SYSTEM): string | undefined {
  return concept?.coding?.find((c) => c.system === system && c.code)?.code;
}

export function loadLabCatalog(terminologyDir: string): LabCatalog {
  const bundle = JSON.parse(readFileSync(join(terminologyDir, 'lab-catalog', 'Bundle-lab-catalog.json'), 'utf8')) as Bundle;
  const definitions = new Map<string, ObservationDefinition>();
  const byId = new Map<string, ObservationDefinition>();
  const activities: ActivityDefinition[] = [];
  for (const entry of bundle.entry ?? []) {
    const r = entry.resource;
    if (r?.resourceType === 'ObservationDefinition') {
      const code = catalogCode(r.code);
      if (code) definitions.set(code, r);
      if (r.id) byId.set(r.id, r);
    } else if (r?.resourceType === 'ActivityDefinition') {
      activities.push(r);
    }
  }
  const tests = new Map<string, LabTest>();
  for (const activity of activities) {
    const code = catalogCode(activity.code);
    if (!code) continue;
    const results = (activity.observationResultRequirement ?? []).flatMap((ref) => {
      const def = byId.get((ref.reference ?? '').replace(/^ObservationDefinition\//, ''));
      return def ? [def] : [];
    });
    const display = activity.code?.coding?.find((c) => c.system === LAB_TEST_SYSTEM)?.display ?? activity.title ?? code;
    tests.set(code, { code, display, activity, results, isPanel: results.length > 1 });
  }
  return {
    system: LAB_TEST_SYSTEM,
    test: (code) => tests.get(code),
    definition: (code) => definitions.get(code),
  };
}

function applies(interval: ObservationDefinitionQualifiedInterval, gender: string | undefined, ageYears: number | undefined): boolean {
  if (interval.gender && interval.gender !== gender) return false;
  if (interval.age) {
    if (ageYears === undefined) return false;
    if (interval.age.low?.value !== undefined && ageYears < interval.age.low.value) return false;
    if (interval.age.high?.value !== undefined && ageYears > interval.age.high.value) return false;
  }
  return true;
}

/** The most specific reference interval for the patient: age and gender, then gender, then any. */
export function referenceInterval(def: ObservationDefinition, gender: string | undefined, ageYears: number | undefined): ObservationDefinitionQualifiedInterval | undefined {
  const candidates = (def.qualifiedInterval ?? []).filter((i) => i.category === 'reference' && applies(i, gender, ageYears));
  const score = (i: ObservationDefinitionQualifiedInterval) => (i.age ? 2 : 0) + (i.gender ? 1 : 0);
  return candidates.sort((a, b) => score(b) - score(a))[0];
}

/** The interval as an Observation.referenceRange (with the population it applies to). */
export function toReferenceRange(interval: ObservationDefinitionQualifiedInterval): ObservationReferenceRange {
  const range: ObservationReferenceRange = {};
  if (interval.range?.low) range.low = interval.range.low;
  if (interval.range?.high) range.high = interval.range.high;
  const applies: string[] = [];
  if (interval.gender) applies.push(interval.gender);
  if (interval.age) applies.push(`age ${interval.age.low?.value ?? ''}–${interval.age.high?.value ?? ''} years`);
  if (applies.length) range.text = applies.join(', ');
  return range;
}

/**
 * The flag of a numeric value in `unit`: critical intervals first, then the reference range.
 * Bounds are compared in the value's unit (converted when they are given in another one).
 */
export function flagOf(def: ObservationDefinition, value: number, unit: string | undefined, range: ObservationReferenceRange | undefined): Flag {
  const bound = (q: Quantity | undefined) => (q?.value === undefined ? undefined : unit === undefined ? q.value : convert(def, q.value, q.code ?? q.unit ?? unit, unit));
  for (const c of (def.qualifiedInterval ?? []).filter((i) => i.category === 'critical')) {
    const low = bound(c.range?.low);
    const high = bound(c.range?.high);
    if (c.range?.low === undefined && high !== undefined && value <= high) return 'LL';
    if (c.range?.high === undefined && low !== undefined && value >= low) return 'HH';
  }
  const low = bound(range?.low);
  const high = bound(range?.high);
  if (low !== undefined && value < low) return 'L';
  if (high !== undefined && value > high) return 'H';
  return 'N';
}

export const FLAG_DISPLAY: Record<string, string> = { N: 'Normal', L: 'Low', H: 'High', LL: 'Critical low', HH: 'Critical high', A: 'Abnormal', AA: 'Critical abnormal' };

/** The test's SI unit (quantitativeDetails.unit), UCUM. */
export function unitOf(def: ObservationDefinition): string | undefined {
  return def.quantitativeDetails?.unit?.coding?.find((c) => c.system === UCUM)?.code;
}

/** The test's customary unit (quantitativeDetails.customaryUnit), UCUM. */
export function customaryUnitOf(def: ObservationDefinition): string | undefined {
  return def.quantitativeDetails?.customaryUnit?.coding?.find((c) => c.system === UCUM)?.code;
}

/** `value` in UCUM unit `to` when `from` is the same kind of unit (g/L and g/dL), else undefined. */
function ucumFactor(from: string, to: string): number | undefined {
  if (from === to) return 1;
  const a = toCanonical('1', from);
  const b = toCanonical('1', to);
  if (!a || !b || a.code !== b.code) return undefined;
  return Number(a.value) / Number(b.value);
}

/**
 * `value` from unit `from` into unit `to`: directly (UCUM), or across the test's SI and customary
 * units with its conversionFactor (cholesterol mmol/L ↔ mg/dL). Undefined when not convertible.
 */
export function convert(def: ObservationDefinition, value: number, from: string, to: string): number | undefined {
  const direct = ucumFactor(from, to);
  if (direct !== undefined) return value * direct;
  const si = unitOf(def);
  const customary = customaryUnitOf(def);
  const factor = def.quantitativeDetails?.conversionFactor;
  if (!si || !customary || !factor) return undefined;
  const toSi = ucumFactor(from, si);
  const toCustomary = ucumFactor(from, customary);
  if (toSi !== undefined) {
    const c = ucumFactor(customary, to);
    return c === undefined ? undefined : value * toSi * factor * c;
  }
  if (toCustomary !== undefined) {
    const c = ucumFactor(si, to);
    return c === undefined ? undefined : ((value * toCustomary) / factor) * c;
  }
  return undefined;
}

/** The units a result of the test may be reported in (those its values convert from). */
export function acceptsUnit(def: ObservationDefinition, unit: string): boolean {
  const target = unitOf(def) ?? customaryUnitOf(def);
  return target === undefined || convert(def, 1, unit, target) !== undefined;
}
