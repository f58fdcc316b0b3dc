import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Bundle, ChargeItemDefinition, ChargeItemDefinitionApplicability, CodeSystem, CodeSystemConcept, Resource } from 'fhir/r4.js';
import fhirpath from 'fhirpath';
import { fhirpathModel } from '../../search/fhir-model.js';
import { parseDecimal, toMinor, type Decimal } from './money.js';

export const CHARGE_CODE_SYSTEM = 'https://fhir.hospital.example.org/CodeSystem/charge-code';
/** The charge categories of the charge-code CodeSystem, in invoice order. */
export const CATEGORIES = ['CONSULTATION', 'MEDICATION', 'LAB_TEST', 'OTHER_SERVICE'] as const;
export type ChargeCategory = (typeof CATEGORIES)[number];

/**
 * The hospital's price list and tax table, loaded once at start-up from data files:
 * conformance/billing/price-list.json (ChargeItemDefinitions, one per charge code of
 * terminology/CodeSystem-charge-code.json), tax-rates.json (rates per jurisdiction and charge
 * category) and billing-settings.json (the issuer). Prices are checked against the configured
 * currency; a mismatch stops the start rather than bill in two currencies.
 *
 * Applicability (ChargeItemDefinition.applicability and propertyGroup.applicability) is a
 * FHIRPath expression (`text/fhirpath`) over the charge's context resource: the Encounter for
 * a consultation, the MedicationDispense, the lab ServiceRequest, the ward Location for a bed
 * day. A definition applies when all its expressions are true; of its property groups the first
 * whose expressions are all true gives the price, a group without applicability is the default.
 */
export interface PriceList {
  currency: string;
  jurisdiction: string;
  hospital: { name: string; address?: string; phone?: string };
  invoiceDueDays: number;
  /** Category of a charge code (CONS-GP → CONSULTATION); undefined for codes not in the code system. */
  categoryOf(code: string): ChargeCategory | undefined;
  display(code: string): string | undefined;
  /** Tax rate of a category in the configured jurisdiction. */
  taxRate(category: ChargeCategory): Decimal;
  /** The first definition of `category` that applies to `context` (those with applicability first). */
  definitionFor(category: ChargeCategory, context: Resource): PricedDefinition | undefined;
  /** The definition of one charge code. */
  definitionOf(code: string): PricedDefinition | undefined;
}

export interface PricedDefinition {
  code: string;
  url: string;
  /** Unit price in minor units for this context; undefined when no property group applies. */
  unitPrice(context: Resource | undefined): bigint | undefined;
}

type Predicate = (context: Resource) => boolean;

function compileApplicability(list: ChargeItemDefinitionApplicability[] | undefined, where: string): Predicate[] {
  return (list ?? []).map((a, i) => {
    if (a.language !== 'text/fhirpath' || !a.expression) throw new Error(`${where}.applicability[${i}]: only text/fhirpath expressions are supported`);
    const fn = fhirpath.compile(a.expression, fhirpathModel);
    return (context: Resource) => {
      const result = fn(context as unknown as Record<string, unknown>) as unknown[];
      return result.length > 0 && result.every((v) => v === true);
    };
  });
}

function allTrue(predicates: Predicate[], context: Resource | undefined): boolean {
  return predicates.every((p) => context !== undefined && p(context));
}

function flatten(concepts: CodeSystemConcept[] | undefined, parent: string | undefined, into: Map<string, { category?: string; display?: string }>): void {
  for (const c of concepts ?? []) {
    into.set(c.code, { category: parent ?? c.code, display: c.display });
    flatten(c.concept, parent ?? c.code, into);
  }
}

export function loadPriceList(root: string, currency: string, jurisdiction: string): PriceList {
  const dir = join(root, 'conformance', 'billing');
  const read = <T>(file: string): T => JSON.parse(readFileSync(join(dir, file), 'utf8')) as T;
  const codeSystem = JSON.parse(readFileSync(join(root, 'terminology', 'CodeSystem-charge-code.json'), 'utf8')) as CodeSystem;
  const codes = new Map<string, { category?: string; display?: string }>();
  flatten(codeSystem.concept, undefined, codes);
  const categoryOf = (code: string): ChargeCategory | undefined => {
    const category = codes.get(code)?.category;
    return (CATEGORIES as readonly string[]).includes(category ?? '') ? (category as ChargeCategory) : undefined;
  };

  const taxTable = read<{ jurisdictions: Record<string, { rates: Record<string, string> }> }>('tax-rates.json');
  const rates = taxTable.jurisdictions[jurisdiction]?.rates;
  if (!rates) throw new Error(`BILLING_JURISDICTION ${jurisdiction} is not in conformance/billing/tax-rates.json (${Object.keys(taxTable.jurisdictions).join(', ')})`);
  const taxRates = new Map<ChargeCategory, Decimal>();
  for (const category of CATEGORIES) {
    const rate = parseDecimal(rates[category] ?? '0');
    if (!rate || rate.units < 0n) throw new Error(`tax-rates.json: ${jurisdiction}.${category} is not a decimal ≥ 0`);
    taxRates.set(category, rate);
  }

  const settings = read<{ hospital: PriceList['hospital']; invoiceDueDays?: number }>('billing-settings.json');
  const bundle = read<Bundle>('price-list.json');
  const byCategory = new Map<ChargeCategory, Array<PricedDefinition & { specific: boolean; applies: (c: Resource) => boolean }>>();
  const byCode = new Map<string, PricedDefinition>();
  for (const entry of bundle.entry ?? []) {
    const definition = entry.resource as ChargeItemDefinition | undefined;
    if (definition?.resourceType !== 'ChargeItemDefinition' || definition.status !== 'active') continue;
    const code = definition.code?.coding?.find((c) => c.system === CHARGE_CODE_SYSTEM)?.code;
    const category = code ? categoryOf(code) : undefined;
    if (!code || !category) throw new Error(`price-list.json: ChargeItemDefinition ${definition.id} needs a selectable code of ${CHARGE_CODE_SYSTEM}`);
    const where = `ChargeItemDefinition/${definition.id}`;
    const groups = (definition.propertyGroup ?? []).map((g, i) => {
      const base = g.priceComponent?.find((p) => p.type === 'base')?.amount;
      if (base?.value === undefined || base.currency !== currency) throw new Error(`${where}.propertyGroup[${i}]: the base price must be in ${currency} (BILLING_CURRENCY)`);
      const minor = toMinor(base.value, currency);
      if (minor === undefined || minor < 0n) throw new Error(`${where}.propertyGroup[${i}]: ${base.value} is not a price in ${currency}`);
      return { when: compileApplicability(g.applicability, `${where}.propertyGroup[${i}]`), minor };
    });
    const top = compileApplicability(definition.applicability, where);
    const priced: PricedDefinition & { specific: boolean; applies: (c: Resource) => boolean } = {
      code,
      url: definition.url,
      specific: top.length > 0,
      applies: (context) => allTrue(top, context),
      unitPrice(context) {
        const specific = groups.find((g) => g.when.length > 0 && allTrue(g.when, context));
        return (specific ?? groups.find((g) => g.when.length === 0))?.minor;
      },
    };
    byCode.set(code, priced);
    const list = byCategory.get(category) ?? [];
    list.push(priced);
    byCategory.set(category, list);
  }
  for (const list of byCategory.values()) list.sort((a, b) => Number(b.specific) - Number(a.specific));

  return {
    currency,
    jurisdiction,
    hospital: settings.hospital,
    invoiceDueDays: settings.invoiceDueDays ?? 30,
    categoryOf,
    display: (code) => codes.get(code)?.display,
    taxRate: (category) => taxRates.get(category)!,
    definitionFor: (category, context) => byCategory.get(category)?.find((d) => d.applies(context)),
    definitionOf: (code) => byCode.get(code),
  };
}
