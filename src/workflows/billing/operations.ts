import type { Claim, ClaimResponse, Invoice, Parameters, ParametersParameter, Patient, PaymentReconciliation, Reference, Task } from 'fhir/r4.js';
import type { AuthContext } from '../../auth/token-service.js';
import { referencing } from '../../storage/front-desk-store.js';
import type { Db } from '../../storage/db.js';
import type { StoreTransaction } from '../../storage/resource-store.js';
import { businessRule, referenceTo } from '../scheduling-rules.js';
import { formatMoney, minorOf, money, parseDecimal, toMinor } from './money.js';
import { applyDiscount, cancelInvoice, discountOf, isServerInvoice, linesOf, readInvoice, type DiscountRequest } from './invoices.js';
import { claimIdFor } from './insurance.js';
import { categoryOf } from './adjudication.js';
import { accountOf, methodOf, PAYMENT_METHODS, paymentFor, type InvoiceAccount, type PaymentMethod } from './payments.js';
import type { BillingReceipt } from './receipt-pdf.js';
import type { PriceList } from './price-list.js';

/**
 * The bodies of the billing operations (HTTP in billing-wiring.ts): Parameters in, resources
 * or Parameters out, each run inside one store transaction by the caller.
 */
export const DISCOUNT_TASK_SYSTEM = 'https://fhir.hospital.example.org/CodeSystem/billing-task';
export const DISCOUNT_APPROVERS = ['ACCOUNTANT', 'ADMIN'];

export function param(body: unknown, name: string): ParametersParameter | undefined {
  const p = body as Parameters | undefined;
  if (p && p.resourceType !== 'Parameters') throw businessRule('invalid', 'The body must be a Parameters resource.');
  return p?.parameter?.find((x) => x.name === name);
}

function amountParam(body: unknown, prices: PriceList, name = 'amount'): bigint | undefined {
  const p = param(body, name);
  if (!p) return undefined;
  if (p.valueMoney) return minorOf(p.valueMoney, prices.currency, `Parameters.parameter('${name}')`);
  if (p.valueDecimal !== undefined) {
    const minor = toMinor(p.valueDecimal, prices.currency);
    if (minor === undefined) throw businessRule('invalid', `${name} has more decimals than ${prices.currency} allows.`, [`Parameters.parameter('${name}')`]);
    return minor;
  }
  throw businessRule('invalid', `${name} must be a valueMoney or valueDecimal.`, [`Parameters.parameter('${name}')`]);
}

function writerReference(auth: AuthContext | undefined): Reference | undefined {
  const user = auth?.fhirUser;
  if (user && /^(Practitioner|PractitionerRole|Organization)\/[A-Za-z0-9\-.]{1,64}$/.test(user)) return { reference: user };
  return undefined;
}

export function isApprover(auth: AuthContext | undefined): boolean {
  return auth?.kind === 'user' && DISCOUNT_APPROVERS.includes(auth.role ?? '');
}

export async function pay(tx: StoreTransaction, prices: PriceList, invoiceId: string, body: unknown, refund: boolean, auth: AuthContext | undefined): Promise<PaymentReconciliation & { id: string }> {
  const amount = amountParam(body, prices);
  if (amount === undefined || amount <= 0n) throw businessRule('invalid', `${refund ? '$refund' : '$pay'} needs an amount above 0.`, ["Parameters.parameter('amount')"]);
  const method = param(body, 'method')?.valueCode ?? (refund ? 'cash' : undefined);
  if (!method || !(PAYMENT_METHODS as readonly string[]).includes(method)) throw businessRule('invalid', `method must be one of ${PAYMENT_METHODS.join(', ')}.`, ["Parameters.parameter('method')"]);
  const invoice = await readInvoice(tx, invoiceId, false);
  const note = param(body, 'reason')?.valueString;
  const requestor = writerReference(auth);
  const payment = paymentFor(prices, invoice.id, refund ? -amount : amount, method as PaymentMethod, {
    reference: param(body, 'reference')?.valueString,
    ...(note ? { note: `Refund: ${note}` } : {}),
    ...(requestor ? { requestor } : {}),
  });
  const change = await tx.create(payment);
  return change.resource as PaymentReconciliation & { id: string };
}

/**
 * `Invoice/[id]/$discount`: by an ACCOUNTANT or ADMIN user the discount is applied at once (or
 * the pending request named by `request` is approved); by anyone else it becomes a Task waiting
 * for that approval and the invoice is unchanged.
 */
export async function discount(tx: StoreTransaction, prices: PriceList, invoiceId: string, body: unknown, auth: AuthContext | undefined): Promise<{ status: number; body: Invoice | Task }> {
  const invoice = await readInvoice(tx, invoiceId, true);
  const approver = writerReference(auth) ?? { display: auth?.subject ?? 'accountant' };
  const requested = referenceTo('Task', param(body, 'request')?.valueReference?.reference);
  if (requested) {
    if (!isApprover(auth)) throw businessRule('invalid', 'A discount is approved by an accountant or an administrator.');
    const stored = await tx.readForUpdate('Task', requested);
    const task = stored?.json && !stored.deleted ? (JSON.parse(stored.json) as Task) : undefined;
    if (!task || !task.code?.coding?.some((c) => c.system === DISCOUNT_TASK_SYSTEM) || referenceTo('Invoice', task.focus?.reference) !== invoiceId) {
      throw businessRule('invalid', `Task/${requested} is not a discount request for Invoice/${invoiceId}.`);
    }
    if (task.status !== 'requested') throw businessRule('conflict', `Task/${requested} is ${task.status}, not waiting for approval.`);
    const input = (name: string) => task.input?.find((i) => i.type.text === name);
    const request: DiscountRequest = {
      percent: input('percent')?.valueDecimal !== undefined ? parseDecimal(input('percent')!.valueDecimal!) : undefined,
      amount: input('amount')?.valueMoney ? minorOf(input('amount')!.valueMoney, prices.currency, 'Task.input.valueMoney') : undefined,
      reason: input('reason')?.valueString ?? 'discount',
      approver,
    };
    const account = await accountOf(await tx.executor(), prices, invoice);
    const next = await applyDiscount(tx, prices, invoice, request, account.paid);
    const owner = writerReference(auth);
    const done: Task = { ...task, status: 'completed', ...(owner ? { owner } : {}), lastModified: new Date().toISOString() };
    await tx.update(done, stored!, 'PUT');
    return { status: 200, body: next };
  }
  const reason = param(body, 'reason')?.valueString;
  if (!reason) throw businessRule('invalid', 'A discount needs a reason.', ["Parameters.parameter('reason')"]);
  const percentParam = param(body, 'percent')?.valueDecimal;
  const percent = percentParam !== undefined ? parseDecimal(percentParam) : undefined;
  const amount = amountParam(body, prices);
  if ((percent === undefined) === (amount === undefined)) throw businessRule('invalid', 'Give either percent or amount.', ['Parameters.parameter']);
  if (isApprover(auth)) {
    const account = await accountOf(await tx.executor(), prices, invoice);
    return { status: 200, body: await applyDiscount(tx, prices, invoice, { percent, amount, reason, approver }, account.paid) };
  }
  if (invoice.status !== 'issued') throw businessRule('invalid', `Invoice/${invoiceId} is ${invoice.status}; only an issued invoice can be discounted.`, ['Invoice.status']);
  const requester = writerReference(auth);
  const task: Task = {
    resourceType: 'Task',
    status: 'requested',
    intent: 'proposal',
    code: { coding: [{ system: DISCOUNT_TASK_SYSTEM, code: 'discount-approval', display: 'Discount approval' }] },
    description: `Discount on ${invoice.identifier?.[0]?.value ?? `Invoice/${invoiceId}`}: ${reason}`,
    focus: { reference: `Invoice/${invoiceId}` },
    ...(invoice.subject ? { for: invoice.subject } : {}),
    authoredOn: new Date().toISOString(),
    ...(requester ? { requester } : {}),
    input: [
      percent !== undefined ? { type: { text: 'percent' }, valueDecimal: percentParam } : { type: { text: 'amount' }, valueMoney: money(amount!, prices.currency) },
      { type: { text: 'reason' }, valueString: reason },
    ],
  };
  const change = await tx.create(task);
  return { status: 201, body: change.resource as Task };
}

export async function cancel(tx: StoreTransaction, prices: PriceList, invoiceId: string, body: unknown): Promise<Invoice> {
  const invoice = await readInvoice(tx, invoiceId, true);
  const claim = await tx.read('Claim', claimIdFor(invoiceId));
  if (claim?.json && !claim.deleted && (JSON.parse(claim.json) as Claim).status === 'active') throw businessRule('conflict', `Invoice/${invoiceId} is claimed (Claim/${claimIdFor(invoiceId)}); cancel the claim first.`);
  const account = await accountOf(await tx.executor(), prices, invoice);
  return cancelInvoice(tx, prices, invoice, param(body, 'reason')?.valueString ?? 'cancelled', account.paid);
}

/**
 * The insurance side of an invoice's balance: what an insurer is still expected to pay (a claim
 * not yet adjudicated), and of an adjudicated claim the patient's co-payment and the part the
 * insurer did not cover (both stay outstanding on the invoice as the patient's).
 */
async function insuranceState(db: Db, tx: StoreTransaction, prices: PriceList, invoiceId: string, account: InvoiceAccount): Promise<{ pending: bigint; copay: bigint; notCovered: bigint }> {
  const none = { pending: 0n, copay: 0n, notCovered: 0n };
  const id = claimIdFor(invoiceId);
  const stored = await tx.read('Claim', id);
  if (!stored?.json || stored.deleted) return none;
  const claim = JSON.parse(stored.json) as Claim;
  if (claim.status !== 'active') return none;
  const responses = (await referencing(db, 'ClaimResponse', 'request', 'Claim', id)).map((r) => JSON.parse(r.json) as ClaimResponse);
  const decided = responses.find((r) => r.status === 'active' && r.outcome !== 'queued');
  if (decided) {
    const total = (category: string) => {
      const found = decided.total?.find((t) => categoryOf(t.category) === category);
      return found ? minorOf(found.amount, prices.currency, 'ClaimResponse.total.amount') : undefined;
    };
    const submitted = total('submitted') ?? minorOf(claim.total, prices.currency, 'Claim.total');
    const eligible = decided.outcome === 'error' ? 0n : (total('eligible') ?? total('benefit') ?? 0n);
    return { pending: 0n, copay: decided.outcome === 'error' ? 0n : (total('copay') ?? 0n), notCovered: submitted - eligible };
  }
  const claimed = minorOf(claim.total, prices.currency, 'Claim.total');
  return { ...none, pending: claimed < account.outstanding ? claimed : account.outstanding };
}

function moneyParam(name: string, minor: bigint, prices: PriceList): ParametersParameter {
  return { name, valueMoney: money(minor, prices.currency) };
}

async function invoiceBalanceParts(tx: StoreTransaction, prices: PriceList, invoice: Invoice & { id: string }): Promise<{ parts: ParametersParameter[]; outstanding: bigint; pending: bigint }> {
  const db = await tx.executor();
  const account = await accountOf(db, prices, invoice);
  const insurance = await insuranceState(db, tx, prices, invoice.id, account);
  const pending = insurance.pending;
  return {
    outstanding: account.outstanding,
    pending,
    parts: [
      { name: 'invoice', valueReference: { reference: `Invoice/${invoice.id}`, display: invoice.identifier?.[0]?.value } },
      { name: 'status', valueCode: invoice.status },
      moneyParam('total', account.gross, prices),
      moneyParam('paid', account.paid, prices),
      moneyParam('paidByInsurance', account.byInsurance, prices),
      moneyParam('refunded', account.refunded, prices),
      moneyParam('outstanding', account.outstanding, prices),
      moneyParam('pendingInsurance', pending, prices),
      moneyParam('patientResponsibility', account.outstanding - pending, prices),
      moneyParam('patientCopay', insurance.copay, prices),
      moneyParam('notCovered', insurance.notCovered, prices),
    ],
  };
}

/** `Invoice/[id]/$balance`. */
export async function invoiceBalance(tx: StoreTransaction, prices: PriceList, invoiceId: string): Promise<Parameters> {
  const invoice = await readInvoice(tx, invoiceId, false);
  return { resourceType: 'Parameters', parameter: (await invoiceBalanceParts(tx, prices, invoice)).parts };
}

/** `Patient/[id]/$balance`: outstanding over the patient's issued invoices, and charges not yet invoiced. */
export async function patientBalance(tx: StoreTransaction, prices: PriceList, patientId: string): Promise<Parameters> {
  const patient = await tx.read('Patient', patientId);
  if (!patient?.json || patient.deleted) throw businessRule('invalid', `Patient/${patientId} does not exist.`);
  const db = await tx.executor();
  const invoices = (await referencing(db, 'Invoice', 'subject', 'Patient', patientId))
    .map((r) => JSON.parse(r.json) as Invoice & { id: string })
    .filter((i) => isServerInvoice(i) && (i.status === 'issued' || i.status === 'balanced'));
  let outstanding = 0n;
  let pending = 0n;
  const parts: ParametersParameter[] = [];
  for (const invoice of invoices) {
    const balance = await invoiceBalanceParts(tx, prices, invoice);
    outstanding += balance.outstanding;
    pending += balance.pending;
    if (balance.outstanding !== 0n) parts.push({ name: 'invoice', part: balance.parts });
  }
  let unbilled = 0n;
  for (const row of await referencing(db, 'ChargeItem', 'subject', 'Patient', patientId)) {
    const charge = JSON.parse(row.json) as { status?: string; priceOverride?: { value?: number; currency?: string } };
    if (charge.status === 'billable' && charge.priceOverride) unbilled += minorOf(charge.priceOverride, prices.currency, 'ChargeItem.priceOverride');
  }
  return {
    resourceType: 'Parameters',
    parameter: [
      { name: 'patient', valueReference: { reference: `Patient/${patientId}` } },
      moneyParam('outstanding', outstanding, prices),
      moneyParam('pendingInsurance', pending, prices),
      moneyParam('patientResponsibility', outstanding - pending, prices),
      moneyParam('unbilled', unbilled, prices),
      ...parts,
    ],
  };
}

function patientName(patient: Patient | undefined): string {
  const name = patient?.name?.[0];
  if (!name) return 'unknown';
  return name.text ?? [...(name.given ?? []), name.family ?? ''].join(' ').trim();
}

/** What the receipt of a payment (or the statement of an invoice, without `paymentId`) shows. */
export async function receiptContent(tx: StoreTransaction, prices: PriceList, invoiceId: string, payment: (PaymentReconciliation & { id: string }) | undefined): Promise<BillingReceipt> {
  const invoice = await readInvoice(tx, invoiceId, false);
  const account = await accountOf(await tx.executor(), prices, invoice);
  const patientId = referenceTo('Patient', invoice.subject?.reference);
  const stored = patientId ? await tx.read('Patient', patientId) : undefined;
  const patient = stored?.json && !stored.deleted ? (JSON.parse(stored.json) as Patient) : undefined;
  const fmt = (m: bigint) => formatMoney(m, prices.currency);
  const lines = linesOf(invoice, prices).map((l) => ({
    category: prices.display(l.category) ?? l.category,
    description: `${prices.display(l.code) ?? l.code} x ${l.quantity}`,
    amount: fmt(l.base),
  }));
  const taxes = (invoice.totalPriceComponent ?? []).filter((p) => p.type === 'tax').reduce((a, p) => a + minorOf(p.amount, prices.currency, 'tax'), 0n);
  const subtotal = linesOf(invoice, prices).reduce((a, l) => a + l.base, 0n);
  const amount = payment ? minorOf(payment.paymentAmount, prices.currency, 'paymentAmount') : undefined;
  return {
    title: payment ? (amount! < 0n ? 'Refund receipt' : 'Payment receipt') : 'Invoice statement',
    hospital: prices.hospital,
    number: payment ? `RCPT-${payment.id}` : invoice.identifier?.[0]?.value ?? invoice.id,
    date: (payment?.created ?? new Date().toISOString()).slice(0, 19).replace('T', ' '),
    patientName: patientName(patient),
    invoiceNumber: invoice.identifier?.[0]?.value ?? invoice.id,
    ...(payment ? { payment: { amount: fmt(amount!), method: methodOf(payment) ?? 'unknown', ...(payment.paymentIdentifier?.value ? { reference: payment.paymentIdentifier.value } : {}) } } : {}),
    lines,
    totals: [
      { label: 'Subtotal', amount: fmt(subtotal) },
      { label: 'Discount', amount: fmt(discountOf(invoice, prices)) },
      { label: 'Tax', amount: fmt(taxes) },
      { label: 'Total', amount: fmt(account.gross) },
      { label: 'Paid to date', amount: fmt(account.paid) },
      { label: 'Outstanding', amount: fmt(account.outstanding) },
    ],
    payments: account.payments.map((p) => ({ date: (p.created ?? '').slice(0, 10), method: methodOf(p) ?? 'unknown', amount: fmt(minorOf(p.paymentAmount, prices.currency, 'paymentAmount')) })),
  };
}
