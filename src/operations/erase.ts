import type { FastifyInstance } from 'fastify';
import type { Coding, OperationOutcome, Patient, Resource } from 'fhir/r4.js';
import type { TokenService, AuthContext } from '../auth/token-service.js';
import { scopesAllow } from '../auth/scopes.js';
import { errors, FhirError } from '../fhir/errors.js';
import { outputOptions, sendResult } from '../http/respond.js';
import { queryOf } from '../http/fhir-routes.js';
import { indexTables } from '../search/index-tables.js';
import type { Db } from '../storage/db.js';
import { erasePatientRecord, type UnwrittenMessageJudge } from '../storage/erase-store.js';
import { identifiersInMessage } from '../hl7v2/maps/patient.js';
import type { MappingTables } from '../hl7v2/maps/tables.js';
import type { BeforeWriteHook } from '../storage/resource-store.js';
import { currentRequestPath, currentWriter } from '../subscriptions/write-context.js';
import { patientCompartment } from './export-compartments.js';

/** The security label that keeps a record from erasure (terminology/CodeSystem-record-hold.json). */
export const LEGAL_HOLD: Required<Pick<Coding, 'system' | 'code'>> = { system: 'https://fhir.hospital.example.org/CodeSystem/record-hold', code: 'legal-hold' };

export const ERASE_OPERATIONS = {
  Patient: [{ name: 'erase', definition: 'https://fhir.hospital.example.org/OperationDefinition/Patient-erase' }],
};

/** Erasure destroys records: an ADMIN user, or a client with system scopes that may delete Patient. */
function mayErase(auth: AuthContext): boolean {
  if (auth.kind === 'user') return auth.role === 'ADMIN';
  return scopesAllow(auth.scopes.filter((s) => s.context === 'system'), 'Patient', 'd');
}

function onHold(content: unknown): boolean {
  const security = (content as Resource | null)?.meta?.security ?? [];
  return security.some((c) => c.system === LEGAL_HOLD.system && c.code === LEGAL_HOLD.code);
}

/**
 * A legal hold is lifted by whoever may erase (an ADMIN user, or a system client that may delete
 * Patient), not by everyone who may update the Patient: a receptionist correcting an address must
 * not end a hold by leaving the label out. Such an update (or a delete) of a held Patient is
 * refused with 403. HL7 v2 feeds (MLLP or POST /hl7v2: their messages carry no FHIR labels) and
 * server-side work never lift it: the label is carried over to the new version.
 */
export const legalHoldHook: BeforeWriteHook = (_tx, change) => {
  if (change.resourceType !== 'Patient' || !change.previous?.json || change.previous.deleted) return;
  if (!onHold(JSON.parse(change.previous.json))) return;
  if (change.resource && onHold(change.resource)) return;
  const feed = currentRequestPath()?.startsWith('/hl7v2') === true;
  const writer = feed ? undefined : currentWriter();
  if (writer && mayErase(writer)) return;
  if (writer || !change.resource) {
    throw errors.forbidden(`Patient/${change.id} is under legal hold: only an ADMIN user (or a system client that may delete Patient) may lift it, and nobody else may delete the Patient`);
  }
  const meta = change.resource.meta ?? {};
  change.resource = { ...change.resource, meta: { ...meta, security: [...(meta.security ?? []), { ...LEGAL_HOLD }] } };
};

/**
 * `POST /fhir/Patient/[id]/$erase` (GDPR art. 17): hard-deletes the Patient and its compartment
 * with every version; refused with 409 business-rule while the Patient carries the legal hold.
 * The request is recorded by the audit trail like every operation (no body, no PHI). The GDPR
 * export is `Patient/[id]/$everything`.
 */
export async function registerErase(http: FastifyInstance, deps: { db: Db; tokens: TokenService; fhirBase: string; hl7Tables: MappingTables }): Promise<void> {
  const identifiersOf = (patient: unknown) => ((patient as Patient).identifier ?? []).filter((i) => i.value);
  // A rejected or failed HL7 v2 message stored nothing but still holds the patient's data: it is
  // the patient's when a PID of it carries one of the patient's identifiers (as ingest maps them).
  const unwrittenMessages: UnwrittenMessageJudge = {
    identifierValues: (patient) => identifiersOf(patient).map((i) => i.value!),
    namesPatient: (raw, patient) => {
      const own = identifiersOf(patient);
      return identifiersInMessage(raw, deps.hl7Tables).some((m) => own.some((p) => p.value === m.value && p.system === m.system));
    },
  };
  const compartment = patientCompartment();
  const pairs: Array<[string, string]> = [];
  // AuditEvents about the patient stay: the audit trail is kept for its own retention period.
  for (const [type, params] of compartment.params) if (type !== 'AuditEvent') for (const p of params) pairs.push([type, p]);
  const tables = indexTables.map((t) => t.table);
  await http.register(
    async (app) => {
      app.addHook('onRequest', async (request) => {
        request.auth = await deps.tokens.verify(request.headers.authorization);
      });
      app.post<{ Params: { id: string } }>('/Patient/:id/$erase', async (request, reply) => {
        if (!mayErase(request.auth!)) throw errors.forbidden('erasing a patient record needs an ADMIN user or a system scope that may delete Patient');
        const id = request.params.id;
        if (!/^[A-Za-z0-9\-.]{1,64}$/.test(id)) throw errors.incorrect('not a Patient id');
        const result = await erasePatientRecord(deps.db, id, pairs, tables, (content) => {
          if (onHold(content)) {
            throw new FhirError('conflict', [{ severity: 'error', code: 'business-rule', diagnostics: `Patient/${id} is under legal hold (meta.security ${LEGAL_HOLD.system}|${LEGAL_HOLD.code}): it cannot be erased until the hold is lifted` }]);
          }
        }, unwrittenMessages);
        if (!result) throw errors.notFound(`Patient/${id} is not known`);
        const body: OperationOutcome = {
          resourceType: 'OperationOutcome',
          issue: [{ severity: 'information', code: 'informational', diagnostics: `erased Patient/${id}: ${result.resources} resources, ${result.versions} versions, ${result.hl7Messages} HL7 v2 messages; ${result.stockMovements} stock movements unlinked` }],
        };
        return sendResult(request, reply, { status: 200, body }, outputOptions(queryOf(request)), deps.fhirBase);
      });
    },
    { prefix: '/fhir' },
  );
}
