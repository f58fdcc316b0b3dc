import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CodeableConcept, Coding } from 'fhir/r4.js';

/**
 * The prescribing-safety tables of `terminology/prescribing/` (see its README: hand-curated
 * test data with its source named, not for clinical use), loaded once at start-up and indexed
 * for the checks of src/workflows/prescribing-checks.ts.
 */

export const RXNORM = 'http://www.nlm.nih.gov/research/umls/rxnorm';

export type FindingSeverity = 'high' | 'moderate' | 'low';

interface DrugsFile {
  ingredients: Record<string, { name: string; classes: string[] }>;
  drugs: Record<string, { display: string; ingredients: Array<{ code: string; mgPerUnit?: number }> }>;
}

interface AllergyFile {
  entries: Array<{ system: string; code: string; display: string; ingredients?: string[]; classes?: string[]; crossClasses?: string[] }>;
}

export interface InteractionPair {
  a: string;
  b: string;
  severity: FindingSeverity;
  text: string;
}

export interface DoseRange {
  ingredient: string;
  ageFrom: number;
  ageTo?: number;
  minDailyMg?: number;
  maxDailyMg?: number;
  maxDailyMgPerKg?: number;
  aboveSeverity?: FindingSeverity;
}

/** A medication as the checks see it: its codes, RxNorm ingredients (with strength) and classes. */
export interface ResolvedMedication {
  /** `system|code` of every coding. */
  codes: Set<string>;
  /** RxNorm ingredient code → mg per unit (undefined when the strength is unknown). */
  ingredients: Map<string, number | undefined>;
  classes: Set<string>;
  /** What to call it in a message. */
  name: string;
}

export interface AllergyTarget {
  ingredients: Set<string>;
  classes: Set<string>;
  crossClasses: Set<string>;
}

export class PrescribingKnowledge {
  private readonly drugs: DrugsFile;
  private readonly allergies = new Map<string, AllergyTarget>();
  readonly interactions: readonly InteractionPair[];
  private readonly doses = new Map<string, DoseRange[]>();

  constructor(dir: string) {
    const read = <T>(file: string): T => JSON.parse(readFileSync(join(dir, 'prescribing', file), 'utf8')) as T;
    this.drugs = read<DrugsFile>('drugs.json');
    for (const e of read<AllergyFile>('drug-allergy.json').entries) {
      this.allergies.set(`${e.system}|${e.code}`, { ingredients: new Set(e.ingredients ?? []), classes: new Set(e.classes ?? []), crossClasses: new Set(e.crossClasses ?? []) });
    }
    this.interactions = read<{ pairs: InteractionPair[] }>('drug-interactions.json').pairs;
    for (const range of read<{ ranges: DoseRange[] }>('dose-ranges.json').ranges) {
      const list = this.doses.get(range.ingredient) ?? [];
      list.push(range);
      this.doses.set(range.ingredient, list);
    }
  }

  ingredientName(code: string): string {
    return this.drugs.ingredients[code]?.name ?? `RxNorm ${code}`;
  }

  /** The codes, ingredients and classes of a medication concept (and of its Medication's ingredient concepts). */
  resolve(concepts: ReadonlyArray<CodeableConcept | undefined>): ResolvedMedication {
    const out: ResolvedMedication = { codes: new Set(), ingredients: new Map(), classes: new Set(), name: '' };
    for (const concept of concepts) {
      if (!concept) continue;
      out.name ||= concept.text ?? concept.coding?.find((c) => c.display)?.display ?? '';
      for (const coding of concept.coding ?? []) this.addCoding(out, coding);
    }
    for (const code of out.ingredients.keys()) for (const c of this.drugs.ingredients[code]?.classes ?? []) out.classes.add(c);
    out.name ||= [...out.codes][0] ?? 'this medication';
    return out;
  }

  private addCoding(out: ResolvedMedication, coding: Coding): void {
    if (!coding.code) return;
    out.codes.add(`${coding.system ?? ''}|${coding.code}`);
    if (coding.system !== RXNORM) return;
    const drug = this.drugs.drugs[coding.code];
    if (drug) for (const i of drug.ingredients) out.ingredients.set(i.code, i.mgPerUnit);
    else if (this.drugs.ingredients[coding.code] && !out.ingredients.has(coding.code)) out.ingredients.set(coding.code, undefined);
  }

  /** What an allergy code reacts with: the table's entry, else (an RxNorm ingredient code) that ingredient. */
  allergyTarget(coding: Coding): AllergyTarget | undefined {
    const entry = this.allergies.get(`${coding.system ?? ''}|${coding.code ?? ''}`);
    if (entry) return entry;
    if (coding.system === RXNORM && coding.code && this.drugs.ingredients[coding.code]) {
      return { ingredients: new Set([coding.code]), classes: new Set(), crossClasses: new Set() };
    }
    return undefined;
  }

  /** Whether some dose range of these ingredients is in mg/kg (the check then needs the body weight). */
  weightBased(ingredients: Iterable<string>): boolean {
    for (const i of ingredients) if (this.doses.get(i)?.some((r) => r.maxDailyMgPerKg !== undefined)) return true;
    return false;
  }

  /** The dose range of an ingredient for an age in years. */
  doseRange(ingredient: string, ageYears: number): DoseRange | undefined {
    return this.doses.get(ingredient)?.find((r) => ageYears >= r.ageFrom && (r.ageTo === undefined || ageYears < r.ageTo));
  }
}
