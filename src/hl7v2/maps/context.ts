import type { Identifier, Reference, Resource } from 'fhir/r4.js';
import { findConditional } from '../../interactions/create.js';
import type { InteractionDeps } from '../../interactions/types.js';
import type { StoreTransaction } from '../../storage/resource-store.js';
import { findByIdentifiers } from '../../storage/hl7v2-lookup.js';
import type { Hl7Message } from '../parse/message.js';
import type { MappingTables } from './tables.js';

/** Content that cannot be mapped (a required segment or field is missing or wrong): an AE. */
export class MappingError extends Error {
  constructor(
    message: string,
    /** HL7 table 0357: 101 required field missing, 102 data type error, 100 segment sequence error. */
    readonly code = '101',
  ) {
    super(message);
    this.name = 'MappingError';
  }
}

/** A resource the mapping wrote or found, for references and the Provenance. */
export interface Written {
  resourceType: string;
  id: string;
  versionId: string;
  /** False when the stored version already said the same (a reprocessed message). */
  changed: boolean;
}

/**
 * A critical result, announced after commit (Hl7Ingest.onCriticalResult): OBX-8 carries a flag
 * of conformance/hl7v2/tables.json criticalFlags (HH, LL, AA), or the value crosses a limit of
 * conformance/hl7v2/critical-limits.json. One event per Observation version written.
 */
export interface CriticalResult {
  /** `Observation/id/_history/v` */
  observation: string;
  patient: string;
  /** The ServiceRequest the result is based on, when one was matched. */
  serviceRequest?: string;
  /** Ordering provider (OBR-16 / ORC-12) as the message names them. */
  orderingProvider?: string;
  /** The critical flags: those of OBX-8, plus LL / HH when a catalog limit is crossed. */
  flags: string[];
  /** The catalog limit crossed, when one was (whether or not OBX-8 flagged the value). */
  criticalLimit?: { low?: number; high?: number; unit: string };
}

/** An identifier look-up a mapping will make, announced before it writes anything (`prefetch`). */
export interface Lookup {
  type: string;
  identifiers: Array<Identifier | undefined>;
}

/**
 * Everything one message's mapping needs; lives for one database transaction. Look-ups by
 * identifier found by `prefetch` or written by this mapping are remembered (`known`), so most
 * of them need no round trip and the writes stay queued until one set-based flush at commit.
 */
export class MappingContext {
  readonly written = new Map<string, Written>();
  readonly critical: CriticalResult[] = [];

  constructor(
    readonly deps: InteractionDeps,
    readonly tx: StoreTransaction,
    readonly tables: MappingTables,
    readonly message: Hl7Message,
    /** Id of the raw message row (hl7_message.id). */
    readonly messageId: string,
    /**
     * Identifier → ids already looked up or written in this transaction. Messages mapped in
     * one transaction (a batch) share it: one prefetch serves them all, and a resource one of
     * them creates is found by the next without a search.
     */
    private readonly known: Map<string, string[]> = new Map(),
    /** Called before each write: lets receipts waiting for the event loop run (see pacing.ts). */
    private readonly pace: () => Promise<void> = async () => undefined,
  ) {}

  /** A system under the configured base, for identifiers the mapping derives itself. */
  system(name: string): string {
    return `${this.tables.identifierSystemBase}${name}`;
  }

  private remember(w: Written): Written {
    const key = `${w.resourceType}/${w.id}`;
    const before = this.written.get(key);
    this.written.set(key, { ...w, changed: w.changed || (before?.changed ?? false) });
    return w;
  }

  private knownKey(type: string, identifier: Identifier): string {
    return `${type}|${identifier.system ?? ''}|${identifier.value ?? ''}`;
  }

  /**
   * Looks up, in a few statements, every identifier the message will ask about: the conditions
   * are locked together (in a fixed order, as conditional operations lock them one by one),
   * each type is searched once with the identifiers OR-ed, and the matches are read and locked.
   */
  async prefetch(wanted: readonly Lookup[]): Promise<void> {
    const byType = new Map<string, Identifier[]>();
    for (const { type, identifiers } of wanted) {
      const list = byType.get(type) ?? [];
      for (const id of identifiers) {
        if (!id?.value || this.known.has(this.knownKey(type, id))) continue;
        if (!list.some((l) => l.system === id.system && l.value === id.value)) list.push(id);
      }
      if (list.length) byType.set(type, list);
    }
    if (byType.size === 0) return;
    await this.tx.lockConditions([...byType].flatMap(([type, ids]) => ids.map((id) => `${type}?${identifierQuery(id)}`)));
    // Every type in one statement (not one search per type): round trips are most of a
    // batch's cost on a busy host.
    const found = await findByIdentifiers(
      await this.tx.executor(),
      [...byType].flatMap(([type, ids]) => ids.map((id) => ({ resourceType: type, system: id.system, value: id.value ?? '' }))),
    );
    for (const [type, ids] of byType) for (const id of ids) this.known.set(this.knownKey(type, id), []);
    if (found.length === 0) return;
    await this.tx.prefetchForUpdate(found);
    for (const { resourceType, id } of found) {
      const version = await this.tx.readForUpdate(resourceType, id);
      if (!version?.json) continue;
      const resource = JSON.parse(version.json) as Resource & { identifier?: Identifier[] };
      for (const identifier of resource.identifier ?? []) {
        const key = this.knownKey(resourceType, identifier);
        const ids = this.known.get(key);
        if (ids && !ids.includes(id)) ids.push(id);
      }
    }
  }

  /** True when a prefetch found nothing of `type` carrying `identifier` (and this transaction wrote none since). */
  absent(type: string, identifier: Identifier): boolean {
    return this.known.get(this.knownKey(type, identifier))?.length === 0;
  }

  /** Ids of resources of `type` carrying `identifier` (at most 2: more than one is ambiguous). */
  async find(type: string, identifier: Identifier): Promise<string[]> {
    const known = this.known.get(this.knownKey(type, identifier));
    if (known) return known.slice(0, 2);
    return findConditional(this.deps, this.tx, type, identifierQuery(identifier));
  }

  async readJson<T extends Resource>(type: string, id: string): Promise<T | undefined> {
    const version = await this.tx.read(type, id);
    return version?.json ? (JSON.parse(version.json) as T) : undefined;
  }

  /**
   * Conditional create-or-update by identifier: creates when nothing carries the identifier,
   * else writes `merge(stored)` as a new version, unless it equals the stored content (a
   * message processed again writes nothing). The condition is locked, so two messages about
   * the same thing decide one after the other.
   */
  async upsert<T extends Resource>(incoming: T, identifier: Identifier, merge: (stored: T, incoming: T) => T = (_s, i) => i): Promise<Written> {
    await this.pace();
    const type = incoming.resourceType;
    const ids = await this.find(type, identifier);
    if (ids.length > 1) throw new MappingError(`more than one ${type} carries identifier ${identifier.system}|${identifier.value}`, '207');
    if (ids.length === 0) {
      const change = await this.tx.create(incoming, 'POST');
      // Later look-ups in this message find it without a search (which would need a flush).
      for (const id of (incoming as Resource & { identifier?: Identifier[] }).identifier ?? []) {
        const key = this.knownKey(type, id);
        if (this.known.has(key) || id === identifier) this.known.set(key, [change.id]);
      }
      this.known.set(this.knownKey(type, identifier), [change.id]);
      return this.remember({ resourceType: type, id: change.id, versionId: change.versionId, changed: true });
    }
    const current = await this.tx.readForUpdate(type, ids[0]);
    if (!current?.json) throw new MappingError(`${type}/${ids[0]} vanished while being updated`, '207');
    const stored = JSON.parse(current.json) as T;
    const next = { ...merge(stored, incoming), id: current.id } as T;
    // Compared after the before-write hooks (which fill in what the server assigns, e.g. a
    // Specimen's accession number): the same message again makes no new version.
    const change = await this.tx.updateIfChanged(next, current, 'PUT');
    if (!change) return this.remember({ resourceType: type, id: current.id, versionId: current.versionId, changed: false });
    // Identifiers the update added (a merge) are known to lead here now.
    for (const id of (next as Resource & { identifier?: Identifier[] }).identifier ?? []) {
      const ids = this.known.get(this.knownKey(type, id));
      if (ids && !ids.includes(current.id)) ids.push(current.id);
    }
    return this.remember({ resourceType: type, id: change.id, versionId: change.versionId, changed: true });
  }

  /** Create or update a resource under an id of our own (Provenance, which has no identifier). */
  async put<T extends Resource>(resource: T & { id: string }): Promise<Written> {
    await this.pace();
    const current = await this.tx.readForUpdate(resource.resourceType, resource.id);
    const change = current && !current.deleted ? await this.tx.update(resource, current, 'PUT') : await this.tx.create(resource, 'PUT', resource.id, current);
    return { resourceType: change.resourceType, id: change.id, versionId: change.versionId, changed: true };
  }
}

export function reference(w: Written): Reference {
  return { reference: `${w.resourceType}/${w.id}` };
}

/** Search values escape `\ , $ |` (FHIR search §2.1.1.3); the query string is URL-encoded. */
function escapeSearch(value: string): string {
  return value.replace(/[\\,$|]/g, (c) => `\\${c}`);
}

function identifierToken(identifier: Identifier): string {
  return `${escapeSearch(identifier.system ?? '')}|${escapeSearch(identifier.value ?? '')}`;
}

export function identifierQuery(identifier: Identifier): string {
  return `identifier=${encodeURIComponent(identifierToken(identifier))}`;
}

