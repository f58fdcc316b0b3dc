import type { StructureDefinition } from 'fhir/r4.js';
import type { ResourceStore } from '../../storage/resource-store.js';
import type { ResourceChange } from '../../storage/types.js';
import type { SearchService } from '../../search/search-service.js';
import type { ResourceValidator } from './index.js';
import { snapshotOf } from './snapshot.js';
import { pollEvery } from '../../jobs/poll.js';

export interface StoredProfilesDeps {
  store: Pick<ResourceStore, 'onBeforeWrite' | 'onAfterCommit' | 'read' | 'history'>;
  search: Pick<SearchService, 'findIds'>;
  validator: ResourceValidator;
  /** How often other processes' StructureDefinition writes are looked for (0: never; the embedded database has one process). */
  pollMs: number;
  log: (message: string) => void;
}

export interface StoredProfiles {
  close(): void;
}

/** Stored StructureDefinitions read at start-up, at most this many (each is compiled on first use). */
const STARTUP_LIMIT = 5_000;
/** Versions written this long before the last poll are read again (a transaction commits after it stamps its versions). */
const POLL_OVERLAP_MS = 60_000;

/** A profile with its snapshot (built from the differential when it came without one), or why none can be built. */
function withSnapshot(sd: StructureDefinition): StructureDefinition | string {
  if (sd.snapshot?.element?.length) return sd;
  try {
    return { ...sd, snapshot: { element: snapshotOf(sd) } };
  } catch (e) {
    return `it has no snapshot and the server cannot build one from its differential (${e instanceof Error ? e.message : String(e)}); send it with a snapshot`;
  }
}

/**
 * The profile a stored StructureDefinition makes, or why it makes none; undefined for the ones
 * that are no profile at all (base definitions, logical models, specializations).
 */
function profileOf(validator: ResourceValidator, sd: StructureDefinition): { profile: StructureDefinition } | { why: string; expression: string } | undefined {
  if (sd.derivation !== 'constraint' || sd.kind === 'logical') return undefined;
  if (validator.isShippedDefinition(sd.url)) {
    return { why: `${sd.url} is a definition the server ships (the R4 specification, profiles/ or a profile pack), which a stored one does not replace; a profile of your own needs a url of its own`, expression: 'StructureDefinition.url' };
  }
  const profile = withSnapshot(sd);
  if (typeof profile === 'string') return { why: profile, expression: 'StructureDefinition.snapshot' };
  const problem = validator.profileProblem(profile);
  return problem ? { why: problem, expression: 'StructureDefinition' } : { profile };
}

/**
 * Profiles from StructureDefinitions written through the API (or an import): a constraint
 * StructureDefinition becomes a profile the validator checks resources claiming it against
 * (`meta.profile`, `$validate?profile=`) once its write commits, with the invariants it adds;
 * deleting it takes the profile away.
 *
 * A StructureDefinition the server cannot use as a profile is still stored (it is a valid
 * resource, and clients store definitions for other uses), with a warning saying why (seen with
 * `Prefer: return=OperationOutcome`), and resources claiming it get the unknown-profile warning
 * (an error under FHIR_STRICT_PROFILES): without a snapshot and with a differential the server's
 * generator does not cover (src/fhir/validation/snapshot.ts), an invariant `fhirpath` cannot
 * compile, a type that is not R4's, or the url of a definition the server ships (the R4
 * specification's, profiles/, switched-on packs), which a stored one does not replace.
 *
 * Other server processes on the same database learn of a change within `pollMs`; every process
 * reads the stored ones at start-up.
 */
export async function storedProfiles(deps: StoredProfilesDeps): Promise<StoredProfiles> {
  const { validator } = deps;
  /** StructureDefinition id → the url it registered (an update may change the url). */
  const registered = new Map<string, string>();
  /** StructureDefinition id → the version applied last (the poll skips what this process applied at its commit). */
  const applied = new Map<string, string>();

  const unregister = (id: string): void => {
    const url = registered.get(id);
    if (url === undefined) return;
    registered.delete(id);
    // Another stored StructureDefinition may claim the same url: it stays registered.
    if (![...registered.values()].includes(url)) validator.removeProfile(url);
  };

  const apply = (id: string, sd: StructureDefinition | undefined): void => {
    const made = sd ? profileOf(validator, sd) : undefined;
    const profile = made && 'profile' in made ? made.profile : undefined;
    if (registered.get(id) !== profile?.url) unregister(id);
    if (!profile) return;
    validator.addProfile(profile);
    registered.set(id, profile.url);
  };

  deps.store.onBeforeWrite((_tx, change) => {
    const sd = change.resource as StructureDefinition | undefined;
    if (sd?.resourceType !== 'StructureDefinition') return;
    const made = profileOf(validator, sd);
    if (made && 'why' in made) (change.issues ??= []).push({ severity: 'warning', code: 'not-supported', diagnostics: `stored, but not used as a profile: ${made.why}`, expression: [made.expression] });
  });
  deps.store.onAfterCommit((changes: readonly ResourceChange[]) => {
    for (const c of changes) {
      if (c.resourceType !== 'StructureDefinition') continue;
      applied.set(c.id, c.versionId);
      apply(c.id, c.resource as StructureDefinition | undefined);
    }
  });

  // Profiles stored before this process started.
  const ids = await deps.search.findIds('StructureDefinition', 'derivation=constraint', { limit: STARTUP_LIMIT });
  for (const id of ids) {
    const stored = await deps.store.read('StructureDefinition', id);
    if (!stored?.json) continue;
    applied.set(id, stored.versionId);
    apply(id, JSON.parse(stored.json) as StructureDefinition);
  }

  // Other processes' writes (and deletes): the type's history since the last look.
  let since = new Date(Date.now() - POLL_OVERLAP_MS).toISOString();
  const poll = async () => {
    const from = since;
    since = new Date(Date.now() - POLL_OVERLAP_MS).toISOString();
    const versions = await deps.store.history({ resourceType: 'StructureDefinition', since: from, count: 1000 });
    // Newest first: the first version met per id is its current one.
    const latest = new Map<string, (typeof versions)[number]>();
    for (const v of versions) if (!latest.has(v.id)) latest.set(v.id, v);
    for (const [id, v] of latest) {
      if (applied.get(id) === v.versionId) continue;
      applied.set(id, v.versionId);
      apply(id, v.deleted || !v.json ? undefined : (JSON.parse(v.json) as StructureDefinition));
    }
  };
  const stopPolling = pollEvery(deps.pollMs, poll, (e) => deps.log(`looking for new profiles failed: ${e instanceof Error ? e.message : String(e)}`));

  return {
    close: stopPolling,
  };
}
