import type { Observation, Quantity } from 'fhir/r4.js';
import { toCanonical } from '../../search/ucum.js';

/** One entry of conformance/hl7v2/critical-limits.json. */
export interface CriticalLimit {
  /** Code system URI; absent: a local code (its v2 coding system has no URI). */
  system?: string;
  code: string;
  display?: string;
  /** UCUM code the limits are given in. */
  unit: string;
  /** Values strictly below are critical (LL). */
  low?: number;
  /** Values strictly above are critical (HH). */
  high?: number;
}

/** The catalog indexed by `system|code`. */
export type CriticalLimitCatalog = ReadonlyMap<string, CriticalLimit>;

/** A result beyond a limit of the catalog. */
export interface LimitBreach {
  flag: 'LL' | 'HH';
  limit: CriticalLimit;
}

const key = (system: string | undefined, code: string) => `${system ?? ''}|${code}`;

/** Checks and indexes the catalog's entries; a malformed entry stops the start (it is configuration). */
export function criticalLimitCatalog(limits: readonly CriticalLimit[], file = 'critical-limits.json'): CriticalLimitCatalog {
  const catalog = new Map<string, CriticalLimit>();
  for (const [i, limit] of limits.entries()) {
    const where = `conformance/hl7v2/${file}: limits[${i}]`;
    if (typeof limit.code !== 'string' || !limit.code) throw new Error(`${where} has no code`);
    if (typeof limit.unit !== 'string') throw new Error(`${where} (${limit.code}) has no unit`);
    if (limit.low === undefined && limit.high === undefined) throw new Error(`${where} (${limit.code}) has neither low nor high`);
    for (const bound of [limit.low, limit.high]) {
      if (bound !== undefined && (typeof bound !== 'number' || !Number.isFinite(bound))) throw new Error(`${where} (${limit.code}) has a bound that is not a number`);
    }
    if (limit.low !== undefined && limit.high !== undefined && limit.low > limit.high) throw new Error(`${where} (${limit.code}) has low above high`);
    const k = key(limit.system, limit.code);
    if (catalog.has(k)) throw new Error(`${where} repeats ${k}`);
    catalog.set(k, limit);
  }
  return catalog;
}

/** `value` (in `unit`) restated in the catalog's unit, or undefined when the units cannot be compared. */
function inUnit(value: number, unit: string | undefined, target: string): number | undefined {
  if (unit === undefined) return undefined;
  if (unit === target) return value;
  const from = toCanonical(String(value), unit);
  const to = toCanonical('1', target);
  if (!from || !to || from.code !== to.code) return undefined;
  return Number(from.value) / Number(to.value);
}

/**
 * The catalog's verdict on an Observation's numeric value (valueQuantity), or undefined when
 * no limit applies or the value is within it. A comparator counts only when every value it
 * allows is beyond the limit (`<2.0` is below a low limit of 2.8; `<3.0` is not known to be).
 */
export function limitBreach(catalog: CriticalLimitCatalog, observation: Observation): LimitBreach | undefined {
  if (catalog.size === 0) return undefined;
  const q: Quantity | undefined = observation.valueQuantity;
  if (q?.value === undefined) return undefined;
  for (const coding of observation.code.coding ?? []) {
    if (!coding.code) continue;
    const limit = catalog.get(key(coding.system, coding.code));
    if (!limit) continue;
    const value = inUnit(q.value, q.code ?? q.unit, limit.unit);
    if (value === undefined) return undefined;
    const comparator = q.comparator;
    const upTo = comparator === '<' || comparator === '<=';
    const from = comparator === '>' || comparator === '>=';
    if (limit.low !== undefined && !from && (value < limit.low || (comparator === '<' && value <= limit.low))) return { flag: 'LL', limit };
    if (limit.high !== undefined && !upTo && (value > limit.high || (comparator === '>' && value >= limit.high))) return { flag: 'HH', limit };
    return undefined;
  }
  return undefined;
}
