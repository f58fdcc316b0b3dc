import type { Delimiters } from './message.js';

/**
 * Decodes the escape sequences of HL7 v2 text (v2.5.1 §2.7): \F\ \S\ \T\ \R\ \E\ give back the
 * delimiters, \Xhh..\ hexadecimal bytes, \.br\ (and \.sp\) a line break. Highlighting (\H\ \N\)
 * and the other formatting commands carry no text and are dropped; an unknown or unterminated
 * sequence is kept as it was sent, so no text is lost.
 */
export function unescapeText(text: string, d: Delimiters): string {
  const esc = d.escape;
  if (!esc || text.indexOf(esc) < 0) return text;
  let out = '';
  let i = 0;
  while (i < text.length) {
    const start = text.indexOf(esc, i);
    if (start < 0) {
      out += text.slice(i);
      break;
    }
    out += text.slice(i, start);
    const end = text.indexOf(esc, start + 1);
    if (end < 0) {
      out += text.slice(start);
      break;
    }
    const body = text.slice(start + 1, end);
    const decoded = decodeSequence(body, d);
    if (decoded === undefined) {
      // Not an escape sequence: keep the escape character as text and go on after it.
      out += esc;
      i = start + 1;
      continue;
    }
    out += decoded;
    i = end + 1;
  }
  return out;
}

function decodeSequence(body: string, d: Delimiters): string | undefined {
  switch (body) {
    case 'F':
      return d.field;
    case 'S':
      return d.component;
    case 'T':
      return d.subcomponent;
    case 'R':
      return d.repetition;
    case 'E':
      return d.escape;
    case 'H':
    case 'N':
      return '';
    case '.br':
      return '\n';
  }
  if (/^\.sp\s*\d*$/.test(body)) return '\n';
  if (/^\.(fi|nf|in|ti|sk|ce)\s*[+-]?\d*$/.test(body)) return '';
  if (/^X([0-9A-Fa-f]{2})+$/.test(body)) return Buffer.from(body.slice(1), 'hex').toString('latin1');
  if (/^[CM][0-9A-Fa-f]+$/.test(body)) return '';
  return undefined;
}

/** Escapes text for a field of a message we write (ACK diagnostics). */
export function escapeText(text: string, d: Delimiters): string {
  let out = '';
  for (const ch of text) {
    if (ch === d.escape) out += `${d.escape}E${d.escape}`;
    else if (ch === d.field) out += `${d.escape}F${d.escape}`;
    else if (ch === d.component) out += `${d.escape}S${d.escape}`;
    else if (ch === d.repetition) out += `${d.escape}R${d.escape}`;
    else if (d.subcomponent && ch === d.subcomponent) out += `${d.escape}T${d.escape}`;
    else if (ch === '\r' || ch === '\n') out += `${d.escape}.br${d.escape}`;
    else out += ch;
  }
  return out;
}
