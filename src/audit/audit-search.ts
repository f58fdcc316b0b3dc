import type { Bundle, BundleEntry, BundleLink, FhirResource, OperationOutcome, Resource } from 'fhir/r4.js';
import { errors } from '../fhir/errors.js';
import { applyElements, applySummary } from '../fhir/summary/index.js';
import { allResourceTypes } from '../search/fhir-model.js';
import type { CompiledSearchParam } from '../search/registry.js';
import type { IncludeSpec, ParamFilter, ParamValue, SearchRequest } from '../search/request.js';
import type { OwnTypeSearch, SearchInput } from '../search/search-service.js';
import type { AccessFilter } from '../search/sql/access.js';
import type { AuditOrder, AuditPage, AuditQuery, AuditStore } from '../storage/audit-store.js';

/**
 * AuditEvent search parameters the server does not index. Every index key is paid on each of
 * the many AuditEvents written (one per request), while an ADMIN's audit queries ask who
 * (agent, altid), which patient and resource (patient, entity), what (type, subtype, action),
 * how it ended (outcome), where it was recorded (source, site) and when (date, _lastUpdated,
 * _id): those stay. Left out are the ones whose values are the same on nearly every event the
 * server writes (entity-type, entity-role: 3 of 13 rows per read), never set by it
 * (entity-name, policy), better answered through another parameter (agent-role: the user is in
 * agent; address: network origin, kept in the event itself; agent-name: only sign-ins carry
 * it, as the typed user name, and agent / altid find the user) — string searches would also
 * need prefix matching the key index does not do.
 * A search on one of these is an unknown parameter (400 with `Prefer: handling=strict`,
 * otherwise ignored and left out of the self link) instead of silently matching nothing.
 */
export const AUDIT_EVENT_UNINDEXED_PARAMS: Readonly<Record<string, readonly string[]>> = {
  AuditEvent: ['address', 'agent-name', 'agent-role', 'entity-name', 'entity-role', 'entity-type', 'policy'],
};

/** Most AuditEvents one `_revinclude=AuditEvent:…` adds to a page (as for any include path). */
const MAX_INCLUDES = 1000;
const REFERENCE_PARAMS = ['agent', 'entity', 'patient', 'source'];

interface Cursor {
  /** sort value of the boundary row (the id for the id order) */
  v: string;
  i: string;
}

function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify(c), 'utf8').toString('base64url');
}

function decodeCursor(s: string): Cursor {
  try {
    const c = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as Cursor;
    if (typeof c.v === 'string' && typeof c.i === 'string') return c;
  } catch {
    // fall through
  }
  throw errors.incorrect('Invalid _cursor (it belongs to a different search or was altered)', ['_cursor']);
}

const notSupported = (what: string) => errors.incorrect(`${what} is not supported in AuditEvent searches (the audit trail has its own store; see the CapabilityStatement)`);

/** The search keys (any of them) of one token value (see src/audit/audit-keys.ts). */
function tokenKeys(param: string, v: ParamValue): string[] {
  if (v.kind !== 'token' || v.v.code === undefined) {
    if (v.kind === 'token' && v.v.system) throw notSupported(`${param}=system| (any code of a system)`);
    throw errors.incorrect(`Invalid value for ${param}`, [param]);
  }
  const { system, code } = v.v;
  // `code` alone: any system, or none.
  if (system === undefined) return [`${param}=${code}`, `${param}=|${code}`];
  return [`${param}=${system ?? ''}|${code}`];
}

/** The search keys (any of them) of one reference value. */
function referenceKeys(p: CompiledSearchParam, v: ParamValue, modifier: string | undefined): string[] {
  const param = p.code;
  if (v.kind !== 'reference') throw errors.incorrect(`Invalid value for ${param}`, [param]);
  const r = v.v;
  if (modifier === 'identifier') {
    if (r.identValue === undefined) throw errors.incorrect(`Invalid identifier for ${param}`, [param]);
    return [r.identSystem === undefined ? `${param}:identifier=${r.identValue}` : `${param}:identifier=${r.identSystem ?? ''}|${r.identValue}`];
  }
  if (r.type && r.id) return [`${param}>${r.type}/${r.id}`];
  // A bare id: a reference to it of any type the parameter may point to.
  if (r.id) return (p.target.length ? p.target : allResourceTypes()).map((type) => `${param}>${type}/${r.id}`);
  if (r.url) return [`${param}>${r.url}`];
  throw errors.incorrect(`Invalid value for ${param}`, [param]);
}

/** The filters of a parsed search as an AuditQuery (refusing what the key index cannot answer). */
export function auditQueryOf(req: SearchRequest): AuditQuery {
  const q: AuditQuery = { keys: [], notKeys: [], recorded: [], lastUpdated: [], ids: [], notIds: [] };
  for (const f of req.filters) {
    if (f.kind === 'logic') throw notSupported('_filter with and / or / not');
    if (f.kind !== 'param') throw notSupported(`${f.kind === 'chain' ? 'Chaining' : '_has'} (${f.name})`);
    addParam(q, f);
  }
  return q;
}

function addParam(q: AuditQuery, f: ParamFilter): void {
  const code = f.param.code;
  if (f.values.some((v) => v.kind === 'missing')) throw notSupported(`${f.name}:missing`);
  if ('special' in f.param) {
    if (code === '_id') {
      if (f.modifier !== undefined && f.modifier !== 'not') throw notSupported(f.name);
      const ids = f.values.flatMap((v) => (v.kind === 'token' && v.v.code !== undefined ? [v.v.code] : []));
      (f.modifier === 'not' ? q.notIds : q.ids).push(ids);
      return;
    }
    if (code !== '_lastUpdated' || f.modifier !== undefined) throw notSupported(f.name);
    q.lastUpdated.push(f.values.flatMap((v) => (v.kind === 'date' ? [v.v] : [])));
    return;
  }
  switch (f.param.type) {
    case 'date':
      if (code !== 'date' || f.modifier !== undefined) throw notSupported(f.name);
      q.recorded.push(f.values.flatMap((v) => (v.kind === 'date' ? [v.v] : [])));
      return;
    case 'token':
      if (f.modifier !== undefined && f.modifier !== 'not') throw notSupported(f.name);
      (f.modifier === 'not' ? q.notKeys : q.keys).push(f.values.flatMap((v) => tokenKeys(code, v)));
      return;
    case 'reference': {
      // `entity:Patient=1` is parsed as a typed value; `:identifier` names the identifier keys.
      const modifier = f.modifier === 'identifier' ? 'identifier' : undefined;
      if (f.modifier !== undefined && modifier === undefined && !/^[A-Z]/.test(f.modifier)) throw notSupported(f.name);
      q.keys.push(f.values.flatMap((v) => referenceKeys(f.param as CompiledSearchParam, v, modifier)));
      return;
    }
    default:
      throw notSupported(f.name);
  }
}

/** Which AuditEvents a caller's scopes let through: all, those of one patient, or none. */
function accessKeys(filter: AccessFilter | undefined): { all: true } | { keys: string[] } | { none: true } {
  if (!filter) return { all: true };
  if (filter.hidden?.includes('AuditEvent')) return { none: true };
  if (filter.types === '*' || filter.types.includes('AuditEvent')) return { all: true };
  if (filter.patientTypes === '*' || filter.patientTypes.includes('AuditEvent')) {
    return filter.patient ? { keys: [`patient>Patient/${filter.patient}`] } : { none: true };
  }
  // Granular scopes on AuditEvent (`system/AuditEvent.rs?…`) grant nothing here: the audit
  // trail is not filtered by arbitrary queries.
  return { none: true };
}

function sortOf(req: SearchRequest): { order: AuditOrder; desc: boolean } {
  if (req.sort.length === 0) return { order: 'id', desc: false };
  const [first, ...rest] = req.sort;
  const by = first!.param.code;
  if (rest.length > 0 || (by !== 'date' && by !== '_lastUpdated' && by !== '_id')) throw notSupported(`_sort other than date, _lastUpdated or _id`);
  return { order: by === 'date' ? 'recorded' : by === '_lastUpdated' ? 'last_updated' : 'id', desc: first!.desc };
}

/**
 * AuditEvent search on the audit trail's own table (src/storage/audit-store.ts): the generic
 * parser, then filters on search keys, `recorded` and `last_updated`, keyset paging on the
 * sort column and id. Supported: the indexed parameters with their plain form, `:not` on
 * tokens and `_id`, `:identifier` and `:Type` on references, `_sort` on date/_lastUpdated/_id,
 * `_count`, `_total`, `_summary`, `_elements`, `Patient/x/AuditEvent`. Not supported (400,
 * never a silently wrong answer): chains, `_has`, `:missing`, `:text`/`:in`/`:above`/`:below`,
 * `_include`/`_revinclude` from AuditEvent.
 */
export class AuditSearch implements OwnTypeSearch {
  constructor(private readonly store: AuditStore) {}

  async search(req: SearchRequest, input: SearchInput): Promise<Bundle> {
    if (req.includes.length || req.revincludes.length) throw notSupported('_include/_revinclude');
    const q = auditQueryOf(req);
    const access = accessKeys(input.accessFilter);
    if ('none' in access) q.none = true;
    else if ('keys' in access) q.keys.push(access.keys);
    if (input.compartment) {
      const { type, id } = input.compartment;
      q.keys.push([type === 'Patient' ? `patient>Patient/${id}` : `agent>${type}/${id}`]);
    }
    const sort = sortOf(req);
    const cursor = req.cursor ? decodeCursor(req.cursor) : undefined;
    const summaryCount = req.summary === 'count' || req.count === 0;
    const page: AuditPage = { ...sort, limit: req.count + 1, ...(cursor ? { after: { value: cursor.v, id: cursor.i } } : {}) };

    let rows = summaryCount ? [] : await this.store.search(q, page);
    const more = rows.length > req.count;
    if (more) rows = rows.slice(0, req.count);
    let total: number | undefined;
    const totalMode = req.total ?? (cursor ? 'none' : 'accurate');
    if (totalMode === 'accurate' && !summaryCount && !cursor && !more) total = rows.length;
    else if (summaryCount || totalMode !== 'none') total = await this.store.count(q);

    const bundle: Bundle = { resourceType: 'Bundle', type: 'searchset' };
    if (total !== undefined) bundle.total = total;
    const path = input.compartment ? `${input.baseUrl}/${input.compartment.type}/${input.compartment.id}/AuditEvent` : `${input.baseUrl}/AuditEvent`;
    const link = (extra: Array<[string, string]>) => {
      const p = new URLSearchParams([...req.canonical, ...extra]).toString();
      return p ? `${path}?${p}` : path;
    };
    const links: BundleLink[] = [{ relation: 'self', url: link(req.cursor ? [['_cursor', req.cursor]] : []) }];
    const last = rows[rows.length - 1];
    if (more && last) links.push({ relation: 'next', url: link([['_cursor', encodeCursor({ v: last.k, i: last.id })]]) });
    bundle.link = links;
    const entries: BundleEntry[] = rows.map((row) => {
      const resource = shape(JSON.parse(row.json) as Resource, req);
      return { fullUrl: `${input.baseUrl}/AuditEvent/${row.id}`, resource: resource as FhirResource, search: { mode: 'match' } };
    });
    if (req.unknown.length) {
      const oo: OperationOutcome = {
        resourceType: 'OperationOutcome',
        issue: req.unknown.map((name) => ({ severity: 'warning', code: 'not-supported', diagnostics: `Search parameter '${name}' is not known and was ignored`, expression: [name] })),
      };
      entries.push({ resource: oo, search: { mode: 'outcome' } });
    }
    if (entries.length) bundle.entry = entries;
    return bundle;
  }

  /** `_revinclude=AuditEvent:entity` (agent, patient, source, or `*`) on a page of other resources. */
  async revinclude(spec: IncludeSpec, targets: readonly Resource[], accessFilter: AccessFilter | undefined): Promise<Resource[]> {
    const access = accessKeys(accessFilter);
    if ('none' in access) return [];
    const params = spec.param ? [spec.param] : REFERENCE_PARAMS;
    const keys = targets.flatMap((t) => (spec.targetType && spec.targetType !== t.resourceType ? [] : params.map((p) => `${p}>${t.resourceType}/${t.id}`)));
    let found = (await this.store.withAnyKey(keys, MAX_INCLUDES)).map((json) => JSON.parse(json) as Resource);
    if ('keys' in access) {
      // A patient-confined caller: only events of its patient (checked on the event itself).
      const patient = access.keys[0]!.slice('patient>'.length);
      found = found.filter((e) => refersTo(e, patient));
    }
    return found;
  }
}

/** Whether an AuditEvent names `ref` (Patient/x) as an agent or entity. */
function refersTo(e: Resource, ref: string): boolean {
  const ev = e as { agent?: Array<{ who?: { reference?: string } }>; entity?: Array<{ what?: { reference?: string } }> };
  return (ev.agent ?? []).some((a) => a.who?.reference === ref) || (ev.entity ?? []).some((x) => x.what?.reference === ref);
}

function shape(r: Resource, req: SearchRequest): Resource {
  let out = r;
  if (req.summary && req.summary !== 'false' && req.summary !== 'count') out = applySummary(out, req.summary);
  if (req.elements?.length) out = applyElements(out, req.elements);
  return out;
}
