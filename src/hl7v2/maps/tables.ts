import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { criticalLimitCatalog, type CriticalLimit, type CriticalLimitCatalog } from './critical-limits.js';

/** How a supported message type is mapped (conformance/hl7v2/message-types.json). */
export interface MessageTypeRule {
  mapper: 'result' | 'order' | 'adt' | 'merge' | 'vaccination' | 'medication-order' | 'appointment' | 'document' | 'charge';
  /** ADT: the event's effect on the Encounter, a key of `encounterEvents`, or 'none'. */
  encounter?: string;
}

export interface EncounterEventRule {
  status?: string;
  startsPeriod?: boolean;
  endsPeriod?: boolean;
  clearsEnd?: boolean;
}

interface CodeMap {
  codes: Record<string, string>;
  default?: string;
}

/** The mapping tables, loaded once from conformance/hl7v2/ (data, not code). */
export interface MappingTables {
  messageTypes: Record<string, MessageTypeRule>;
  codeSystems: Record<string, string>;
  ucum: Record<string, string>;
  identifierSystemBase: string;
  defaultTimezone: string;
  administrativeSex: Record<string, string>;
  patientClass: { system: string; codes: Record<string, string>; unknown: { system: string; code: string; display: string } };
  encounterEvents: Record<string, EncounterEventRule>;
  resultStatus: CodeMap;
  observationStatus: CodeMap;
  abnormalFlags: { system: string; codes: Record<string, string> };
  orderControl: CodeMap;
  orderStatus: CodeMap;
  priority: CodeMap;
  documentCompletion: CodeMap;
  appointmentStatus: { filler: Record<string, string>; trigger: Record<string, string> };
  criticalFlags: { codes: string[] };
  /** critical-limits.json (empty when the file is absent). */
  criticalLimits: CriticalLimitCatalog;
}

function readJson<T>(dir: string, file: string): T {
  return JSON.parse(readFileSync(join(dir, file), 'utf8')) as T;
}

export function loadMappingTables(dir: string): MappingTables {
  const types = readJson<{ types: Record<string, MessageTypeRule> }>(dir, 'message-types.json');
  const systems = readJson<{ systems: Record<string, string> }>(dir, 'code-systems.json');
  const units = readJson<{ ucum: Record<string, string> }>(dir, 'units.json');
  const tables = readJson<Omit<MappingTables, 'messageTypes' | 'codeSystems' | 'ucum' | 'criticalLimits'>>(dir, 'tables.json');
  const limits = existsSync(join(dir, 'critical-limits.json')) ? readJson<{ limits: CriticalLimit[] }>(dir, 'critical-limits.json').limits : [];
  return { ...tables, messageTypes: types.types, codeSystems: systems.systems, ucum: units.ucum, criticalLimits: criticalLimitCatalog(limits) };
}

/** A code from a table, the table's default, or undefined. */
export function lookup(map: CodeMap, code: string): string | undefined {
  return map.codes[code] ?? map.codes[code.toUpperCase()] ?? map.default;
}
