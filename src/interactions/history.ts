import type { Bundle, BundleEntry, Resource } from 'fhir/r4.js';
import { errors } from '../fhir/errors.js';
import type { HistoryAccessSql } from '../search/sql/history-access.js';
import type { HistoryCursor } from '../storage/resource-store.js';
import { countHistoryAt, readHistoryAt, type HistoryAtQuery } from '../storage/history-at.js';
import type { StoredVersion } from '../storage/types.js';
import { parseHistoryPeriod } from './history-period.js';
import type { InteractionDeps, InteractionResult } from './types.js';
import { checkId, etagOf } from './versions.js';

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 1000;

/** A FHIR instant or dateTime with a time zone; `_since` needs one (R4 http.html#history). */
const INSTANT = /^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?)?)?$/;

export function parseCount(raw: string | undefined): number {
  if (raw === undefined || raw === '') return DEFAULT_PAGE_SIZE;
  if (!/^\d{1,7}$/.test(raw)) throw errors.incorrect(`_count must be a non-negative integer, got "${raw.slice(0, 40)}"`, ['_count']);
  return Math.min(Number(raw), MAX_PAGE_SIZE);
}

function parseInstant(name: string, raw: string | undefined): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!INSTANT.test(raw)) throw errors.incorrect(`${name} must be an instant such as 2024-01-31T10:00:00Z, got "${raw.slice(0, 40)}"`, [name]);
  const time = Date.parse(raw.length <= 10 ? `${raw.padEnd(10, raw.length === 4 ? '-01-01' : '-01').slice(0, 10)}T00:00:00Z` : raw);
  if (Number.isNaN(time)) throw errors.incorrect(`${name} "${raw.slice(0, 40)}" is not a real date`, [name]);
  return new Date(time).toISOString();
}

function encodeCursor(c: HistoryCursor): string {
  return Buffer.from(JSON.stringify([c.lastUpdated, c.resourceType, c.id, c.versionId])).toString('base64url');
}

function decodeCursor(raw: string): HistoryCursor {
  try {
    const [lastUpdated, resourceType, id, versionId] = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as string[];
    if ([lastUpdated, resourceType, id, versionId].every((v) => typeof v === 'string') && /^\d+$/.test(versionId) && !Number.isNaN(Date.parse(lastUpdated))) {
      return { lastUpdated, resourceType, id, versionId };
    }
  } catch {
    // fall through to the error below
  }
  throw errors.incorrect('_cursor is not a paging cursor this server issued', ['_cursor']);
}

export interface HistoryScope {
  resourceType?: string;
  id?: string;
}

/**
 * What a caller with partial access (SMART `patient/` or granular scopes, audit trail hidden)
 * may see of history: rows are prefiltered in SQL (`sql`), and versions of partly visible
 * types (`restricted`) are then judged one by one on their own content (`visible`).
 */
export interface HistoryAccess {
  sql: HistoryAccessSql;
  restricted(resourceType: string): boolean;
  visible(resource: Resource): boolean;
}

/** Rows read per round while filling a page of visible versions. */
const SCAN_BATCH = 500;
/**
 * The total of a filtered history counts partly visible versions one by one; past this many
 * candidates it is left out (Bundle.total is optional) rather than estimated from rows the
 * caller may not see.
 */
const MAX_COUNTED_CANDIDATES = 10_000;
/** Candidates judged at most per page request; a page filled by fewer ends with a `next` link where the scan stopped. */
const MAX_SCANNED_PER_PAGE = 20_000;

/** history: instance, type or system (https://hl7.org/fhir/R4/http.html#history), newest first. */
export async function history(deps: InteractionDeps, scope: HistoryScope, params: URLSearchParams, access?: HistoryAccess): Promise<InteractionResult> {
  if (scope.id !== undefined) checkId(scope.id);
  const count = parseCount(params.get('_count') ?? undefined);
  const since = parseInstant('_since', params.get('_since') ?? undefined);
  const at = parseHistoryPeriod(params.getAll('_at'));
  const cursorRaw = params.get('_cursor');
  const after = cursorRaw ? decodeCursor(cursorRaw) : undefined;

  if (scope.id !== undefined && scope.resourceType) {
    const exists = await deps.store.read(scope.resourceType, scope.id);
    if (!exists) throw errors.notFound(`${scope.resourceType}/${scope.id} is not known`);
  }
  const query = { resourceType: scope.resourceType, id: scope.id, since };
  // One row more than the page tells whether a next page exists without a count query.
  let rows: StoredVersion[];
  let total: number | undefined;
  /** Where a filtered scan stopped before filling the page (bounded work per request). */
  let resumeAt: HistoryCursor | undefined;
  if (access) {
    const filtered = { ...query, ...at };
    const scan = count === 0 ? { rows: [] } : await visibleRows(deps, filtered, access, count + 1, after);
    rows = scan.rows;
    resumeAt = scan.resumeAt;
    // Counting partly visible versions means judging each: on the first page only, as search does.
    total = after ? undefined : await visibleTotal(deps, filtered, access);
    if (scope.id !== undefined && !after && total === 0 && scope.resourceType && access.restricted(scope.resourceType)) {
      throw errors.forbidden(`${scope.resourceType}/${scope.id.slice(0, 64)} is outside what the access token may see (patient compartment or granular scope)`);
    }
  } else if (at) {
    const atQuery = { ...query, ...at };
    rows = count === 0 ? [] : await readHistoryAt(deps.store.db, atQuery, count + 1, after);
    total = await countHistoryAt(deps.store.db, atQuery);
  } else {
    rows = count === 0 ? [] : await deps.store.history({ ...query, count: count + 1, after });
    total = await deps.store.countHistory(query);
  }
  const page = rows.slice(0, count);

  const path = [scope.resourceType, scope.id].filter(Boolean).join('/');
  const base = `${deps.fhirBase}/${path ? `${path}/` : ''}_history`;
  const linkParams = (extra: Record<string, string>) => {
    const p = new URLSearchParams();
    if (since) p.set('_since', params.get('_since') as string);
    for (const value of params.getAll('_at')) p.append('_at', value);
    p.set('_count', String(count));
    for (const [k, v] of Object.entries(extra)) p.set(k, v);
    return `${base}?${p.toString()}`;
  };
  const link: Bundle['link'] = [{ relation: 'self', url: linkParams(cursorRaw ? { _cursor: cursorRaw } : {}) }];
  if (rows.length > count && page.length > 0) {
    const last = page[page.length - 1];
    link.push({ relation: 'next', url: linkParams({ _cursor: encodeCursor(last) }) });
  } else if (resumeAt) {
    // A short (even empty) page: the versions scanned so far were not the caller's; go on from there.
    link.push({ relation: 'next', url: linkParams({ _cursor: encodeCursor(resumeAt) }) });
  }
  const bundle: Bundle = {
    resourceType: 'Bundle',
    type: 'history',
    ...(total !== undefined ? { total } : {}),
    link,
    entry: page.map((v) => historyEntry(deps.fhirBase, v)),
  };
  return { status: 200, body: bundle };
}

function cursorOf(v: StoredVersion): HistoryCursor {
  return { lastUpdated: v.lastUpdated, resourceType: v.resourceType, id: v.id, versionId: v.versionId };
}

/** A version the caller may see; a delete marker is judged by the version it deleted. */
export async function versionVisibleTo(deps: InteractionDeps, access: HistoryAccess, v: StoredVersion): Promise<boolean> {
  if (!access.restricted(v.resourceType)) return true;
  if (v.json !== null) return access.visible(JSON.parse(v.json) as Resource);
  const [before] = await readHistoryAt(deps.store.db, { resourceType: v.resourceType, id: v.id }, 1, cursorOf(v));
  return before?.json ? access.visible(JSON.parse(before.json) as Resource) : false;
}

/**
 * Up to `wanted` visible versions after `after`, newest first, reading the candidates in rounds.
 * At most MAX_SCANNED_PER_PAGE candidates are judged per request: past that the page is
 * returned short with `resumeAt`, where its `next` link goes on.
 */
async function visibleRows(
  deps: InteractionDeps,
  query: HistoryAtQuery,
  access: HistoryAccess,
  wanted: number,
  after?: HistoryCursor,
): Promise<{ rows: StoredVersion[]; resumeAt?: HistoryCursor }> {
  const out: StoredVersion[] = [];
  const q = { ...query, access: access.sql.where };
  const batch = Math.max(wanted, SCAN_BATCH);
  let cursor = after;
  for (let scanned = 0; ; ) {
    const rows = await readHistoryAt(deps.store.db, q, batch, cursor);
    for (const v of rows) {
      if (!(await versionVisibleTo(deps, access, v))) continue;
      out.push(v);
      if (out.length === wanted) return { rows: out };
    }
    if (rows.length < batch) return { rows: out };
    cursor = cursorOf(rows[rows.length - 1]!);
    scanned += rows.length;
    if (scanned >= MAX_SCANNED_PER_PAGE) return { rows: out, resumeAt: cursor };
  }
}

/** Visible versions in all: wholly visible ones counted in SQL, the others judged one by one (or undefined past the cap). */
async function visibleTotal(deps: InteractionDeps, query: HistoryAtQuery, access: HistoryAccess): Promise<number | undefined> {
  let total = await countHistoryAt(deps.store.db, { ...query, access: access.sql.unchecked });
  const candidates = { ...query, access: access.sql.checked };
  let cursor: HistoryCursor | undefined;
  for (let seen = 0; ; ) {
    const rows = await readHistoryAt(deps.store.db, candidates, SCAN_BATCH, cursor);
    seen += rows.length;
    if (seen > MAX_COUNTED_CANDIDATES) return undefined;
    for (const v of rows) if (await versionVisibleTo(deps, access, v)) total++;
    if (rows.length < SCAN_BATCH) return total;
    cursor = cursorOf(rows[rows.length - 1]!);
  }
}

function historyEntry(fhirBase: string, v: StoredVersion): BundleEntry {
  const fullUrl = `${fhirBase}/${v.resourceType}/${v.id}`;
  const method = v.method ?? (v.deleted ? 'DELETE' : 'PUT');
  const entry: BundleEntry = {
    fullUrl,
    request: { method, url: method === 'POST' ? v.resourceType : `${v.resourceType}/${v.id}` },
    response: {
      status: v.deleted ? '204' : v.versionId === '1' ? '201' : '200',
      etag: etagOf(v.versionId),
      lastModified: v.lastUpdated,
    },
  };
  if (v.json !== null) entry.resource = JSON.parse(v.json);
  return entry;
}
