import type { Address, CodeableConcept, Coding, ContactPoint, HumanName, Identifier } from 'fhir/r4.js';
import type { Repetition, Segment } from '../parse/message.js';
import type { MappingTables } from './tables.js';

/** HL7 v2 data types (v2.5.1 chapter 2A) to FHIR data types. */

const part = (rep: Repetition | undefined, component: number, sub = 1) => (rep?.[component - 1]?.[sub - 1] ?? '').trim();

/**
 * TS / DTM / DT (YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]) to a FHIR dateTime. FHIR needs a time
 * zone once there is a time; a v2 time without one is taken in the configured local zone.
 */
export function toDateTime(value: string, tables: MappingTables): string | undefined {
  const m = /^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?\s*([+-]\d{4})?$/.exec(value.trim());
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  if (mo && (Number(mo) < 1 || Number(mo) > 12)) return undefined;
  if (d && (Number(d) < 1 || Number(d) > 31)) return undefined;
  if (!mo) return y;
  if (!d) return `${y}-${mo}`;
  const date = `${y}-${mo}-${d}`;
  if (!h) return date;
  if (Number(h) > 23 || (mi && Number(mi) > 59) || (s && Number(s) > 59)) return undefined;
  const tz = zone ? `${zone.slice(0, 3)}:${zone.slice(3)}` : tables.defaultTimezone;
  return `${date}T${h}:${mi ?? '00'}:${s ?? '00'}${s && frac ? frac : ''}${tz === '+00:00' && !zone ? 'Z' : tz}`;
}

/** A FHIR instant needs a full time; a v2 timestamp with only a date gives none. */
export function toInstant(value: string, tables: MappingTables): string | undefined {
  const dt = toDateTime(value, tables);
  return dt && dt.includes('T') ? dt : undefined;
}

export function toDate(value: string, tables: MappingTables): string | undefined {
  const dt = toDateTime(value, tables);
  return dt?.slice(0, 10).length === 10 ? dt.slice(0, 10) : dt;
}

function codingOf(code: string, display: string, systemName: string, tables: MappingTables): Coding | undefined {
  if (!code && !display) return undefined;
  const coding: Coding = {};
  const system = tables.codeSystems[systemName] ?? tables.codeSystems[systemName.toUpperCase()];
  if (system) coding.system = system;
  if (code) coding.code = code;
  if (display) coding.display = display;
  return coding.code ? coding : undefined;
}

/** CE / CWE / CNE: identifier^text^system^alt identifier^alt text^alt system. */
export function toCodeableConcept(rep: Repetition | undefined, tables: MappingTables): CodeableConcept | undefined {
  if (!rep) return undefined;
  const codings = [
    codingOf(part(rep, 1), part(rep, 2), part(rep, 3), tables),
    codingOf(part(rep, 4), part(rep, 5), part(rep, 6), tables),
  ].filter((c): c is Coding => c !== undefined);
  const text = part(rep, 9) || part(rep, 2) || part(rep, 5);
  if (codings.length === 0 && !text) return undefined;
  const concept: CodeableConcept = {};
  if (codings.length) concept.coding = codings;
  if (text) concept.text = text;
  return concept;
}

const OID = /^[0-2](\.(0|[1-9][0-9]*))+$/;

/** An identifier system from an HD (namespace^universal id^type), or `fallback` when it names none. */
export function systemOf(namespace: string, universalId: string, universalType: string, fallback: string, tables: MappingTables): string {
  if (universalId && OID.test(universalId) && (!universalType || universalType.toUpperCase() === 'ISO')) return `urn:oid:${universalId}`;
  if (universalId && /^[a-z][a-z0-9+.-]*:\S+$/i.test(universalId) && universalType.toUpperCase() === 'URI') return universalId;
  const name = namespace || universalId;
  if (name) return `${tables.identifierSystemBase}assigner:${encodeURIComponent(name)}`;
  return `${tables.identifierSystemBase}${fallback}`;
}

/** CX (PID-3, PV1-19, MRG-1): id^check digit^scheme^assigning authority (HD as subcomponents)^type code. */
export function identifierFromCx(rep: Repetition, fallback: string, tables: MappingTables): Identifier | undefined {
  const value = part(rep, 1);
  if (!value) return undefined;
  const identifier: Identifier = {
    system: systemOf(part(rep, 4, 1), part(rep, 4, 2), part(rep, 4, 3), fallback, tables),
    value,
  };
  const typeCode = part(rep, 5);
  if (typeCode) identifier.type = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: typeCode }] };
  return identifier;
}

/** EI (order numbers, specimen ids): entity id^namespace^universal id^universal id type. */
export function identifierFromEi(rep: Repetition | undefined, fallback: string, tables: MappingTables): Identifier | undefined {
  const value = part(rep, 1);
  if (!rep || !value) return undefined;
  return { system: systemOf(part(rep, 2), part(rep, 3), part(rep, 4), fallback, tables), value };
}

/** An EI whose parts sit in subcomponents (an EI inside an EIP, e.g. SPM-2). */
export function identifierFromSubEi(subs: string[] | undefined, fallback: string, tables: MappingTables): Identifier | undefined {
  const value = (subs?.[0] ?? '').trim();
  if (!subs || !value) return undefined;
  return { system: systemOf(subs[1] ?? '', subs[2] ?? '', subs[3] ?? '', fallback, tables), value };
}

const NAME_USE: Record<string, HumanName['use']> = { L: 'official', D: 'usual', M: 'maiden', N: 'nickname', A: 'anonymous', C: 'old', B: 'official' };

/** XPN / XCN names: family (FN: surname&…)^given^second given^suffix^prefix^degree^^type. */
export function humanName(rep: Repetition, offset = 0): HumanName | undefined {
  const family = part(rep, 1 + offset);
  const given = [part(rep, 2 + offset), part(rep, 3 + offset)].filter(Boolean);
  if (!family && given.length === 0) return undefined;
  const name: HumanName = {};
  const use = NAME_USE[part(rep, 7 + offset)];
  if (use) name.use = use;
  if (family) name.family = family;
  if (given.length) name.given = given;
  const prefix = part(rep, 5 + offset);
  if (prefix) name.prefix = [prefix];
  const suffix = [part(rep, 4 + offset), part(rep, 6 + offset)].filter(Boolean);
  if (suffix.length) name.suffix = suffix;
  return name;
}

/** XCN (ordering provider, …) as display text: "given family". */
export function personDisplay(rep: Repetition | undefined): string | undefined {
  if (!rep) return undefined;
  const name = humanName(rep, 1);
  const text = name ? [...(name.given ?? []), name.family ?? ''].filter(Boolean).join(' ') : '';
  return text || part(rep, 1) || undefined;
}

const ADDRESS_USE: Record<string, Address['use']> = { H: 'home', B: 'work', O: 'work', C: 'temp', BA: 'billing', M: 'home', P: 'home' };

/** XAD: street (SAD)^other designation^city^state^zip^country^type. */
export function address(rep: Repetition): Address | undefined {
  const lines = [part(rep, 1), part(rep, 2)].filter(Boolean);
  const result: Address = {};
  if (lines.length) result.line = lines;
  if (part(rep, 3)) result.city = part(rep, 3);
  if (part(rep, 4)) result.state = part(rep, 4);
  if (part(rep, 5)) result.postalCode = part(rep, 5);
  if (part(rep, 6)) result.country = part(rep, 6);
  const use = ADDRESS_USE[part(rep, 7)];
  if (use) result.use = use;
  return Object.keys(result).length > (use ? 1 : 0) ? result : undefined;
}

/** XTN: [old-style number]^use code^equipment^email^country^area^local^extension. */
export function contactPoint(rep: Repetition, use: ContactPoint['use']): ContactPoint | undefined {
  const email = part(rep, 4);
  const equipment = part(rep, 3);
  if (email || equipment === 'Internet' || equipment === 'X.400') {
    const value = email || part(rep, 1);
    return value ? { system: 'email', value, use } : undefined;
  }
  const composed = [part(rep, 5) && `+${part(rep, 5)}`, part(rep, 6) && `(${part(rep, 6)})`, part(rep, 7)].filter(Boolean).join(' ');
  const value = part(rep, 1) || composed;
  if (!value) return undefined;
  return { system: equipment === 'FX' ? 'fax' : 'phone', value, use: part(rep, 2) === 'WPN' ? 'work' : use };
}

/** PL (PV1-3): point of care^room^bed^facility^status^type^building^floor, as display text. */
export function locationDisplay(seg: Segment, field: number): string | undefined {
  const rep = seg.fields[field]?.[0];
  if (!rep) return undefined;
  const parts = [part(rep, 4, 1), part(rep, 1), part(rep, 2) && `room ${part(rep, 2)}`, part(rep, 3) && `bed ${part(rep, 3)}`].filter(Boolean);
  return parts.length ? parts.join(', ') : undefined;
}
