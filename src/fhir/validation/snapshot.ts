import type { ElementDefinition, StructureDefinition } from 'fhir/r4.js';
import { r4Definitions } from './definitions.js';

/**
 * A profile's `snapshot` built from its `differential` and the R4 base definition: what
 * `npm run profiles` writes into profiles/, and what the server builds for a StructureDefinition
 * stored without a snapshot (src/fhir/validation/stored-profiles.ts). It covers constraining
 * elements of the base resource and slicing a repeating element of a complex type (the slice
 * gets the datatype's elements, then the differential's constraints on them); anything else is
 * refused (thrown) rather than turned into a wrong snapshot.
 */

function baseElements(url: string): ElementDefinition[] {
  const sd = r4Definitions().structureDefinition(url);
  if (!sd?.snapshot?.element.length) throw new Error(`no R4 definition with a snapshot at ${url}`);
  return structuredClone(sd.snapshot.element);
}

/** Index just after `id` and everything below it (children, slices and their children). */
function endOf(elements: ElementDefinition[], id: string): number {
  let at = elements.findIndex((e) => e.id === id);
  if (at < 0) throw new Error(`no element ${id} to add after`);
  while (at + 1 < elements.length && /^[.:]/.test((elements[at + 1]!.id ?? '').slice(id.length)) && elements[at + 1]!.id!.startsWith(id)) at++;
  return at + 1;
}

/** The snapshot of a constraint on an R4 resource: base snapshot + differential. */
export function snapshotOf(profile: StructureDefinition): ElementDefinition[] {
  if (profile.derivation !== 'constraint' || !profile.baseDefinition) throw new Error(`${profile.url}: only constraints on a base definition are supported`);
  const elements = baseElements(profile.baseDefinition);
  for (const diff of profile.differential?.element ?? []) {
    const id = diff.id ?? diff.path;
    const existing = elements.findIndex((e) => e.id === id);
    if (existing >= 0) {
      const base = elements[existing]!;
      const merged: ElementDefinition = { ...base, ...structuredClone(diff) };
      // Invariants add to the base's; every other property the differential states replaces it.
      if (base.constraint && diff.constraint) merged.constraint = [...base.constraint, ...structuredClone(diff.constraint)];
      elements[existing] = merged;
      continue;
    }
    const dot = id.lastIndexOf('.');
    const parentId = id.slice(0, dot);
    const segment = id.slice(dot + 1);
    const colon = segment.indexOf(':');
    if (colon >= 0) {
      // A new slice: the unsliced element's definition (without its slicing), then the datatype's elements.
      const unslicedId = `${parentId}.${segment.slice(0, colon)}`;
      const unsliced = elements.find((e) => e.id === unslicedId);
      const type = unsliced?.type?.length === 1 ? unsliced.type[0]!.code : undefined;
      if (!unsliced || !type) throw new Error(`${profile.url}: ${id} slices ${unslicedId}, which is not a single-type element of the base`);
      const { slicing: _slicing, ...template } = structuredClone(unsliced);
      const slice: ElementDefinition = { ...template, ...structuredClone(diff), id, path: unsliced.path, sliceName: segment.slice(colon + 1) };
      const children = baseElements(`http://hl7.org/fhir/StructureDefinition/${type}`)
        .slice(1)
        .map((e) => ({ ...e, id: `${id}${e.id!.slice(type.length)}`, path: `${unsliced.path}${e.path.slice(type.length)}` }));
      elements.splice(endOf(elements, unslicedId), 0, slice, ...children);
      continue;
    }
    throw new Error(`${profile.url}: ${id} is neither an element of the base nor of a slice it adds`);
  }
  return elements;
}
