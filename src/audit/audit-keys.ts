import type { AuditEvent, Coding, Reference } from 'fhir/r4.js';
import { referenceValues } from '../search/indexer.js';

/**
 * The search keys of an AuditEvent (column `audit_event.search_keys`, one GIN index; migration
 * 0014), read straight from the event's elements — the audit trail writes one event per
 * request, and the generic indexer's expression evaluation cost ~4× more per event than this.
 * The elements are those of the R4 AuditEvent search parameters the server indexes
 * (src/audit/audit-search.ts); `audit-keys.test.ts` checks the keys equal those built from the
 * generic indexer's rows for every kind of event the server writes.
 *
 * Keys, one per way a value can be asked for, the fewest that answer every supported search:
 *   token with system  `param=code`, `param=system|code`
 *   token without one  `param=|code`   (`code` alone asks for both `param=code` and `param=|code`)
 *   reference          `param>Type/id` (a bare id asks for every target type), `param>url`,
 *                      `param:identifier=value`, `param:identifier=system|value`
 * Migration 0014 builds the same keys in SQL from the index rows of older AuditEvents.
 */
export function auditEventKeys(e: AuditEvent, baseUrls: readonly string[]): string[] {
  const keys = new Set<string>();
  const token = (param: string, system: string | undefined, code: string | undefined) => {
    if (!code) return;
    if (system) keys.add(`${param}=${code}`);
    keys.add(`${param}=${system ?? ''}|${code}`);
  };
  const coding = (param: string, c: Coding | undefined) => token(param, c?.system || undefined, c?.code);
  const reference = (param: string, r: Reference | undefined, patient: boolean) => referenceKeys(keys, param, r, patient, baseUrls);
  coding('type', e.type);
  for (const s of e.subtype ?? []) coding('subtype', s);
  token('action', undefined, e.action);
  token('outcome', undefined, e.outcome);
  for (const a of e.agent ?? []) {
    token('altid', undefined, a.altId);
    reference('agent', a.who, true);
  }
  for (const x of e.entity ?? []) reference('entity', x.what, true);
  reference('source', e.source?.observer, false);
  token('site', undefined, e.source?.site);
  // Unsorted: the GIN index does not care, and this runs once per request.
  return [...keys];
}

/**
 * Adds the keys of reference `r` under `param` to `keys` (and under `patient` too when `patient`
 * is set and it refers to a Patient). Shared with the audit renderer (audit-render.ts), which
 * builds the keys of a request's entities with it.
 */
export function referenceKeys(keys: { add(key: string): unknown }, param: string, r: Reference | undefined, patient: boolean, baseUrls: readonly string[]): void {
  if (!r) return;
  const rows: unknown[][] = [];
  referenceValues({ t: 'Reference', v: r }, rows, baseUrls);
  for (const [type, id, , url, identSystem, identValue] of rows as Array<Array<string | null>>) {
    const params = patient && type === 'Patient' ? [param, 'patient'] : [param];
    for (const p of params) {
      if (type && id) keys.add(`${p}>${type}/${id}`);
      if (url) keys.add(`${p}>${url}`);
      if (identValue) {
        keys.add(`${p}:identifier=${identValue}`);
        keys.add(`${p}:identifier=${identSystem ?? ''}|${identValue}`);
      }
    }
  }
}

/** Column positions in the generic index layout (src/search/index-tables.ts). */
const TOKEN = { param: 0, system: 1, code: 2 };
const REFERENCE = { param: 0, targetType: 1, targetId: 2, url: 4, identSystem: 5, identValue: 6 };
const text = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/**
 * The same keys built from generic index rows (`SearchIndexer.extract`), as migration 0014 does
 * in SQL for AuditEvents stored before it: the reference `auditEventKeys` is checked against.
 */
export function keysFromIndexRows(rows: Map<string, unknown[][]>): string[] {
  const keys = new Set<string>();
  for (const r of rows.get('search_token') ?? []) {
    const param = text(r[TOKEN.param]);
    const system = text(r[TOKEN.system]);
    const code = text(r[TOKEN.code]);
    if (!param || code === undefined) continue;
    if (system !== undefined) keys.add(`${param}=${code}`);
    keys.add(`${param}=${system ?? ''}|${code}`);
  }
  for (const r of rows.get('search_reference') ?? []) {
    const param = text(r[REFERENCE.param]);
    if (!param) continue;
    const type = text(r[REFERENCE.targetType]);
    const id = text(r[REFERENCE.targetId]);
    const url = text(r[REFERENCE.url]);
    const identValue = text(r[REFERENCE.identValue]);
    if (type && id) keys.add(`${param}>${type}/${id}`);
    if (url) keys.add(`${param}>${url}`);
    if (identValue !== undefined) {
      keys.add(`${param}:identifier=${identValue}`);
      keys.add(`${param}:identifier=${text(r[REFERENCE.identSystem]) ?? ''}|${identValue}`);
    }
  }
  return [...keys].sort();
}
