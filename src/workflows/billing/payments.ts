import type { Invoice, PaymentReconciliation, PaymentReconciliationDetail, Reference } from 'fhir/r4.js';
import { currentWriter } from '../../subscriptions/write-context.js';
import { referencing } from '../../storage/front-desk-store.js';
import type { Db } from '../../storage/db.js';
import type { BeforeWriteHook, StoreTransaction } from '../../storage/resource-store.js';
import { businessRule, referenceTo, replacedVersion } from '../scheduling-rules.js';
import { formatMoney, minorOf, money } from './money.js';
import { grossOf, isServerInvoice, readInvoice, writeInvoice } from './invoices.js';
import type { PriceList } from './price-list.js';

/**
 * Payments and refunds (seed 004 FR-BL-002) are PaymentReconciliations, one per payment:
 * `paymentAmount` positive for money received, negative for a refund; `detail[0].request` the
 * Invoice; `detail[0].type` the HL7 payment-type (`payment`, or `adjustment` for a refund) and
 * the method of CodeSystem payment-method (cash, card, transfer, insurance). `Invoice/[id]/$pay`
 * and `$refund` build them, but any write path is accounted alike (paymentHook, before commit):
 * the invoice is locked, an over-payment (above the outstanding balance) or a refund above what
 * was paid is refused with 422, and the invoice moves to `balanced` when nothing is outstanding
 * (back to `issued` after a refund). Outstanding = totalGross − Σ paymentAmount of its active
 * PaymentReconciliations. Recorded payments are never changed; a mistake is corrected by a refund.
 */
export const PAYMENT_METHOD_SYSTEM = 'https://fhir.hospital.example.org/CodeSystem/payment-method';
export const PAYMENT_TYPE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/payment-type';
export const PAYMENT_METHODS = ['cash', 'card', 'transfer', 'insurance'] as const;
export type PaymentMethod = (typeof PAYMENT_METHODS)[number];
const REFUNDERS = ['ACCOUNTANT', 'ADMIN'];

export function invoiceOf(payment: PaymentReconciliation | undefined): string | undefined {
  for (const d of payment?.detail ?? []) {
    const id = referenceTo('Invoice', d.request?.reference);
    if (id) return id;
  }
  return undefined;
}

export function methodOf(payment: PaymentReconciliation): string | undefined {
  for (const d of payment.detail ?? []) {
    const code = d.type?.coding?.find((c) => c.system === PAYMENT_METHOD_SYSTEM)?.code;
    if (code) return code;
  }
  return undefined;
}

export interface InvoiceAccount {
  gross: bigint;
  /** Σ of all active payments and refunds. */
  paid: bigint;
  byInsurance: bigint;
  refunded: bigint;
  outstanding: bigint;
  payments: Array<PaymentReconciliation & { id: string }>;
}

/** The active payments of an invoice and what remains to pay (reads through `db`, seeing the transaction's own writes). */
export async function accountOf(db: Db, prices: PriceList, invoice: Invoice & { id: string }): Promise<InvoiceAccount> {
  const rows = await referencing(db, 'PaymentReconciliation', 'invoice', 'Invoice', invoice.id);
  const payments = rows.map((r) => JSON.parse(r.json) as PaymentReconciliation & { id: string }).filter((p) => p.status === 'active');
  let paid = 0n;
  let byInsurance = 0n;
  let refunded = 0n;
  for (const p of payments) {
    const amount = minorOf(p.paymentAmount, prices.currency, `PaymentReconciliation/${p.id}.paymentAmount`);
    paid += amount;
    if (methodOf(p) === 'insurance') byInsurance += amount;
    if (amount < 0n) refunded -= amount;
  }
  payments.sort((a, b) => (a.created ?? '').localeCompare(b.created ?? '') || a.id.localeCompare(b.id));
  const gross = invoice.status === 'cancelled' || invoice.status === 'entered-in-error' ? 0n : grossOf(invoice, prices);
  return { gross, paid, byInsurance, refunded, outstanding: gross - paid, payments };
}

/** A PaymentReconciliation for `amount` (negative: a refund) on an invoice. */
export function paymentFor(prices: PriceList, invoiceId: string, amount: bigint, method: PaymentMethod, options: { reference?: string; note?: string; requestor?: Reference; issuer?: Reference }): PaymentReconciliation {
  const now = new Date().toISOString();
  const refund = amount < 0n;
  const detail: PaymentReconciliationDetail = {
    type: {
      coding: [
        { system: PAYMENT_TYPE_SYSTEM, code: refund ? 'adjustment' : 'payment', display: refund ? 'Adjustment' : 'Payment' },
        { system: PAYMENT_METHOD_SYSTEM, code: method },
      ],
      text: `${refund ? 'refund' : 'payment'} by ${method}`,
    },
    request: { reference: `Invoice/${invoiceId}` },
    date: now.slice(0, 10),
    amount: money(amount, prices.currency),
  };
  return {
    resourceType: 'PaymentReconciliation',
    status: 'active',
    created: now,
    ...(options.issuer ? { paymentIssuer: options.issuer } : {}),
    ...(options.requestor ? { requestor: options.requestor } : {}),
    outcome: 'complete',
    disposition: options.note ?? `${refund ? 'Refund' : 'Payment'} of ${formatMoney(refund ? -amount : amount, prices.currency)} by ${method}`,
    paymentDate: now.slice(0, 10),
    paymentAmount: money(amount, prices.currency),
    ...(options.reference ? { paymentIdentifier: { value: options.reference } } : {}),
    detail: [detail],
  };
}

export function paymentHook(prices: PriceList): BeforeWriteHook {
  return async (tx, change) => {
    if (change.resourceType !== 'PaymentReconciliation') return;
    const after = change.resource as PaymentReconciliation | undefined;
    if (change.method !== 'POST' || !after) {
      // Updates and deletes: refused for payments of the server's invoices.
      const before = await replacedVersion<PaymentReconciliation>(tx, change);
      const invoiceId = invoiceOf(before) ?? invoiceOf(after);
      if (invoiceId && (await serverInvoiceExists(tx, invoiceId))) {
        throw businessRule('invalid', 'A recorded payment is not changed or deleted; record a refund (Invoice/[id]/$refund) instead.', ['PaymentReconciliation']);
      }
      return;
    }
    const invoiceId = invoiceOf(after);
    if (!invoiceId || !(await serverInvoiceExists(tx, invoiceId))) return;
    const named = new Set((after.detail ?? []).map((d) => referenceTo('Invoice', d.request?.reference)).filter((id) => id !== undefined));
    if (named.size > 1) throw businessRule('invalid', 'Record one PaymentReconciliation per invoice (detail.request names several invoices).', ['PaymentReconciliation.detail.request']);
    await recordPayment(tx, prices, invoiceId, after);
    // The invoice's detail carries the amount too (reports sum detail.amount per invoice).
    if ((after.detail ?? []).some((d) => !d.amount && referenceTo('Invoice', d.request?.reference) === invoiceId)) {
      const detail = after.detail!.map((d) => (!d.amount && referenceTo('Invoice', d.request?.reference) === invoiceId ? { ...d, amount: after.paymentAmount } : d));
      change.resource = { ...after, detail } as PaymentReconciliation;
    }
  };
}

async function serverInvoiceExists(tx: StoreTransaction, id: string): Promise<boolean> {
  const stored = await tx.read('Invoice', id);
  return Boolean(stored?.json && !stored.deleted && isServerInvoice(JSON.parse(stored.json) as Invoice));
}

async function recordPayment(tx: StoreTransaction, prices: PriceList, invoiceId: string, payment: PaymentReconciliation): Promise<void> {
  const invoice = await readInvoice(tx, invoiceId, true);
  if (invoice.status !== 'issued' && invoice.status !== 'balanced') {
    throw businessRule('invalid', `Invoice/${invoiceId} is ${invoice.status}; payments are taken only on issued invoices.`, ['PaymentReconciliation.detail.request']);
  }
  if (payment.status !== 'active') throw businessRule('invalid', 'A payment is recorded with status active.', ['PaymentReconciliation.status']);
  const method = methodOf(payment);
  if (!method || !(PAYMENT_METHODS as readonly string[]).includes(method)) {
    throw businessRule('invalid', `Say how it was paid: PaymentReconciliation.detail.type needs a code of ${PAYMENT_METHOD_SYSTEM} (${PAYMENT_METHODS.join(', ')}).`, ['PaymentReconciliation.detail.type']);
  }
  const amount = minorOf(payment.paymentAmount, prices.currency, 'PaymentReconciliation.paymentAmount');
  if (amount === 0n) throw businessRule('invalid', 'A payment of zero is not recorded.', ['PaymentReconciliation.paymentAmount']);
  for (const d of payment.detail ?? []) {
    if (d.amount && minorOf(d.amount, prices.currency, 'PaymentReconciliation.detail.amount') !== amount) {
      throw businessRule('invalid', 'PaymentReconciliation.detail.amount must equal paymentAmount.', ['PaymentReconciliation.detail.amount']);
    }
  }
  const account = await accountOf(await tx.executor(), prices, invoice);
  if (amount > 0n && amount > account.outstanding) {
    throw businessRule('invalid', `Over-payment: ${formatMoney(amount, prices.currency)} is more than the ${formatMoney(account.outstanding, prices.currency)} outstanding on Invoice/${invoiceId}.`, ['PaymentReconciliation.paymentAmount']);
  }
  if (amount < 0n) {
    const writer = currentWriter();
    if (writer?.kind === 'user' && !REFUNDERS.includes(writer.role ?? '')) throw businessRule('invalid', 'Refunds are made by an accountant or an administrator.', ['PaymentReconciliation.paymentAmount']);
    if (-amount > account.paid) {
      throw businessRule('invalid', `A refund of ${formatMoney(-amount, prices.currency)} is more than the ${formatMoney(account.paid, prices.currency)} paid on Invoice/${invoiceId}.`, ['PaymentReconciliation.paymentAmount']);
    }
  }
  const status = account.outstanding - amount === 0n ? 'balanced' : 'issued';
  if (status !== invoice.status) await writeInvoice(tx, { ...invoice, status }, false);
}
