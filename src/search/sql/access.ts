import { sql } from 'kysely';
import type { AuthContext } from '../../auth/token-service.js';
import type { ResourceScope } from '../../auth/scopes.js';
import { messageParticipants, PARTICIPANT_PARAMS, PRIVATE_MESSAGE_TYPES } from '../../workflows/messaging-policy.js';
import { compartmentMembership } from '../compartment.js';
import type { Filter } from '../request.js';
import type { Target } from './filter.js';
import { and, FALSE, or, type Cond } from './util.js';

/**
 * What a caller may see, for every path that lets a resource into a result (matches, includes,
 * chain targets, `_has` sources, compartment and system searches, reads in Bundles).
 *  - `types`: types visible everywhere (a `user/` or `system/` scope that reads or searches them).
 *  - `patientTypes`: types visible only inside the Patient compartment of `patient` (types
 *    granted by `patient/` scopes alone). Without a `patient` in the token they are invisible.
 *  - `granular`: SMART v2 granular scopes (`patient/Observation.rs?category=laboratory`) of types
 *    not visible otherwise: a resource of `type` is visible when it matches `query` (and, for a
 *    `patient/` one, is in the compartment). `filters` is `query` parsed by the search service
 *    (`SearchService.resolveAccess`); until parsed, or when it is not plain params, it grants nothing.
 * `'*'` means every type.
 */
export interface AccessFilter {
  types: '*' | readonly string[];
  patientTypes: '*' | readonly string[];
  patient?: string;
  granular?: ReadonlyArray<GranularAccess>;
  /** Types never visible to this caller whatever its scopes (the audit trail for non-ADMIN users). */
  hidden?: readonly string[];
  /**
   * Secure messaging: when set, Communications are visible only where one of these references
   * (`Practitioner/1`) is sender, recipient or subject (src/workflows/messaging-policy.ts).
   */
  participants?: readonly string[];
}

/** Types only ADMIN users and backend clients may see, even with `user/*.rs`. */
const ADMIN_ONLY_TYPES = ['AuditEvent'];

export interface GranularAccess {
  type: string;
  confined: boolean;
  query: string;
  filters?: readonly Filter[];
}

/** A scope makes a type visible when it reads or searches it. */
function sees(s: ResourceScope): boolean {
  return s.filter === undefined && (s.permissions.has('r') || s.permissions.has('s'));
}

/** The access filter of a token, or undefined when it sees every resource of every type. */
export function accessFilterFor(auth: Pick<AuthContext, 'scopes' | 'patient'> & Partial<Pick<AuthContext, 'kind' | 'role' | 'fhirUser'>>): AccessFilter | undefined {
  const filter = scopeFilterFor(auth);
  const participants = messageParticipants(auth);
  if (!participants) return filter;
  return { ...(filter ?? { types: '*', patientTypes: [], patient: auth.patient }), participants };
}

function scopeFilterFor(auth: Pick<AuthContext, 'scopes' | 'patient'> & Partial<Pick<AuthContext, 'kind' | 'role'>>): AccessFilter | undefined {
  const open = auth.scopes.filter((s) => s.context !== 'patient' && sees(s));
  const confined = auth.scopes.filter((s) => s.context === 'patient' && sees(s));
  // A signed-in user who is not an ADMIN never sees the audit trail, not even through
  // includes, `_has`, system search or $everything (the routes refuse direct reads).
  const hidden = auth.kind === 'user' && auth.role !== 'ADMIN' ? ADMIN_ONLY_TYPES : [];
  if (open.some((s) => s.resourceType === '*')) {
    return hidden.length ? { types: '*', patientTypes: [], patient: auth.patient, hidden } : undefined;
  }
  const types = [...new Set(open.map((s) => s.resourceType))].sort();
  const patientTypes: '*' | string[] = confined.some((s) => s.resourceType === '*')
    ? '*'
    : [...new Set(confined.map((s) => s.resourceType))].filter((t) => !types.includes(t)).sort();
  const granular: GranularAccess[] = [];
  for (const s of auth.scopes) {
    if (s.filter === undefined || s.resourceType === '*' || !(s.permissions.has('r') || s.permissions.has('s'))) continue;
    if (types.includes(s.resourceType) || (s.context === 'patient' && (patientTypes === '*' || patientTypes.includes(s.resourceType)))) continue;
    granular.push({ type: s.resourceType, confined: s.context === 'patient', query: s.filter });
  }
  return { types, patientTypes, patient: auth.patient, ...(granular.length ? { granular } : {}), ...(hidden.length ? { hidden } : {}) };
}

/** Types a token may read or search only through granular scopes. */
export function granularTypes(filter: AccessFilter | undefined): string[] {
  return [...new Set((filter?.granular ?? []).map((g) => g.type))];
}

/** Whether only some resources of `type` are visible (compartment or granular scope): reads must check each. */
export function rowRestricted(filter: AccessFilter | undefined, type: string): boolean {
  if (filter?.hidden?.includes(type)) return true;
  if (filter?.participants && PRIVATE_MESSAGE_TYPES.includes(type)) return true;
  return !!filter && filter.types !== '*' && !filter.types.includes(type);
}

/** Whether `type` is visible only inside the token's patient compartment (not everywhere). */
export function confinedToPatient(filter: AccessFilter | undefined, type: string): boolean {
  if (!filter) return false;
  if (filter.types === '*' || filter.types.includes(type)) return false;
  return filter.patientTypes === '*' || filter.patientTypes.includes(type);
}

/** Whether some type is visible only inside the patient compartment. */
export function anyConfined(filter: AccessFilter | undefined): boolean {
  return !!filter && (filter.patientTypes === '*' || filter.patientTypes.length > 0);
}

function typeIn(target: Target, types: readonly string[]): Cond {
  return types.length === 0 ? FALSE : sql`${target.type} = ANY(${[...types]}::text[])`;
}

/**
 * The SQL condition that `target` is visible under `filter`. `compile` turns a parsed granular
 * filter into a condition on `target` (the search's FilterCompiler); without it granular
 * scopes grant nothing.
 */
export function accessSql(filter: AccessFilter, target: Target, compile?: (f: Filter, target: Target) => Cond): Cond {
  const visible = scopedSql(filter, target, compile);
  const conds: Cond[] = [];
  if (filter.hidden?.length) conds.push(sql`${target.type} <> ALL(${[...filter.hidden]}::text[])`);
  if (filter.participants) conds.push(participantSql(filter.participants, target));
  return conds.length ? and([...conds, visible]) : visible;
}

/** Messages (PRIVATE_MESSAGE_TYPES) only where a participant is sender, recipient or subject; other types untouched. */
function participantSql(participants: readonly string[], target: Target): Cond {
  const pairs = participants.map((r) => r.split('/') as [string, string]);
  const member =
    pairs.length === 0
      ? FALSE
      : sql`(${target.type}, ${target.id}) IN (SELECT mp.resource_type, mp.resource_id FROM search_reference mp
          WHERE mp.resource_type = ANY(${[...PRIVATE_MESSAGE_TYPES]}::text[]) AND mp.param = ANY(${[...PARTICIPANT_PARAMS]}::text[])
            AND (mp.target_type, mp.target_id) IN (SELECT * FROM unnest(${pairs.map((p) => p[0])}::text[], ${pairs.map((p) => p[1])}::text[])))`;
  return or([sql`${target.type} <> ALL(${[...PRIVATE_MESSAGE_TYPES]}::text[])`, member]);
}

function scopedSql(filter: AccessFilter, target: Target, compile?: (f: Filter, target: Target) => Cond): Cond {
  if (filter.types === '*') return sql`TRUE`;
  const conds: Cond[] = [];
  if (filter.types.length) conds.push(typeIn(target, filter.types));
  const member = filter.patient ? compartmentMembership({ type: 'Patient', id: filter.patient }, target) : undefined;
  if (member && (filter.patientTypes === '*' || filter.patientTypes.length)) {
    conds.push(filter.patientTypes === '*' ? member : and([typeIn(target, filter.patientTypes), member]));
  }
  for (const g of filter.granular ?? []) {
    if (!compile || !g.filters || (g.confined && !member)) continue;
    const parts = [sql`${target.type} = ${g.type}`, ...g.filters.map((f) => compile(f, target))];
    if (g.confined && member) parts.push(member);
    conds.push(and(parts));
  }
  return conds.length ? or(conds) : FALSE;
}
