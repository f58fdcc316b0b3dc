/**
 * A deliberately small UCUM canonicaliser: enough for the units hospitals send every day
 * (mass, volume, length, time, amount of substance, their ratios and products) so that
 * `5 mg` and `0.005 g` index and search alike. Units it does not understand (°C, [IU],
 * arbitrary annotations) are left alone and compared by their code as written.
 */
import { decimalToString, parseDecimal } from './values.js';

export const UCUM_SYSTEM = 'http://unitsofmeasure.org';

/** base unit → exponent; factor is (mantissa × 10^exp10) so metric prefixes stay exact. */
interface Dim {
  units: Map<string, number>;
  factor: number;
  exp10: number;
}

const prefixes: Record<string, number> = { k: 3, h: 2, da: 1, d: -1, c: -2, m: -3, u: -6, n: -9, p: -12, f: -15 };
const metricBase: Record<string, string> = { g: 'g', L: 'L', l: 'L', m: 'm', s: 's', mol: 'mol', eq: 'eq', kat: 'kat' };
const special: Record<string, { base: string; factor: number; exp10?: number }> = {
  min: { base: 's', factor: 60 },
  h: { base: 's', factor: 3600 },
  d: { base: 's', factor: 86400 },
  wk: { base: 's', factor: 604800 },
  'a': { base: 's', factor: 31557600 },
  mo: { base: 's', factor: 2629800 },
  '[lb_av]': { base: 'g', factor: 453.59237 },
  '[oz_av]': { base: 'g', factor: 28.349523125 },
  '[in_i]': { base: 'm', factor: 2.54, exp10: -2 },
  '[ft_i]': { base: 'm', factor: 3.048, exp10: -1 },
  '[mi_i]': { base: 'm', factor: 1609.344 },
  '[ppm]': { base: '1', factor: 1, exp10: -6 },
  '%': { base: '1', factor: 1, exp10: -2 },
};

function atom(a: string): Dim | null {
  const withExp = /^(\[[^\]]+\]|[A-Za-z%]+)(-?\d+)?$/.exec(a);
  if (!withExp) return null;
  const name = withExp[1]!;
  const power = withExp[2] ? Number(withExp[2]) : 1;
  let base: string | undefined;
  let factor = 1;
  let exp10 = 0;
  const sp = special[name];
  if (sp) {
    base = sp.base;
    factor = sp.factor;
    exp10 = sp.exp10 ?? 0;
  } else if (metricBase[name]) {
    base = metricBase[name];
  } else {
    for (const [p, e] of Object.entries(prefixes)) {
      if (name.startsWith(p) && metricBase[name.slice(p.length)]) {
        base = metricBase[name.slice(p.length)];
        exp10 = e;
        break;
      }
    }
  }
  if (!base) return null;
  const units = new Map<string, number>();
  if (base !== '1') units.set(base, power);
  return { units, factor: factor ** power, exp10: exp10 * power };
}

function combine(a: Dim, b: Dim, sign: 1 | -1): Dim {
  const units = new Map(a.units);
  for (const [u, e] of b.units) {
    const v = (units.get(u) ?? 0) + sign * e;
    if (v === 0) units.delete(u);
    else units.set(u, v);
  }
  return { units, factor: sign === 1 ? a.factor * b.factor : a.factor / b.factor, exp10: a.exp10 + sign * b.exp10 };
}

const cache = new Map<string, Dim | null>();

function parseUnit(code: string): Dim | null {
  if (cache.has(code)) return cache.get(code)!;
  let result: Dim | null = null;
  if (code.length <= 40 && !/[{}()\s]/.test(code)) {
    // Only `a.b/c/d` shapes: a product of atoms divided by atoms.
    const [num, ...dens] = code.split('/');
    result = { units: new Map(), factor: 1, exp10: 0 };
    for (const part of (num === '1' || num === '' ? [] : num!.split('.')).map(atom)) {
      if (!part) {
        result = null;
        break;
      }
      result = combine(result, part, 1);
    }
    for (const den of dens) {
      if (!result) break;
      for (const part of den.split('.').map(atom)) {
        if (!part) {
          result = null;
          break;
        }
        result = combine(result, part, -1);
      }
    }
  }
  if (cache.size < 10_000) cache.set(code, result);
  return result;
}

function canonicalCode(d: Dim): string {
  const pos = [...d.units].filter(([, e]) => e > 0).sort(([a], [b]) => (a < b ? -1 : 1));
  const neg = [...d.units].filter(([, e]) => e < 0).sort(([a], [b]) => (a < b ? -1 : 1));
  const fmt = ([u, e]: [string, number]) => (Math.abs(e) === 1 ? u : `${u}${Math.abs(e)}`);
  const top = pos.length ? pos.map(fmt).join('.') : '1';
  return neg.length ? `${top}/${neg.map(fmt).join('/')}` : top;
}

/**
 * Canonical form of `value code` (UCUM), or null if the unit is not one we convert.
 * The value is a decimal string; metric prefixes are applied exactly (decimal shift).
 */
export function toCanonical(value: string, code: string): { value: string; code: string } | null {
  const d = parseUnit(code);
  const dec = parseDecimal(value);
  if (!d || !dec) return null;
  const shifted = { mantissa: dec.mantissa, scale: dec.scale - d.exp10 };
  let out: string;
  if (d.factor === 1) {
    out = decimalToString(shifted);
  } else {
    const n = Number(decimalToString(shifted)) * d.factor;
    const p = parseDecimal(Number(n.toPrecision(15)).toString().replace(/e\+?/, 'e'));
    if (!p) return null;
    out = decimalToString(p);
  }
  return { value: trimZeros(out), code: canonicalCode(d) };
}

function trimZeros(s: string): string {
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

/** Scales a decimal string by the unit's factor (for range bounds of search values). */
export function canonicalFactorOnly(code: string): boolean {
  return parseUnit(code) !== null;
}
