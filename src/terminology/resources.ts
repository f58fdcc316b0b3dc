import type { CodeSystem, CodeSystemConcept, ConceptMap, ValueSet, ValueSetComposeInclude } from 'fhir/r4.js';
import type {
  CodeSystemData,
  ConceptDesignation,
  ConceptMapRow,
  ConceptProperty,
  ConceptRow,
  MapElementRow,
  TermSource,
  ValueSetRow,
} from '../storage/terminology-store.js';

/** Canonical URL without `|version`. */
export function stripVersion(url: string): string {
  const bar = url.indexOf('|');
  return bar < 0 ? url : url.slice(0, bar);
}

type PropertyValue = NonNullable<CodeSystemConcept['property']>[number];

function propertyOf(p: PropertyValue): ConceptProperty | undefined {
  if (p.valueCode !== undefined) return { code: p.code, value: p.valueCode, type: 'code' };
  if (p.valueCoding !== undefined) return { code: p.code, value: p.valueCoding.code ?? '', type: 'Coding' };
  if (p.valueString !== undefined) return { code: p.code, value: p.valueString, type: 'string' };
  if (p.valueInteger !== undefined) return { code: p.code, value: p.valueInteger, type: 'integer' };
  if (p.valueBoolean !== undefined) return { code: p.code, value: p.valueBoolean, type: 'boolean' };
  if (p.valueDateTime !== undefined) return { code: p.code, value: p.valueDateTime, type: 'dateTime' };
  if (p.valueDecimal !== undefined) return { code: p.code, value: p.valueDecimal, type: 'decimal' };
  return undefined;
}

/** Inactive per the standard concept properties (`status` retired / inactive, `inactive` true). */
function isActive(props: readonly ConceptProperty[]): boolean {
  for (const p of props) {
    if (p.code === 'status' && (p.value === 'retired' || p.value === 'inactive')) return false;
    if (p.code === 'inactive' && p.value === true) return false;
  }
  return true;
}

/**
 * A CodeSystem as rows: its concepts flattened, and its hierarchy as parent edges from nesting
 * and from the `parent` / `child` / `subsumedBy` properties. Undefined for a CodeSystem that
 * defines no code system of its own (no url, or a supplement).
 */
export function codeSystemData(cs: CodeSystem, source: TermSource, resourceId?: string): CodeSystemData | undefined {
  if (!cs.url || cs.content === 'supplement') return undefined;
  const concepts: ConceptRow[] = [];
  const edges: Array<[string, string]> = [];
  const seen = new Set<string>();
  const walk = (list: readonly CodeSystemConcept[], parent: string | undefined) => {
    for (const c of list) {
      if (!c.code) continue;
      if (parent !== undefined) edges.push([parent, c.code]);
      const properties = (c.property ?? []).map(propertyOf).filter((p): p is ConceptProperty => p !== undefined);
      for (const p of properties) {
        if ((p.code === 'parent' || p.code === 'subsumedBy') && typeof p.value === 'string') edges.push([p.value, c.code]);
        if (p.code === 'child' && typeof p.value === 'string') edges.push([c.code, p.value]);
      }
      if (!seen.has(c.code)) {
        seen.add(c.code);
        const designations: ConceptDesignation[] = (c.designation ?? []).flatMap((d) =>
          d.value ? [{ value: d.value, ...(d.language ? { language: d.language } : {}), ...(d.use ? { use: { system: d.use.system, code: d.use.code, display: d.use.display } } : {}) }] : [],
        );
        concepts.push({
          code: c.code,
          ...(c.display !== undefined ? { display: c.display } : {}),
          ...(c.definition !== undefined ? { definition: c.definition } : {}),
          active: isActive(properties),
          ...(properties.length ? { properties } : {}),
          ...(designations.length ? { designations } : {}),
        });
      }
      if (c.concept?.length) walk(c.concept, c.code);
    }
  };
  walk(cs.concept ?? [], undefined);
  // Edges to codes the system does not define are dropped (they would make closure rows of nothing).
  const known = edges.filter(([p, c]) => seen.has(p) && seen.has(c));
  return {
    row: {
      url: cs.url,
      ...(cs.version ? { version: cs.version } : {}),
      ...(cs.name ? { name: cs.name } : {}),
      ...(cs.title ? { title: cs.title } : {}),
      ...(cs.status ? { status: cs.status } : {}),
      source,
      ...(resourceId ? { resourceId } : {}),
      ...(cs.content ? { content: cs.content } : {}),
      ...(cs.hierarchyMeaning ? { hierarchyMeaning: cs.hierarchyMeaning } : {}),
      ...(cs.caseSensitive !== undefined ? { caseSensitive: cs.caseSensitive } : {}),
      ...(cs.property?.length ? { propertyDefs: cs.property } : {}),
    },
    concepts,
    edges: known,
  };
}

export function valueSetRow(vs: ValueSet, source: TermSource, resourceId?: string): ValueSetRow | undefined {
  if (!vs.url) return undefined;
  const parts: ValueSetComposeInclude[] = [...(vs.compose?.include ?? []), ...(vs.compose?.exclude ?? [])];
  const systems = [...new Set(parts.flatMap((p) => (p.system ? [p.system] : [])))];
  const imports = [...new Set(parts.flatMap((p) => (p.valueSet ?? []).map(stripVersion)))];
  return {
    url: vs.url,
    ...(vs.version ? { version: vs.version } : {}),
    ...(vs.name ? { name: vs.name } : {}),
    ...(vs.title ? { title: vs.title } : {}),
    ...(vs.status ? { status: vs.status } : {}),
    source,
    ...(resourceId ? { resourceId } : {}),
    ...(vs.compose ? { compose: vs.compose } : {}),
    // A value set shipped expanded (no compose) keeps its listed codes.
    ...(!vs.compose && vs.expansion?.contains ? { expansion: vs.expansion.contains } : {}),
    systems,
    imports,
  };
}

export function conceptMapRows(cm: ConceptMap, source: TermSource, resourceId?: string): { row: ConceptMapRow; elements: MapElementRow[] } | undefined {
  if (!cm.url) return undefined;
  const elements: MapElementRow[] = [];
  for (const g of cm.group ?? []) {
    if (!g.source) continue;
    for (const e of g.element ?? []) {
      if (!e.code) continue;
      for (const t of e.target ?? []) {
        elements.push({
          sourceSystem: g.source,
          sourceCode: e.code,
          ...(g.target ? { targetSystem: g.target } : {}),
          ...(t.code ? { targetCode: t.code } : {}),
          ...(t.display ? { targetDisplay: t.display } : {}),
          equivalence: t.equivalence,
          ...(t.comment ? { comment: t.comment } : {}),
        });
      }
    }
  }
  const sourceScope = cm.sourceUri ?? cm.sourceCanonical;
  const targetScope = cm.targetUri ?? cm.targetCanonical;
  return {
    row: {
      url: cm.url,
      ...(cm.version ? { version: cm.version } : {}),
      ...(cm.name ? { name: cm.name } : {}),
      source,
      ...(resourceId ? { resourceId } : {}),
      ...(sourceScope ? { sourceScope } : {}),
      ...(targetScope ? { targetScope } : {}),
    },
    elements,
  };
}
