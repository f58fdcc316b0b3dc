import type { ChargeItem, CodeableConcept, Invoice, InvoiceLineItem, InvoiceLineItemPriceComponent, Reference } from 'fhir/r4.js';
import { referencing } from '../../storage/front-desk-store.js';
import { newResourceId, type BeforeWriteHook, type StoreTransaction } from '../../storage/resource-store.js';
import { businessRule, referenceTo, replacedVersion } from '../scheduling-rules.js';
import { allocate, applyRate, minorOf, money, parseDecimal, toMinor, type Decimal } from './money.js';
import { CATEGORIES, CHARGE_CODE_SYSTEM, type ChargeCategory, type PriceList } from './price-list.js';

/**
 * Invoices (seed 004 FR-BL-001): `Patient/[id]/$invoice` gathers the patient's billable
 * ChargeItems into one Invoice, itemised by charge category; every amount is computed here from
 * the ChargeItems and the price list, none is taken from the client.
 *
 * Per line (one ChargeItem): base = the charge's price (ChargeItem.priceOverride, else unit
 * price × quantity); discount = its share of an approved discount; net = base − discount; tax =
 * net × the category's rate in the jurisdiction (tax-rates.json), rounded half away from zero
 * per line. Invoice.totalNet = Σ net (taxes excluded), totalGross = Σ (net + tax). Line price
 * components: `base` (code = charge code, factor = quantity), `discount`, `tax` (factor = rate);
 * totalPriceComponent: `base` and `tax` per category (code = category), one `discount`.
 *
 * Invoices made here carry an identifier of INVOICE_NUMBER_SYSTEM; only the billing operations
 * change them afterwards (invoiceGuardHook). Invoices without it (external data, spec examples)
 * are kept as written and are not accounted.
 */
export const INVOICE_NUMBER_SYSTEM = 'https://fhir.hospital.example.org/sid/invoice-number';
const DISCOUNT_REASON_TEXT = 'discount';

export interface DiscountRequest {
  /** Percentage of every line (0 < p ≤ 100), or … */
  percent?: Decimal;
  /** … an amount spread over the lines in proportion. */
  amount?: bigint;
  reason: string;
  approver?: Reference;
}

export interface BilledLine {
  chargeItem: string;
  code: string;
  category: ChargeCategory;
  quantity: number;
  base: bigint;
}

export function isServerInvoice(invoice: Invoice | undefined): boolean {
  return (invoice?.identifier ?? []).some((i) => i.system === INVOICE_NUMBER_SYSTEM);
}

/** Transactions writing an invoice through the billing code right now (ids), so the guard lets them pass. */
const billingWrites = new WeakMap<StoreTransaction, Set<string>>();

/** Stores an invoice version as the billing code (not a client). */
export async function writeInvoice(tx: StoreTransaction, invoice: Invoice & { id: string }, create: boolean): Promise<void> {
  const own = billingWrites.get(tx) ?? new Set<string>();
  billingWrites.set(tx, own.add(invoice.id));
  try {
    if (create) {
      await tx.create(invoice, 'POST', invoice.id);
    } else {
      const current = await tx.readForUpdate('Invoice', invoice.id);
      if (!current) throw businessRule('conflict', `Invoice/${invoice.id} is gone.`);
      await tx.update(invoice, current, 'PUT');
    }
  } finally {
    own.delete(invoice.id);
  }
}

/** A client may not create, change or delete the server's invoices: totals are the server's. */
export const invoiceGuardHook: BeforeWriteHook = async (tx, change) => {
  if (change.resourceType !== 'Invoice' || billingWrites.get(tx)?.has(change.id)) return;
  const after = change.resource as Invoice | undefined;
  const before = change.method === 'POST' && !isServerInvoice(after) ? undefined : await replacedVersion<Invoice>(tx, change);
  if (!isServerInvoice(after) && !isServerInvoice(before)) return;
  throw businessRule(
    'invalid',
    'Invoices of this hospital are created and changed by the server only: use Patient/[id]/$invoice, Invoice/[id]/$discount, $pay, $refund, $cancel. Their totals are computed, never taken from the client.',
    ['Invoice'],
  );
};

export async function readInvoice(tx: StoreTransaction, id: string, forUpdate: boolean): Promise<Invoice & { id: string }> {
  const stored = forUpdate ? await tx.readForUpdate('Invoice', id) : await tx.read('Invoice', id);
  if (!stored?.json || stored.deleted) throw businessRule('invalid', `Invoice/${id} does not exist.`);
  const invoice = JSON.parse(stored.json) as Invoice & { id: string };
  if (!isServerInvoice(invoice)) throw businessRule('invalid', `Invoice/${id} was not issued by this server's $invoice; it cannot be paid, discounted or claimed here.`);
  return invoice;
}

function chargeCoding(prices: PriceList, code: string): CodeableConcept {
  return { coding: [{ system: CHARGE_CODE_SYSTEM, code, display: prices.display(code) }] };
}

/** The lines of an invoice built here, read back from its base price components. */
export function linesOf(invoice: Invoice, prices: PriceList): BilledLine[] {
  return (invoice.lineItem ?? []).map((item) => {
    const base = item.priceComponent?.find((p) => p.type === 'base');
    const code = base?.code?.coding?.find((c) => c.system === CHARGE_CODE_SYSTEM)?.code ?? '';
    return {
      chargeItem: referenceTo('ChargeItem', item.chargeItemReference?.reference) ?? '',
      code,
      category: prices.categoryOf(code) ?? 'OTHER_SERVICE',
      quantity: base?.factor ?? 1,
      base: toMinor(base?.amount?.value ?? 0, prices.currency) ?? 0n,
    };
  });
}

/** Lines, discount and tax into the Invoice's lineItem, totalPriceComponent, totalNet and totalGross. */
export function priceInvoice(invoice: Invoice, lines: readonly BilledLine[], prices: PriceList, discount: DiscountRequest | undefined): Invoice {
  const currency = prices.currency;
  const subtotal = lines.reduce((a, l) => a + l.base, 0n);
  let discounts = lines.map(() => 0n);
  if (discount?.percent) {
    const pct = discount.percent;
    if (pct.units <= 0n || pct.units > 100n * 10n ** BigInt(pct.scale)) throw businessRule('invalid', 'A discount percentage must be above 0 and at most 100.', ['Parameters.parameter']);
    discounts = lines.map((l) => applyRate(l.base, { units: pct.units, scale: pct.scale + 2 }));
  } else if (discount?.amount !== undefined) {
    if (discount.amount <= 0n || discount.amount > subtotal) throw businessRule('invalid', `A discount must be above 0 and at most the invoice subtotal (${money(subtotal, currency).value} ${currency}).`, ['Parameters.parameter']);
    discounts = allocate(discount.amount, lines.map((l) => l.base));
  }
  const byCategory = new Map<ChargeCategory, { base: bigint; tax: bigint }>();
  let totalNet = 0n;
  let totalTax = 0n;
  const lineItem: InvoiceLineItem[] = lines.map((line, i) => {
    const off = discounts[i]!;
    const net = line.base - off;
    const rate = prices.taxRate(line.category);
    const tax = applyRate(net, rate);
    totalNet += net;
    totalTax += tax;
    const sums = byCategory.get(line.category) ?? { base: 0n, tax: 0n };
    byCategory.set(line.category, { base: sums.base + line.base, tax: sums.tax + tax });
    const components: InvoiceLineItemPriceComponent[] = [{ type: 'base', code: chargeCoding(prices, line.code), factor: line.quantity, amount: money(line.base, currency) }];
    if (off > 0n) components.push({ type: 'discount', code: { text: discount?.reason ?? DISCOUNT_REASON_TEXT }, amount: money(off, currency) });
    components.push({ type: 'tax', code: { text: `tax ${prices.jurisdiction} ${line.category}` }, factor: Number(`${rate.units}e-${rate.scale}`), amount: money(tax, currency) });
    return { sequence: i + 1, chargeItemReference: { reference: `ChargeItem/${line.chargeItem}` }, priceComponent: components };
  });
  const totals: InvoiceLineItemPriceComponent[] = [];
  for (const category of CATEGORIES) {
    const sums = byCategory.get(category);
    if (sums) totals.push({ type: 'base', code: chargeCoding(prices, category), amount: money(sums.base, currency) });
  }
  const discountTotal = discounts.reduce((a, b) => a + b, 0n);
  if (discountTotal > 0n) totals.push({ type: 'discount', code: { text: discount?.reason ?? DISCOUNT_REASON_TEXT }, amount: money(discountTotal, currency) });
  for (const category of CATEGORIES) {
    const sums = byCategory.get(category);
    if (sums && sums.tax > 0n) totals.push({ type: 'tax', code: chargeCoding(prices, category), amount: money(sums.tax, currency) });
  }
  const participant = (invoice.participant ?? []).filter((p) => p.role?.text !== 'discount approver');
  if (discount?.approver && discountTotal > 0n) participant.push({ role: { text: 'discount approver' }, actor: discount.approver });
  const { participant: _old, ...rest } = invoice;
  return {
    ...rest,
    ...(participant.length > 0 ? { participant } : {}),
    lineItem,
    totalPriceComponent: totals,
    totalNet: money(totalNet, currency),
    totalGross: money(totalNet + totalTax, currency),
  };
}

/** Minor units of the invoice's gross total. */
export function grossOf(invoice: Invoice, prices: PriceList): bigint {
  return minorOf(invoice.totalGross, prices.currency, 'Invoice.totalGross');
}

/** The approved discount an invoice carries (to keep it when re-pricing), as an amount. */
export function discountOf(invoice: Invoice, prices: PriceList): bigint {
  const d = invoice.totalPriceComponent?.find((p) => p.type === 'discount');
  return d?.amount ? minorOf(d.amount, prices.currency, 'Invoice.totalPriceComponent.amount') : 0n;
}

function chargeBase(charge: ChargeItem, prices: PriceList): { code: string; category: ChargeCategory; quantity: number; base: bigint } {
  const code = charge.code.coding?.find((c) => c.system === CHARGE_CODE_SYSTEM)?.code ?? '';
  const category = prices.categoryOf(code);
  if (!category) throw businessRule('invalid', `ChargeItem/${charge.id} has no charge code of ${CHARGE_CODE_SYSTEM}; it cannot be invoiced.`, ['ChargeItem.code']);
  const quantity = charge.quantity?.value ?? 1;
  if (charge.priceOverride) return { code, category, quantity, base: minorOf(charge.priceOverride, prices.currency, `ChargeItem/${charge.id}.priceOverride`) };
  const unit = prices.definitionOf(code)?.unitPrice(undefined);
  if (unit === undefined) throw businessRule('invalid', `ChargeItem/${charge.id} (${code}) has no price in the price list; set priceOverride.`, ['ChargeItem.priceOverride']);
  return { code, category, quantity, base: applyRate(unit, parseDecimal(quantity) ?? { units: 1n, scale: 0 }) };
}

function invoiceNumber(id: string, now: string): string {
  return `INV-${now.slice(0, 10).replaceAll('-', '')}-${id.replaceAll('-', '').slice(-10).toUpperCase()}`;
}

/**
 * `Patient/[id]/$invoice`: the patient's billable ChargeItems (of one encounter when asked)
 * into an issued Invoice; the ChargeItems become `billed`. One transaction; two concurrent
 * calls for one patient queue on an advisory lock, so no charge is invoiced twice.
 */
export async function invoicePatient(tx: StoreTransaction, prices: PriceList, patientId: string, encounterId: string | undefined): Promise<Invoice & { id: string }> {
  await tx.lockCondition(`billing:invoice:Patient/${patientId}`);
  const patient = await tx.read('Patient', patientId);
  if (!patient?.json || patient.deleted) throw businessRule('invalid', `Patient/${patientId} does not exist.`);
  const rows = await referencing(await tx.executor(), 'ChargeItem', 'subject', 'Patient', patientId);
  const candidates = rows
    .map((r) => JSON.parse(r.json) as ChargeItem & { id: string })
    .filter((c) => c.status === 'billable' && (!encounterId || referenceTo('Encounter', c.context?.reference) === encounterId));
  await tx.prefetchForUpdate(candidates.map((c) => ({ resourceType: 'ChargeItem', id: c.id })));
  const lines: Array<BilledLine & { when: string }> = [];
  const billed: Array<ChargeItem & { id: string }> = [];
  for (const candidate of candidates) {
    const current = await tx.readForUpdate('ChargeItem', candidate.id);
    if (!current?.json || current.deleted) continue;
    const charge = JSON.parse(current.json) as ChargeItem & { id: string };
    if (charge.status !== 'billable') continue;
    lines.push({ chargeItem: charge.id, ...chargeBase(charge, prices), when: charge.occurrenceDateTime ?? charge.enteredDate ?? '' });
    billed.push(charge);
  }
  if (lines.length === 0) throw businessRule('invalid', `Patient/${patientId} has no billable charges${encounterId ? ` for Encounter/${encounterId}` : ''} to invoice.`);
  // Itemised by category (consultation, medication, lab, other), then by date.
  lines.sort((a, b) => CATEGORIES.indexOf(a.category) - CATEGORIES.indexOf(b.category) || a.when.localeCompare(b.when) || a.chargeItem.localeCompare(b.chargeItem));
  const id = newResourceId();
  const now = new Date().toISOString();
  const due = new Date(Date.parse(now) + prices.invoiceDueDays * 86_400_000).toISOString().slice(0, 10);
  const draft: Invoice & { id: string } = {
    resourceType: 'Invoice',
    id,
    identifier: [{ system: INVOICE_NUMBER_SYSTEM, value: invoiceNumber(id, now) }],
    status: 'issued',
    type: { text: encounterId ? `Invoice of Encounter/${encounterId}` : 'Patient invoice' },
    subject: { reference: `Patient/${patientId}` },
    recipient: { reference: `Patient/${patientId}` },
    date: now,
    issuer: { display: prices.hospital.name },
    paymentTerms: `Due by ${due}`,
  };
  const invoice = { ...priceInvoice(draft, lines, prices, undefined), id };
  for (const charge of billed) {
    const current = await tx.readForUpdate('ChargeItem', charge.id);
    const next: ChargeItem = { ...charge, status: 'billed' };
    await tx.update(next, current!, 'PUT');
  }
  await writeInvoice(tx, invoice, true);
  return invoice;
}

/** Re-prices an issued, unpaid invoice with an approved discount (replacing an earlier one). */
export async function applyDiscount(tx: StoreTransaction, prices: PriceList, invoice: Invoice & { id: string }, discount: DiscountRequest, paid: bigint): Promise<Invoice & { id: string }> {
  if (invoice.status !== 'issued') throw businessRule('invalid', `Invoice/${invoice.id} is ${invoice.status}; only an issued invoice can be discounted.`, ['Invoice.status']);
  if (paid !== 0n) throw businessRule('conflict', `Invoice/${invoice.id} already has payments; refund them before changing its total.`, ['Invoice.totalGross']);
  const priced = { ...priceInvoice(invoice, linesOf(invoice, prices), prices, discount), id: invoice.id };
  // A 100 % discount leaves nothing to pay.
  const next: Invoice & { id: string } = grossOf(priced, prices) === 0n ? { ...priced, status: 'balanced' } : priced;
  await writeInvoice(tx, next, false);
  return next;
}

/** Cancels an unpaid invoice; its ChargeItems become billable again. */
export async function cancelInvoice(tx: StoreTransaction, prices: PriceList, invoice: Invoice & { id: string }, reason: string, paid: bigint): Promise<Invoice & { id: string }> {
  if (invoice.status !== 'issued') throw businessRule('invalid', `Invoice/${invoice.id} is ${invoice.status}; only an issued invoice can be cancelled.`, ['Invoice.status']);
  if (paid !== 0n) throw businessRule('conflict', `Invoice/${invoice.id} has payments; refund them before cancelling it.`, ['Invoice.status']);
  for (const line of linesOf(invoice, prices)) {
    const current = await tx.readForUpdate('ChargeItem', line.chargeItem);
    if (!current?.json || current.deleted) continue;
    const charge = JSON.parse(current.json) as ChargeItem;
    const next: ChargeItem = { ...charge, status: 'billable' };
    if (charge.status === 'billed') await tx.update(next, current, 'PUT');
  }
  const next = { ...invoice, status: 'cancelled' as const, cancelledReason: reason };
  await writeInvoice(tx, next, false);
  return next;
}
