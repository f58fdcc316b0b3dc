import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Parameters, ParametersParameter, Resource } from 'fhir/r4.js';
import { FhirError } from '../errors.js';

/** Test helpers for the FHIRPath Patch tests (not used by production code). */

const examples = path.resolve(process.cwd(), '../shared/data/fhir-examples');

export function loadExample<T extends Resource>(file: string): T {
  return JSON.parse(readFileSync(path.join(examples, file), 'utf8')) as T;
}

type Part = ParametersParameter['part'] extends (infer P)[] | undefined ? P : never;

/** One `operation` parameter: type, path, then any further parts as given. */
export function operation(type: string, fhirPath: string, ...parts: Part[]): ParametersParameter {
  return {
    name: 'operation',
    part: [{ name: 'type', valueCode: type }, { name: 'path', valueString: fhirPath }, ...parts],
  };
}

export const name = (value: string): Part => ({ name: 'name', valueString: value });
export const index = (value: number): Part => ({ name: 'index', valueInteger: value });
export const source = (value: number): Part => ({ name: 'source', valueInteger: value });
export const destination = (value: number): Part => ({ name: 'destination', valueInteger: value });
/** A `value` part; `typed` holds one value[x] key (and optionally its `_value[x]`). */
export const value = (typed: Omit<Part, 'name'>): Part => ({ name: 'value', ...typed });

export function parameters(...operations: ParametersParameter[]): Parameters {
  return { resourceType: 'Parameters', parameter: operations };
}

export function failure(fn: () => unknown): FhirError {
  try {
    fn();
  } catch (e) {
    if (e instanceof FhirError) return e;
    throw new Error(`expected a FhirError, got ${String(e)}`);
  }
  throw new Error('expected the patch to fail');
}
