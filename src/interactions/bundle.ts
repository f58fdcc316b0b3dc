import type { BundleEntry } from 'fhir/r4.js';
import { sql } from 'kysely';
import { errors, FhirError } from '../fhir/errors.js';
import { newResourceId, type StoreTransaction } from '../storage/resource-store.js';
import {
  asEntryFhirError,
  entryError,
  errorEntry,
  ORDER,
  parseEntry,
  patchFromEntry,
  readEntry,
  responseEntry,
  type ParsedEntry,
  type ReturnPreference,
} from './bundle-entries.js';
import { rewriteAndCollect } from './bundle-references.js';
import { checkBundleShape, checkEntriesShape } from './bundle-shape.js';
import { findConditional } from './create.js';
import { conditionalRemoveIn, removeIn } from './delete.js';
import { patchIn } from './patch.js';
import type { InteractionDeps, InteractionResult } from './types.js';
import { conditionalUpdateIn, updateIn } from './update.js';
import { changeResult } from './versions.js';

export { BundleEntryError, entryError, type ParsedEntry, type ReturnPreference } from './bundle-entries.js';

/**
 * Write entries of a batch run together in one database transaction of at most this many
 * (one commit instead of one per entry); an entry's own error still only fails that entry.
 */
const BATCH_GROUP_SIZE = 500;

const isRead = (p: ParsedEntry) => p.method === 'GET' || p.method === 'HEAD';

/**
 * batch and transaction posted to the base URL (https://hl7.org/fhir/R4/http.html#transaction).
 * `denied`: batch entries the caller may not perform (by entry index, e.g. a 403 for a type
 * outside the token's scopes), answered with that error and never run; the other entries go on.
 */
export async function processBundle(deps: InteractionDeps, body: unknown, prefer: ReturnPreference, denied?: ReadonlyMap<number, FhirError>): Promise<InteractionResult> {
  const bundle = checkBundleShape(body);
  const entries = bundle.entry ?? [];
  if (bundle.type === 'batch') return processBatch(deps, entries, prefer, denied);
  // A transaction is all or nothing: its caller refuses it whole before this point.
  if (denied?.size) throw denied.values().next().value!;
  return processTransaction(deps, entries, prefer);
}

async function processBatch(deps: InteractionDeps, entries: BundleEntry[], prefer: ReturnPreference, denied?: ReadonlyMap<number, FhirError>): Promise<InteractionResult> {
  const isType = (t: string) => deps.validator.isResourceType(t);
  const out = new Array<BundleEntry>(entries.length);
  const writes: ParsedEntry[] = [];
  const reads: ParsedEntry[] = [];
  for (let index = 0; index < entries.length; index++) {
    const refusal = denied?.get(index);
    if (refusal) {
      out[index] = errorEntry(refusal);
      continue;
    }
    try {
      const entry = parseEntry(deps, entries[index], index, isType);
      (isRead(entry) ? reads : writes).push(entry);
    } catch (e) {
      out[index] = errorEntry(e);
    }
  }
  for (let start = 0; start < writes.length; start += BATCH_GROUP_SIZE) {
    const group = writes.slice(start, start + BATCH_GROUP_SIZE);
    const answered = await batchGroup(deps, group, prefer).catch(() => undefined);
    if (answered) {
      for (const [index, entry] of answered) out[index] = entry;
      continue;
    }
    // The group failed as a whole (a race, a database error): every entry on its own.
    for (const entry of group) {
      try {
        const result = await deps.store.transaction((tx) => batchEntryIn(deps, tx, cloneEntry(entry)));
        out[entry.index] = responseEntry(deps, result, prefer);
      } catch (e) {
        out[entry.index] = errorEntry(e);
      }
    }
  }
  // Batch entries have no interdependencies (R4 http.html#transaction): reads go after writes.
  for (const entry of reads) {
    try {
      out[entry.index] = responseEntry(deps, await readEntry(deps, entry), 'representation');
    } catch (e) {
      out[entry.index] = errorEntry(e);
    }
  }
  return { status: 200, body: { resourceType: 'Bundle', type: 'batch-response', entry: out } };
}

/** Thrown to abandon a batch group: an entry failed after it had written, so the group cannot commit. */
class GroupAbandoned extends Error {}

/**
 * Runs the write entries of a batch in ONE database transaction. An entry that fails with a
 * FHIR error before it wrote anything (validation, 412, 404: the usual failures) is answered
 * with its error and the others go on; anything else abandons the group (the caller then
 * runs each entry in a transaction of its own, as before grouping).
 */
async function batchGroup(deps: InteractionDeps, group: readonly ParsedEntry[], prefer: ReturnPreference): Promise<Map<number, BundleEntry>> {
  return deps.store.transaction(async (tx) => {
    const answered = new Map<number, BundleEntry>();
    await tx.lockConditions(conditionKeys(group));
    let failures = 0;
    for (const original of group) {
      const entry = cloneEntry(original);
      const written = tx.changes.length;
      try {
        answered.set(entry.index, responseEntry(deps, await batchEntryIn(deps, tx, entry, true), prefer));
      } catch (e) {
        if (!(e instanceof FhirError) || tx.changes.length !== written) throw new GroupAbandoned('entry failed after writing', { cause: e });
        answered.set(entry.index, errorEntry(e));
        failures++;
      }
    }
    // A failed statement would have aborted the database transaction, and COMMIT would then
    // silently roll back: make sure the failures were all decided before touching the database.
    if (failures > 0) await sql`SELECT 1`.execute(await tx.executor());
    return answered;
  });
}

async function batchEntryIn(deps: InteractionDeps, tx: StoreTransaction, entry: ParsedEntry, conditionsLocked = false): Promise<InteractionResult> {
  if (entry.resource) await resolveConditionalReferences(deps, tx, [entry]);
  const ids = await assignIdentities(deps, tx, [entry], conditionsLocked);
  return executeWrite(deps, tx, entry, ids);
}

/**
 * The working copy of an entry for one attempt: its `resource` is replaced (never changed in
 * place: rewriting is copy-on-write) as references are resolved, so a retried attempt
 * starts from the request.
 */
function cloneEntry(entry: ParsedEntry): ParsedEntry {
  return { ...entry };
}

/** Parses a transaction's entries and checks its fullUrls are unique. */
export function parseTransaction(deps: InteractionDeps, entries: readonly BundleEntry[]): ParsedEntry[] {
  const isType = (t: string) => deps.validator.isResourceType(t);
  const parsed = checkEntriesShape(entries).map((e, i) => parseEntry(deps, e, i, isType));
  const fullUrls = new Set<string>();
  for (const p of parsed) {
    if (!p.fullUrl) continue;
    if (fullUrls.has(p.fullUrl)) {
      throw errors.incorrect(`Bundle.entry[${p.index}]: fullUrl ${p.fullUrl.slice(0, 100)} appears twice`, [`Bundle.entry[${p.index}].fullUrl`]);
    }
    fullUrls.add(p.fullUrl);
  }
  return parsed;
}

async function processTransaction(deps: InteractionDeps, entries: BundleEntry[], prefer: ReturnPreference): Promise<InteractionResult> {
  const parsed = parseTransaction(deps, entries);
  const results = await deps.store.transaction((tx) => transactionIn(deps, tx, parsed));
  // Reads see the committed outcome of the transaction; they run after commit so they can
  // use the search engine's own connection.
  for (const entry of parsed.filter(isRead)) {
    try {
      results[entry.index] = await readEntry(deps, entry);
    } catch (e) {
      const err = asEntryFhirError(e, 'read failed');
      results[entry.index] = { status: err.status, body: err.toOutcome() };
    }
  }
  return {
    status: 200,
    body: {
      resourceType: 'Bundle',
      type: 'transaction-response',
      entry: parsed.map((p) => responseEntry(deps, results[p.index], isRead(p) ? 'representation' : prefer)),
    },
  };
}

/**
 * The writes of a transaction Bundle inside `tx` (shared with bulk import, which adds its own
 * bookkeeping to the same database transaction). Returns the result of each write entry by
 * entry index; read entries are left for the caller to run after commit. `parsed` is not
 * changed, so a retried attempt starts from the request again.
 *
 * Round trips: one for all conditional-create / conditional-update locks, one per such
 * condition, one per distinct conditional reference, one that locks and reads every resource
 * updated by id, then the single flush of all writes at commit.
 */
export async function transactionIn(deps: InteractionDeps, tx: StoreTransaction, parsed: readonly ParsedEntry[]): Promise<InteractionResult[]> {
  const results = new Array<InteractionResult>(parsed.length);
  const work = parsed.map(cloneEntry);
  await tx.lockConditions(conditionKeys(work));
  const ids = await assignIdentities(deps, tx, work, true);
  await resolveConditionalReferences(deps, tx, work, ids.conditional);
  const writes = work.filter((p) => !isRead(p)).sort((a, b) => ORDER[a.method] - ORDER[b.method] || a.index - b.index);
  const updated = writes
    .filter((p) => p.method === 'PUT')
    .map((p) => ({ resourceType: p.resourceType, id: p.id ?? ids.targets.get(p.index)?.id }))
    .filter((k): k is { resourceType: string; id: string } => k.id !== undefined);
  if (updated.length > 1) await tx.prefetchForUpdate(updated);
  for (const entry of writes) {
    try {
      results[entry.index] = await executeWrite(deps, tx, entry, ids);
    } catch (e) {
      throw entryError(entry.index, e);
    }
  }
  return results;
}

/** The conditions a set of entries decides on at identity time, as `findConditional` keys them. */
function conditionKeys(entries: readonly ParsedEntry[]): string[] {
  const keys: string[] = [];
  for (const e of entries) {
    const condition = e.method === 'POST' ? e.ifNoneExist : e.method === 'PUT' && !e.id ? e.query : undefined;
    const normalized = condition?.replace(/^\?/, '').trim();
    if (normalized) keys.push(`${e.resourceType}?${normalized}`);
  }
  return keys;
}

/** `findConditional` for a condition whose lock this transaction already holds. */
async function findLocked(deps: InteractionDeps, tx: StoreTransaction, resourceType: string, query: string): Promise<string[]> {
  const normalized = query.replace(/^\?/, '').trim();
  if (normalized === '') throw errors.incorrect('a conditional request needs search parameters');
  return deps.search.findIds(resourceType, normalized, { limit: 2, executor: await tx.executor() });
}

/** Where each write entry goes: a fresh id, an existing match, or its URL id. */
interface Identities {
  /** fullUrl → Type/id for rewriting references. */
  references: Map<string, string>;
  /** entry index → target id (new id for POST, matched id for conditional ones). */
  targets: Map<number, { id: string; existing: boolean }>;
  /** entry index → the conditional references (`Type?query`) its resource holds. */
  conditional: Map<number, Set<string>>;
}

async function assignIdentities(deps: InteractionDeps, tx: StoreTransaction, entries: ParsedEntry[], conditionsLocked = false): Promise<Identities> {
  const references = new Map<string, string>();
  const targets = new Map<number, { id: string; existing: boolean }>();
  const find = (type: string, query: string) => (conditionsLocked ? findLocked(deps, tx, type, query) : findConditional(deps, tx, type, query));
  for (const entry of entries) {
    try {
      if (entry.method === 'POST') {
        let target: { id: string; existing: boolean } = { id: newResourceId(), existing: false };
        if (entry.ifNoneExist) {
          const matches = await find(entry.resourceType, entry.ifNoneExist);
          if (matches.length > 1) throw errors.preconditionFailed(`ifNoneExist "${entry.ifNoneExist.slice(0, 200)}" matches ${matches.length} resources`);
          if (matches.length === 1) target = { id: matches[0], existing: true };
        }
        targets.set(entry.index, target);
        if (entry.fullUrl) references.set(entry.fullUrl, `${entry.resourceType}/${target.id}`);
      } else if (entry.method === 'PUT' && entry.id) {
        if (entry.fullUrl) references.set(entry.fullUrl, `${entry.resourceType}/${entry.id}`);
      } else if (entry.method === 'PUT' && entry.query) {
        const matches = await find(entry.resourceType, entry.query);
        if (matches.length > 1) throw errors.preconditionFailed(`conditional update "${entry.query.slice(0, 200)}" matches more than one ${entry.resourceType}`);
        const id = matches[0] ?? entry.resource?.id ?? newResourceId();
        targets.set(entry.index, { id, existing: matches.length === 1 });
        if (entry.fullUrl) references.set(entry.fullUrl, `${entry.resourceType}/${id}`);
      }
    } catch (e) {
      throw entryError(entry.index, e);
    }
  }
  // One walk per resource: rewrites fullUrl references and notes the conditional ones.
  const conditional = new Map<number, Set<string>>();
  for (const entry of entries) {
    if (!entry.resource) continue;
    const rewritten = rewriteAndCollect(entry.resource, references);
    entry.resource = rewritten.resource;
    if (rewritten.conditional.size > 0) conditional.set(entry.index, rewritten.conditional);
  }
  return { references, targets, conditional };
}

/**
 * `Patient?identifier=…` references resolve to the one match; none or several fail the entry.
 * Each distinct reference is looked up once per call. `known` gives the conditional references
 * of each entry when a walk already collected them.
 */
async function resolveConditionalReferences(deps: InteractionDeps, tx: StoreTransaction, entries: ParsedEntry[], known?: Map<number, Set<string>>): Promise<void> {
  const resolved = new Map<string, string>();
  for (const entry of entries) {
    if (!entry.resource) continue;
    const conditional = known ? known.get(entry.index) : rewriteAndCollect(entry.resource, new Map()).conditional;
    if (!conditional || conditional.size === 0) continue;
    for (const reference of conditional) {
      if (resolved.has(reference)) continue;
      const q = reference.indexOf('?');
      const type = reference.slice(0, q);
      if (!deps.validator.isResourceType(type)) throw entryError(entry.index, errors.incorrect(`conditional reference ${reference.slice(0, 100)} names no resource type`));
      const matches = await deps.search.findIds(type, reference.slice(q + 1), { limit: 2, executor: await tx.executor() });
      if (matches.length !== 1) {
        throw entryError(
          entry.index,
          errors.preconditionFailed(`conditional reference ${reference.slice(0, 200)} matches ${matches.length === 0 ? 'no' : 'more than one'} ${type}`),
        );
      }
      resolved.set(reference, `${type}/${matches[0]}`);
    }
    entry.resource = rewriteAndCollect(entry.resource, resolved).resource;
  }
}

async function executeWrite(deps: InteractionDeps, tx: StoreTransaction, entry: ParsedEntry, ids: Identities): Promise<InteractionResult> {
  switch (entry.method) {
    case 'POST': {
      const target = ids.targets.get(entry.index)!;
      if (target.existing) {
        const version = await tx.read(entry.resourceType, target.id);
        if (version) return { status: 200, version };
      }
      const change = await tx.create({ ...entry.resource!, id: target.id }, 'POST', target.id);
      return changeResult(change, 201, true);
    }
    case 'PUT': {
      if (entry.id) {
        if (entry.resource!.id !== undefined && entry.resource!.id !== entry.id) {
          throw errors.incorrect(`the resource id "${entry.resource!.id}" does not match the URL id "${entry.id}"`, ['id']);
        }
        return updateIn(tx, { ...entry.resource!, id: entry.id }, entry.ifMatch);
      }
      const target = ids.targets.get(entry.index);
      if (target) return updateIn(tx, { ...entry.resource!, id: target.id }, entry.ifMatch);
      return conditionalUpdateIn(deps, tx, entry.resource!, entry.query!, entry.ifMatch);
    }
    case 'PATCH': {
      const document = patchFromEntry(entry);
      if (entry.id) return patchIn(tx, entry.resourceType, entry.id, document, entry.ifMatch);
      const matches = await findConditional(deps, tx, entry.resourceType, entry.query!);
      if (matches.length !== 1) {
        throw matches.length === 0 ? errors.notFound(`no ${entry.resourceType} matches "${entry.query}"`) : errors.preconditionFailed(`conditional patch matches more than one ${entry.resourceType}`);
      }
      return patchIn(tx, entry.resourceType, matches[0], document, entry.ifMatch);
    }
    case 'DELETE':
      if (entry.id) {
        const current = await tx.read(entry.resourceType, entry.id);
        // In a Bundle, deleting what is not there is not an error (nothing to do).
        if (!current) return { status: 204 };
        return removeIn(tx, entry.resourceType, entry.id, entry.ifMatch);
      }
      return conditionalRemoveIn(deps, tx, entry.resourceType, entry.query!);
    default:
      throw errors.incorrect(`Bundle.entry[${entry.index}]: ${entry.method} is not a write`);
  }
}
