import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import type { Claim, ClaimResponse, ExplanationOfBenefit } from 'fhir/r4.js';
import type { BeforeWriteHook, StoreTransaction } from '../../storage/resource-store.js';
import { currentWriter } from '../../subscriptions/write-context.js';
import { businessRule } from '../scheduling-rules.js';
import { money } from './money.js';
import type { AdjudicatedLine } from './adjudication.js';
import { adjudicationEntries, adjudicationTotals } from './adjudication.js';

/**
 * The ExplanationOfBenefit of an adjudicated claim (issue 14 §4): what the patient reads to see
 * what was claimed, what the insurer covered, the patient's co-payment and what the insurer
 * paid. One per ClaimResponse (id derived from it, so a re-adjudication before payment rewrites
 * the same one), linked to the Claim, the ClaimResponse, the Coverage, the Patient and the
 * Invoice (supportingInfo). Written by the server in the insurer's transaction; it is in the
 * patient's compartment (`patient`), so patient-context tokens read and search it.
 */

export const EOB_NUMBER_SYSTEM = 'https://fhir.hospital.example.org/sid/eob-number';

export function explanationIdFor(claimResponseId: string): string {
  return claimResponseId.length <= 60 ? `eob-${claimResponseId}` : `eob-${createHash('sha256').update(claimResponseId).digest('hex').slice(0, 40)}`;
}

export interface ExplanationInput {
  id: string;
  claim: Claim & { id: string };
  claimResponseId: string;
  response: ClaimResponse;
  coverageId: string;
  invoiceId: string;
  /** The claim number (CLM-…): the explanation is numbered EOB-… after it. */
  number?: string;
  lines: readonly AdjudicatedLine[];
  currency: string;
  now: string;
}

export function explanationOfBenefit(input: ExplanationInput): ExplanationOfBenefit & { id: string } {
  const { claim, response, currency } = input;
  const totals = adjudicationTotals(input.lines);
  const insurer = response.insurer?.reference || response.insurer?.display ? response.insurer : (claim.insurer ?? { display: 'insurer' });
  return {
    resourceType: 'ExplanationOfBenefit',
    id: input.id,
    ...(input.number ? { identifier: [{ system: EOB_NUMBER_SYSTEM, value: input.number.replace(/^CLM-/, 'EOB-') }] } : {}),
    status: 'active',
    type: claim.type,
    use: 'claim',
    patient: claim.patient,
    billablePeriod: { start: claim.created, end: claim.created },
    created: input.now,
    insurer,
    provider: claim.provider,
    claim: { reference: `Claim/${claim.id}` },
    claimResponse: { reference: `ClaimResponse/${input.claimResponseId}` },
    outcome: response.outcome,
    ...(response.disposition ? { disposition: response.disposition } : {}),
    ...(response.preAuthRef ? { preAuthRef: [response.preAuthRef] } : {}),
    supportingInfo: [{ sequence: 1, category: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claiminformationcategory', code: 'info', display: 'Information' }] }, valueReference: { reference: `Invoice/${input.invoiceId}` } }],
    insurance: [{ focal: true, coverage: { reference: `Coverage/${input.coverageId}` } }],
    item: input.lines.map((line) => {
      const claimed = claim.item?.find((i) => i.sequence === line.sequence);
      return {
        sequence: line.sequence,
        productOrService: claimed?.productOrService ?? { text: `claim item ${line.sequence}` },
        ...(claimed?.quantity ? { quantity: claimed.quantity } : {}),
        net: money(line.submitted, currency),
        adjudication: adjudicationEntries(line, currency),
      };
    }),
    total: adjudicationEntries(totals, currency).map((a) => ({ category: a.category, amount: a.amount! })),
    ...(totals.benefit > 0n ? { payment: { ...(response.payment?.type ? { type: response.payment.type } : {}), ...(response.payment?.date ? { date: response.payment.date } : {}), amount: money(totals.benefit, currency) } } : {}),
  };
}

/** Set while the server itself writes an explanation (the guard below lets those through). */
const serverWriting = new AsyncLocalStorage<true>();

export async function writeExplanation(tx: StoreTransaction, eob: ExplanationOfBenefit & { id: string }): Promise<void> {
  await serverWriting.run(true, async () => {
    const current = await tx.readForUpdate('ExplanationOfBenefit', eob.id);
    if (current && !current.deleted) await tx.update(eob, current);
    else await tx.create(eob, 'PUT', eob.id, current);
  });
}

/**
 * The server's explanations are the adjudication's record for the patient: no API caller (the
 * insurer included, who may write ExplanationOfBenefit of its own) changes or deletes them (422);
 * they follow the ClaimResponse. Writes with no API caller (import, restore) store them as sent.
 */
export const explanationGuardHook: BeforeWriteHook = (_tx, change) => {
  if (change.resourceType !== 'ExplanationOfBenefit' || serverWriting.getStore() === true || !currentWriter()) return;
  const numbered = (eob: ExplanationOfBenefit | undefined) => (eob?.identifier ?? []).some((i) => i.system === EOB_NUMBER_SYSTEM);
  const before = change.previous?.json && !change.previous.deleted ? (JSON.parse(change.previous.json) as ExplanationOfBenefit) : undefined;
  if (!numbered(change.resource as ExplanationOfBenefit | undefined) && !numbered(before)) return;
  throw businessRule('invalid', 'This ExplanationOfBenefit is written by the server from the adjudication (ClaimResponse): change the ClaimResponse instead.', ['ExplanationOfBenefit']);
};

/** An adjudication taken back before payment (to queued): its explanation is cancelled. */
export async function withdrawExplanation(tx: StoreTransaction, id: string): Promise<void> {
  await serverWriting.run(true, async () => {
    const current = await tx.readForUpdate('ExplanationOfBenefit', id);
    if (!current?.json || current.deleted) return;
    const eob = JSON.parse(current.json) as ExplanationOfBenefit;
    if (eob.status !== 'cancelled') await tx.update({ ...eob, status: 'cancelled' } as ExplanationOfBenefit, current);
  });
}
