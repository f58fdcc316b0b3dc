import { readFileSync } from 'node:fs';
import type { CapabilityStatement, CapabilityStatementRestResource } from 'fhir/r4.js';

export interface CapabilityInputs {
  /** conformance/capability-statement-base.json: the static parts. */
  basePath: string;
  baseUrl: string;
  version: string;
  resourceTypes: string[];
  searchParams: (resourceType: string) => Array<{ name: string; type: string; definition?: string }>;
  /** Type-level and instance-level operations offered for every type. */
  operations: Array<{ name: string; definition: string }>;
  /** Operations offered on some types only (Patient $export, Group $export, $everything). */
  typeOperations?: Record<string, Array<{ name: string; definition: string }>>;
  /** Operations at the base URL (system $export). */
  systemOperations?: Array<{ name: string; definition: string }>;
  /** Types only the server writes (the audit trail): offered without create, update, patch, delete. */
  readOnlyTypes?: Record<string, string>;
  /** Documentation of a type's support (e.g. the Subscription channels really offered). */
  typeDocumentation?: Record<string, string>;
  /** Profiles of a type the server checks resources against (shipped, packs, stored). */
  supportedProfiles?: (resourceType: string) => string[];
}

const INTERACTIONS: CapabilityStatementRestResource['interaction'] = [
  'read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create', 'search-type',
].map((code) => ({ code: code as 'read' }));
const READ_INTERACTIONS = INTERACTIONS.filter((i) => !['update', 'patch', 'delete', 'create'].includes(i.code));

/**
 * The CapabilityStatement at /metadata, built from what the server really has: its resource
 * types, their search parameters and the operations registered (static parts from conformance/).
 */
export function buildCapabilityStatement(inputs: CapabilityInputs): CapabilityStatement {
  const base = JSON.parse(readFileSync(inputs.basePath, 'utf8')) as CapabilityStatement;
  const rest = base.rest?.[0] ?? { mode: 'server' };
  const writable = (type: string) => inputs.readOnlyTypes?.[type] === undefined;
  rest.resource = inputs.resourceTypes.map((type) => ({
    type,
    profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
    ...(inputs.supportedProfiles?.(type).length ? { supportedProfile: inputs.supportedProfiles(type) } : {}),
    ...(writable(type) ? {} : { documentation: inputs.readOnlyTypes![type] }),
    ...(inputs.typeDocumentation?.[type] !== undefined ? { documentation: inputs.typeDocumentation[type] } : {}),
    interaction: writable(type) ? INTERACTIONS : READ_INTERACTIONS,
    versioning: writable(type) ? 'versioned-update' : 'versioned',
    readHistory: true,
    ...(writable(type) ? { updateCreate: true, conditionalCreate: true } : {}),
    conditionalRead: 'full-support',
    ...(writable(type) ? { conditionalUpdate: true, conditionalDelete: 'single' as const } : {}),
    searchParam: inputs.searchParams(type).map((p) => ({ name: p.name, type: p.type as 'token', definition: p.definition, ...fullTextDocumentation(p.name) })),
    operation: [...inputs.operations, ...(inputs.typeOperations?.[type] ?? [])].map((o) => ({ name: o.name, definition: o.definition })),
  }));
  if (inputs.systemOperations?.length) {
    rest.operation = [...(rest.operation ?? []), ...inputs.systemOperations.map((o) => ({ name: o.name, definition: o.definition }))];
  }
  // Whole-system search (`GET [base]?…`, `POST [base]/_search`) takes the parameters every
  // resource has (those defined on Resource / DomainResource).
  if (!rest.interaction?.some((i) => i.code === 'search-system')) rest.interaction = [...(rest.interaction ?? []), { code: 'search-system' }];
  // (`_query` has no indexable expression: the search ignores it. `_content` and `_text` are
  // full-text searches on search_text, src/search/full-text.ts.)
  const unindexable = new Set(['_query']);
  rest.searchParam = inputs
    .searchParams('Resource')
    .filter((p) => !unindexable.has(p.name))
    .map((p) => ({ name: p.name, type: p.type as 'token', definition: p.definition, ...fullTextDocumentation(p.name) }));
  // `_filter` works on every search (src/search/filter-expression.ts); R4 has no SearchParameter for it.
  rest.searchParam.push({
    name: '_filter',
    type: 'special',
    documentation: 'FHIR filter expressions (search_filter.html): eq ne co sw ew gt lt ge le ap sa eb pr ss sb in ni re, and/or/not, parentheses, chained paths. Not supported: po, filters inside paths (x[...].y).',
  });
  // SMART on FHIR: where the authorization server is (as in /fhir/.well-known/smart-configuration).
  if (rest.security) {
    const auth = `${inputs.baseUrl}/auth`;
    rest.security.extension = [
      {
        url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
        extension: ['authorize', 'token', 'register', 'revoke', 'introspect'].map((name) => ({ url: name, valueUri: `${auth}/${name}` })),
      },
    ];
  }
  return {
    ...base,
    url: `${inputs.baseUrl}/fhir/metadata`,
    date: new Date().toISOString(),
    software: { ...base.software, name: base.software?.name ?? 'fhir-server', version: inputs.version },
    implementation: { description: base.implementation?.description ?? '', url: `${inputs.baseUrl}/fhir` },
    rest: [rest],
  };
}

/** How `_content` / `_text` read their value (src/search/full-text.ts). */
function fullTextDocumentation(name: string): { documentation?: string } {
  if (name !== '_content' && name !== '_text') return {};
  return {
    documentation: `Full-text search (PostgreSQL, stemmed with the server's text search language) on ${name === '_text' ? 'the narrative' : 'all text of the resource, text attachments and PDF attachments included'}: words side by side must all occur (AND), OR between alternatives, "quoted phrases", word* prefixes, NOT or -word to exclude, parentheses; comma-separated values are ORed. _sort=_score orders by relevance (ts_rank).`,
  };
}

type TypeOperations = Record<string, ReadonlyArray<{ name: string; definition: string }>>;

/**
 * The operations of every feature, per type, in one map: features declaring operations on the
 * same type (Patient: bulk export, $match, billing; Encounter: $everything, $sign) add up instead
 * of the last one replacing the others. A name declared twice for a type is kept once.
 */
export function mergeTypeOperations(...sources: ReadonlyArray<Partial<TypeOperations>>): Record<string, Array<{ name: string; definition: string }>> {
  const merged: Record<string, Array<{ name: string; definition: string }>> = {};
  for (const source of sources) {
    for (const [type, operations] of Object.entries(source)) {
      const list = (merged[type] ??= []);
      for (const op of operations ?? []) if (!list.some((o) => o.name === op.name)) list.push({ name: op.name, definition: op.definition });
    }
  }
  return merged;
}
