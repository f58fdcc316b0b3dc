import type { FastifyInstance } from 'fastify';
import type { HumanName, Medication, MedicationDispense, Parameters, ParametersParameter, Resource } from 'fhir/r4.js';
import { scopesAllow } from '../../auth/scopes.js';
import type { AuthContext, TokenService } from '../../auth/token-service.js';
import { errors } from '../../fhir/errors.js';
import { outputOptions, sendResult } from '../../http/respond.js';
import { queryOf } from '../../http/fhir-routes.js';
import { accessFilterFor } from '../../search/sql/access.js';
import type { SearchService } from '../../search/search-service.js';
import type { Db } from '../../storage/db.js';
import { addMovement, batchesOf, lockBatch, movementsOf, setBatchQuantity, usableTotal } from '../../storage/pharmacy-store.js';
import type { ResourceStore } from '../../storage/resource-store.js';
import { businessRule, referenceTo } from '../scheduling-rules.js';
import { BATCH_URL, decimal, medicationName, readBatchExtension, today } from './definitions.js';
import { dispenseHook } from './dispensing.js';
import { sweepExpiry } from './expiry.js';
import { receiptPdf } from './receipt-pdf.js';
import { lockProduct, medicationStockHook, movementAuthor, receiptHook, refreshProduct } from './stock.js';

/**
 * Pharmacy (issue 13 §4): the stock and dispensing rules on every write path, and the
 * operations `Medication/[id]/$stock`, `Medication/[id]/$adjust-stock`,
 * `Medication/$expire-batches` and `MedicationDispense/[id]/$receipt` under /fhir.
 */
export function registerPharmacyRules(store: ResourceStore): void {
  store.onBeforeWrite(medicationStockHook);
  store.onBeforeWrite(receiptHook);
  store.onBeforeWrite(dispenseHook);
}

export interface PharmacyDeps {
  store: ResourceStore;
  search: SearchService;
  tokens: TokenService;
  db: Db;
  fhirBase: string;
  /** printed on receipts (NOTIFICATION_HOSPITAL_NAME) */
  hospitalName: string;
}

const ID = /^[A-Za-z0-9\-.]{1,64}$/;
const MAX_MOVEMENTS = 1000;

/** Staff and system scopes only: stock is not patient data, and patient-context tokens have no business here. */
function staffAllowed(auth: AuthContext, type: string, permission: 'r' | 'u'): boolean {
  return scopesAllow(auth.scopes.filter((s) => s.context !== 'patient'), type, permission);
}

function nameText(names: HumanName[] | undefined): string {
  const n = names?.find((x) => x.use === 'official') ?? names?.[0];
  if (!n) return '';
  return n.text ?? [...(n.prefix ?? []), ...(n.given ?? []), n.family].filter(Boolean).join(' ');
}

async function readJson<T extends Resource>(store: ResourceStore, reference: string | undefined): Promise<T | undefined> {
  const m = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/.exec(reference ?? '');
  if (!m) return undefined;
  const found = await store.read(m[1]!, m[2]!);
  return found?.json && !found.deleted ? (JSON.parse(found.json) as T) : undefined;
}

function param(p: Parameters | undefined, name: string): ParametersParameter | undefined {
  return p?.resourceType === 'Parameters' ? p.parameter?.find((x) => x.name === name) : undefined;
}

export async function registerPharmacy(http: FastifyInstance, deps: PharmacyDeps): Promise<void> {
  await http.register(
    async (app) => {
      app.addHook('onRequest', async (request) => {
        request.auth = await deps.tokens.verify(request.headers.authorization);
      });

      app.get<{ Params: { id: string } }>('/Medication/:id/$stock', async (request, reply) => {
        const auth = request.auth!;
        if (!staffAllowed(auth, 'Medication', 'r')) throw errors.forbidden('pharmacy stock needs read access to Medication (user or system scopes)');
        const id = request.params.id;
        if (!ID.test(id)) throw errors.incorrect('not a Medication id');
        const found = await deps.store.read('Medication', id);
        if (!found?.json || found.deleted) throw errors.notFound(`Medication/${id} is not known`);
        const query = queryOf(request);
        const wanted = Number(query.get('movements') ?? '100');
        if (!Number.isInteger(wanted) || wanted < 0) throw errors.incorrect('movements must be a whole number ≥ 0', ['movements']);
        const body = await stockReport(deps.db, id, Math.min(wanted, MAX_MOVEMENTS));
        return sendResult(request, reply, { status: 200, body }, outputOptions(query), deps.fhirBase);
      });

      app.post<{ Params: { id: string } }>('/Medication/:id/$adjust-stock', async (request, reply) => {
        const auth = request.auth!;
        if (!staffAllowed(auth, 'Medication', 'u')) throw errors.forbidden('a stock adjustment needs write access to Medication (user or system scopes)');
        const id = request.params.id;
        if (!ID.test(id)) throw errors.incorrect('not a Medication id');
        const input = request.body as Parameters | undefined;
        const lot = param(input, 'lot')?.valueString;
        const delta = param(input, 'quantity')?.valueDecimal ?? param(input, 'quantity')?.valueInteger;
        const reason = param(input, 'reason')?.valueString?.trim();
        const location = referenceTo('Location', param(input, 'location')?.valueReference?.reference) ?? '';
        if (!lot || delta === undefined || delta === 0 || !reason) throw errors.incorrect('Parameters needs lot (valueString), quantity (valueDecimal, signed, not 0) and reason (valueString)', ['Parameters.parameter']);
        await deps.store.transaction(async (tx) => {
          if (!(await lockProduct(tx, id))) throw errors.notFound(`Medication/${id} is not known`);
          const db = await tx.executor();
          const batch = await lockBatch(db, id, location, lot);
          if (!batch || !batch.active) throw businessRule('conflict', `Lot ${lot} is not an active batch of Medication/${id}${location ? ` at Location/${location}` : ''}.`, ['Parameters.parameter']);
          const balance = decimal(Number(batch.quantity) + delta);
          if (balance < 0) throw businessRule('conflict', `Lot ${lot} holds ${batch.quantity}; it cannot go below zero.`, ['Parameters.parameter']);
          await setBatchQuantity(db, batch.id, String(balance));
          await addMovement(db, { batchId: batch.id, medicationId: id, kind: 'adjustment', quantity: String(delta), balance: String(balance), author: movementAuthor(), reason });
          await refreshProduct(tx, id);
        });
        const body = await stockReport(deps.db, id, 10);
        return sendResult(request, reply, { status: 200, body }, outputOptions(queryOf(request)), deps.fhirBase);
      });

      app.post('/Medication/$expire-batches', async (request, reply) => {
        const auth = request.auth!;
        if (!staffAllowed(auth, 'Medication', 'u')) throw errors.forbidden('the expiry sweep needs write access to Medication (user or system scopes)');
        const r = await sweepExpiry(deps.store, deps.db);
        const body: Parameters = {
          resourceType: 'Parameters',
          parameter: [
            { name: 'writtenOff', valueInteger: r.writtenOff },
            { name: 'alerted', valueInteger: r.alerted },
            { name: 'products', valueInteger: r.products },
          ],
        };
        return sendResult(request, reply, { status: 200, body }, outputOptions(queryOf(request)), deps.fhirBase);
      });

      app.get<{ Params: { id: string } }>('/MedicationDispense/:id/$receipt', async (request, reply) => {
        const auth = request.auth!;
        if (!scopesAllow(auth.scopes, 'MedicationDispense', 'r')) throw errors.forbidden("the access token's scopes do not allow reading MedicationDispense");
        const id = request.params.id;
        if (!ID.test(id)) throw errors.incorrect('not a MedicationDispense id');
        // Read through search with the caller's access filter: a patient sees only their own receipts.
        const bundle = await deps.search.search({ resourceType: 'MedicationDispense', params: [['_id', id]], baseUrl: deps.fhirBase, accessFilter: accessFilterFor(auth) });
        const dispense = bundle.entry?.[0]?.resource as MedicationDispense | undefined;
        if (!dispense) throw errors.notFound(`MedicationDispense/${id} is not known`);
        const pdf = await receiptPdf(await receiptContent(deps, dispense));
        return reply.code(200).type('application/pdf').header('content-disposition', `inline; filename="receipt-${id}.pdf"`).send(pdf);
      });
    },
    { prefix: '/fhir' },
  );
}

async function receiptContent(deps: PharmacyDeps, d: MedicationDispense) {
  const patient = await readJson<Resource & { name?: HumanName[] }>(deps.store, d.subject?.reference);
  const medication = d.medicationCodeableConcept
    ? (d.medicationCodeableConcept.text ?? d.medicationCodeableConcept.coding?.[0]?.display ?? '')
    : (d.medicationReference?.display ?? medicationName(await readJson<Medication>(deps.store, d.medicationReference?.reference)));
  const performer = d.performer?.[0]?.actor;
  const pharmacist = await readJson<Resource & { name?: HumanName[] }>(deps.store, performer?.reference);
  const q = d.quantity;
  return {
    hospitalName: deps.hospitalName,
    dispense: `MedicationDispense/${d.id ?? ''}`,
    patientName: nameText(patient?.name) || d.subject?.display || d.subject?.reference || '',
    medication,
    quantity: q ? `${q.value ?? ''} ${q.unit ?? q.code ?? ''}`.trim() : '',
    batches: (d.extension ?? [])
      .filter((e) => e.url === BATCH_URL)
      .map(readBatchExtension)
      .map((b) => ({ lot: b.lot ?? '', expiry: b.expiry ?? '', quantity: b.quantity ? `${b.quantity.value ?? ''} ${b.quantity.unit ?? ''}`.trim() : '' })),
    pharmacist: nameText(pharmacist?.name) || performer?.display || performer?.reference || '',
    date: d.whenHandedOver ?? d.whenPrepared ?? d.meta?.lastUpdated ?? '',
    status: d.status,
    ...(d.authorizingPrescription?.[0]?.reference ? { prescription: d.authorizingPrescription[0].reference } : {}),
    ...(d.dosageInstruction?.[0]?.text ? { instructions: d.dosageInstruction[0].text } : {}),
  };
}

/** `Medication/[id]/$stock`: usable total, every batch, the latest movements (newest first). */
async function stockReport(db: Db, medicationId: string, movements: number): Promise<Parameters> {
  const [total, batches, moves] = [await usableTotal(db, medicationId, today()), await batchesOf(db, medicationId), movements > 0 ? await movementsOf(db, medicationId, movements) : []];
  return {
    resourceType: 'Parameters',
    parameter: [
      { name: 'medication', valueReference: { reference: `Medication/${medicationId}` } },
      { name: 'total', valueDecimal: Number(total) },
      ...batches.map(
        (b): ParametersParameter => ({
          name: 'batch',
          part: [
            { name: 'lot', valueString: b.lot },
            { name: 'expiry', valueDate: b.expiry },
            { name: 'quantity', valueDecimal: Number(b.quantity) },
            ...(b.unit ? [{ name: 'unit', valueString: b.unit }] : []),
            ...(b.location_id ? [{ name: 'location', valueReference: { reference: `Location/${b.location_id}` } }] : []),
            { name: 'active', valueBoolean: b.active },
            { name: 'expiryAlerted', valueBoolean: b.expiry_alerted },
            { name: 'received', valueDateTime: b.received_at },
          ],
        }),
      ),
      ...moves.map(
        (m): ParametersParameter => ({
          name: 'movement',
          part: [
            { name: 'kind', valueCode: m.kind },
            { name: 'lot', valueString: m.lot },
            { name: 'quantity', valueDecimal: Number(m.quantity) },
            { name: 'balance', valueDecimal: Number(m.balance) },
            ...(m.source ? [{ name: 'source', valueReference: { reference: m.source } }] : []),
            ...(m.author ? [{ name: 'author', valueString: m.author }] : []),
            ...(m.reason ? [{ name: 'reason', valueString: m.reason }] : []),
            { name: 'recorded', valueDateTime: m.recorded },
          ],
        }),
      ),
    ],
  };
}

/** Operations to declare in the CapabilityStatement (app.ts `typeOperations`). */
export const PHARMACY_OPERATIONS = {
  Medication: [
    { name: 'stock', definition: 'https://fhir.hospital.example.org/OperationDefinition/Medication-stock' },
    { name: 'adjust-stock', definition: 'https://fhir.hospital.example.org/OperationDefinition/Medication-adjust-stock' },
    { name: 'expire-batches', definition: 'https://fhir.hospital.example.org/OperationDefinition/Medication-expire-batches' },
  ],
  MedicationDispense: [{ name: 'receipt', definition: 'https://fhir.hospital.example.org/OperationDefinition/MedicationDispense-receipt' }],
};
