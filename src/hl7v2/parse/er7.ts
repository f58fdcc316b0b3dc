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

/** A segment name: three upper-case letters or digits (v2.5.1 §2.5.2, Z-segments included). */
const SEGMENT_NAME = /^[A-Z0-9]{3}$/;

/**
 * Parses a whole ER7 message (v2.5.1 §2.5–2.7): segments end with \r (\n and \r\n are
 * normalised first); fields, repetitions, components and subcomponents are split on the
 * delimiters MSH-1 and MSH-2 name, whatever they are; escape sequences are decoded in each
 * value after splitting. A message with no segment end at all, or with a line whose first
 * three characters are not a segment name, cannot be read (AR); lines without a field
 * separator (blank lines, stray text) are skipped.
 *
 * Written for the receipt path: every message is parsed before it is acknowledged, so this
 * splits each line once per level with `split` and allocates only the arrays it returns.
 */
export function parseMessage(raw: string): Hl7Message {
  const text = normalizeSegmentEnds(raw);
  readDelimiters(text);
  const header = readHeader(text);
  const d = header.delimiters;
  if (!text.includes('\r')) throw new Hl7ParseError('the message cannot be parsed: it has no segment end');
  // Most messages have no escape sequence after MSH-2: their values are final as split.
  const afterEncoding = text.indexOf(d.field, 4);
  const leaf = afterEncoding > 0 && text.includes(d.escape, afterEncoding) ? (value: string) => unescapeText(value, d) : undefined;
  const segments: Segment[] = [];
  for (const line of text.split('\r')) {
    if (!line.includes(d.field)) continue;
    const name = line.slice(0, 3);
    if (!SEGMENT_NAME.test(name)) throw new Hl7ParseError(`the message cannot be parsed: "${name}" is not a segment name`);
    const parts = line.split(d.field);
    const fields: Repetition[][] = [[]];
    if (name === 'MSH') {
      // MSH-1 and MSH-2 are the delimiters themselves, never split; MSH-3 is the third part.
      fields.push([[[d.field]]], [[[d.component + d.repetition + d.escape + d.subcomponent]]]);
      for (let i = 2; i < parts.length; i++) fields.push(splitField(parts[i], d, leaf));
    } else {
      for (let i = 1; i < parts.length; i++) fields.push(splitField(parts[i], d, leaf));
    }
    segments.push(new Segment(name, fields));
  }
  if (segments[0]?.name !== 'MSH') throw new Hl7ParseError('the first segment is not MSH');
  return { header, segments };
}

/** One field's repetitions, components and subcomponents (no subcomponent separator: `&` is text). */
function splitField(value: string, d: Delimiters, leaf: ((v: string) => string) | undefined): Repetition[] {
  const reps = value.includes(d.repetition) ? value.split(d.repetition) : [value];
  const out: Repetition[] = new Array<Repetition>(reps.length);
  for (let r = 0; r < reps.length; r++) {
    const rep = reps[r];
    const comps = rep.includes(d.component) ? rep.split(d.component) : [rep];
    const repetition: Repetition = new Array<string[]>(comps.length);
    for (let c = 0; c < comps.length; c++) {
      const comp = comps[c];
      const subs = d.subcomponent && comp.includes(d.subcomponent) ? comp.split(d.subcomponent) : [comp];
      if (leaf) for (let s = 0; s < subs.length; s++) subs[s] = leaf(subs[s]);
      repetition[c] = subs;
    }
    out[r] = repetition;
  }
  return out;
}
