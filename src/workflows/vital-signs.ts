import type { CodeableConcept, Observation, ObservationComponent, OperationOutcomeIssue, Quantity } from 'fhir/r4.js';
import { FhirError } from '../fhir/errors.js';
import type { BeforeWriteHook } from '../storage/resource-store.js';
import { deriveBmi } from './vital-signs-bmi.js';
import { interpretationCode, interpretationConcept, LOINC, SEVERITY, UCUM, type VitalRange } from './vital-signs-ranges.js';

/**
 * Vital signs (seed 004 FR-EMR-004, issue 13 §2), before commit on every write path, for
 * Observations in category `vital-signs`:
 *
 * - Units as the R4 vital-signs profiles bind them (UCUM, table below; 422 with the path
 *   otherwise); a blood-pressure panel (85354-9) carries systolic 8480-6 and diastolic 8462-4
 *   components.
 * - No `interpretation` from the client: the server flags the value (v3 ObservationInterpretation
 *   N / L / H / LL / HH) from the adult ranges in terminology/ (vital-signs-ranges.ts), on the
 *   Observation and, for panels, on each component (the Observation gets the worst); a missing
 *   `referenceRange` is filled with the normal range.
 * - Weight or height with an encounter, written by a signed-in user: the BMI of that encounter is
 *   derived (vital-signs-bmi.ts).
 */

export const VITAL_SIGNS_CATEGORY = { system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' };
export const BP_PANEL = '85354-9';
const BP_COMPONENTS = ['8480-6', '8462-4'];

/** UCUM units allowed per LOINC code (R4 vitalsigns, bp, heartrate, resprate, oxygensat, bodytemp, bodyheight, headcircum, bodyweight, bmi profiles). */
export const VITAL_UNITS: Record<string, readonly string[]> = {
  '8480-6': ['mm[Hg]'],
  '8462-4': ['mm[Hg]'],
  '8867-4': ['/min'],
  '9279-1': ['/min'],
  '8310-5': ['Cel', '[degF]'],
  '59408-5': ['%'],
  '2708-6': ['%'],
  '29463-7': ['kg', 'g', '[lb_av]'],
  '8302-2': ['cm', '[in_i]'],
  '9843-4': ['cm', '[in_i]'],
  '39156-5': ['kg/m2'],
};

export function isVitalSign(observation: Observation): boolean {
  return (observation.category ?? []).some((c) => (c.coding ?? []).some((x) => x.system === VITAL_SIGNS_CATEGORY.system && x.code === VITAL_SIGNS_CATEGORY.code));
}

/** The first LOINC code of a concept that this module knows (units table or the BP panel). */
export function vitalCode(concept: CodeableConcept | undefined): string | undefined {
  return concept?.coding?.find((c) => c.system === LOINC && c.code !== undefined && (c.code in VITAL_UNITS || c.code === BP_PANEL))?.code;
}

function unitIssues(code: string | undefined, element: { valueQuantity?: Quantity } & Record<string, unknown>, path: string): OperationOutcomeIssue[] {
  const allowed = code ? VITAL_UNITS[code] : undefined;
  if (!allowed) return [];
  const otherValue = Object.keys(element).find((k) => k.startsWith('value') && k !== 'valueQuantity');
  if (otherValue) return [issue(`LOINC ${code} is recorded as a Quantity (valueQuantity), not ${otherValue}.`, `${path}.${otherValue}`)];
  const q = element.valueQuantity;
  if (!q) return [];
  if (q.value === undefined) return [issue(`LOINC ${code} needs valueQuantity.value.`, `${path}.valueQuantity.value`)];
  if (q.system !== UCUM) return [issue(`LOINC ${code} is recorded in UCUM units (valueQuantity.system ${UCUM}).`, `${path}.valueQuantity.system`)];
  if (!q.code || !allowed.includes(q.code)) return [issue(`LOINC ${code} is recorded in ${allowed.map((u) => `'${u}'`).join(' or ')} (UCUM), not '${q.code ?? ''}'.`, `${path}.valueQuantity.code`)];
  return [];
}

function issue(diagnostics: string, path: string): OperationOutcomeIssue {
  return { severity: 'error', code: 'business-rule', diagnostics, expression: [path] };
}

/** The value in the range's unit (°F → °C), or undefined when it cannot be compared. */
function inRangeUnit(range: VitalRange, q: Quantity | undefined): number | undefined {
  if (q?.value === undefined || q.system !== UCUM) return undefined;
  if (q.code === range.unit) return q.value;
  if (q.code === '[degF]' && range.unit === 'Cel') return ((q.value - 32) * 5) / 9;
  return undefined;
}

/** Flags one element (the Observation or a component); the code given, or undefined. */
function flag<T extends Observation | ObservationComponent>(element: T, range: VitalRange | undefined): { element: T; code?: string } {
  const value = range ? inRangeUnit(range, element.valueQuantity) : undefined;
  if (!range || value === undefined) return { element };
  const given = element.interpretation?.[0]?.coding?.[0]?.code;
  if (given) return { element, code: given };
  const code = interpretationCode(range, value);
  return {
    element: { ...element, interpretation: [interpretationConcept(code)], referenceRange: element.referenceRange ?? [range.referenceRange] },
    code,
  };
}

export function vitalSignsHook(ranges: ReadonlyMap<string, VitalRange>): BeforeWriteHook {
  return async (tx, change) => {
    if (change.resourceType !== 'Observation' || !change.resource) return;
    let observation = change.resource as Observation;
    if (!isVitalSign(observation)) return;
    const code = vitalCode(observation.code);
    const issues = unitIssues(code, observation as Observation & Record<string, unknown>, 'Observation');
    (observation.component ?? []).forEach((c, i) => issues.push(...unitIssues(vitalCode(c.code), c as ObservationComponent & Record<string, unknown>, `Observation.component[${i}]`)));
    if (code === BP_PANEL && observation.dataAbsentReason === undefined) {
      const present = new Set((observation.component ?? []).map((c) => vitalCode(c.code)));
      const missing = BP_COMPONENTS.filter((c) => !present.has(c));
      if (missing.length > 0) issues.push(issue(`A blood pressure panel (85354-9) carries systolic (8480-6) and diastolic (8462-4) components; missing: ${missing.join(', ')}.`, 'Observation.component'));
    }
    if (issues.length > 0) throw new FhirError('invalid', issues);

    const top = flag(observation, code ? ranges.get(code) : undefined);
    observation = top.element;
    if (observation.component?.length) {
      const flagged = observation.component.map((c) => flag(c, ranges.get(vitalCode(c.code) ?? '')));
      observation = { ...observation, component: flagged.map((f) => f.element) };
      const worst = flagged.map((f) => f.code).filter((c): c is string => c !== undefined && c in SEVERITY).sort((a, b) => SEVERITY[b]! - SEVERITY[a]!)[0];
      if (!observation.interpretation && worst) observation = { ...observation, interpretation: [interpretationConcept(worst)] };
    }
    change.resource = observation;
    await deriveBmi(tx, change, observation);
  };
}
