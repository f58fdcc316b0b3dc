import type { Bundle, BundleEntry, BundleLink, FhirResource } from 'fhir/r4.js';
import type { RawBuilder } from 'kysely';
import { errors, FhirError } from '../fhir/errors.js';
import { parseCount } from '../interactions/history.js';
import { checkId } from '../interactions/versions.js';
import type { Db } from '../storage/db.js';
import { everythingCount, everythingPage, type EverythingCursor, type EverythingQuery } from '../storage/export-everything.js';
import type { ResourceStore } from '../storage/resource-store.js';
import type { Compartment } from './export-compartments.js';
import { parseSince } from './export-params.js';

export interface EverythingDeps {
  db: Db;
  store: Pick<ResourceStore, 'read'>;
  fhirBase: string;
  isResourceType(type: string): boolean;
  resourceTypes(): string[];
  /** compartment by owner type: Patient, Encounter */
  compartments: ReadonlyMap<string, Compartment>;
}

export interface EverythingCaller {
  canRead(resourceType: string): boolean;
  /** Confined to a patient compartment: the compartment only, without the resources it refers to. */
  membersOnly?: boolean;
  /** What the caller may see, as a condition on the `resource` row `r` (undefined: everything). */
  access?: RawBuilder<unknown>;
}

/** R4 $everything parameters we support; `start`/`end` (care dates) are refused rather than ignored. */
const SUPPORTED = new Set(['_since', '_type', '_count', '_cursor']);
const IGNORED = new Set(['_format', '_pretty']);

function encodeCursor(c: EverythingCursor): string {
  return Buffer.from(JSON.stringify([c.resourceType, c.id])).toString('base64url');
}

function decodeCursor(raw: string): EverythingCursor {
  try {
    const value = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === 'string')) return { resourceType: value[0] as string, id: value[1] as string };
  } catch {
    // fall through
  }
  throw errors.incorrect('_cursor is not a paging cursor this server issued', ['_cursor']);
}

/**
 * Patient/[id]/$everything and Encounter/[id]/$everything
 * (https://hl7.org/fhir/R4/patient-operation-everything.html): the resource, everything in its
 * compartment, and the resources those refer to (one level), as a searchset Bundle paged by
 * `_count` with keyset `next` links. `_type` and `_since` apply to every entry, the focal
 * resource included, so `_type=Observation` returns Observations only.
 */
export async function everything(deps: EverythingDeps, ownerType: string, ownerId: string, query: URLSearchParams, caller: EverythingCaller): Promise<Bundle> {
  checkId(ownerId);
  const compartment = deps.compartments.get(ownerType);
  if (!compartment) throw errors.unsupported(`$everything is not offered on ${ownerType.slice(0, 64)}`);
  if (!caller.canRead(ownerType)) throw errors.forbidden(`the access token's scopes do not allow reading ${ownerType}`);
  for (const name of query.keys()) {
    if (!SUPPORTED.has(name) && !IGNORED.has(name)) {
      throw new FhirError('incorrect', [{ severity: 'error', code: 'not-supported', diagnostics: `$everything parameter ${name.slice(0, 64)} is not supported`, expression: [name.slice(0, 64)] }]);
    }
  }
  const count = parseCount(query.get('_count') ?? undefined);
  const sinceRaw = query.get('_since') ?? undefined;
  const since = sinceRaw ? parseSince(sinceRaw, { allowFuture: true }) : undefined;
  const typeRaw = query.getAll('_type').flatMap((v) => v.split(',')).map((t) => t.trim()).filter(Boolean);
  for (const t of typeRaw) if (!deps.isResourceType(t)) throw errors.incorrect(`_type names an unknown resource type "${t.slice(0, 64)}"`, ['_type']);
  const refused = typeRaw.filter((t) => !caller.canRead(t));
  if (refused.length) throw errors.forbidden(`the access token's scopes do not allow reading ${refused.join(', ').slice(0, 200)}`);
  let types: string[] | undefined = typeRaw.length ? [...new Set(typeRaw)] : undefined;
  if (!types) {
    // Without _type: every type the token may read (no restriction at all for a */read token).
    const readable = deps.resourceTypes().filter((t) => caller.canRead(t));
    if (readable.length < deps.resourceTypes().length) types = readable;
  }
  const cursorRaw = query.get('_cursor') ?? undefined;
  const after = cursorRaw ? decodeCursor(cursorRaw) : undefined;

  const owner = await deps.store.read(ownerType, ownerId);
  if (!owner) throw errors.notFound(`${ownerType}/${ownerId} is not known`);
  if (owner.deleted) throw errors.gone(`${ownerType}/${ownerId} was deleted`);

  const pairs: Array<[string, string]> = [];
  for (const [type, params] of compartment.params) for (const p of params) pairs.push([type, p]);
  const q: EverythingQuery = { ownerType, ownerId, pairs, types, since, membersOnly: caller.membersOnly, access: caller.access };
  // One row more than the page tells whether there is a next page without a count.
  const rows = count === 0 ? [] : await everythingPage(deps.db, q, after, count + 1);
  const page = rows.slice(0, count);

  const path = `${deps.fhirBase}/${ownerType}/${ownerId}/$everything`;
  const link = (extra: Array<[string, string]>) => {
    const p = new URLSearchParams();
    if (typeRaw.length) p.set('_type', typeRaw.join(','));
    if (sinceRaw) p.set('_since', sinceRaw);
    p.set('_count', String(count));
    for (const [k, v] of extra) p.set(k, v);
    return `${path}?${p.toString()}`;
  };
  const links: BundleLink[] = [{ relation: 'self', url: link(cursorRaw ? [['_cursor', cursorRaw]] : []) }];
  if (rows.length > count && page.length > 0) {
    const last = page[page.length - 1]!;
    links.push({ relation: 'next', url: link([['_cursor', encodeCursor(last)]]) });
  }
  const bundle: Bundle = { resourceType: 'Bundle', type: 'searchset' };
  // The total costs a second pass over the record: only on the first page, as search does.
  if (!after) bundle.total = await everythingCount(deps.db, q);
  bundle.link = links;
  const entries: BundleEntry[] = page.map((row) => ({
    fullUrl: `${deps.fhirBase}/${row.resourceType}/${row.id}`,
    resource: JSON.parse(row.json) as FhirResource,
    search: { mode: row.member ? 'match' : 'include' },
  }));
  if (entries.length) bundle.entry = entries;
  return bundle;
}
