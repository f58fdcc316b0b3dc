import type { CodeableConcept, Composition, Encounter, Parameters, Provenance, Resource } from 'fhir/r4.js';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { scopesAllow } from '../auth/scopes.js';
import type { AuthContext, TokenService } from '../auth/token-service.js';
import { errors } from '../fhir/errors.js';
import { outputOptions, sendResult } from '../http/respond.js';
import { queryOf } from '../http/fhir-routes.js';
import { checkIfMatch } from '../interactions/update.js';
import { changeResult, checkId } from '../interactions/versions.js';
import type { ResourceStore } from '../storage/resource-store.js';
import { diffParameters } from './clinical-diff.js';
import { AMEND_ACTIVITY, AUTHOR_SIGNATURE, SIGN_ACTIVITY, signedAt } from './clinical-signature.js';
import { businessRule } from './scheduling-rules.js';

/**
 * Operations on signed clinical records (issue 13 §1):
 *   POST [Encounter|Composition]/[id]/$sign   the signed-in practitioner (token fhirUser) signs:
 *        the Encounter becomes finished (period.end set), the note final (a legal attester
 *        added); a Provenance with their signature targets the new version; one transaction.
 *   POST [Encounter|Composition]/[id]/$amend  Parameters { resource: the amended content,
 *        reason: string | CodeableConcept }: the new version and a Provenance (activity amend,
 *        reason, agent = fhirUser) in one transaction; the rules (clinical-records.ts) allow it
 *        within the amendment window only.
 *   GET  [Encounter|Composition]/[id]/$diff?from=N&to=M  changes between two versions
 *        (clinical-diff.ts; default: the previous version against the current one).
 * `If-Match` is honoured by $sign and $amend.
 */
export interface ClinicalOperationDeps {
  store: ResourceStore;
  tokens: TokenService;
  fhirBase: string;
}

const TYPES = ['Encounter', 'Composition'] as const;
type RecordType = (typeof TYPES)[number];

function signer(auth: AuthContext, type: RecordType): string {
  if (!scopesAllow(auth.scopes, type, 'u') || !scopesAllow(auth.scopes, 'Provenance', 'c')) {
    throw errors.forbidden(`signing needs update access to ${type} and create access to Provenance`);
  }
  const fhirUser = auth.fhirUser?.split('/').slice(-2).join('/');
  if (auth.kind !== 'user' || !fhirUser?.startsWith('Practitioner/')) {
    throw errors.forbidden('only a signed-in practitioner (fhirUser Practitioner/…) signs or amends clinical records');
  }
  return fhirUser;
}

function parameterOf(body: unknown, name: string): NonNullable<Parameters['parameter']>[number] | undefined {
  if (body === undefined || body === null || body === '') return undefined;
  // The server's body parser has turned FHIR JSON into an object; anything else is no Parameters.
  const parameters = (typeof body === 'object' ? body : undefined) as Parameters | undefined;
  if (parameters?.resourceType !== 'Parameters') throw errors.incorrect('the body must be a Parameters resource');
  return parameters.parameter?.find((p) => p.name === name);
}

function signatureProvenance(type: RecordType, id: string, version: string, who: string, now: string, activity: 'sign' | 'amend', reason?: CodeableConcept): Provenance {
  return {
    resourceType: 'Provenance',
    target: [{ reference: `${type}/${id}/_history/${version}` }],
    recorded: now,
    activity: { coding: [activity === 'sign' ? SIGN_ACTIVITY : AMEND_ACTIVITY] },
    ...(reason ? { reason: [reason] } : {}),
    agent: [{ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: activity === 'sign' ? 'author' : 'enterer' }] }, who: { reference: who } }],
    ...(activity === 'sign' ? { signature: [{ type: [AUTHOR_SIGNATURE], when: now, who: { reference: who } }] } : {}),
  };
}

function signed(type: RecordType, current: Resource, who: string, now: string): Resource {
  if (type === 'Encounter') {
    const encounter = current as Encounter;
    if (encounter.status === 'cancelled' || encounter.status === 'entered-in-error') {
      throw businessRule('invalid', `A ${encounter.status} encounter cannot be signed.`, ['Encounter.status']);
    }
    return { ...encounter, status: 'finished', period: { ...encounter.period, end: encounter.period?.end ?? now } } as Encounter;
  }
  const note = current as Composition;
  if (note.status !== 'preliminary') throw businessRule('conflict', `The note is ${note.status}; only a draft (preliminary) note is signed.`, ['Composition.status']);
  return { ...note, status: 'final', attester: [...(note.attester ?? []), { mode: 'legal', time: now, party: { reference: who } }] } as Composition;
}

function reasonOf(body: unknown): CodeableConcept {
  const p = parameterOf(body, 'reason');
  const reason = p?.valueString?.trim() ? { text: p.valueString.trim() } : p?.valueCodeableConcept;
  if (!reason || (!reason.text?.trim() && !reason.coding?.length)) throw errors.incorrect("an amendment needs a 'reason' (valueString or valueCodeableConcept)", ['Parameters.parameter']);
  return reason;
}

export async function registerClinicalOperations(http: FastifyInstance, deps: ClinicalOperationDeps): Promise<void> {
  const { store } = deps;
  await http.register(
    async (app) => {
      app.addHook('onRequest', async (request) => {
        request.auth = await deps.tokens.verify(request.headers.authorization);
      });
      for (const type of TYPES) {
        app.post<{ Params: { id: string } }>(`/${type}/:id/$sign`, async (request, reply) => {
          const who = signer(request.auth!, type);
          const id = request.params.id;
          checkId(id);
          const result = await store.transaction(async (tx) => {
            const current = await tx.readForUpdate(type, id);
            if (!current?.json || current.deleted) throw errors.notFound(`${type}/${id} is not known`);
            checkIfMatch(current, ifMatchOf(request), `${type}/${id}`);
            if (await signedAt(tx, type, id)) throw businessRule('conflict', `${type}/${id} is already signed; change it with $amend.`);
            const now = new Date().toISOString();
            const next = String(Number(current.versionId) + 1);
            // The signature first: the completion rule finds it in this transaction.
            await tx.create(signatureProvenance(type, id, next, who, now, 'sign'));
            return changeResult(await tx.update(signed(type, JSON.parse(current.json) as Resource, who, now), current), 200);
          });
          return sendResult(request, reply, result, outputOptions(queryOf(request)), deps.fhirBase);
        });
        app.post<{ Params: { id: string } }>(`/${type}/:id/$amend`, async (request, reply) => {
          const who = signer(request.auth!, type);
          const id = request.params.id;
          checkId(id);
          const reason = reasonOf(request.body);
          const amended = parameterOf(request.body, 'resource')?.resource;
          if (!amended || amended.resourceType !== type || (amended.id !== undefined && amended.id !== id)) {
            throw errors.incorrect(`'resource' must be the amended ${type}/${id}`, ['Parameters.parameter']);
          }
          const result = await store.transaction(async (tx) => {
            const current = await tx.readForUpdate(type, id);
            if (!current?.json || current.deleted) throw errors.notFound(`${type}/${id} is not known`);
            checkIfMatch(current, ifMatchOf(request), `${type}/${id}`);
            const next = String(Number(current.versionId) + 1);
            await tx.create(signatureProvenance(type, id, next, who, new Date().toISOString(), 'amend', reason));
            return changeResult(await tx.update({ ...amended, id } as Resource, current), 200);
          });
          return sendResult(request, reply, result, outputOptions(queryOf(request)), deps.fhirBase);
        });
        app.get<{ Params: { id: string } }>(`/${type}/:id/$diff`, async (request, reply) => {
          const auth = request.auth!;
          if (!scopesAllow(auth.scopes.filter((s) => s.context !== 'patient'), type, 'r')) throw errors.forbidden(`$diff needs read access to ${type} (user or system scopes)`);
          const id = request.params.id;
          checkId(id);
          const current = await store.read(type, id);
          if (!current) throw errors.notFound(`${type}/${id} is not known`);
          const query = queryOf(request);
          const to = versionParam(query.get('to')) ?? current.versionId;
          const from = versionParam(query.get('from')) ?? String(Math.max(1, Number(to) - 1));
          const [a, b] = await Promise.all([store.vread(type, id, from), store.vread(type, id, to)]);
          if (!a?.json || !b?.json) throw errors.notFound(`${type}/${id} has no version ${!a?.json ? from : to} with content`);
          return sendResult(request, reply, { status: 200, body: diffParameters(type, id, from, to, a.json, b.json) }, outputOptions(query), deps.fhirBase);
        });
      }
    },
    { prefix: '/fhir' },
  );
}

function versionParam(value: string | null): string | undefined {
  if (value === null || value === '') return undefined;
  if (!/^[1-9][0-9]{0,17}$/.test(value)) throw errors.incorrect(`"${value.slice(0, 20)}" is not a version number`);
  return value;
}

function ifMatchOf(request: FastifyRequest): string | undefined {
  const value = request.headers['if-match'];
  return Array.isArray(value) ? value[0] : value;
}

/** Operations to declare in the CapabilityStatement (app.ts `typeOperations`). */
const OP = 'https://fhir.hospital.example.org/OperationDefinition';
export const CLINICAL_RECORD_OPERATIONS = {
  Encounter: [
    { name: 'sign', definition: `${OP}/clinical-sign` },
    { name: 'amend', definition: `${OP}/clinical-amend` },
    { name: 'diff', definition: `${OP}/clinical-diff` },
  ],
  Composition: [
    { name: 'sign', definition: `${OP}/clinical-sign` },
    { name: 'amend', definition: `${OP}/clinical-amend` },
    { name: 'diff', definition: `${OP}/clinical-diff` },
  ],
};
