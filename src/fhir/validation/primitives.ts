/**
 * FHIR R4 primitive datatypes in their JSON form (https://hl7.org/fhir/R4/datatypes.html,
 * https://hl7.org/fhir/R4/json.html).
 *
 * The regular expressions are the ones published in the primitive StructureDefinitions
 * (`<type>.value` → extension `regex`), rewritten for JavaScript: the spec's regexes use XML Schema
 * semantics where `\s` is only space, tab, CR and LF, whereas JavaScript's `\s` also matches
 * Unicode spaces (a no-break space inside a `code` would otherwise be misjudged). They are anchored
 * here because XML Schema patterns always match the whole value.
 */

import { narrativeProblem } from './narrative.js';

/** Returns a description of what is wrong, or undefined when the value is valid. */
export type PrimitiveCheck = (value: unknown) => string | undefined;

const WS = '[ \\t\\n\\r]';
const NON_WS = '[^ \\t\\n\\r]';

const YEAR = '([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)';
const TIME = '([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?';
const ZONE = '(Z|(\\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))';

const anchored = (src: string): RegExp => new RegExp(`^(?:${src})$`);

const RE = {
  date: anchored(`${YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?`),
  dateTime: anchored(`${YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T${TIME}${ZONE})?)?)?`),
  instant: anchored(`${YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T${TIME}${ZONE}`),
  time: anchored(TIME),
  code: anchored(`${NON_WS}+(${WS}${NON_WS}+)*`),
  id: anchored('[A-Za-z0-9\\-\\.]{1,64}'),
  uri: anchored(`${NON_WS}*`),
  oid: anchored('urn:oid:[0-2](\\.(0|[1-9][0-9]*))+'),
  uuid: anchored('urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'),
};

/** Control characters other than TAB, LF and CR are not allowed in FHIR strings. */
const CONTROL_CHARS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F]/;
/** "Strings SHALL NOT exceed 1MB in size". */
const MAX_STRING = 1024 * 1024;

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `string ${JSON.stringify(value.length > 60 ? value.slice(0, 60) + '…' : value)}`;
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/** The regexes accept e.g. 2021-02-30; a real calendar date is required. */
function calendarProblem(s: string): string | undefined {
  if (s.length < 10) return undefined; // year or year-month only
  const year = Number(s.slice(0, 4));
  const month = Number(s.slice(5, 7));
  const day = Number(s.slice(8, 10));
  return day > daysInMonth(year, month) ? `day ${day} does not exist in ${s.slice(0, 7)}` : undefined;
}

/** Linear-time check; the spec regex `(\s*([0-9a-zA-Z\+/=]){4}\s*)+` backtracks badly on large payloads. */
function base64Problem(s: string): string | undefined {
  let n = 0;
  let padding = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) continue;
    const isAlnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
    if (c === 0x3d) padding++;
    else if (padding > 0) return 'padding "=" may only appear at the end';
    else if (!isAlnum && c !== 0x2b && c !== 0x2f) return `invalid base64 character ${JSON.stringify(s[i])}`;
    n++;
  }
  if (n % 4 !== 0) return 'base64 length is not a multiple of 4';
  if (padding > 2) return 'too much base64 padding';
  return undefined;
}

function stringCheck(type: string, pattern?: RegExp, extra?: (s: string) => string | undefined): PrimitiveCheck {
  // The 1MB limit is stated for `string` (and the types derived from it), not for base64Binary.
  const max = type === 'base64Binary' ? Infinity : MAX_STRING;
  return (value) => {
    if (typeof value !== 'string') return `${type} must be a JSON string, got ${describe(value)}`;
    if (value.length === 0) return `${type} must not be an empty string`;
    if (value.length > max) return `${type} exceeds the 1MB maximum length`;
    if (pattern !== undefined && !pattern.test(value)) return `${describe(value)} is not a valid ${type}`;
    if (CONTROL_CHARS.test(value)) return `${type} contains a control character`;
    const problem = extra?.(value);
    return problem === undefined ? undefined : `${describe(value)} is not a valid ${type}: ${problem}`;
  };
}

function integerCheck(type: string, min: number): PrimitiveCheck {
  return (value) => {
    if (typeof value !== 'number') return `${type} must be a JSON number, got ${describe(value)}`;
    if (!Number.isInteger(value)) return `${value} is not a valid ${type} (not an integer)`;
    if (value < min || value > INT32_MAX) return `${value} is out of range for ${type} (${min}..${INT32_MAX})`;
    return undefined;
  };
}

const checks: Record<string, PrimitiveCheck> = {
  boolean: (v) => (typeof v === 'boolean' ? undefined : `boolean must be JSON true or false, got ${describe(v)}`),
  integer: integerCheck('integer', INT32_MIN),
  positiveInt: integerCheck('positiveInt', 1),
  unsignedInt: integerCheck('unsignedInt', 0),
  decimal: (v) =>
    typeof v === 'number' && Number.isFinite(v) ? undefined : `decimal must be a JSON number, got ${describe(v)}`,
  string: stringCheck('string'),
  markdown: stringCheck('markdown'),
  code: stringCheck('code', RE.code),
  id: stringCheck('id', RE.id),
  uri: stringCheck('uri', RE.uri),
  url: stringCheck('url', RE.uri),
  canonical: stringCheck('canonical', RE.uri),
  oid: stringCheck('oid', RE.oid),
  uuid: stringCheck('uuid', RE.uuid),
  base64Binary: stringCheck('base64Binary', undefined, base64Problem),
  date: stringCheck('date', RE.date, calendarProblem),
  dateTime: stringCheck('dateTime', RE.dateTime, calendarProblem),
  instant: stringCheck('instant', RE.instant, calendarProblem),
  time: stringCheck('time', RE.time),
  // Narrative.div: a <div> string of well-formed XHTML without what txt-1 forbids (narrative.ts).
  xhtml: stringCheck('xhtml', /^\s*<div[\s>/]/, narrativeProblem),
};

/** The checker for a FHIR primitive type code, or undefined when `type` is not a primitive. */
export function primitiveCheck(type: string): PrimitiveCheck | undefined {
  return Object.hasOwn(checks, type) ? checks[type] : undefined;
}

export function isPrimitiveType(type: string): boolean {
  return Object.hasOwn(checks, type);
}

export { describe as describeJsonValue };
