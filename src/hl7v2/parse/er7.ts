import HL7, { type LibraryField, type LibrarySegment } from 'hl7-standard';
import { unescapeText } from './escapes.js';
import { Segment, STANDARD_DELIMITERS, type Delimiters, type Hl7Message, type MessageHeader, type Repetition } from './message.js';

/** Why a message could not be read; becomes an AR acknowledgement. */
export class Hl7ParseError extends Error {
  constructor(
    message: string,
    /** HL7 table 0357 error code: 100 segment sequence, 102 data type, 207 application internal. */
    readonly code = '100',
  ) {
    super(message);
    this.name = 'Hl7ParseError';
  }
}

/** Segment ends may be \r, \n or \r\n (senders differ); the standard's is \r. */
export function normalizeSegmentEnds(text: string): string {
  // Most messages already end their segments with \r and have no byte order mark: no copy.
  if (text.charCodeAt(0) !== 0xfeff && !text.includes('\n')) return text;
  return text.replace(/^\uFEFF/, '').replace(/\r\n|\n/g, '\r');
}

/**
 * Reads MSH-1 and MSH-2. MSH-2 names component, repetition, escape and (optionally)
 * subcomponent separators, plus in v2.7+ a fifth truncation character that we treat as text.
 */
export function readDelimiters(text: string): Delimiters {
  if (!text.startsWith('MSH')) throw new Hl7ParseError('the message does not start with an MSH segment');
  const field = text.charAt(3);
  if (!field || /[A-Za-z0-9\r\n ]/.test(field)) throw new Hl7ParseError('MSH-1 (field separator) is missing or invalid', '102');
  const end = text.indexOf(field, 4);
  const encoding = text.slice(4, end < 0 ? undefined : end).replace(/\r.*$/s, '');
  if (encoding.length < 3) throw new Hl7ParseError('MSH-2 (encoding characters) must name at least three characters', '102');
  const [component, repetition, escape, subcomponent = ''] = [...encoding.slice(0, 4)];
  const all = [field, component, repetition, escape, subcomponent].filter((c) => c !== '');
  if (new Set(all).size !== all.length || all.some((c) => /[A-Za-z0-9\r\n ]/.test(c))) {
    throw new Hl7ParseError(`MSH-2 encoding characters "${encoding}" are not distinct separator characters`, '102');
  }
  return { field, component, repetition, escape, subcomponent };
}

/**
 * The MSH fields needed to store and answer a message, read without parsing the rest of it.
 * Lenient: with unusable encoding characters (MSH-2) but a usable field separator, MSH-10 can
 * still be read, so even the rejection names the message it rejects.
 */
export function readHeader(raw: string): MessageHeader {
  // Only the MSH line is read: every receipt reads it, whatever the message's size.
  const start = raw.charCodeAt(0) === 0xfeff ? 1 : 0;
  let end = raw.indexOf('\r', start);
  const newline = raw.indexOf('\n', start);
  if (end < 0 || (newline >= 0 && newline < end)) end = newline;
  const text = end < 0 ? raw.slice(start) : raw.slice(start, end);
  let delimiters: Delimiters;
  try {
    delimiters = readDelimiters(text);
  } catch (e) {
    const field = text.charAt(3);
    if (!text.startsWith('MSH') || !field || /[A-Za-z0-9\r\n ^~\\&]/.test(field)) throw e;
    delimiters = { ...STANDARD_DELIMITERS, field };
  }
  // fields[n] is MSH-n: MSH-1 is the separator itself, so the split is shifted by one.
  const parts = text.split(delimiters.field);
  const field = (n: number) => (n === 1 ? delimiters.field : (parts[n - 1] ?? ''));
  const components = (n: number) => field(n).split(delimiters.component).map((c) => unescapeText(c.split(delimiters.repetition)[0], delimiters));
  const hd = (n: number) => components(n).join('^').replace(/\^+$/, '');
  const type = field(9).split(delimiters.component);
  return {
    delimiters,
    sendingApplication: hd(3),
    sendingFacility: hd(4),
    receivingApplication: hd(5),
    receivingFacility: hd(6),
    dateTime: components(7)[0] ?? '',
    messageCode: (type[0] ?? '').trim(),
    triggerEvent: (type[1] ?? '').trim(),
    messageStructure: (type[2] ?? '').trim(),
    controlId: unescapeText(field(10), delimiters).trim(),
    processingId: components(11)[0] ?? '',
    version: (components(12)[0] ?? '').trim(),
    acceptAckType: (components(15)[0] ?? '').trim().toUpperCase(),
    applicationAckType: (components(16)[0] ?? '').trim().toUpperCase(),
  };
}

/** Swaps characters a and b everywhere in text (a bijection, so it can be undone by itself). */
function swap(text: string, a: string, b: string): string {
  if (a === b) return text;
  let out = '';
  for (const ch of text) out += ch === a ? b : ch === b ? a : ch;
  return out;
}

/**
 * Parses a whole ER7 message with hl7-standard. The library hard-codes `|` and `^` as field
 * and component separators, overwrites MSH-2, splits on one kind of line ending only and does
 * not decode escape sequences, so: segment ends are normalised to \r first; a message with
 * other field / component separators is translated by swapping those characters with `|`
 * and `^` (a character permutation, undone on every value afterwards); the repetition and
 * subcomponent separators are handed to the library from MSH-2; and every value is
 * unescaped here after splitting.
 */
export function parseMessage(raw: string): Hl7Message {
  const text = normalizeSegmentEnds(raw);
  readDelimiters(text);
  const header = readHeader(text);
  const d = header.delimiters;
  const swaps: Array<[string, string]> = [];
  let translated = text;
  const forward = (ch: string) => swaps.reduce((c, [a, b]) => (c === a ? b : c === b ? a : c), ch);
  for (const [actual, standard] of [
    [d.field, '|'],
    [d.component, '^'],
  ] as const) {
    const now = forward(actual);
    if (now !== standard) {
      translated = swap(translated, now, standard);
      swaps.push([now, standard]);
    }
  }
  const back = (value: string) => swaps.reduceRight((v, [a, b]) => swap(v, a, b), value);
  // A message without a subcomponent separator: hand the library a character that cannot occur.
  const library = new HL7(translated, {
    subComponents: forward(d.repetition),
    repeatingFields: d.subcomponent ? forward(d.subcomponent) : '\u0000',
    lineEndings: '\r',
  });
  try {
    library.transform();
  } catch (e) {
    throw new Hl7ParseError(`the message cannot be parsed: ${e instanceof Error ? e.message : String(e)}`);
  }
  // Most messages have neither swapped separators nor escape sequences: their values are final.
  const afterEncoding = text.indexOf(d.field, 4);
  const identity = swaps.length === 0 && afterEncoding > 0 && !text.includes(d.escape, afterEncoding);
  const leaf = identity ? (value: string) => value : (value: string) => unescapeText(swaps.length ? back(value) : value, d);
  const segments = library
    .getSegments()
    .slice()
    .sort((a, b) => a.index - b.index)
    .map((s) => toSegment(s, leaf, d));
  if (segments[0]?.name !== 'MSH') throw new Hl7ParseError('the first segment is not MSH');
  return { header, segments };
}

/** The number after `from` in a library key (`OBX.5`, `OBX.5.2`), or -1: read without slicing (hot: every field of every message). */
function keyNumber(key: string, from: number): number {
  if (from <= 0 || from >= key.length) return -1;
  let n = 0;
  for (let i = from; i < key.length; i++) {
    const digit = key.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return -1;
    n = n * 10 + digit;
  }
  return n;
}

function toSegment(s: LibrarySegment, leaf: (v: string) => string, d: Delimiters): Segment {
  const fields: Repetition[][] = [];
  const data = s.data;
  for (const key in data) {
    const n = keyNumber(key, key.indexOf('.') + 1);
    if (n < 1) continue;
    fields[n] = toRepetitions(data[key], leaf);
  }
  if (s.type === 'MSH') {
    // The library rewrites MSH-2; MSH-1 and MSH-2 are the delimiters themselves, never split.
    fields[1] = [[[d.field]]];
    fields[2] = [[[d.component + d.repetition + d.escape + d.subcomponent]]];
  }
  for (let i = 0; i < fields.length; i++) fields[i] ??= [];
  return new Segment(s.type, fields);
}

/** The library's shapes (text, component map, list of repetitions or of subcomponents) → repetitions. */
function toRepetitions(value: LibraryField, leaf: (v: string) => string): Repetition[] {
  if (typeof value === 'string') return [[[leaf(value)]]];
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v === 'string')) return [[value.map((v) => leaf(v as string))]];
    return value.map((rep) => (typeof rep === 'string' ? [[leaf(rep)]] : toComponents(rep, leaf)));
  }
  return [toComponents(value, leaf)];
}

function toComponents(rep: Record<string, string | string[]>, leaf: (v: string) => string): Repetition {
  const comps: string[][] = [];
  for (const key in rep) {
    const k = keyNumber(key, key.lastIndexOf('.') + 1);
    if (k < 1) continue;
    const value = rep[key];
    comps[k - 1] = Array.isArray(value) ? value.map(leaf) : [leaf(value)];
  }
  for (let i = 0; i < comps.length; i++) comps[i] ??= [''];
  return comps;
}
