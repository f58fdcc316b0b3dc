import type { ElementDefinition, FhirResource, StructureDefinition } from 'fhir/r4.js';
import { loadR4Bundle } from '../definitions/load.js';

/**
 * Per-type element tables compiled from the official R4 StructureDefinitions, answering "which
 * JSON keys may appear here, which are summary/mandatory, and how are their children described".
 * `_summary`/`_elements` run on every read and search hit, so a table is compiled once per type
 * (lazily, on first use) and then only looked up. The tables are derived from immutable
 * definition data, which the conventions allow caching per process.
 */

/** How the children of an element's value are described. */
export type ChildrenRef =
  | { kind: 'datatype'; type: string }
  | { kind: 'inline'; definition: string; path: string };

export interface ElementEntry {
  /** JSON key, choice suffix included (`deceasedBoolean`). */
  key: string;
  /** Element name as defined, without `[x]` (`deceased`). */
  name: string;
  summary: boolean;
  mandatory: boolean;
  modifier: boolean;
  primitive: boolean;
  /** Undefined for primitives and resources, whose values are kept as they are. */
  children: ChildrenRef | undefined;
  /** Repeats in the base definition: an array in JSON, repeated elements in XML. */
  array: boolean;
  /** The type code (`boolean`, `decimal`, `Quantity`, `Resource`, a System type's URL, …); undefined for content references. */
  type: string | undefined;
}

export interface ElementTable {
  byKey: ReadonlyMap<string, ElementEntry>;
  /** Entries by element name; a choice element has one entry per allowed type. */
  byName: ReadonlyMap<string, readonly ElementEntry[]>;
  /** False for types such as Extension or Narrative whose definitions mark no child summary. */
  hasSummaryChildren: boolean;
}

const SYSTEM_TYPE_PREFIX = 'http://hl7.org/fhirpath/System.';

function isPrimitiveCode(code: string): boolean {
  return code.startsWith(SYSTEM_TYPE_PREFIX) || /^[a-z]/.test(code);
}

function upperFirst(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function childrenOf(definition: string, element: ElementDefinition, code: string | undefined): ChildrenRef | undefined {
  if (element.contentReference !== undefined) {
    // R4 content references point into the same definition: `#Questionnaire.item`.
    return { kind: 'inline', definition, path: element.contentReference.slice(element.contentReference.indexOf('#') + 1) };
  }
  if (code === undefined || isPrimitiveCode(code) || code === 'Resource') return undefined;
  if (code === 'BackboneElement' || code === 'Element') return { kind: 'inline', definition, path: element.path };
  return { kind: 'datatype', type: code };
}

function entriesOf(definition: string, element: ElementDefinition): ElementEntry[] {
  const name = element.path.slice(element.path.lastIndexOf('.') + 1);
  const max = element.base?.max ?? element.max ?? '1';
  const common = {
    summary: element.isSummary === true,
    mandatory: (element.min ?? 0) > 0,
    modifier: element.isModifier === true,
    array: max !== '0' && max !== '1',
  };
  const codes = (element.type ?? []).map((t) => t.code);
  if (name.endsWith('[x]')) {
    const base = name.slice(0, -3);
    return codes.map((code) => ({
      ...common,
      key: base + upperFirst(code),
      name: base,
      primitive: isPrimitiveCode(code),
      children: childrenOf(definition, element, code),
      type: code,
    }));
  }
  const code = codes[0];
  return [
    {
      ...common,
      key: name,
      name,
      primitive: code !== undefined && isPrimitiveCode(code) && element.contentReference === undefined,
      children: childrenOf(definition, element, code),
      type: element.contentReference === undefined ? code : undefined,
    },
  ];
}

function buildTable(entries: ElementEntry[]): ElementTable {
  const byKey = new Map<string, ElementEntry>();
  const byName = new Map<string, ElementEntry[]>();
  for (const entry of entries) {
    byKey.set(entry.key, entry);
    const list = byName.get(entry.name) ?? [];
    list.push(entry);
    byName.set(entry.name, list);
  }
  // id/extension are inherited from Element and never summary; a type marking nothing else as
  // summary (Extension, Narrative) is kept whole rather than emptied.
  return { byKey, byName, hasSummaryChildren: entries.some((e) => e.summary) };
}

/** Compiles every element level of one definition; cheap (a few hundred elements at most). */
function compileDefinition(sd: StructureDefinition): Map<string, ElementTable> {
  const grouped = new Map<string, ElementEntry[]>();
  for (const element of sd.snapshot?.element ?? []) {
    const dot = element.path.lastIndexOf('.');
    if (dot < 0 || element.sliceName !== undefined) continue;
    const parent = element.path.slice(0, dot);
    const list = grouped.get(parent) ?? [];
    list.push(...entriesOf(sd.id ?? sd.type, element));
    grouped.set(parent, list);
  }
  const tables = new Map<string, ElementTable>();
  for (const [path, entries] of grouped) tables.set(path, buildTable(entries));
  return tables;
}

let definitions: Map<string, StructureDefinition> | undefined;
const compiled = new Map<string, Map<string, ElementTable>>();

function definitionsById(): Map<string, StructureDefinition> {
  if (definitions === undefined) {
    const byId = new Map<string, StructureDefinition>();
    for (const file of ['profiles-types.json', 'profiles-resources.json']) {
      for (const entry of loadR4Bundle(file).entry ?? []) {
        const resource: FhirResource | undefined = entry.resource;
        if (resource?.resourceType === 'StructureDefinition' && resource.id !== undefined && resource.kind !== 'logical') {
          byId.set(resource.id, resource);
        }
      }
    }
    definitions = byId;
  }
  return definitions;
}

function tablesOf(definition: string): Map<string, ElementTable> | undefined {
  let tables = compiled.get(definition);
  if (tables === undefined) {
    const sd = definitionsById().get(definition);
    if (sd === undefined) return undefined;
    tables = compileDefinition(sd);
    compiled.set(definition, tables);
  }
  return tables;
}

/** Whether the R4 definitions define a resource of this name (`Patient`, not `HumanName` or `Foo`). */
export function isResourceType(name: string): boolean {
  const sd = definitionsById().get(name);
  return sd?.kind === 'resource' && sd.derivation !== 'constraint' && name !== 'Resource' && name !== 'DomainResource';
}

/** Top-level table of a resource type; unknown types fall back to the base Resource. */
export function resourceTable(resourceType: string): ElementTable {
  const own = definitionsById().get(resourceType)?.kind === 'resource' ? tablesOf(resourceType)?.get(resourceType) : undefined;
  return own ?? tablesOf('Resource')!.get('Resource')!;
}

/** Table describing the children of an element's value, if the definitions describe them. */
export function childTable(ref: ChildrenRef): ElementTable | undefined {
  return ref.kind === 'datatype' ? tablesOf(ref.type)?.get(ref.type) : tablesOf(ref.definition)?.get(ref.path);
}
