import type { Coding, Meta, Parameters, Resource } from 'fhir/r4.js';
import { errors, FhirError } from '../fhir/errors.js';
import type { StoreTransaction } from '../storage/resource-store.js';
import type { StoredVersion } from '../storage/types.js';
import type { InteractionDeps, InteractionResult } from './types.js';
import { changeResult, checkId, parseStored } from './versions.js';

/**
 * The meta operations of R4 (Resource-meta, Resource-meta-add, Resource-meta-delete):
 * https://hl7.org/fhir/R4/resource-operation-meta.html and the two after it.
 *
 * Profiles, tags and security labels are sets: a tag or label is identified by system + code
 * (version and display ignored), a profile by its full URL. Adding what is there already, or
 * deleting what is not, changes nothing and writes nothing.
 *
 * A change is stored as a new version of the resource (history keeps the previous one, the
 * search index, subscriptions and the audit trail see an ordinary update, and every rule on
 * writes applies: lifting a Patient's legal hold label still needs an ADMIN). STU3 let these
 * operations change a version in place; R4 dropped that, and this server's history is
 * append-only, so a historical version's meta can be read but not changed.
 */

export const META_OPERATIONS = [
  { name: 'meta', definition: 'http://hl7.org/fhir/OperationDefinition/Resource-meta' },
  { name: 'meta-add', definition: 'http://hl7.org/fhir/OperationDefinition/Resource-meta-add' },
  { name: 'meta-delete', definition: 'http://hl7.org/fhir/OperationDefinition/Resource-meta-delete' },
];
export const SYSTEM_META_OPERATION = META_OPERATIONS[0]!;

export type MetaChange = 'add' | 'delete';

/** The Parameters a meta operation answers: `return` (Meta). */
export function metaParameters(meta: Meta): Parameters {
  return { resourceType: 'Parameters', parameter: [{ name: 'return', valueMeta: meta }] };
}

/** `$meta` on a resource or one of its versions: the meta as a read of it would return it. */
export function metaOf(version: StoredVersion): InteractionResult {
  const resource = parseStored(version);
  return { status: 200, version, body: metaParameters(resource.meta ?? {}) };
}

const sameCoding = (a: Coding, b: Coding) => (a.system ?? null) === (b.system ?? null) && (a.code ?? null) === (b.code ?? null);

/** The `meta` input parameter of `$meta-add` / `$meta-delete`, checked. */
export function metaInput(body: unknown, operation: string): Pick<Meta, 'profile' | 'tag' | 'security'> {
  const parameters = body as Parameters | undefined;
  if (typeof parameters !== 'object' || parameters === null || parameters.resourceType !== 'Parameters') {
    throw errors.incorrect(`${operation} takes a Parameters resource with one parameter "meta" (a Meta)`);
  }
  const given = Array.isArray(parameters.parameter) ? parameters.parameter : [];
  const metas = given.filter((p) => p?.name === 'meta');
  const others = given.filter((p) => p?.name !== 'meta').map((p) => String(p?.name).slice(0, 40));
  if (others.length > 0) throw errors.incorrect(`${operation} has no parameter ${others.join(', ')} (only "meta")`, ['Parameters.parameter']);
  if (metas.length !== 1 || typeof metas[0]!.valueMeta !== 'object' || metas[0]!.valueMeta === null) {
    throw errors.incorrect(`${operation} needs exactly one parameter "meta" with a valueMeta`, ['Parameters.parameter']);
  }
  const meta = metas[0]!.valueMeta;
  const codings = (field: 'tag' | 'security'): Coding[] | undefined => {
    const list: unknown = meta[field];
    if (list === undefined) return undefined;
    if (!Array.isArray(list)) throw errors.incorrect(`meta.${field} must be an array of Codings`, [`Parameters.parameter.valueMeta.${field}`]);
    return list.map((c: unknown, i) => {
      const coding = c as Coding | null;
      const valid = typeof coding === 'object' && coding !== null && typeof coding.code === 'string' && coding.code.length > 0 && (coding.system === undefined || typeof coding.system === 'string');
      // The identity of a tag or label is system + code: one without a code names nothing.
      if (!valid) throw errors.incorrect(`meta.${field}[${i}] must be a Coding with a code (and a system)`, [`Parameters.parameter.valueMeta.${field}[${i}]`]);
      return coding;
    });
  };
  const profile: unknown = meta.profile;
  if (profile !== undefined && (!Array.isArray(profile) || profile.some((p) => typeof p !== 'string' || p.length === 0))) {
    throw errors.incorrect('meta.profile must be an array of canonical URLs', ['Parameters.parameter.valueMeta.profile']);
  }
  return { profile: profile as string[] | undefined, tag: codings('tag'), security: codings('security') };
}

/** The meta after adding or deleting `input`, and whether it differs from `meta`. */
export function changedMeta(meta: Meta, input: Pick<Meta, 'profile' | 'tag' | 'security'>, change: MetaChange): { meta: Meta; changed: boolean } {
  const out: Meta = { ...meta };
  let changed = false;
  const profiles = [...(meta.profile ?? [])];
  for (const url of input.profile ?? []) {
    const at = profiles.indexOf(url);
    if (change === 'add' && at < 0) profiles.push(url);
    else if (change === 'delete' && at >= 0) profiles.splice(at, 1);
    else continue;
    changed = true;
  }
  for (const field of ['tag', 'security'] as const) {
    const list = [...(meta[field] ?? [])];
    for (const coding of input[field] ?? []) {
      if (change === 'add') {
        if (list.some((c) => sameCoding(c, coding))) continue;
        list.push(coding);
        changed = true;
      } else {
        const kept = list.filter((c) => !sameCoding(c, coding));
        if (kept.length === list.length) continue;
        list.splice(0, list.length, ...kept);
        changed = true;
      }
    }
    if (list.length > 0) out[field] = list;
    else delete out[field];
  }
  if (profiles.length > 0) out.profile = profiles;
  else delete out.profile;
  return { meta: out, changed };
}

/**
 * `$meta-add` / `$meta-delete` on `[type]/[id]` (or on `[type]/[id]/_history/[vid]` when vid is
 * the current version): a new version when something changes, else the current meta unchanged.
 */
export async function changeMeta(deps: InteractionDeps, resourceType: string, id: string, body: unknown, change: MetaChange, versionId?: string): Promise<InteractionResult> {
  checkId(id);
  const operation = change === 'add' ? '$meta-add' : '$meta-delete';
  const input = metaInput(body, operation);
  return deps.store.transaction(async (tx: StoreTransaction) => {
    const current = await tx.readForUpdate(resourceType, id);
    if (!current) throw errors.notFound(`${resourceType}/${id} is not known`);
    if (current.deleted) throw errors.gone(`${resourceType}/${id} was deleted`);
    if (versionId !== undefined && versionId !== current.versionId) {
      throw new FhirError('incorrect', [{
        severity: 'error',
        code: 'not-supported',
        diagnostics: `${operation} changes the current version only (${resourceType}/${id} is at version ${current.versionId}): this server's history is append-only, so version ${versionId.slice(0, 20)} keeps its meta`,
      }]);
    }
    const before = parseStored(current);
    const next = changedMeta(before.meta ?? {}, input, change);
    if (!next.changed) return { status: 200, version: current, body: metaParameters(before.meta ?? {}) };
    const after: Resource = { ...before, meta: next.meta };
    const written = changeResult(await tx.update(after, current, 'PATCH'), 200);
    const stored = written.version ? parseStored(written.version) : after;
    return { ...written, body: metaParameters(stored.meta ?? {}) };
  });
}
