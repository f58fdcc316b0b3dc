import type { Bundle, BundleEntry } from 'fhir/r4.js';
import { errors } from '../fhir/errors.js';
import type { HistoryCursor } from '../storage/resource-store.js';
import { countHistoryAt, readHistoryAt } from '../storage/history-at.js';
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

/** history: instance, type or system (https://hl7.org/fhir/R4/http.html#history), newest first. */
export async function history(deps: InteractionDeps, scope: HistoryScope, params: URLSearchParams): Promise<InteractionResult> {
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
  let total: number;
  if (at) {
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
  }
  const bundle: Bundle = {
    resourceType: 'Bundle',
    type: 'history',
    total,
    link,
    entry: page.map((v) => historyEntry(deps.fhirBase, v)),
  };
  return { status: 200, body: bundle };
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
