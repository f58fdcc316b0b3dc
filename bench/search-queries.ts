import { sql, type RawBuilder } from 'kysely';
import { LOINC, mrn, MRN_SYSTEM, patientId } from './search-data.js';

/**
 * The fixed query mix of the search benchmark. Each query is a FHIR search (as the HTTP layer
 * hands it to `SearchService.search`) and a hand-written SQL statement list answering the same
 * question on the same tables, the way someone who knows the schema would write it. Both take
 * the iteration number, so every run walks the same varied values (patients, names, codes,
 * years) instead of one cached row.
 */
export interface BenchQuery {
  name: string;
  /** part of the mix whose throughput is compared between data sizes */
  mix: boolean;
  resourceType?: string;
  compartment?(i: number): { type: string; id: string };
  params(i: number): [string, string][];
  /** hand-written SQL: every statement the answer needs (page, count, includes) */
  sql(i: number): Array<RawBuilder<unknown>>;
  /** the most SQL statements the FHIR search may send (page + count + one per include path) */
  maxStatements: number;
}

/** Mid-frequency family names (2–3 % of patients each), written as a user would type them. */
const NAME_PREFIXES: Array<[string, string]> = [
  ['Dubo', 'dubo'], ['Kowa', 'kowa'], ['Lefè', 'lefe'], ['Núñ', 'nun'], ['Öztü', 'oztu'], ['Schrö', 'schro'], ['Łuka', 'luka'], ['Jimé', 'jime'],
];
const VITAL_CODES = ['8867-4', '29463-7', '8302-2', '39156-5', '9279-1', '8310-5', '59408-5', '85354-9'];
/** Lab codes: each ~3 % of Observations. */
const LAB_CODES = ['2339-0', '718-7', '2093-3', '4548-4', '2160-0', '2951-2'];

/** 1,000 codes: two lab codes that exist (~3 % of Observations each) and 998 that do not. */
function cohortCodes(i: number): string[] {
  const absent = Array.from({ length: 998 }, (_, k) => `${90000 + ((i * 7 + k) % 5000)}-${k % 10}`);
  return [pick(LAB_CODES, i), pick(LAB_CODES, i + 1), ...absent];
}

function pick<T>(list: readonly T[], i: number): T {
  return list[i % list.length]!;
}

/** A patient index spread over the whole population (a multiplicative hash of i). */
function patientIndex(i: number, patients: number): number {
  return (Math.imul(i + 1, 2654435761) >>> 0) % patients;
}

function q(s: string): [string, string][] {
  return [...new URLSearchParams(s)] as [string, string][];
}

/** Page size of every query: the FHIR default (20); the SQL asks for 21 to know whether there is a next page, as the service does. */
const PAGE = 21;

/**
 * The page's ids from the index tables (index rows exist only for current resources), then
 * their content: how someone who knows the schema writes a page query.
 */
function page(type: string, ids: RawBuilder<unknown>): RawBuilder<unknown> {
  return sql`SELECT r.id, r.content FROM (${ids}) m JOIN resource r ON r.resource_type = ${type} AND r.id = m.id ORDER BY m.id`;
}

export function benchQueries(patients: number): BenchQuery[] {
  const pid = (i: number) => patientId(patientIndex(i, patients));
  return [
    {
      name: 'name prefix',
      mix: true,
      resourceType: 'Patient',
      params: (i) => q(`name=${encodeURIComponent(pick(NAME_PREFIXES, i)[0])}&_total=none`),
      sql: (i) => [
        page('Patient', sql`SELECT DISTINCT s.resource_id AS id FROM search_string s
            WHERE s.resource_type = 'Patient' AND s.param = 'name' AND s.value LIKE ${`${pick(NAME_PREFIXES, i)[1]}%`}
            ORDER BY 1 LIMIT ${PAGE}`),
      ],
      maxStatements: 1,
    },
    {
      name: 'identifier',
      mix: true,
      resourceType: 'Patient',
      params: (i) => q(`identifier=${MRN_SYSTEM}|${mrn(patientIndex(i, patients))}&_total=none`),
      sql: (i) => [
        page('Patient', sql`SELECT DISTINCT s.resource_id AS id FROM search_token s
            WHERE s.resource_type = 'Patient' AND s.param = 'identifier' AND s.system = ${MRN_SYSTEM} AND s.code = ${mrn(patientIndex(i, patients))}
            ORDER BY 1 LIMIT ${PAGE}`),
      ],
      maxStatements: 1,
    },
    {
      name: 'patient + code',
      mix: true,
      resourceType: 'Observation',
      params: (i) => q(`patient=Patient/${pid(i)}&code=${LOINC}|${pick(VITAL_CODES, i)}&_total=none`),
      sql: (i) => [
        page('Observation', sql`SELECT DISTINCT s.resource_id AS id FROM search_reference s
            WHERE s.resource_type = 'Observation' AND s.param = 'patient' AND s.target_type = 'Patient' AND s.target_id = ${pid(i)}
              AND s.resource_id IN (SELECT t.resource_id FROM search_token t WHERE t.resource_type = 'Observation' AND t.param = 'code' AND t.system = ${LOINC} AND t.code = ${pick(VITAL_CODES, i)})
            ORDER BY 1 LIMIT ${PAGE}`),
      ],
      maxStatements: 1,
    },
    {
      name: 'code + date range, _sort=date',
      mix: true,
      resourceType: 'Observation',
      params: (i) => {
        const y = 2014 + (i % 8);
        return q(`code=${LOINC}|${pick(LAB_CODES, i)}&date=ge${y}-01-01&date=lt${y + 2}-01-01&_sort=date&_total=none`);
      },
      sql: (i) => {
        const y = 2014 + (i % 8);
        return [
          sql`SELECT r.id, r.content FROM search_date d
              JOIN resource r ON r.resource_type = 'Observation' AND r.id = d.resource_id
              WHERE d.resource_type = 'Observation' AND d.param = 'date' AND d.sort_asc
                AND d.low >= ${`${y}-01-01T00:00:00Z`}::timestamptz AND d.high <= ${`${y + 2}-01-01T00:00:00Z`}::timestamptz
                AND d.resource_id IN (SELECT t.resource_id FROM search_token t WHERE t.resource_type = 'Observation' AND t.param = 'code' AND t.system = ${LOINC} AND t.code = ${pick(LAB_CODES, i)})
              ORDER BY d.low, d.resource_id LIMIT ${PAGE}`,
        ];
      },
      maxStatements: 1,
    },
    {
      name: 'chain subject:Patient.name',
      mix: true,
      resourceType: 'Observation',
      params: (i) => q(`subject:Patient.name=${encodeURIComponent(pick(NAME_PREFIXES, i)[0])}&_total=none`),
      sql: (i) => [
        page('Observation', sql`SELECT DISTINCT c.resource_id AS id FROM search_reference c
            WHERE c.resource_type = 'Observation' AND c.param = 'subject' AND c.target_type = 'Patient'
              AND c.target_id IN (SELECT s.resource_id FROM search_string s WHERE s.resource_type = 'Patient' AND s.param = 'name' AND s.value LIKE ${`${pick(NAME_PREFIXES, i)[1]}%`})
            ORDER BY 1 LIMIT ${PAGE}`),
      ],
      maxStatements: 1,
    },
    {
      name: '_include patient + encounter',
      mix: true,
      resourceType: 'Observation',
      params: (i) => q(`code=${LOINC}|${pick(VITAL_CODES, i)}&_include=Observation:patient&_include=Observation:encounter&_total=none`),
      sql: (i) => [
        page('Observation', sql`SELECT DISTINCT t.resource_id AS id FROM search_token t
            WHERE t.resource_type = 'Observation' AND t.param = 'code' AND t.system = ${LOINC} AND t.code = ${pick(VITAL_CODES, i)}
            ORDER BY 1 LIMIT ${PAGE}`),
        // the two include lookups for that page, written against the page's ids
        sql`SELECT DISTINCT x.id, x.content FROM search_reference f JOIN resource x ON x.resource_type = f.target_type AND x.id = f.target_id
            WHERE f.resource_type = 'Observation' AND f.param = 'patient' AND x.deleted = false
              AND f.resource_id IN (SELECT t.resource_id FROM search_token t WHERE t.resource_type = 'Observation' AND t.param = 'code' AND t.system = ${LOINC} AND t.code = ${pick(VITAL_CODES, i)} ORDER BY t.resource_id LIMIT 20)`,
        sql`SELECT DISTINCT x.id, x.content FROM search_reference f JOIN resource x ON x.resource_type = f.target_type AND x.id = f.target_id
            WHERE f.resource_type = 'Observation' AND f.param = 'encounter' AND x.deleted = false
              AND f.resource_id IN (SELECT t.resource_id FROM search_token t WHERE t.resource_type = 'Observation' AND t.param = 'code' AND t.system = ${LOINC} AND t.code = ${pick(VITAL_CODES, i)} ORDER BY t.resource_id LIMIT 20)`,
      ],
      maxStatements: 3,
    },
    {
      name: '_has:Observation:patient:code',
      mix: true,
      resourceType: 'Patient',
      params: (i) => q(`_has:Observation:patient:code=${LOINC}|${pick(LAB_CODES, i)}&_total=none`),
      sql: (i) => [
        page('Patient', sql`SELECT p.id FROM resource p
            WHERE p.resource_type = 'Patient' AND p.deleted = false
              AND EXISTS (SELECT 1 FROM search_reference h JOIN search_token t ON t.resource_type = 'Observation' AND t.resource_id = h.resource_id
                WHERE h.resource_type = 'Observation' AND h.param = 'patient' AND h.target_type = 'Patient' AND h.target_id = p.id
                  AND t.param = 'code' AND t.system = ${LOINC} AND t.code = ${pick(LAB_CODES, i)})
            ORDER BY p.id LIMIT ${PAGE}`),
      ],
      maxStatements: 1,
    },
    {
      name: 'code, _total=accurate',
      mix: true,
      resourceType: 'Observation',
      params: (i) => q(`code=${LOINC}|${pick(LAB_CODES, i)}&_total=accurate`),
      sql: (i) => [
        page('Observation', sql`SELECT DISTINCT t.resource_id AS id FROM search_token t
            WHERE t.resource_type = 'Observation' AND t.param = 'code' AND t.system = ${LOINC} AND t.code = ${pick(LAB_CODES, i)}
            ORDER BY 1 LIMIT ${PAGE}`),
        sql`SELECT count(DISTINCT t.resource_id) FROM search_token t WHERE t.resource_type = 'Observation' AND t.param = 'code' AND t.system = ${LOINC} AND t.code = ${pick(LAB_CODES, i)}`,
      ],
      maxStatements: 2,
    },
    // ---- outside the mix: other paths worth watching ----
    {
      name: 'code, _sort=date (all years)',
      mix: false,
      resourceType: 'Observation',
      params: (i) => q(`code=${LOINC}|${pick(LAB_CODES, i)}&_sort=date&_total=none`),
      sql: (i) => [
        sql`SELECT r.id, r.content FROM search_date d
            JOIN resource r ON r.resource_type = 'Observation' AND r.id = d.resource_id
            WHERE d.resource_type = 'Observation' AND d.param = 'date' AND d.sort_asc
              AND d.resource_id IN (SELECT t.resource_id FROM search_token t WHERE t.resource_type = 'Observation' AND t.param = 'code' AND t.system = ${LOINC} AND t.code = ${pick(LAB_CODES, i)})
            ORDER BY d.low, d.resource_id LIMIT ${PAGE}`,
      ],
      maxStatements: 1,
    },
    {
      name: '_revinclude Observation:patient',
      mix: false,
      resourceType: 'Patient',
      params: (i) => q(`identifier=${MRN_SYSTEM}|${mrn(patientIndex(i, patients))}&_revinclude=Observation:patient&_total=none`),
      sql: (i) => [
        sql`SELECT r.id, r.content FROM resource r
            WHERE r.resource_type = 'Patient' AND r.deleted = false
              AND r.id IN (SELECT s.resource_id FROM search_token s WHERE s.resource_type = 'Patient' AND s.param = 'identifier' AND s.system = ${MRN_SYSTEM} AND s.code = ${mrn(patientIndex(i, patients))})
            ORDER BY r.id LIMIT ${PAGE}`,
        sql`SELECT x.id, x.content FROM search_reference f JOIN resource x ON x.resource_type = f.resource_type AND x.id = f.resource_id
            WHERE f.resource_type = 'Observation' AND f.param = 'patient' AND f.target_type = 'Patient' AND f.target_id = ${pid(i)} AND x.deleted = false`,
      ],
      maxStatements: 2,
    },
    {
      // A cohort tool's value set: 1,000 LOINC codes (two lab codes present, 998 absent), sent
      // by GET or POST _search, with the count it needs.
      name: 'code OR list of 1,000, _total=accurate',
      mix: false,
      resourceType: 'Observation',
      params: (i) => [['code', cohortCodes(i).map((c) => `${LOINC}|${c}`).join(',')], ['_total', 'accurate']],
      sql: (i) => [
        page('Observation', sql`SELECT DISTINCT t.resource_id AS id FROM search_token t
            WHERE t.resource_type = 'Observation' AND t.param = 'code' AND t.system = ${LOINC} AND t.code = ANY(${cohortCodes(i)}::text[])
            ORDER BY 1 LIMIT ${PAGE}`),
        sql`SELECT count(DISTINCT t.resource_id) FROM search_token t
            WHERE t.resource_type = 'Observation' AND t.param = 'code' AND t.system = ${LOINC} AND t.code = ANY(${cohortCodes(i)}::text[])`,
      ],
      maxStatements: 2,
    },
    {
      name: 'compartment Patient/x/Observation',
      mix: false,
      resourceType: 'Observation',
      compartment: (i) => ({ type: 'Patient', id: pid(i) }),
      params: () => q('_total=none'),
      sql: (i) => [
        sql`SELECT r.id, r.content FROM resource r
            WHERE r.resource_type = 'Observation' AND r.deleted = false
              AND r.id IN (SELECT s.resource_id FROM search_reference s WHERE s.resource_type = 'Observation' AND s.target_type = 'Patient' AND s.target_id = ${pid(i)}
                AND s.param IN ('subject', 'performer'))
            ORDER BY r.id LIMIT ${PAGE}`,
      ],
      maxStatements: 1,
    },
    {
      name: 'compartment Patient/x/*',
      mix: false,
      resourceType: '*',
      compartment: (i) => ({ type: 'Patient', id: pid(i) }),
      params: () => q('_total=none'),
      sql: (i) => [
        sql`SELECT r.id, r.content FROM resource r
            WHERE r.deleted = false AND (r.resource_type, r.id) IN (SELECT cm.resource_type, cm.resource_id FROM search_reference cm
                WHERE cm.target_id = ${pid(i)} AND cm.target_type = 'Patient' AND cm.param IN ('subject', 'patient', 'performer', 'participant')
              UNION ALL SELECT 'Patient', ${pid(i)})
            ORDER BY r.resource_type, r.id LIMIT ${PAGE}`,
      ],
      maxStatements: 1,
    },
  ];
}

/** `_summary=count` over a large match (vital signs: over half of all Observations). */
export function countQuery(): { resourceType: string; params: [string, string][]; sql: RawBuilder<{ n: string }> } {
  return {
    resourceType: 'Observation',
    params: q('category=vital-signs&_summary=count'),
    sql: sql<{ n: string }>`SELECT count(DISTINCT t.resource_id) AS n FROM search_token t
      WHERE t.resource_type = 'Observation' AND t.param = 'category' AND t.code = 'vital-signs'`,
  };
}

export { patientIndex };
