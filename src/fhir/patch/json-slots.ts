import type { JsonObject } from './patch-errors.js';

/**
 * Mutations of one element inside its containing JSON object. In FHIR JSON a primitive's id and
 * extensions live beside it under `_name` (for lists, in a parallel array aligned by index, with
 * `null` fillers), so every change to `name` must keep `_name` in step.
 */

/** A value to store: the JSON value plus, for primitives, its `_name` companion (if any). */
export interface SlotValue {
  value: unknown;
  extras?: JsonObject | undefined;
}

function shadowKey(key: string): string {
  return `_${key}`;
}

function arrayAt(container: JsonObject, key: string): unknown[] | undefined {
  const value = container[key];
  return Array.isArray(value) ? value : undefined;
}

/** Number of entries in the list stored under `key` (either array may be the longer one). */
export function listLength(container: JsonObject, key: string): number {
  return Math.max(arrayAt(container, key)?.length ?? 0, arrayAt(container, shadowKey(key))?.length ?? 0);
}

export function hasElement(container: JsonObject, key: string): boolean {
  return Object.hasOwn(container, key) || Object.hasOwn(container, shadowKey(key));
}

function padded(list: unknown[] | undefined, length: number): unknown[] {
  const out = list ?? [];
  while (out.length < length) out.push(null);
  return out;
}

/** Drops arrays that became empty and `_name` arrays that carry nothing but fillers. */
function tidyList(container: JsonObject, key: string): void {
  const extras = arrayAt(container, shadowKey(key));
  if (extras !== undefined && extras.every((e) => e === null)) delete container[shadowKey(key)];
  const values = arrayAt(container, key);
  const hasExtras = arrayAt(container, shadowKey(key)) !== undefined;
  // With `_name` present, nulls in `name` are placeholders for extension-only items; without it
  // they carry nothing.
  if (values !== undefined && (values.length === 0 || (!hasExtras && values.every((v) => v === null)))) {
    delete container[key];
  }
}

function withList(container: JsonObject, key: string, mutate: (values: unknown[], extras: unknown[] | undefined) => void): void {
  const length = listLength(container, key);
  const values = padded(arrayAt(container, key), length);
  container[key] = values;
  let extras = arrayAt(container, shadowKey(key));
  if (extras !== undefined) {
    extras = padded(extras, length);
    container[shadowKey(key)] = extras;
  }
  mutate(values, extras);
  tidyList(container, key);
}

export function insertInList(container: JsonObject, key: string, index: number, item: SlotValue): void {
  withList(container, key, (values, extras) => {
    values.splice(index, 0, item.value ?? null);
    if (extras !== undefined) {
      extras.splice(index, 0, item.extras ?? null);
    } else if (item.extras !== undefined) {
      const created = padded(undefined, values.length);
      created[index] = item.extras;
      container[shadowKey(key)] = created;
    }
  });
}

export function replaceInList(container: JsonObject, key: string, index: number, item: SlotValue): void {
  withList(container, key, (values, extras) => {
    values[index] = item.value ?? null;
    if (extras !== undefined) {
      extras[index] = item.extras ?? null;
    } else if (item.extras !== undefined) {
      const created = padded(undefined, values.length);
      created[index] = item.extras;
      container[shadowKey(key)] = created;
    }
  });
}

export function removeFromList(container: JsonObject, key: string, index: number): void {
  withList(container, key, (values, extras) => {
    values.splice(index, 1);
    extras?.splice(index, 1);
  });
}

export function moveInList(container: JsonObject, key: string, source: number, destination: number): void {
  withList(container, key, (values, extras) => {
    values.splice(destination, 0, ...values.splice(source, 1));
    extras?.splice(destination, 0, ...extras.splice(source, 1));
  });
}

/** Sets a single (non-list) element, keeping its position in the object when it already exists. */
export function setSingle(container: JsonObject, key: string, item: SlotValue): void {
  if (item.value === undefined || item.value === null) delete container[key];
  else container[key] = item.value;
  if (item.extras !== undefined) container[shadowKey(key)] = item.extras;
  else delete container[shadowKey(key)];
}

export function removeSingle(container: JsonObject, key: string): void {
  delete container[key];
  delete container[shadowKey(key)];
}
