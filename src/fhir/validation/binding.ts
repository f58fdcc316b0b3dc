import { isObject } from './json.js';
import type { Expansion, Terminology } from './terminology.js';

/**
 * A `required` binding (https://hl7.org/fhir/R4/terminologies.html#required): the value must come
 * from the value set. Returns what is wrong, or undefined when the value conforms or the value set
 * cannot be expanded locally (then we cannot judge, and do not).
 */
export function bindingProblem(
  terms: Terminology,
  valueSet: string,
  value: unknown,
  type: string,
): string | undefined {
  const exp = terms.expand(valueSet);
  if (!exp) return undefined;
  switch (type) {
    case 'code':
    case 'string':
    case 'uri':
      // The system of a `code` is implied by the binding, so any system of the value set will do.
      if (typeof value !== 'string' || exp.codes.has(value)) return undefined;
      return `code '${value}' is not in the required value set ${valueSet}`;
    case 'Coding':
    case 'Quantity': {
      if (!isObject(value) || typeof value.code !== 'string') return undefined;
      if (codingIn(exp, value.system, value.code)) return undefined;
      return `${describeCoding(value.system, value.code)} is not in the required value set ${valueSet}`;
    }
    case 'CodeableConcept': {
      if (!isObject(value)) return undefined;
      const codings = Array.isArray(value.coding) ? value.coding.filter(isObject) : [];
      if (codings.length === 0) {
        return `no coding provided, but a code from the required value set ${valueSet} is needed`;
      }
      if (codings.some((c) => typeof c.code === 'string' && codingIn(exp, c.system, c.code))) return undefined;
      const shown = codings.map((c) => describeCoding(c.system, c.code)).join(', ');
      return `none of the codings (${shown}) is in the required value set ${valueSet}`;
    }
    default:
      return undefined;
  }
}

function codingIn(exp: Expansion, system: unknown, code: string): boolean {
  if (typeof system !== 'string') return false;
  return exp.bySystem.get(system)?.has(code) ?? false;
}

function describeCoding(system: unknown, code: unknown): string {
  return `code '${String(code)}'${typeof system === 'string' ? ` (system ${system})` : ' (no system)'}`;
}
