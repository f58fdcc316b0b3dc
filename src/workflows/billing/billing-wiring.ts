import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CoverageEligibilityRequest, FhirResource, Parameters, PaymentReconciliation } from 'fhir/r4.js';
import { scopesAllow } from '../../auth/scopes.js';
import type { TokenService } from '../../auth/token-service.js';
import { errors } from '../../fhir/errors.js';
import { queryOf } from '../../http/fhir-routes.js';
import { outputOptions, sendResult } from '../../http/respond.js';
import type { ResourceStore, StoreTransaction } from '../../storage/resource-store.js';
import { businessRule, referenceTo } from '../scheduling-rules.js';
import { chargeHook } from './charges.js';
import { checkEligibility, claimInvoice, claimResponseHook } from './insurance.js';
import { invoiceGuardHook, invoicePatient } from './invoices.js';
import { explanationGuardHook } from './explanation-of-benefit.js';
import { cancel, discount, invoiceBalance, param, patientBalance, pay, receiptContent } from './operations.js';
import { invoiceOf, paymentHook } from './payments.js';
import type { PriceList } from './price-list.js';
import { billingReceiptPdf, type BillingReceipt } from './receipt-pdf.js';

/**
 * Billing and insurance (issue 14 §3–4): the before-commit rules on every write path
 * (charges from encounters, dispenses, lab orders and bed days; the invoice guard; payment
 * accounting; insurer payouts from adjudicated ClaimResponses) and the operations under /fhir.
 */
export function registerBillingRules(store: ResourceStore, prices: PriceList): void {
  store.onBeforeWrite(chargeHook(prices));
  store.onBeforeWrite(invoiceGuardHook);
  store.onBeforeWrite(paymentHook(prices));
  store.onBeforeWrite(claimResponseHook(prices));
  store.onBeforeWrite(explanationGuardHook);
}

export interface BillingDeps {
  store: ResourceStore;
  tokens: TokenService;
  fhirBase: string;
  prices: PriceList;
}

const ID = /^[A-Za-z0-9\-.]{1,64}$/;

export async function registerBilling(http: FastifyInstance, deps: BillingDeps): Promise<void> {
  const { store, prices } = deps;
  await http.register(
    async (app) => {
      app.addHook('onRequest', async (request) => {
        request.auth = await deps.tokens.verify(request.headers.authorization);
      });
      /** Staff (user) and system scopes; the billing operations are not offered to patient-context tokens. */
      const need = (request: FastifyRequest, needs: Array<[string, 'c' | 'r' | 'u' | 'd' | 's']>) => {
        const scopes = request.auth!.scopes.filter((s) => s.context !== 'patient');
        const missing = needs.filter(([type, p]) => !scopesAllow(scopes, type, p));
        if (missing.length > 0) throw errors.forbidden(`this operation needs ${missing.map(([t, p]) => `${t}.${p}`).join(', ')} (user or system scopes)`);
      };
      const idOf = (request: FastifyRequest<{ Params: { id: string } }>, type: string) => {
        const id = request.params.id;
        if (!ID.test(id)) throw errors.incorrect(`not a ${type} id`);
        return id;
      };
      const send = (request: FastifyRequest, reply: FastifyReply, status: number, body: FhirResource) =>
        sendResult(request, reply, { status, body }, outputOptions(queryOf(request)), deps.fhirBase);
      const run = <T>(work: (tx: StoreTransaction) => Promise<T>) => store.transaction(work);

      app.post<{ Params: { id: string } }>('/Patient/:id/$invoice', async (request, reply) => {
        need(request, [['Invoice', 'c'], ['ChargeItem', 'u']]);
        const patientId = idOf(request, 'Patient');
        const encounter = param(request.body, 'encounter');
        const encounterId = encounter ? referenceTo('Encounter', encounter.valueReference?.reference ?? `Encounter/${encounter.valueString ?? ''}`) : undefined;
        if (encounter && !encounterId) throw businessRule('invalid', 'encounter must reference an Encounter.', ["Parameters.parameter('encounter')"]);
        return send(request, reply, 201, await run((tx) => invoicePatient(tx, prices, patientId, encounterId)));
      });
      app.get<{ Params: { id: string } }>('/Patient/:id/$balance', async (request, reply) => {
        need(request, [['Invoice', 'r']]);
        const patientId = idOf(request, 'Patient');
        return send(request, reply, 200, await run((tx) => patientBalance(tx, prices, patientId)));
      });
      app.get<{ Params: { id: string } }>('/Invoice/:id/$balance', async (request, reply) => {
        need(request, [['Invoice', 'r']]);
        const id = idOf(request, 'Invoice');
        return send(request, reply, 200, await run((tx) => invoiceBalance(tx, prices, id)));
      });
      app.post<{ Params: { id: string } }>('/Invoice/:id/$pay', async (request, reply) => {
        need(request, [['PaymentReconciliation', 'c']]);
        const id = idOf(request, 'Invoice');
        return send(request, reply, 201, await run((tx) => pay(tx, prices, id, request.body, false, request.auth)));
      });
      app.post<{ Params: { id: string } }>('/Invoice/:id/$refund', async (request, reply) => {
        need(request, [['PaymentReconciliation', 'c']]);
        const id = idOf(request, 'Invoice');
        return send(request, reply, 201, await run((tx) => pay(tx, prices, id, request.body, true, request.auth)));
      });
      app.post<{ Params: { id: string } }>('/Invoice/:id/$discount', async (request, reply) => {
        need(request, [['Invoice', 'r']]);
        const id = idOf(request, 'Invoice');
        const result = await run((tx) => discount(tx, prices, id, request.body, request.auth));
        return send(request, reply, result.status, result.body);
      });
      app.post<{ Params: { id: string } }>('/Invoice/:id/$cancel', async (request, reply) => {
        need(request, [['Invoice', 'u'], ['ChargeItem', 'u']]);
        const id = idOf(request, 'Invoice');
        return send(request, reply, 200, await run((tx) => cancel(tx, prices, id, request.body)));
      });
      app.post<{ Params: { id: string } }>('/Invoice/:id/$claim', async (request, reply) => {
        need(request, [['Claim', 'c'], ['Coverage', 'r']]);
        const id = idOf(request, 'Invoice');
        const coverage = referenceTo('Coverage', param(request.body, 'coverage')?.valueReference?.reference);
        return send(request, reply, 201, await run((tx) => claimInvoice(tx, prices, id, coverage)));
      });
      app.post('/CoverageEligibilityRequest/$check', async (request, reply) => {
        need(request, [['CoverageEligibilityRequest', 'c'], ['Coverage', 'r']]);
        const body = request.body as CoverageEligibilityRequest | Parameters | undefined;
        const input = body?.resourceType === 'Parameters' ? (body.parameter?.find((p) => p.name === 'request')?.resource as CoverageEligibilityRequest | undefined) : body;
        if (input?.resourceType !== 'CoverageEligibilityRequest') throw errors.incorrect('the body must be a CoverageEligibilityRequest (or Parameters with one as `request`)');
        return send(request, reply, 200, await run((tx) => checkEligibility(tx, prices, input)));
      });
      const pdf = async (reply: FastifyReply, content: BillingReceipt) =>
        reply.code(200).type('application/pdf').header('Content-Disposition', `inline; filename="${content.number}.pdf"`).send(await billingReceiptPdf(content, { compress: false }));
      app.get<{ Params: { id: string } }>('/PaymentReconciliation/:id/$receipt', async (request, reply) => {
        need(request, [['PaymentReconciliation', 'r'], ['Invoice', 'r']]);
        const id = idOf(request, 'PaymentReconciliation');
        const content = await run(async (tx) => {
          const stored = await tx.read('PaymentReconciliation', id);
          if (!stored?.json || stored.deleted) throw errors.notFound(`PaymentReconciliation/${id} is not known`);
          const payment = JSON.parse(stored.json) as PaymentReconciliation & { id: string };
          const invoiceId = invoiceOf(payment);
          if (!invoiceId) throw businessRule('invalid', `PaymentReconciliation/${id} is not a payment of an invoice.`);
          return receiptContent(tx, prices, invoiceId, payment);
        });
        return pdf(reply, content);
      });
      app.get<{ Params: { id: string } }>('/Invoice/:id/$receipt', async (request, reply) => {
        need(request, [['PaymentReconciliation', 'r'], ['Invoice', 'r']]);
        const id = idOf(request, 'Invoice');
        return pdf(reply, await run((tx) => receiptContent(tx, prices, id, undefined)));
      });
    },
    { prefix: '/fhir' },
  );
}

/** Declared by conformance/billing/OperationDefinition-<Type>-<name>.json. */
const op = (type: string, name: string) => ({ name, definition: `https://fhir.hospital.example.org/OperationDefinition/${type}-${name}` });

/** Operations to declare in the CapabilityStatement (app.ts `typeOperations`; Patient merges with the others). */
export const BILLING_OPERATIONS = {
  Patient: [op('Patient', 'invoice'), op('Patient', 'balance')],
  Invoice: ['pay', 'refund', 'discount', 'cancel', 'claim', 'balance', 'receipt'].map((name) => op('Invoice', name)),
  PaymentReconciliation: [op('PaymentReconciliation', 'receipt')],
  CoverageEligibilityRequest: [op('CoverageEligibilityRequest', 'check')],
};
