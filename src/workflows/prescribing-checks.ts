import type { AllergyIntolerance, MedicationRequest, Patient } from 'fhir/r4.js';
import { dailyDose } from './prescribing-dose.js';
import type { FindingSeverity, PrescribingKnowledge, ResolvedMedication } from './prescribing-knowledge.js';

/**
 * The prescribing checks of seed 004 FR-EMR-003 / FR-PH-003 as pure functions: drug–allergy,
 * drug–drug interaction, dose range by age and weight, duplicate active prescription. The hook
 * (prescribing.ts) gathers the patient's data and turns each finding into a DetectedIssue.
 */

/** v3-ActCode detected-issue codes used for the findings. */
export const FINDING_CODES = {
  ALGY: 'Allergy Alert',
  DRG: 'Drug Interaction Alert',
  DUPTHPY: 'Duplicate Therapy Alert',
  DOSEH: 'High Dose Alert',
  DOSEL: 'Low Dose Alert',
} as const;

export type FindingCode = keyof typeof FINDING_CODES;

export interface Finding {
  code: FindingCode;
  severity: FindingSeverity;
  detail: string;
  /** The other resource involved (`AllergyIntolerance/…`, `MedicationRequest/…`), if any. */
  other?: string;
}

export interface OtherPrescription {
  id: string;
  medication: ResolvedMedication;
}

export interface PrescribingContext {
  patient?: Patient;
  allergies: readonly AllergyIntolerance[];
  others: readonly OtherPrescription[];
  weightKg?: number;
}

export interface CheckResult {
  findings: Finding[];
  /** What could not be checked (no weight, no birth date): returned as information, not DetectedIssues. */
  notes: string[];
}

const SEVERITY_WORD: Record<FindingSeverity, string> = { high: 'SEVERE', moderate: 'MODERATE', low: 'MINOR' };
const LOWER: Record<FindingSeverity, FindingSeverity> = { high: 'moderate', moderate: 'low', low: 'low' };

export function severityWord(s: FindingSeverity): string {
  return SEVERITY_WORD[s];
}

/** Age in whole and fractional years at `now`. */
export function ageInYears(birthDate: string | undefined, now: Date): number | undefined {
  if (!birthDate || !/^\d{4}(-\d{2}(-\d{2})?)?/.test(birthDate)) return undefined;
  const born = Date.parse(birthDate.length === 4 ? `${birthDate}-07-01` : birthDate.length === 7 ? `${birthDate}-15` : birthDate.slice(0, 10));
  if (Number.isNaN(born)) return undefined;
  return (now.getTime() - born) / (365.25 * 86400_000);
}

/**
 * Severity of an allergy match: high when the criticality is high, a reaction was severe or the
 * criticality is not known (a drug allergy of unknown danger is treated as dangerous); moderate
 * for low criticality; low when low criticality and every recorded reaction was mild.
 * Cross-reactivity (a related class) is one grade less.
 */
export function allergySeverity(allergy: AllergyIntolerance, cross: boolean): FindingSeverity {
  const reactions = (allergy.reaction ?? []).map((r) => r.severity);
  let grade: FindingSeverity;
  if (allergy.criticality === 'high' || reactions.includes('severe')) grade = 'high';
  else if (allergy.criticality === 'low') grade = reactions.length > 0 && reactions.every((s) => s === 'mild') ? 'low' : 'moderate';
  else grade = 'high';
  return cross ? LOWER[grade] : grade;
}

/** An allergy that counts: clinically active (or no status) and not refuted or entered in error. */
export function allergyApplies(a: AllergyIntolerance): boolean {
  const clinical = a.clinicalStatus?.coding?.map((c) => c.code) ?? [];
  const verification = a.verificationStatus?.coding?.map((c) => c.code) ?? [];
  if (clinical.length > 0 && !clinical.includes('active')) return false;
  return !verification.includes('refuted') && !verification.includes('entered-in-error');
}

function checkAllergies(k: PrescribingKnowledge, med: ResolvedMedication, allergies: readonly AllergyIntolerance[]): Finding[] {
  const findings: Finding[] = [];
  for (const allergy of allergies) {
    if (!allergyApplies(allergy)) continue;
    const codings = [...(allergy.code?.coding ?? []), ...(allergy.reaction ?? []).flatMap((r) => r.substance?.coding ?? [])];
    let match: 'direct' | 'cross' | undefined;
    for (const coding of codings) {
      if (med.codes.has(`${coding.system ?? ''}|${coding.code ?? ''}`)) match = 'direct';
      const target = k.allergyTarget(coding);
      if (!target) continue;
      const direct = [...med.ingredients.keys()].some((i) => target.ingredients.has(i)) || [...med.classes].some((c) => target.classes.has(c));
      if (direct) match = 'direct';
      else if (!match && [...med.classes].some((c) => target.crossClasses.has(c))) match = 'cross';
    }
    if (!match) continue;
    const what = allergy.code?.text ?? allergy.code?.coding?.find((c) => c.display)?.display ?? 'a recorded allergy';
    const severity = allergySeverity(allergy, match === 'cross');
    const detail =
      match === 'direct'
        ? `${med.name}: the patient has ${what} (criticality ${allergy.criticality ?? 'not recorded'}).`
        : `${med.name}: possible cross-reactivity with the patient's ${what} (criticality ${allergy.criticality ?? 'not recorded'}).`;
    findings.push({ code: 'ALGY', severity, detail, other: `AllergyIntolerance/${allergy.id}` });
  }
  return findings;
}

function tokens(med: ResolvedMedication): Set<string> {
  return new Set([...[...med.ingredients.keys()].map((i) => `ingredient:${i}`), ...[...med.classes].map((c) => `class:${c}`)]);
}

function checkInteractions(k: PrescribingKnowledge, med: ResolvedMedication, others: readonly OtherPrescription[]): Finding[] {
  const mine = tokens(med);
  const findings: Finding[] = [];
  for (const other of others) {
    const theirs = tokens(other.medication);
    for (const pair of k.interactions) {
      if (!((mine.has(pair.a) && theirs.has(pair.b)) || (mine.has(pair.b) && theirs.has(pair.a)))) continue;
      findings.push({ code: 'DRG', severity: pair.severity, detail: `${med.name} with ${other.medication.name} (MedicationRequest/${other.id}): ${pair.text}`, other: `MedicationRequest/${other.id}` });
    }
  }
  return findings;
}

function sameDrug(a: ResolvedMedication, b: ResolvedMedication): boolean {
  if ([...a.codes].some((c) => b.codes.has(c))) return true;
  if (a.ingredients.size === 0 || a.ingredients.size !== b.ingredients.size) return false;
  return [...a.ingredients.keys()].every((i) => b.ingredients.has(i));
}

function checkDuplicates(med: ResolvedMedication, others: readonly OtherPrescription[]): Finding[] {
  return others
    .filter((o) => sameDrug(med, o.medication))
    .map((o) => ({
      code: 'DUPTHPY' as const,
      severity: 'moderate' as const,
      detail: `${med.name} duplicates the active prescription MedicationRequest/${o.id} (${o.medication.name}).`,
      other: `MedicationRequest/${o.id}`,
    }));
}

function round(n: number): string {
  return String(Math.round(n * 100) / 100);
}

function checkDose(k: PrescribingKnowledge, med: ResolvedMedication, request: MedicationRequest, ctx: PrescribingContext, now: Date, notes: string[]): Finding[] {
  const age = ageInYears(ctx.patient?.birthDate, now);
  const findings: Finding[] = [];
  for (const [ingredient, mgPerUnit] of med.ingredients) {
    const dose = dailyDose(request.dosageInstruction, mgPerUnit, med.ingredients.size === 1);
    if (dose.dailyMg === undefined && dose.singleMg === undefined) continue;
    if (age === undefined) {
      notes.push(`The dose of ${k.ingredientName(ingredient)} was not checked: the patient has no birth date.`);
      continue;
    }
    const range = k.doseRange(ingredient, age);
    if (!range) continue;
    const name = k.ingredientName(ingredient);
    const band = `age ${range.ageFrom}${range.ageTo === undefined ? '+' : `–${range.ageTo}`} years`;
    let max = range.maxDailyMg;
    let basis = max === undefined ? '' : `${round(max)} mg/day`;
    if (range.maxDailyMgPerKg !== undefined) {
      if (ctx.weightKg === undefined) notes.push(`The weight-based limit of ${name} (${range.maxDailyMgPerKg} mg/kg/day) was not checked: no body weight (LOINC 29463-7) is recorded.`);
      else {
        const byWeight = range.maxDailyMgPerKg * ctx.weightKg;
        if (max === undefined || byWeight < max) {
          max = byWeight;
          basis = `${range.maxDailyMgPerKg} mg/kg/day × ${round(ctx.weightKg)} kg = ${round(byWeight)} mg/day`;
        }
      }
    }
    // Without a timing only the single dose is known: above the daily maximum it is too high anyway.
    const amount = dose.dailyMg ?? dose.singleMg!;
    const what = dose.dailyMg !== undefined ? `daily dose ${round(amount)} mg` : `single dose ${round(amount)} mg`;
    if (max !== undefined && amount > max) {
      findings.push({ code: 'DOSEH', severity: range.aboveSeverity ?? 'high', detail: `${name}: ${what} is above the maximum ${basis} (${band}).` });
    } else if (dose.dailyMg !== undefined && range.minDailyMg !== undefined && dose.dailyMg < range.minDailyMg) {
      findings.push({ code: 'DOSEL', severity: 'low', detail: `${name}: daily dose ${round(dose.dailyMg)} mg is below the minimum ${round(range.minDailyMg)} mg/day (${band}).` });
    }
  }
  return findings;
}

/** All findings for one prescription. */
export function checkPrescription(k: PrescribingKnowledge, med: ResolvedMedication, request: MedicationRequest, ctx: PrescribingContext, now = new Date()): CheckResult {
  const notes: string[] = [];
  const findings = [
    ...checkAllergies(k, med, ctx.allergies),
    ...checkInteractions(k, med, ctx.others),
    ...checkDuplicates(med, ctx.others),
    ...checkDose(k, med, request, ctx, now, notes),
  ];
  return { findings, notes };
}
