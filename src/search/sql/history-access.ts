import { sql } from 'kysely';
import { PRIVATE_MESSAGE_TYPES } from '../../workflows/messaging-policy.js';
import type { AccessFilter } from './access.js';
import { likeEscape, or, type Cond } from './util.js';

/**
 * The access filter on rows of `resource_history` (alias `h`). The search index describes only
 * current versions, so history cannot use `accessSql`; instead:
 *  - `unchecked`: rows visible as they are (types the caller sees whole);
 *  - `where`: a superset of the visible rows — those plus the candidate rows of partly visible
 *    types, which must then be judged one by one in memory (`version-access.ts`). For types
 *    confined to a patient compartment the candidates are the versions whose JSON mentions
 *    `Patient/<id>` (every compartment reference does), the Patient itself, and delete markers
 *    (judged by the version they deleted).
 * Types the caller never sees (audit trail for non-ADMIN users, types outside every scope) are
 * in neither.
 */
export interface HistoryAccessSql {
  where: Cond;
  unchecked: Cond;
  /** `where` without `unchecked`: the rows to judge one by one. */
  checked: Cond;
}

/**
 * Text conditions every version matching a granular query must meet (a superset: the exact
 * match is judged in memory). Each plain `name=v1,v2` needs one of its values to end a JSON
 * string of the content (`"laboratory"`, `…/Patient/1"`): token codes (after `system|`),
 * references, uris and ids all do. Modifiers, escapes and `system|` alone add no condition.
 */
function granularSuperset(query: string): Cond[] {
  const conds: Cond[] = [];
  for (const [name, raw] of new URLSearchParams(query)) {
    if (name.includes(':') || raw.includes('\\')) continue;
    const values = raw.split(',').map((v) => v.slice(v.lastIndexOf('|') + 1));
    if (values.some((v) => v === '')) continue;
    const text = sql.ref('h.content');
    conds.push(or(values.map((v) => sql`${text}::text LIKE ${`%${likeEscape(JSON.stringify(v).slice(1, -1))}"%`}`)));
  }
  return conds;
}

export function historyAccessSql(filter: AccessFilter): HistoryAccessSql {
  const type = sql.ref('h.resource_type');
  const hidden = filter.hidden?.length ? [sql`${type} <> ALL(${[...filter.hidden]}::text[])`] : [];
  // Messages of a participant-restricted caller are judged in memory too.
  const alwaysChecked = filter.participants ? [...PRIVATE_MESSAGE_TYPES] : [];
  const notChecked = alwaysChecked.length ? [sql`${type} <> ALL(${alwaysChecked}::text[])`] : [];
  const whole: Cond = filter.types === '*' ? sql`TRUE` : filter.types.length ? sql`${type} = ANY(${[...filter.types]}::text[])` : sql`FALSE`;
  const unchecked = sql.join([...hidden, ...notChecked, whole], sql` AND `);

  const candidates: Cond[] = [whole];
  const patient = filter.patient;
  const mentionsPatient = patient
    ? sql`(h.content IS NULL OR (${type} = 'Patient' AND h.id = ${patient}) OR h.content::text LIKE ${`%Patient/${likeEscape(patient)}"%`} OR h.content::text LIKE ${`%Patient/${likeEscape(patient)}/_history/%`})`
    : undefined;
  if (mentionsPatient && filter.patientTypes === '*') candidates.push(mentionsPatient);
  else if (mentionsPatient && filter.patientTypes.length) candidates.push(sql`(${type} = ANY(${[...filter.patientTypes]}::text[]) AND ${mentionsPatient})`);
  for (const g of filter.granular ?? []) {
    if (g.confined && !mentionsPatient) continue;
    const superset = granularSuperset(g.query);
    // Delete markers stay candidates: judged by the version they deleted.
    const parts = [sql`${type} = ${g.type}`, ...(superset.length ? [sql`(h.content IS NULL OR (${sql.join(superset, sql` AND `)}))`] : [])];
    if (g.confined && mentionsPatient) parts.push(mentionsPatient);
    candidates.push(sql`(${sql.join(parts, sql` AND `)})`);
  }
  const where = sql.join([...hidden, or(candidates)], sql` AND `);
  return { where, unchecked, checked: sql`${where} AND NOT (${unchecked})` };
}
