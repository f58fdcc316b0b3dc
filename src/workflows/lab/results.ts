import type { CodeableConcept, Observation, ObservationDefinition, ObservationReferenceRange, Patient, Quantity } from 'fhir/r4.js';
import type { BeforeWriteHook, StoreTransaction } from '../../storage/resource-store.js';
import { businessRule, referenceTo } from '../scheduling-rules.js';
import { FLAG_DISPLAY, INTERPRETATION_SYSTEM, UCUM, acceptsUnit, catalogCode, convert, customaryUnitOf, flagOf, referenceInterval, toReferenceRange, unitOf, type LabCatalog } from './catalog.js';

/**
 * Result entry (seed 004 FR-LAB-002, issue 14 §2), before commit on every write path (REST,
 * Bundles, HL7 v2): an Observation coded with a catalogue test
 *
 * - must carry the value type the test's ObservationDefinition permits (422 at
 *   `Observation.value[x]`), a Quantity in the test's UCUM unit (422 at `valueQuantity.code`);
 * - gets the reference range for the patient's gender and age when the writer gave none;
 * - gets the interpretation (N, L, H, LL, HH) from the ranges and critical limits when the
 *   writer gave none, and LL / HH added when the writer's flags miss a critical value. HH / LL
 *   are what raise the CRITICAL_LAB_RESULT notification (src/workflows/notifications/events.ts).
 *
 * A panel's Observation (CBC, with `hasMember`) carries no value of its own and is not checked.
 */

const VALUE_TYPES: Record<string, string> = {
  valueQuantity: 'Quantity',
  valueCodeableConcept: 'CodeableConcept',
  valueString: 'string',
  valueBoolean: 'boolean',
  valueInteger: 'integer',
  valueRange: 'Range',
  valueRatio: 'Ratio',
  valueSampledData: 'SampledData',
  valueTime: 'time',
  valueDateTime: 'dateTime',
  valuePeriod: 'Period',
};

const CRITICAL_CODES = ['HH', 'LL', 'AA'];

function ageInYears(birthDate: string | undefined, at: string): number | undefined {
  if (!birthDate) return undefined;
  const born = new Date(birthDate.length === 4 ? `${birthDate}-07-01` : birthDate.length === 7 ? `${birthDate}-15` : birthDate);
  const when = new Date(at);
  if (Number.isNaN(born.getTime()) || Number.isNaN(when.getTime())) return undefined;
  return (when.getTime() - born.getTime()) / (365.2425 * 24 * 3600 * 1000);
}

async function patientOf(tx: StoreTransaction, obs: Observation): Promise<Patient | undefined> {
  const id = referenceTo('Patient', obs.subject?.reference);
  if (!id) return undefined;
  const stored = await tx.read('Patient', id);
  return stored?.json && !stored.deleted ? (JSON.parse(stored.json) as Patient) : undefined;
}

function flagConcept(code: string): CodeableConcept {
  return { coding: [{ system: INTERPRETATION_SYSTEM, code, display: FLAG_DISPLAY[code] }] };
}

/** The range's bounds in the result's unit (a result in mmol/L gets its range in mmol/L). */
function inUnit(def: ObservationDefinition, range: ObservationReferenceRange, unit: string | undefined): ObservationReferenceRange {
  if (!unit) return range;
  const bound = (q: Quantity | undefined): Quantity | undefined => {
    if (q?.value === undefined) return q;
    const from = q.code ?? q.unit;
    if (!from || from === unit) return q;
    const value = convert(def, q.value, from, unit);
    return value === undefined ? q : { value: Number(value.toPrecision(3)), unit, system: UCUM, code: unit };
  };
  const low = bound(range.low);
  const high = bound(range.high);
  return { ...range, ...(low ? { low } : {}), ...(high ? { high } : {}) };
}

export function labResultHook(catalog: LabCatalog): BeforeWriteHook {
  return async (tx, change) => {
    if (change.resourceType !== 'Observation' || !change.resource) return;
    const obs = change.resource as Observation;
    const ours = (obs.code?.coding ?? []).filter((c) => c.system === catalog.system);
    if (ours.length === 0) return;
    const code = catalogCode(obs.code) ?? '';
    const def = catalog.definition(code);
    if (!def) {
      if (catalog.test(code)?.isPanel) return;
      throw businessRule('invalid', `${code || '(no code)'} is not a test of the laboratory catalogue.`, ['Observation.code']);
    }
    const valueKey = Object.keys(obs).find((k) => k.startsWith('value'));
    if (!valueKey) return; // no result yet (dataAbsentReason, or registered)
    const permitted = def.permittedDataType ?? [];
    const type = VALUE_TYPES[valueKey] ?? valueKey.slice('value'.length);
    if (permitted.length && !permitted.includes(type as (typeof permitted)[number])) {
      throw businessRule('invalid', `A ${code} result is a ${permitted.join(' or ')}, not a ${type}.`, [`Observation.${valueKey}`]);
    }
    if (!obs.valueQuantity) return;
    const q = obs.valueQuantity;
    const expected = [unitOf(def), customaryUnitOf(def)].filter((u): u is string => u !== undefined);
    if (typeof q.value !== 'number') throw businessRule('invalid', `A ${code} result needs a numeric value.`, ['Observation.valueQuantity.value']);
    const unit = q.code ?? q.unit;
    if (expected.length) {
      if (q.system !== undefined && q.system !== UCUM) throw businessRule('invalid', `${code} results are reported in UCUM units (${UCUM}).`, ['Observation.valueQuantity.system']);
      if (!unit || !acceptsUnit(def, unit)) {
        throw businessRule('invalid', `${code} results are reported in ${expected.join(' or ')} (or a unit convertible to them), not ${unit ?? 'no unit'}.`, [q.code !== undefined ? 'Observation.valueQuantity.code' : 'Observation.valueQuantity.unit']);
      }
    }
    const next: Observation = { ...obs, valueQuantity: unit && expected.length ? { ...q, unit: q.unit ?? unit, system: UCUM, code: unit } : q };
    if (!next.referenceRange?.length) {
      const patient = await patientOf(tx, obs);
      const interval = referenceInterval(def, patient?.gender, ageInYears(patient?.birthDate, obs.effectiveDateTime ?? change.lastUpdated));
      if (interval) next.referenceRange = [inUnit(def, toReferenceRange(interval), unit)];
    }
    const flag = flagOf(def, q.value, unit, next.referenceRange?.[0]);
    const given = next.interpretation ?? [];
    if (given.length === 0) next.interpretation = [flagConcept(flag)];
    else if ((flag === 'HH' || flag === 'LL') && !given.some((c) => (c.coding ?? []).some((k) => k.system === INTERPRETATION_SYSTEM && CRITICAL_CODES.includes(k.code ?? '')))) {
      next.interpretation = [...given, flagConcept(flag)];
    }
    change.resource = next;
  };
}
