import type { FastifyInstance } from 'fastify';
import type { ContactPoint, Identifier, OperationOutcome, Parameters, ParametersParameter, Patient } from 'fhir/r4.js';
import { scopesAllow } from '../auth/scopes.js';
import type { TokenService } from '../auth/token-service.js';
import { errors, FhirError, isFhirError } from '../fhir/errors.js';
import { create } from '../interactions/create.js';
import type { InteractionDeps } from '../interactions/types.js';
import { queryOf } from '../http/fhir-routes.js';
import { outputOptions, sendResult } from '../http/respond.js';
import { loadRegistrationSystems, type RegistrationSystems } from './patient-registration.js';

/**
 * CSV bulk registration (issue 12 §1, seed 004 FR-PM-001): `POST /fhir/Patient/$register-csv`
 * with a `text/csv` body, first line a header naming the columns (any order, case-insensitive):
 *
 *   family (required), given (several names separated by spaces), birthDate (YYYY-MM-DD),
 *   gender (male | female | other | unknown), phone, email, nationalId
 *
 * Each row is registered like a `POST /fhir/Patient` of its own, in its own transaction, through
 * the normal write path: the patient number PT-YYYYMMDD-XXXX is assigned, a national id already
 * registered (also by an earlier row of the same file) is refused, the validator runs. A failed
 * row does not stop the others.
 *
 * Answer (200): Parameters with `created` and `failed` counts and one `row` per data row:
 * parts `row` (the spreadsheet row number, the header being row 1), `status` (HTTP status of that
 * row's create), and `patient` (reference) + `patientNumber` for a created row, or `outcome`
 * (OperationOutcome, diagnostics prefixed with the row number) for a refused one. A file that
 * cannot be read as a whole (no header, unknown column, more than MAX_ROWS rows, broken quoting)
 * is a 400.
 */

export const MAX_ROWS = 1000;
const COLUMNS = ['family', 'given', 'birthdate', 'gender', 'phone', 'email', 'nationalid'] as const;
type Column = (typeof COLUMNS)[number];

/** RFC 4180 records: commas, double-quoted fields with "" escapes, CRLF or LF line ends. */
export function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let field = '';
  let quoted = false;
  let i = 0;
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  while (i < body.length) {
    const c = body[i]!;
    if (quoted) {
      if (c === '"') {
        if (body[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
        i++;
        if (i < body.length && body[i] !== ',' && body[i] !== '\n' && body[i] !== '\r') {
          throw errors.incorrect(`CSV line ${records.length + 1}: text after a closing quote`);
        }
        continue;
      }
      field += c;
      i++;
      continue;
    }
    if (c === '"' && field === '') {
      quoted = true;
      i++;
    } else if (c === ',') {
      record.push(field);
      field = '';
      i++;
    } else if (c === '\r' || c === '\n') {
      record.push(field);
      records.push(record);
      record = [];
      field = '';
      i += c === '\r' && body[i + 1] === '\n' ? 2 : 1;
    } else {
      field += c;
      i++;
    }
  }
  if (quoted) throw errors.incorrect(`CSV line ${records.length + 1}: a quoted field is not closed`);
  if (field !== '' || record.length > 0) {
    record.push(field);
    records.push(record);
  }
  return records;
}

function header(record: string[]): Column[] {
  const columns = record.map((h) => h.trim().toLowerCase().replace(/[\s_-]/g, ''));
  for (const c of columns) {
    if (!(COLUMNS as readonly string[]).includes(c)) {
      throw errors.incorrect(`CSV header: unknown column "${c.slice(0, 40)}"; the columns are family, given, birthDate, gender, phone, email, nationalId`);
    }
  }
  if (new Set(columns).size !== columns.length) throw errors.incorrect('CSV header: a column is named twice');
  if (!columns.includes('family')) throw errors.incorrect('CSV header: the column "family" is required');
  return columns as Column[];
}

/** The Patient of one row (the values are checked by the write path's validator and rules). */
function patientOf(columns: Column[], values: string[], systems: RegistrationSystems, nationalIdSystem: string): Patient {
  const get = (c: Column) => {
    const i = columns.indexOf(c);
    const v = i >= 0 ? values[i]?.trim() : undefined;
    return v ? v : undefined;
  };
  const identifier: Identifier[] = [{ system: systems.patientNumber }];
  const nationalId = get('nationalid');
  if (nationalId) identifier.push({ system: nationalIdSystem, value: nationalId });
  const telecom: ContactPoint[] = [];
  const phone = get('phone');
  if (phone) telecom.push({ system: 'phone', value: phone });
  const email = get('email');
  if (email) telecom.push({ system: 'email', value: email });
  const given = get('given')?.split(/\s+/).filter(Boolean);
  const patient: Patient = { resourceType: 'Patient', identifier, name: [{ family: get('family'), ...(given?.length ? { given } : {}) }] };
  const birthDate = get('birthdate');
  if (birthDate) patient.birthDate = birthDate;
  const gender = get('gender');
  if (gender) patient.gender = gender as Patient['gender'];
  if (telecom.length) patient.telecom = telecom;
  return patient;
}

function rowOutcome(row: number, outcome: OperationOutcome): OperationOutcome {
  return { ...outcome, issue: outcome.issue.map((i) => ({ ...i, diagnostics: `Row ${row}: ${i.diagnostics ?? i.details?.text ?? i.code}` })) };
}

export interface RegisterCsvDeps {
  interactions: InteractionDeps;
  tokens: TokenService;
  fhirBase: string;
  terminologyDir: string;
}

export async function registerCsvRegistration(http: FastifyInstance, deps: RegisterCsvDeps): Promise<void> {
  const systems = loadRegistrationSystems(deps.terminologyDir);
  const nationalIdSystem = systems.unique.find((s) => s !== systems.patientNumber)!;
  await http.register(
    async (app) => {
      // Only this plugin reads text/csv (fastify scopes content-type parsers to the plugin).
      app.addContentTypeParser(['text/csv', 'application/csv'], { parseAs: 'string' }, (_request, body, done) => done(null, body));
      app.addHook('onRequest', async (request) => {
        request.auth = await deps.tokens.verify(request.headers.authorization);
      });
      app.post('/Patient/$register-csv', async (request, reply) => {
        const auth = request.auth!;
        // Registration is front-desk work: user or system scopes, not a patient's own app.
        if (!scopesAllow(auth.scopes.filter((s) => s.context !== 'patient'), 'Patient', 'c')) {
          throw errors.forbidden('CSV registration needs create access to Patient (user or system scopes)');
        }
        if (typeof request.body !== 'string') throw new FhirError('unsupported-media-type', '$register-csv takes a text/csv body');
        const records = parseCsv(request.body);
        if (records.length === 0) throw errors.incorrect('the CSV file is empty: a header line is required');
        const columns = header(records[0]!);
        const rows = records.slice(1).map((values, i) => ({ row: i + 2, values })).filter((r) => r.values.some((v) => v.trim() !== ''));
        if (rows.length > MAX_ROWS) throw errors.incorrect(`at most ${MAX_ROWS} patients per file (this one has ${rows.length}); split the file`);
        const results: ParametersParameter[] = [];
        let created = 0;
        for (const { row, values } of rows) {
          if (values.length !== columns.length) {
            results.push({ name: 'row', part: [
              { name: 'row', valueInteger: row },
              { name: 'status', valueString: '400' },
              { name: 'outcome', resource: rowOutcome(row, errors.incorrect(`has ${values.length} fields, the header ${columns.length}`).toOutcome()) },
            ] });
            continue;
          }
          try {
            const result = await create(deps.interactions, 'Patient', patientOf(columns, values, systems, nationalIdSystem));
            const stored = JSON.parse(result.version!.json!) as Patient;
            const number = stored.identifier?.find((i) => i.system === systems.patientNumber)?.value;
            created++;
            results.push({ name: 'row', part: [
              { name: 'row', valueInteger: row },
              { name: 'status', valueString: String(result.status) },
              { name: 'patient', valueReference: { reference: `Patient/${stored.id}` } },
              ...(number ? [{ name: 'patientNumber', valueIdentifier: { system: systems.patientNumber, value: number } }] : []),
            ] });
          } catch (e) {
            // Refusals (validation, rules, conflicts) are the row's result; anything else is a server fault.
            if (!isFhirError(e)) throw e;
            results.push({ name: 'row', part: [
              { name: 'row', valueInteger: row },
              { name: 'status', valueString: String(e.status) },
              { name: 'outcome', resource: rowOutcome(row, e.toOutcome()) },
            ] });
          }
        }
        const body: Parameters = {
          resourceType: 'Parameters',
          parameter: [{ name: 'created', valueInteger: created }, { name: 'failed', valueInteger: rows.length - created }, ...results],
        };
        return sendResult(request, reply, { status: 200, body }, outputOptions(queryOf(request)), deps.fhirBase);
      });
    },
    { prefix: '/fhir' },
  );
}

/** For the CapabilityStatement (app.ts `typeOperations.Patient`). */
export const REGISTER_CSV_OPERATION = { name: 'register-csv', definition: 'https://fhir.hospital.example.org/OperationDefinition/Patient-register-csv' };
