import type { Resource } from 'fhir/r4.js';
import { errors } from '../fhir/errors.js';
import { attachmentTextsOf } from './attachment-text.js';

/**
 * Full-text search (`_content`, `_text`; issue 15 §3): the text of a resource gathered once in
 * Node at write time (one row per resource in `search_text`, turned into `tsvector`s by
 * PostgreSQL with the configured text search configuration), and the query language of the
 * two parameters.
 *
 * What counts as text:
 *   - `_text`: the narrative, `text.div` with its tags stripped and entities decoded.
 *   - `_content`: every string of the resource (narrative included) except those that are
 *     identifiers of machinery rather than words: ids, references, systems, urls, profiles,
 *     base64 data; attachments that carry text (`contentType` text/*, base64 `data`) are decoded
 *     and included, PDFs through the text extracted before the write (pdf-text.ts).
 */

/** Text search configuration used when none is configured (FHIR_TEXT_SEARCH_LANGUAGE). */
export const DEFAULT_TEXT_SEARCH_LANGUAGE = 'english';

/**
 * At most this many characters of text per resource and field: keeps the tsvector far below
 * PostgreSQL's 1 MB limit (a longer text would make the write fail) and the write cheap.
 */
export const MAX_TEXT_CHARS = 256 * 1024;
/** Attachments larger than this (decoded) are not read for `_content`. */
export const MAX_ATTACHMENT_BYTES = 2 * 1024 * 1024;

/** Keys whose string values are not words (identifiers, links, binary). */
const SKIPPED_KEYS = new Set(['resourceType', 'id', 'reference', 'system', 'url', 'fullUrl', 'profile', 'div', 'data', 'hash', 'versionId', 'lastUpdated', 'source', 'contentType', 'language', 'valueBase64Binary', 'signature']);

/** Text already extracted from binary attachments (PDFs), looked up by the attachment object. */
export interface AttachmentTexts {
  get(attachment: object): string | undefined;
}

export interface ResourceTexts {
  /** everything, for `_content` */
  content: string;
  /** the narrative, for `_text` (null: none) */
  narrative: string | null;
}

export function isTextContentType(ct: unknown): boolean {
  return typeof ct === 'string' && /^text\//i.test(ct.trim());
}

/** Base64 → UTF-8 text, or undefined when too large. */
export function decodeBase64Text(data: string): string | undefined {
  // 4 base64 characters = 3 bytes
  if ((data.length / 4) * 3 > MAX_ATTACHMENT_BYTES) return undefined;
  return Buffer.from(data, 'base64').toString('utf8');
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' };

/** XHTML → its text: tags become spaces (a `<td>` boundary separates words), entities decoded. */
export function stripTags(xhtml: string): string {
  return xhtml
    .replace(/<!--[\s\S]*?-->/g, ' ')
    .replace(/<[^>]*>/g, ' ')
    .replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (m, e: string) => {
      if (e[0] === '#') {
        const code = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
        return Number.isFinite(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : ' ';
      }
      return ENTITIES[e.toLowerCase()] ?? m;
    })
    .replace(/\s+/g, ' ')
    .trim();
}

/** Collects text parts up to MAX_TEXT_CHARS. */
class TextSink {
  readonly parts: string[] = [];
  size = 0;
  add(s: string): void {
    if (this.size >= MAX_TEXT_CHARS || s.length === 0) return;
    const room = MAX_TEXT_CHARS - this.size;
    const part = s.length > room ? s.slice(0, room) : s;
    this.parts.push(part);
    this.size += part.length + 1;
  }
  text(): string {
    return this.parts.join('\n');
  }
}

/** The narrative's text, or null. */
export function narrativeText(resource: Resource): string | null {
  const div = (resource as { text?: { div?: unknown } }).text?.div;
  if (typeof div !== 'string' || div.length === 0) return null;
  const t = stripTags(div);
  if (t.length === 0) return null;
  return t.length > MAX_TEXT_CHARS ? t.slice(0, MAX_TEXT_CHARS) : t;
}

/**
 * The resource's `search_text` row (index-tables.ts: config, content, narrative), or undefined
 * when it has no text: what a write stores and what a back-fill rewrites. Inline PDFs must have
 * been read first (pdf-text.ts), as the write's hook does.
 */
export function fullTextRow(resource: Resource, language: string): [string, string, string | null] | undefined {
  const texts = resourceTexts(resource, attachmentTextsOf());
  return texts.content.length > 0 ? [language, texts.content, texts.narrative] : undefined;
}

/** The texts of a resource for `_content` and `_text`. */
export function resourceTexts(resource: Resource, attachments?: AttachmentTexts): ResourceTexts {
  const narrative = narrativeText(resource);
  const sink = new TextSink();
  if (narrative) sink.add(narrative);
  walk(resource, sink, attachments, 0);
  return { content: sink.text(), narrative };
}

function walk(node: unknown, sink: TextSink, attachments: AttachmentTexts | undefined, depth: number): void {
  if (depth > 64 || sink.size >= MAX_TEXT_CHARS) return;
  if (Array.isArray(node)) {
    for (const item of node) walk(item, sink, attachments, depth + 1);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const o = node as Record<string, unknown>;
  // An attachment carrying text: its decoded data is part of the content.
  if (typeof o.data === 'string') {
    if (isTextContentType(o.contentType)) {
      const text = decodeBase64Text(o.data);
      if (text) sink.add(text);
    } else {
      const extracted = attachments?.get(o);
      if (extracted) sink.add(extracted);
    }
  }
  for (const [k, v] of Object.entries(o)) {
    if (SKIPPED_KEYS.has(k)) continue;
    if (typeof v === 'string') {
      if (!looksLikeIdentifier(v)) sink.add(v);
    } else if (typeof v === 'object' && v !== null) {
      // the narrative is already in
      if (k === 'text' && depth === 0 && !Array.isArray(v)) continue;
      walk(v, sink, attachments, depth + 1);
    }
  }
}

/** URIs and urn:uuid/oid values are links, not words. */
function looksLikeIdentifier(s: string): boolean {
  return /^(https?:\/\/|urn:)\S*$/i.test(s);
}

// ---------------------------------------------------------------------------------------------
// Query language
// ---------------------------------------------------------------------------------------------

/**
 * A parsed `_content` / `_text` value. The FHIR search page describes the value as text with
 * phrase ("quoted"), prefix (`word*`) and boolean (AND, OR, NOT) forms; terms side by side are
 * ANDed, `-term` is NOT, parentheses group. Words are stemmed with the configured language.
 */
export type TextQuery =
  | { op: 'word'; text: string; prefix: boolean }
  | { op: 'phrase'; text: string }
  | { op: 'not'; part: TextQuery }
  | { op: 'and' | 'or'; parts: TextQuery[] };

const MAX_TERMS = 64;
const MAX_DEPTH = 16;

type Tok = { t: 'word'; v: string; prefix: boolean } | { t: 'phrase'; v: string } | { t: '(' } | { t: ')' } | { t: 'and' } | { t: 'or' } | { t: 'not' };

function tokenize(raw: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < raw.length) {
    const c = raw[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '"') {
      const end = raw.indexOf('"', i + 1);
      const v = end < 0 ? raw.slice(i + 1) : raw.slice(i + 1, end);
      out.push({ t: 'phrase', v });
      i = end < 0 ? raw.length : end + 1;
    } else if (c === '(' || c === ')') {
      out.push({ t: c });
      i++;
    } else if (c === '-' && i + 1 < raw.length && !/\s/.test(raw[i + 1]!) && (out.length === 0 || prevAllowsNot(raw, i))) {
      out.push({ t: 'not' });
      i++;
    } else {
      let j = i;
      while (j < raw.length && !/[\s"()]/.test(raw[j]!)) j++;
      const w = raw.slice(i, j);
      i = j;
      const upper = w.toUpperCase();
      if (upper === 'AND') out.push({ t: 'and' });
      else if (upper === 'OR') out.push({ t: 'or' });
      else if (upper === 'NOT') out.push({ t: 'not' });
      else if (w.endsWith('*') && w.length > 1) out.push({ t: 'word', v: w.replace(/\*+$/, ''), prefix: true });
      else out.push({ t: 'word', v: w, prefix: false });
    }
  }
  return out;
}

/** A `-` starts a negation at the start of a term (after a space or parenthesis). */
function prevAllowsNot(raw: string, i: number): boolean {
  const p = raw[i - 1];
  return p === undefined || /[\s(]/.test(p);
}

function bad(msg: string): never {
  throw errors.incorrect(`Invalid full-text query: ${msg}`, ['_content']);
}

/**
 * Parses one value (one OR branch of the parameter). Precedence: NOT > AND (explicit or by
 * juxtaposition) > OR. Throws a 400 for an empty or purely negative query (it would need a
 * scan of every resource) and for too many terms.
 */
export function parseTextQuery(raw: string): TextQuery {
  const toks = tokenize(raw);
  let pos = 0;
  let terms = 0;
  const peek = () => toks[pos];
  const orExpr = (depth: number): TextQuery | undefined => {
    if (depth > MAX_DEPTH) bad(`at most ${MAX_DEPTH} nested parentheses`);
    const parts: TextQuery[] = [];
    let a = andExpr(depth);
    if (a) parts.push(a);
    while (peek()?.t === 'or') {
      pos++;
      a = andExpr(depth);
      if (a) parts.push(a);
    }
    return parts.length === 0 ? undefined : parts.length === 1 ? parts[0] : { op: 'or', parts };
  };
  const andExpr = (depth: number): TextQuery | undefined => {
    const parts: TextQuery[] = [];
    for (;;) {
      const t = peek();
      if (!t || t.t === 'or' || t.t === ')') break;
      if (t.t === 'and') {
        pos++;
        continue;
      }
      const u = unary(depth);
      if (u) parts.push(u);
    }
    return parts.length === 0 ? undefined : parts.length === 1 ? parts[0] : { op: 'and', parts };
  };
  const unary = (depth: number): TextQuery | undefined => {
    const t = toks[pos++]!;
    switch (t.t) {
      case 'not': {
        if (!peek() || peek()!.t === ')' || peek()!.t === 'or') return undefined;
        const u = unary(depth + 1);
        return u ? { op: 'not', part: u } : undefined;
      }
      case '(': {
        const inner = orExpr(depth + 1);
        if (peek()?.t === ')') pos++;
        return inner;
      }
      case ')':
        return undefined;
      case 'word':
      case 'phrase': {
        if (++terms > MAX_TERMS) bad(`at most ${MAX_TERMS} terms`);
        const text = t.v.trim();
        if (!/[\p{L}\p{N}]/u.test(text)) return undefined;
        return t.t === 'word' ? { op: 'word', text, prefix: t.prefix } : { op: 'phrase', text };
      }
      default:
        return undefined;
    }
  };
  const q = orExpr(0);
  // unbalanced closing parentheses: read on as if they were not there
  let rest = q;
  while (pos < toks.length) {
    pos++;
    const more = orExpr(0);
    if (more) rest = rest ? { op: 'and', parts: [rest, more] } : more;
  }
  if (!rest) bad('no word to search for');
  if (!positive(rest)) bad('a query needs at least one word that must be present (a query of NOT terms alone would read every resource)');
  return rest;
}

/** Whether every match must contain some term (so the GIN index can find the matches). */
export function positive(q: TextQuery): boolean {
  switch (q.op) {
    case 'word':
    case 'phrase':
      return true;
    case 'not':
      return false;
    case 'and':
      return q.parts.some(positive);
    case 'or':
      return q.parts.every(positive);
  }
}

/**
 * The lexemes of a prefix term as `to_tsquery` input: the word's letter/digit runs quoted
 * (nothing else reaches the query parser), followed in sequence, the last one a prefix.
 */
export function prefixQueryText(word: string): string | undefined {
  const runs = word.match(/[\p{L}\p{N}]+/gu);
  if (!runs || runs.length === 0) return undefined;
  return runs.map((r, i) => `'${r}'${i === runs.length - 1 ? ':*' : ''}`).join(' <-> ');
}
