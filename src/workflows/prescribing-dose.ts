import type { Dosage, Quantity, Timing } from 'fhir/r4.js';

/**
 * Daily dose of one ingredient from `dosageInstruction` (doseAndRate + timing), for the dose
 * range check. Worst case throughout: the high end of a doseRange, frequencyMax, every
 * instruction added up. A dose in tablets, capsules or other units is units × the drug's mg per
 * unit; a dose given in mass (mg, g, mcg) counts as mass of the ingredient only for a
 * single-ingredient drug.
 */

const MASS_MG: Record<string, number> = { mg: 1, g: 1000, kg: 1_000_000, ug: 0.001, mcg: 0.001, '[ug]': 0.001, ng: 0.000001 };
const PERIOD_DAYS: Record<string, number> = { s: 1 / 86400, min: 1 / 1440, h: 1 / 24, d: 1, wk: 7, mo: 30, a: 365 };
/** Timing.code (v3-GTSAbbreviation) → administrations per day. */
const CODE_PER_DAY: Record<string, number> = { QD: 1, BID: 2, TID: 3, QID: 4, AM: 1, PM: 1, QOD: 0.5, Q4H: 6, Q6H: 4, Q8H: 3, Q12H: 2, WK: 1 / 7, MO: 1 / 30 };

export interface DailyDose {
  /** mg per day, when every instruction has a dose and a timing. */
  dailyMg?: number;
  /** The largest single dose in mg (known even without timing). */
  singleMg?: number;
}

function unitOf(q: Quantity): string {
  return (q.code ?? q.unit ?? '').trim();
}

/** mg in one administration, or undefined when it cannot be told. */
function doseMg(q: Quantity | undefined, mgPerUnit: number | undefined, singleIngredient: boolean): number | undefined {
  if (!q || typeof q.value !== 'number' || !Number.isFinite(q.value) || q.value < 0) return undefined;
  const unit = unitOf(q).toLowerCase();
  const mass = MASS_MG[unit];
  if (mass !== undefined) return singleIngredient ? q.value * mass : undefined;
  return mgPerUnit === undefined ? undefined : q.value * mgPerUnit;
}

/** Administrations per day, or undefined without timing (e.g. "as needed"). */
export function perDay(timing: Timing | undefined): number | undefined {
  const r = timing?.repeat;
  if (r && (r.frequency !== undefined || r.period !== undefined)) {
    const frequency = r.frequencyMax ?? r.frequency ?? 1;
    const period = r.period ?? 1;
    const days = PERIOD_DAYS[r.periodUnit ?? 'd'];
    if (days === undefined || !(period > 0)) return undefined;
    return frequency / (period * days);
  }
  const code = timing?.code?.coding?.find((c) => c.code && CODE_PER_DAY[c.code] !== undefined)?.code;
  return code ? CODE_PER_DAY[code] : undefined;
}

export function dailyDose(dosages: readonly Dosage[] | undefined, mgPerUnit: number | undefined, singleIngredient: boolean): DailyDose {
  let daily = 0;
  let complete = (dosages?.length ?? 0) > 0;
  let single: number | undefined;
  for (const d of dosages ?? []) {
    const rate = d.doseAndRate?.[0];
    const mg = doseMg(rate?.doseQuantity ?? rate?.doseRange?.high, mgPerUnit, singleIngredient);
    const times = perDay(d.timing);
    if (mg !== undefined) single = Math.max(single ?? 0, mg);
    if (mg === undefined || times === undefined) complete = false;
    else daily += mg * times;
  }
  const out: DailyDose = {};
  if (complete) out.dailyMg = daily;
  if (single !== undefined) out.singleMg = single;
  return out;
}
