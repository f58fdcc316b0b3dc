import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Bundle, CodeableConcept, ObservationDefinition, ObservationReferenceRange, Quantity } from 'fhir/r4.js';

/**
 * Adult reference and critical ranges of vital signs, as data:
 * terminology/Bundle-vital-signs-reference-ranges.json, one ObservationDefinition per LOINC code
 * with a `reference` interval (outside: L / H) and a `critical` interval (outside: LL / HH);
 * each interval's `condition` names its source (NEWS2 2017, ACC/AHA 2017, WHO BMI).
 */
export interface VitalRange {
  code: string;
  unit: string;
  normal: { low?: number; high?: number };
  critical: { low?: number; high?: number };
  /** The referenceRange written into Observations that have none. */
  referenceRange: ObservationReferenceRange;
}

export const LOINC = 'http://loinc.org';
export const UCUM = 'http://unitsofmeasure.org';
export const INTERPRETATION_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation';

const DISPLAY: Record<string, string> = { N: 'Normal', H: 'High', L: 'Low', HH: 'Critical high', LL: 'Critical low' };

export function loadVitalRanges(terminologyDir: string): Map<string, VitalRange> {
  const bundle = JSON.parse(readFileSync(join(terminologyDir, 'Bundle-vital-signs-reference-ranges.json'), 'utf8')) as Bundle<ObservationDefinition>;
  const out = new Map<string, VitalRange>();
  for (const entry of bundle.entry ?? []) {
    const def = entry.resource;
    const code = def?.code.coding?.find((c) => c.system === LOINC)?.code;
    const unit = def?.quantitativeDetails?.unit?.coding?.[0]?.code;
    if (!def || !code || !unit) continue;
    const interval = (category: string) => def.qualifiedInterval?.find((i) => i.category === category);
    const bounds = (q: { low?: Quantity; high?: Quantity } | undefined) => ({ low: q?.low?.value, high: q?.high?.value });
    const reference = interval('reference');
    out.set(code, {
      code,
      unit,
      normal: bounds(reference?.range),
      critical: bounds(interval('critical')?.range),
      referenceRange: {
        ...(reference?.range?.low ? { low: reference.range.low } : {}),
        ...(reference?.range?.high ? { high: reference.range.high } : {}),
        ...(reference?.context ? { type: reference.context } : {}),
        ...(reference?.age ? { age: reference.age } : {}),
        ...(reference?.condition ? { text: reference.condition } : {}),
      },
    });
  }
  return out;
}

/** H / L / HH / LL / N of a value in the range's unit. */
export function interpretationCode(range: VitalRange, value: number): string {
  const { normal, critical } = range;
  if (critical.low !== undefined && value < critical.low) return 'LL';
  if (critical.high !== undefined && value > critical.high) return 'HH';
  if (normal.low !== undefined && value < normal.low) return 'L';
  if (normal.high !== undefined && value > normal.high) return 'H';
  return 'N';
}

export function interpretationConcept(code: string): CodeableConcept {
  return { coding: [{ system: INTERPRETATION_SYSTEM, code, display: DISPLAY[code] ?? code }] };
}

/** Severity order for the overall flag of a panel (the worst component wins). */
export const SEVERITY: Record<string, number> = { N: 0, L: 1, H: 1, LL: 2, HH: 2 };
