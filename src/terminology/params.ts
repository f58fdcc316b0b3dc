import type { CodeableConcept, Coding, Parameters, ParametersParameter, Resource } from 'fhir/r4.js';
import { errors } from '../fhir/errors.js';

/**
 * The input parameters of a terminology operation, from the query string (GET) or a Parameters
 * body (POST), read the same way (https://hl7.org/fhir/R4/operations.html#request).
 */
export class OperationInput {
  private constructor(private readonly params: ParametersParameter[]) {}

  static fromQuery(query: URLSearchParams): OperationInput {
    return new OperationInput([...query].filter(([k]) => !k.startsWith('_')).map(([name, value]) => ({ name, valueString: value })));
  }

  static fromBody(body: unknown): OperationInput {
    const p = body as Parameters | undefined;
    if (!p || typeof p !== 'object' || p.resourceType !== 'Parameters') throw errors.incorrect('The body of this operation must be a Parameters resource');
    return new OperationInput(Array.isArray(p.parameter) ? p.parameter : []);
  }

  private all(name: string): ParametersParameter[] {
    return this.params.filter((p) => p.name === name);
  }

  /** A primitive parameter as text (any value[x] that has one). */
  string(name: string): string | undefined {
    const p = this.all(name)[0];
    if (!p) return undefined;
    const value =
      p.valueString ?? p.valueCode ?? p.valueUri ?? p.valueUrl ?? p.valueCanonical ?? p.valueId ?? p.valueDateTime ?? p.valueDate ??
      (p.valueInteger !== undefined ? String(p.valueInteger) : undefined) ?? (p.valueBoolean !== undefined ? String(p.valueBoolean) : undefined);
    if (value === undefined) throw errors.incorrect(`Parameter '${name}' has no value of a primitive type`);
    return value;
  }

  strings(name: string): string[] {
    return this.all(name).flatMap((p) => {
      const v = p.valueString ?? p.valueCode ?? p.valueUri;
      return v === undefined ? [] : [v];
    });
  }

  boolean(name: string): boolean | undefined {
    const p = this.all(name)[0];
    if (!p) return undefined;
    if (p.valueBoolean !== undefined) return p.valueBoolean;
    const v = this.string(name);
    if (v === 'true') return true;
    if (v === 'false') return false;
    throw errors.incorrect(`Parameter '${name}' must be true or false`);
  }

  /** A non-negative integer parameter. */
  integer(name: string, max: number): number | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    if (!/^[0-9]{1,9}$/.test(v)) throw errors.incorrect(`Parameter '${name}' must be a non-negative integer`);
    return Math.min(Number(v), max);
  }

  coding(name: string): Coding | undefined {
    const p = this.all(name)[0];
    if (!p) return undefined;
    if (p.valueCoding) return p.valueCoding;
    // GET: system|code
    const v = p.valueString;
    if (v !== undefined) {
      const bar = v.indexOf('|');
      return bar < 0 ? { code: v } : { system: v.slice(0, bar) || undefined, code: v.slice(bar + 1) };
    }
    throw errors.incorrect(`Parameter '${name}' must be a Coding`);
  }

  codeableConcept(name: string): CodeableConcept | undefined {
    const p = this.all(name)[0];
    if (!p) return undefined;
    if (p.valueCodeableConcept) return p.valueCodeableConcept;
    throw errors.incorrect(`Parameter '${name}' must be a CodeableConcept (POST with a Parameters body)`);
  }

  resource(name: string): Resource | undefined {
    return this.all(name)[0]?.resource;
  }

  has(name: string): boolean {
    return this.all(name).length > 0;
  }
}

/** An output Parameters resource. */
export function parameters(list: Array<ParametersParameter | undefined | false>): Parameters {
  return { resourceType: 'Parameters', parameter: list.filter((p): p is ParametersParameter => !!p) };
}
