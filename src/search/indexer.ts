import type { Resource } from 'fhir/r4.js';
import type { TypedValue } from './expression.js';
import { COMPOSITE, DATE, FULLTEXT, indexTables, NUMBER, QUANTITY, REFERENCE, STRING, TOKEN, URI, type IndexRows } from './index-tables.js';
import { DEFAULT_TEXT_SEARCH_LANGUAGE, fullTextRow } from './full-text.js';
import type { CompiledSearchParam } from './registry.js';
import type { SearchParameterRegistry } from './registry.js';
import { toCanonical, UCUM_SYSTEM } from './ucum.js';
import { MAX_TS, MIN_TS, normalizeString, numberToString, parseDateRange } from './values.js';

/**
 * Turns a resource into search index rows (see index-tables.ts). Runs on every write, so it
 * only uses the precompiled accessors and plain loops.
 *
 * Row value conventions (shared with the SQL compilers in `sql/`):
 *   token:     [param, system, code, text, type_system, type_code, sort_asc, sort_desc]
 *   string:    [param, folded, exact, …]
 *   date:      [param, lowIso, highIso(exclusive), …]
 *   number:    [param, low, high, …]
 *   quantity:  [param, low, high, system, code, unit, canon_code, canon_low, canon_high, …]
 *   reference: [param, target_type, target_id, target_version, url, ident_system, ident_value, …]
 *   uri:       [param, value, …]
 */

/** Values longer than this are cut before indexing: btree entries are limited to ~2.7 kB. */
export const MAX_INDEXED_TEXT = 255;
export const MAX_INDEXED_URI = 512;

export interface IndexerOptions {
  /** Our own base URLs: absolute references starting with one are indexed as relative. */
  baseUrls?: readonly string[];
  /** Text search configuration of the full-text rows (FHIR_TEXT_SEARCH_LANGUAGE); default english. */
  textSearchLanguage?: string;
}

type Row = unknown[];

/** Open ends of Ranges: PostgreSQL numeric accepts ±Infinity. */
export const NEG_INF = '-Infinity';
export const POS_INF = 'Infinity';

function cut(s: string, max = MAX_INDEXED_TEXT): string {
  return s.length > max ? s.slice(0, max) : s;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : v === undefined || v === null ? [] : [v];
}

const primitiveTokenTypes = new Set(['code', 'string', 'uri', 'url', 'canonical', 'id', 'oid', 'uuid', 'markdown', 'integer', 'positiveInt', 'unsignedInt', 'decimal', 'date', 'dateTime', 'instant', 'time']);

/** Token rows (without param and flags): [system, code, text, type_system, type_code]. */
export function tokenValues(n: TypedValue, out: Row[]): void {
  const v = n.v;
  switch (n.t) {
    case 'Coding': {
      const c = obj(v);
      if (c) pushCoding(c, out);
      return;
    }
    case 'CodeableConcept': {
      const cc = obj(v);
      if (!cc) return;
      const from = out.length;
      for (const c of arr(cc.coding)) {
        const co = obj(c);
        if (co) pushCoding(co, out);
      }
      const text = str(cc.text);
      if (!text) return;
      // CodeableConcept.text usually repeats a coding's display: that row already answers :text.
      const folded = cut(normalizeString(text));
      for (let i = from; i < out.length; i++) if (out[i]![2] === folded) return;
      out.push([null, null, folded, null, null]);
      return;
    }
    case 'Identifier': {
      const id = obj(v);
      if (!id) return;
      const system = str(id.system);
      const value = str(id.value);
      if (!system && !value) return;
      const type = obj(id.type);
      const typeText = type && str(type.text) ? cut(normalizeString(type.text as string)) : null;
      const codings = type ? arr(type.coding).map(obj).filter((c) => c && str(c.code)) : [];
      if (codings.length === 0) {
        out.push([system ? cut(system) : null, value ? cut(value) : null, typeText, null, null]);
      } else {
        for (const c of codings) {
          out.push([system ? cut(system) : null, value ? cut(value) : null, typeText, str(c!.system) ?? null, cut(c!.code as string)]);
        }
      }
      return;
    }
    case 'ContactPoint': {
      const cp = obj(v);
      const value = cp && str(cp.value);
      if (value) out.push([null, cut(value), null, null, null]);
      return;
    }
    case 'boolean':
      if (typeof v === 'boolean') out.push([null, v ? 'true' : 'false', null, null, null]);
      return;
    case 'Reference': {
      // Rare (e.g. token params over Reference in profiles): index the identifier.
      const r = obj(v);
      const id = r && obj(r.identifier);
      if (id) tokenValues({ v: id, t: 'Identifier' }, out);
      return;
    }
    default:
      if (primitiveTokenTypes.has(n.t) && (typeof v === 'string' || typeof v === 'number')) {
        const s = String(v);
        if (s.length) out.push([null, cut(s), null, null, null]);
      }
  }
}

function pushCoding(c: Record<string, unknown>, out: Row[]): void {
  const system = str(c.system);
  const code = str(c.code);
  const display = str(c.display);
  if (!system && !code && !display) return;
  out.push([system ? cut(system) : null, code ? cut(code) : null, display ? cut(normalizeString(display)) : null, null, null]);
}

const nameParts = ['family', 'given', 'prefix', 'suffix', 'text'];
const addressParts = ['line', 'city', 'district', 'state', 'postalCode', 'country', 'text'];

/** String values of a node (HumanName / Address parts, or the primitive itself). */
export function stringValues(n: TypedValue, out: string[]): void {
  const v = n.v;
  if (typeof v === 'string') {
    if (v.length) out.push(v);
    return;
  }
  const o = obj(v);
  if (!o) return;
  const parts = n.t === 'HumanName' ? nameParts : n.t === 'Address' ? addressParts : undefined;
  if (!parts) {
    // Other complex types (Annotation, Attachment…): their direct string children.
    for (const val of Object.values(o)) if (typeof val === 'string' && val.length) out.push(val);
    return;
  }
  for (const p of parts) {
    for (const s of arr(o[p])) if (typeof s === 'string' && s.length) out.push(s);
  }
}

/** Date ranges of a node: [lowIso, highIso) pairs. */
export function dateValues(n: TypedValue, out: Array<[string, string]>): void {
  const v = n.v;
  if (typeof v === 'string') {
    const r = parseDateRange(v);
    if (r) out.push([r.low, r.high]);
    return;
  }
  const o = obj(v);
  if (!o) return;
  if (n.t === 'Period') {
    const s = typeof o.start === 'string' ? parseDateRange(o.start) : null;
    const e = typeof o.end === 'string' ? parseDateRange(o.end) : null;
    if (!s && !e) return;
    out.push([s ? s.low : MIN_TS, e ? e.high : MAX_TS]);
  } else if (n.t === 'Timing') {
    for (const ev of arr(o.event)) {
      const r = typeof ev === 'string' ? parseDateRange(ev) : null;
      if (r) out.push([r.low, r.high]);
    }
    const bounds = obj(obj(o.repeat)?.boundsPeriod);
    if (bounds) dateValues({ v: bounds, t: 'Period' }, out);
  }
}

function decimalOf(v: unknown): string | null {
  if (typeof v === 'number') return numberToString(v);
  if (typeof v === 'string' && /^-?\d+(\.\d+)?$/.test(v)) return v;
  return null;
}

/** Quantity rows (without param and flags): [low, high, system, code, unit, canon_code, canon_low, canon_high]. */
export function quantityValues(n: TypedValue, out: Row[]): void {
  const o = obj(n.v);
  if (!o) return;
  if (n.t === 'Range') {
    const lo = obj(o.low);
    const hi = obj(o.high);
    const unitSrc = lo ?? hi;
    if (!unitSrc) return;
    const low = lo ? decimalOf(lo.value) : null;
    const high = hi ? decimalOf(hi.value) : null;
    if (low === null && high === null) return;
    const system = str(unitSrc.system) ?? null;
    const code = str(unitSrc.code) ?? null;
    const cl = low !== null && code && system === UCUM_SYSTEM ? toCanonical(low, code) : null;
    const ch = high !== null && code && system === UCUM_SYSTEM ? toCanonical(high, code) : null;
    const canonOk = (low === null || cl) && (high === null || ch);
    // open ends are ±Infinity (numeric supports them) so comparisons stay plain and indexable
    out.push([
      low ?? NEG_INF, high ?? POS_INF, system, code, str(unitSrc.unit) ?? null,
      canonOk ? (cl ?? ch)!.code : null, canonOk ? cl?.value ?? NEG_INF : null, canonOk ? ch?.value ?? POS_INF : null,
    ]);
    return;
  }
  if (n.t === 'SampledData') return;
  const value = decimalOf(o.value);
  if (value === null) return;
  if (n.t === 'Money') {
    const cur = str(o.currency) ?? null;
    out.push([value, value, cur ? 'urn:iso:std:iso:4217' : null, cur, null, null, null, null]);
    return;
  }
  const system = str(o.system) ?? null;
  const code = str(o.code) ?? null;
  const canon = code && (system === UCUM_SYSTEM || system === null) ? toCanonical(value, code) : null;
  out.push([value, value, system, code, str(o.unit) ?? null, canon?.code ?? null, canon?.value ?? null, canon?.value ?? null]);
}

/** Number rows: [low, high]. */
export function numberValues(n: TypedValue, out: Array<[string | null, string | null]>): void {
  if (n.t === 'Range') {
    const o = obj(n.v);
    const low = decimalOf(obj(o?.low)?.value);
    const high = decimalOf(obj(o?.high)?.value);
    if (low !== null || high !== null) out.push([low ?? NEG_INF, high ?? POS_INF]);
    return;
  }
  const o = obj(n.v);
  const d = o ? decimalOf(o.value) : decimalOf(n.v);
  if (d !== null) out.push([d, d]);
}

const relativeRef = /^([A-Z][A-Za-z]{1,63})\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/([A-Za-z0-9\-.]{1,64}))?$/;
const absoluteRef = /^(https?:\/\/.+?)\/([A-Z][A-Za-z]{1,63})\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/([A-Za-z0-9\-.]{1,64}))?$/;

/** Reference rows: [target_type, target_id, target_version, url, ident_system, ident_value]. */
/** Reference.display folded as token text is (`:text`); null for anything else. */
function referenceDisplay(n: TypedValue): string | null {
  if (n.t !== 'Reference') return null;
  const display = str(obj(n.v)?.display);
  return display ? cut(normalizeString(display)) : null;
}

export function referenceValues(n: TypedValue, out: Row[], baseUrls: readonly string[]): void {
  const v = n.v;
  if (typeof v === 'string') {
    // canonical / uri: url|version
    const bar = v.indexOf('|');
    const url = bar >= 0 ? v.slice(0, bar) : v;
    const version = bar >= 0 ? v.slice(bar + 1) : null;
    const rel = relativeRef.exec(url);
    if (rel) out.push([rel[1], rel[2], rel[3] ?? version, null, null, null]);
    else out.push([null, null, version ? cut(version) : null, cut(url, MAX_INDEXED_URI), null, null]);
    return;
  }
  const o = obj(v);
  if (!o) return;
  if (n.t !== 'Reference') {
    // A resource itself (Bundle.entry[0].resource).
    if (typeof o.resourceType === 'string' && typeof o.id === 'string') out.push([o.resourceType, o.id, null, null, null, null]);
    return;
  }
  const ref = str(o.reference);
  const ident = obj(o.identifier);
  const identSystem = ident ? str(ident.system) ?? null : null;
  const identValue = ident ? str(ident.value) ?? null : null;
  const type = str(o.type) ?? null;
  if (ref) {
    const rel = relativeRef.exec(ref);
    if (rel) {
      out.push([rel[1], rel[2], rel[3] ?? null, null, identSystem, identValue]);
      return;
    }
    const abs = absoluteRef.exec(ref);
    if (abs && baseUrls.includes(abs[1]!)) {
      out.push([abs[2], abs[3], abs[4] ?? null, null, identSystem, identValue]);
      return;
    }
    // external absolute, urn:uuid:, #contained: kept as url; the type still serves `:Type`.
    out.push([abs ? abs[2] : type, null, abs ? abs[4] ?? null : null, cut(ref, MAX_INDEXED_URI), identSystem, identValue]);
    return;
  }
  if (identSystem || identValue) out.push([type, null, null, null, identSystem ? cut(identSystem) : null, identValue ? cut(identValue) : null]);
}

export function uriValues(n: TypedValue, out: string[]): void {
  if (typeof n.v === 'string' && n.v.length) out.push(cut(n.v, MAX_INDEXED_URI));
}

/** Sort key of an index row, per table; null sorts last. */
function sortKey(table: string, row: Row, desc: boolean): string | number | null {
  switch (table) {
    case TOKEN:
      return (row[2] as string | null) ?? null;
    case STRING:
      return row[1] as string;
    case DATE:
      return (desc ? row[2] : row[1]) as string;
    case NUMBER:
    case QUANTITY: {
      const x = (desc ? row[2] ?? row[1] : row[1] ?? row[2]) as string | null;
      return x === null ? null : Number(x);
    }
    case REFERENCE:
      return row[1] !== null ? `${row[1] as string}/${(row[2] as string | null) ?? ''}` : ((row[4] as string | null) ?? null);
    case URI:
      return row[1] as string;
    default:
      return null;
  }
}

function dateKey(s: string): number {
  return s === MIN_TS ? -Infinity : s === MAX_TS ? Infinity : Date.parse(s);
}

function less(a: string | number | null, b: string | number | null, table: string): boolean {
  if (a === null) return false;
  if (b === null) return true;
  if (table === DATE) return dateKey(a as string) < dateKey(b as string);
  return a < b;
}

/** Flags the rows [from, to) of one param: the smallest key gets sort_asc, the largest sort_desc. */
function flagSortRows(table: string, rows: Row[], from: number, flagsAt: number): void {
  if (rows.length - from === 1) {
    rows[from]![flagsAt] = true;
    rows[from]![flagsAt + 1] = true;
    return;
  }
  let minI = from;
  let maxI = from;
  for (let i = from + 1; i < rows.length; i++) {
    if (less(sortKey(table, rows[i]!, false), sortKey(table, rows[minI]!, false), table)) minI = i;
    if (less(sortKey(table, rows[maxI]!, true), sortKey(table, rows[i]!, true), table)) maxI = i;
  }
  rows[minI]![flagsAt] = true;
  rows[maxI]![flagsAt + 1] = true;
}

interface Cell {
  system: string | null;
  code: string | null;
  low: string | null;
  high: string | null;
  dlow: string | null;
  dhigh: string | null;
  /** quantity as written (low/high may be UCUM-canonical) */
  vlow: string | null;
  vhigh: string | null;
}

function componentCells(type: string, nodes: TypedValue[], baseUrls: readonly string[]): Cell[] {
  const cells: Cell[] = [];
  const empty = { system: null, code: null, low: null, high: null, dlow: null, dhigh: null, vlow: null, vhigh: null };
  for (const n of nodes) {
    switch (type) {
      case 'token': {
        const rows: Row[] = [];
        tokenValues(n, rows);
        for (const r of rows) if (r[1] !== null) cells.push({ ...empty, system: r[0] as string | null, code: r[1] as string });
        break;
      }
      case 'reference': {
        const rows: Row[] = [];
        referenceValues(n, rows, baseUrls);
        for (const r of rows) {
          const code = r[1] !== null ? `${r[0] as string}/${r[1] as string}` : (r[3] as string | null);
          if (code) cells.push({ ...empty, code });
        }
        break;
      }
      case 'string':
      case 'uri': {
        const s: string[] = [];
        if (type === 'string') stringValues(n, s);
        else uriValues(n, s);
        for (const x of s) cells.push({ ...empty, code: cut(type === 'string' ? normalizeString(x) : x) });
        break;
      }
      case 'quantity': {
        const rows: Row[] = [];
        quantityValues(n, rows);
        for (const r of rows) {
          // canonical when convertible so the search side can compare across units; the value
          // as written too, for searches without a unit
          const written = { vlow: r[0] as string | null, vhigh: r[1] as string | null };
          if (r[5] !== null) cells.push({ ...empty, ...written, system: UCUM_SYSTEM, code: r[5] as string, low: r[6] as string | null, high: r[7] as string | null });
          else cells.push({ ...empty, ...written, system: r[2] as string | null, code: r[3] as string | null, low: r[0] as string | null, high: r[1] as string | null });
        }
        break;
      }
      case 'number': {
        const rows: Array<[string | null, string | null]> = [];
        numberValues(n, rows);
        for (const [low, high] of rows) cells.push({ ...empty, low, high });
        break;
      }
      case 'date': {
        const rows: Array<[string, string]> = [];
        dateValues(n, rows);
        for (const [dlow, dhigh] of rows) cells.push({ ...empty, dlow, dhigh });
        break;
      }
    }
  }
  return cells;
}

/**
 * Extracts index rows for every search parameter of the resource's type (including params
 * still waiting for their reindex, so new writes are already complete).
 */
export class SearchIndexer {
  private readonly baseUrls: readonly string[];
  private readonly textSearchLanguage: string;

  constructor(
    private readonly registry: SearchParameterRegistry,
    options: IndexerOptions = {},
  ) {
    this.baseUrls = (options.baseUrls ?? []).map((u) => u.replace(/\/+$/, ''));
    this.textSearchLanguage = options.textSearchLanguage ?? registry.textSearchLanguage ?? DEFAULT_TEXT_SEARCH_LANGUAGE;
  }

  extract(resource: Resource): IndexRows {
    const out: IndexRows = new Map();
    for (const spec of indexTables) out.set(spec.table, []);
    for (const p of this.registry.forType(resource.resourceType)) {
      // A parameter derived from others keeps no rows of its own (registry.ts, storedAs).
      if (!p.accessor || p.storedAs) continue;
      let nodes: TypedValue[];
      try {
        nodes = p.accessor.evaluate(resource);
      } catch {
        // A fallback expression that fails on odd data must not block the write.
        continue;
      }
      if (nodes.length === 0) continue;
      this.addRows(p, nodes, resource, out);
    }
    // Full text: the text is gathered once here; PostgreSQL builds the tsvectors in the write.
    const text = fullTextRow(resource, this.textSearchLanguage);
    if (text) out.get(FULLTEXT)!.push(text);
    return out;
  }

  private addRows(p: CompiledSearchParam, nodes: TypedValue[], resource: Resource, out: IndexRows): void {
    switch (p.type) {
      case 'token': {
        const rows = out.get(TOKEN)!;
        const from = rows.length;
        const vals: Row[] = [];
        for (const n of nodes) tokenValues(n, vals);
        for (const v of vals) rows.push([p.code, v[0], v[1], v[2], v[3], v[4], false, false]);
        if (rows.length > from) flagSortRows(TOKEN, rows, from, 6);
        return;
      }
      case 'string': {
        const rows = out.get(STRING)!;
        const from = rows.length;
        const vals: string[] = [];
        for (const n of nodes) stringValues(n, vals);
        for (const s of vals) rows.push([p.code, cut(normalizeString(s)), cut(s), false, false]);
        if (rows.length > from) flagSortRows(STRING, rows, from, 3);
        return;
      }
      case 'date': {
        const rows = out.get(DATE)!;
        const from = rows.length;
        const vals: Array<[string, string]> = [];
        for (const n of nodes) dateValues(n, vals);
        for (const [lo, hi] of vals) rows.push([p.code, lo, hi, false, false]);
        if (rows.length > from) flagSortRows(DATE, rows, from, 3);
        return;
      }
      case 'number': {
        const rows = out.get(NUMBER)!;
        const from = rows.length;
        const vals: Array<[string | null, string | null]> = [];
        for (const n of nodes) numberValues(n, vals);
        for (const [lo, hi] of vals) rows.push([p.code, lo, hi, false, false]);
        if (rows.length > from) flagSortRows(NUMBER, rows, from, 3);
        return;
      }
      case 'quantity': {
        const rows = out.get(QUANTITY)!;
        const from = rows.length;
        const vals: Row[] = [];
        for (const n of nodes) quantityValues(n, vals);
        for (const v of vals) rows.push([p.code, ...v, false, false]);
        if (rows.length > from) flagSortRows(QUANTITY, rows, from, 9);
        return;
      }
      case 'reference': {
        const rows = out.get(REFERENCE)!;
        const from = rows.length;
        const vals: Row[] = [];
        const displays: Array<string | null> = [];
        for (const n of nodes) {
          const before = vals.length;
          referenceValues(n, vals, this.baseUrls);
          const display = referenceDisplay(n);
          // A reference known only by its display is still found by :text (and is not :missing).
          if (vals.length === before && display !== null) vals.push([str(obj(n.v)?.type) ?? null, null, null, null, null, null]);
          while (displays.length < vals.length) displays.push(display);
        }
        vals.forEach((v, i) => rows.push([p.code, ...v, false, false, displays[i]]));
        if (rows.length > from) flagSortRows(REFERENCE, rows, from, 7);
        return;
      }
      case 'uri': {
        const rows = out.get(URI)!;
        const from = rows.length;
        const vals: string[] = [];
        for (const n of nodes) uriValues(n, vals);
        for (const s of vals) rows.push([p.code, s, false, false]);
        if (rows.length > from) flagSortRows(URI, rows, from, 2);
        return;
      }
      case 'composite': {
        if (p.components.length < 2) return;
        const rows = out.get(COMPOSITE)!;
        for (const n of nodes) {
          const cellLists = p.components.slice(0, 3).map((c) => {
            let vals: TypedValue[];
            try {
              vals = c.accessor.evaluateOn([n], resource);
            } catch {
              vals = [];
            }
            return componentCells(c.type, vals, this.baseUrls);
          });
          if (cellLists.some((l) => l.length === 0)) continue;
          const [first, second, third] = cellLists;
          for (const a of first!) {
            for (const b2 of second!) {
              for (const c3 of third ?? [null]) {
                rows.push([
                  p.code, a.system, a.code, b2.system, b2.code, b2.low, b2.high, b2.dlow, b2.dhigh,
                  c3 ? c3.low : null, c3 ? c3.high : null, b2.vlow, b2.vhigh,
                ]);
              }
            }
          }
        }
        return;
      }
      default:
        return; // special: not indexed
    }
  }
}
