import type {
  Appointment,
  ChargeItem,
  DiagnosticReport,
  Encounter,
  Invoice,
  InvoiceLineItem,
  Location,
  MeasureReport,
  MeasureReportGroup,
  PaymentReconciliation,
  ServiceRequest,
} from 'fhir/r4.js';

/**
 * The independent computation the report tests compare with: the same figures in plain
 * TypeScript over the resources read back through the FHIR API (no SQL, no server code), from
 * the definitions written in the report modules' comments and the Measure resources.
 */

export interface Expected {
  populations: Record<string, number>;
  score?: number;
}

const DAY_MS = 86_400_000;
export const utcDay = (instant: string) => new Date(Date.parse(instant)).toISOString().slice(0, 10);

export function periodRange(first: string, last: string): { start: number; end: number; days: number } {
  const start = Date.parse(`${first}T00:00:00Z`);
  const end = Date.parse(`${last}T00:00:00Z`) + DAY_MS;
  return { start, end, days: (end - start) / DAY_MS };
}

const within = (instant: string | undefined, p: { start: number; end: number }) => instant !== undefined && Date.parse(instant) >= p.start && Date.parse(instant) < p.end;
const bump = <K>(m: Map<K, number>, k: K, by: number) => m.set(k, (m.get(k) ?? 0) + by);
const rate = (n: number, d: number) => (d > 0 ? n / d : undefined);

// ---------------------------------------------------------------- revenue

function lineCategory(line: InvoiceLineItem, chargeItems: Map<string, ChargeItem>): string {
  const concept = line.chargeItemCodeableConcept ?? chargeItems.get(line.chargeItemReference?.reference?.replace(/^ChargeItem\//, '') ?? '')?.code;
  const coding = concept?.coding?.[0];
  const code = coding?.code ?? concept?.text;
  if (code === undefined) return 'uncategorised';
  return coding?.system ? `${coding.system}|${code}` : code;
}

function lineAmounts(line: InvoiceLineItem): { net: number; tax: number } {
  let net = 0;
  let tax = 0;
  for (const c of line.priceComponent ?? []) {
    const v = c.amount?.value ?? 0;
    if (c.type === 'base' || c.type === 'surcharge') net += v;
    else if (c.type === 'discount' || c.type === 'deduction') net -= Math.abs(v);
    else if (c.type === 'tax') tax += v;
  }
  return { net, tax };
}

export interface RevenueExpected {
  gross: Expected;
  net: Expected;
  grossByDay: Map<string, Expected>;
  grossByMonth: Map<string, Expected>;
  netByStatus: Map<string, Expected>;
  grossByCategory: Map<string, Expected>;
  netByCategory: Map<string, Expected>;
  collected: Expected;
  collectedByDay: Map<string, Expected>;
  outstanding: Expected;
}

export function expectedRevenue(first: string, last: string, invoices: Invoice[], payments: PaymentReconciliation[], chargeItems: ChargeItem[]): RevenueExpected {
  const p = periodRange(first, last);
  const items = new Map(chargeItems.map((c) => [c.id!, c]));
  const counted = invoices.filter((i) => (i.status === 'issued' || i.status === 'balanced') && within(i.date, p));
  const figure = (rows: Array<{ key: string; n: number; amount: number }>) => {
    const out = new Map<string, Expected>();
    for (const r of rows) {
      const e = out.get(r.key) ?? { populations: { 'initial-population': 0 }, score: 0 };
      e.populations['initial-population']! += r.n;
      e.score! += r.amount;
      out.set(r.key, e);
    }
    return out;
  };
  const total = (rows: Array<{ amount: number }>, n: number): Expected => ({ populations: { 'initial-population': n }, score: rows.reduce((s, r) => s + r.amount, 0) });
  const gross = counted.map((i) => ({ i, amount: i.totalGross?.value ?? 0 }));
  const lines = counted.flatMap((i) => (i.lineItem ?? []).map((l) => ({ key: lineCategory(l, items), ...lineAmounts(l) })));
  const activePayments = payments.filter((x) => x.status === 'active');
  const collectedRows = activePayments.filter((x) => x.paymentDate >= first && x.paymentDate <= last);
  const open = invoices.filter((i) => i.status === 'issued' && i.date !== undefined && Date.parse(i.date) < p.end);
  const paidTo = (id: string) => activePayments.flatMap((x) => x.detail ?? []).filter((d) => d.request?.reference === `Invoice/${id}`).reduce((s, d) => s + (d.amount?.value ?? 0), 0);
  return {
    gross: total(gross, counted.length),
    net: total(counted.map((i) => ({ amount: i.totalNet?.value ?? 0 })), counted.length),
    grossByDay: figure(gross.map((g) => ({ key: utcDay(g.i.date!), n: 1, amount: g.amount }))),
    grossByMonth: figure(gross.map((g) => ({ key: utcDay(g.i.date!).slice(0, 7), n: 1, amount: g.amount }))),
    netByStatus: figure(counted.map((i) => ({ key: i.status, n: 1, amount: i.totalNet?.value ?? 0 }))),
    grossByCategory: figure(lines.map((l) => ({ key: l.key, n: 1, amount: l.net + l.tax }))),
    netByCategory: figure(lines.map((l) => ({ key: l.key, n: 1, amount: l.net }))),
    collected: total(collectedRows.map((x) => ({ amount: x.paymentAmount.value ?? 0 })), collectedRows.length),
    collectedByDay: figure(collectedRows.map((x) => ({ key: x.paymentDate, n: 1, amount: x.paymentAmount.value ?? 0 }))),
    outstanding: total(open.map((i) => ({ amount: (i.totalGross?.value ?? 0) - paidTo(i.id!) })), open.length),
  };
}

// ---------------------------------------------------------------- appointments

const KNOWN = new Set(['fulfilled', 'noshow', 'arrived', 'checked-in']);

export function expectedAppointments(first: string, last: string, appointments: Appointment[]) {
  const p = periodRange(first, last);
  const inPeriod = appointments.filter((a) => within(a.start, p));
  const noShow = (list: Appointment[]): Expected => {
    const known = list.filter((a) => KNOWN.has(a.status)).length;
    const noshow = list.filter((a) => a.status === 'noshow').length;
    return { populations: { 'initial-population': list.length, denominator: known, numerator: noshow }, score: rate(noshow, known) };
  };
  const cancellation = (list: Appointment[]): Expected => {
    const cancelled = list.filter((a) => a.status === 'cancelled').length;
    return { populations: { denominator: list.length, numerator: cancelled }, score: rate(cancelled, list.length) };
  };
  const groupBy = (keys: (a: Appointment) => string[]) => {
    const m = new Map<string, Appointment[]>();
    for (const a of inPeriod) for (const k of new Set(keys(a))) m.set(k, [...(m.get(k) ?? []), a]);
    return m;
  };
  const byDay = groupBy((a) => [utcDay(a.start!)]);
  const byPractitioner = groupBy((a) => a.participant.map((x) => x.actor?.reference ?? '').filter((r) => r.startsWith('Practitioner/')));
  const byStatus = groupBy((a) => [a.status]);
  const map = (m: Map<string, Appointment[]>, f: (l: Appointment[]) => Expected) => new Map([...m].map(([k, l]) => [k, f(l)]));
  return {
    noShow: noShow(inPeriod),
    cancellation: cancellation(inPeriod),
    noShowByDay: map(byDay, noShow),
    noShowByPractitioner: map(byPractitioner, noShow),
    cancellationByPractitioner: map(byPractitioner, cancellation),
    byStatus: new Map([...byStatus].map(([k, l]) => [k, { populations: { 'initial-population': l.length } } as Expected])),
  };
}

// ---------------------------------------------------------------- beds

const kind = (l: Location) => l.physicalType?.coding?.[0]?.code;

export function expectedBeds(first: string, last: string, locations: Location[], encounters: Encounter[], now: number) {
  const p = periodRange(first, last);
  const byId = new Map(locations.map((l) => [l.id!, l]));
  const parentOf = (l: Location) => byId.get(l.partOf?.reference?.replace(/^Location\//, '') ?? '');
  const wardOf = (bed: Location): string | undefined => {
    let at = parentOf(bed);
    for (let depth = 0; at && depth < 3; depth++, at = parentOf(at)) if (kind(at) === 'wa') return at.id;
    return undefined;
  };
  const beds = locations.filter((l) => kind(l) === 'bd');
  const wards = locations.filter((l) => kind(l) === 'wa');
  const inService = new Map<string, number>();
  const occupiedNow = new Map<string, number>();
  for (const b of beds) {
    const w = wardOf(b);
    if (!w || (b.status ?? 'active') !== 'active') continue;
    bump(inService, w, 1);
    if (b.operationalStatus?.code === 'O') bump(occupiedNow, w, 1);
  }
  const seconds = new Map<string, number>();
  const stays = new Map<string, number>();
  for (const e of encounters) {
    if (e.status === 'cancelled' || e.status === 'entered-in-error') continue;
    for (const l of e.location ?? []) {
      const bed = byId.get(l.location.reference?.replace(/^Location\//, '') ?? '');
      const w = bed && kind(bed) === 'bd' ? wardOf(bed) : undefined;
      if (!w || l.status === 'planned' || !l.period?.start) continue;
      const end = Math.min(l.period.end ? Date.parse(l.period.end) : e.period?.end ? Date.parse(e.period.end) : now, p.end);
      const s = Math.max(0, (end - Math.max(Date.parse(l.period.start), p.start)) / 1000);
      bump(seconds, w, s);
      if (s > 0) bump(stays, w, 1);
    }
  }
  const perWard = new Map(
    wards.map((w) => {
      const bedsIn = inService.get(w.id!) ?? 0;
      const occupiedDays = (seconds.get(w.id!) ?? 0) / 86_400;
      return [`Location/${w.id}`, { beds: bedsIn, occupiedNow: occupiedNow.get(w.id!) ?? 0, occupiedDays, availableDays: bedsIn * p.days, stays: stays.get(w.id!) ?? 0 }];
    }),
  );
  return perWard;
}

// ---------------------------------------------------------------- lab

/** percentile_cont: linear interpolation between the closest ranks. */
export function percentileCont(values: number[], fraction: number): number {
  const s = [...values].sort((a, b) => a - b);
  const pos = fraction * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

export function expectedTurnaround(first: string, last: string, requests: ServiceRequest[], reports: DiagnosticReport[]) {
  const p = periodRange(first, last);
  const byId = new Map(requests.map((r) => [r.id!, r]));
  const pairs: Array<{ test: string; priority: string; minutes: number }> = [];
  for (const d of reports) {
    if (!['final', 'amended', 'corrected', 'appended'].includes(d.status) || !within(d.issued, p)) continue;
    for (const b of d.basedOn ?? []) {
      const sr = byId.get(b.reference?.replace(/^ServiceRequest\//, '') ?? '');
      if (!sr?.authoredOn) continue;
      const minutes = (Date.parse(d.issued!) - Date.parse(sr.authoredOn)) / 60_000;
      if (minutes < 0) continue;
      const c = sr.code?.coding?.[0];
      pairs.push({ test: `${c?.system}|${c?.code}`, priority: sr.priority ?? 'routine', minutes });
    }
  }
  const stats = (list: typeof pairs) => {
    const m = list.map((x) => x.minutes);
    return { n: m.length, median: percentileCont(m, 0.5), p90: percentileCont(m, 0.9), mean: m.reduce((s, v) => s + v, 0) / m.length };
  };
  const by = (key: (x: (typeof pairs)[number]) => string) => {
    const m = new Map<string, typeof pairs>();
    for (const x of pairs) m.set(key(x), [...(m.get(key(x)) ?? []), x]);
    return new Map([...m].map(([k, l]) => [k, stats(l)]));
  };
  return { all: stats(pairs), byTest: by((x) => x.test), byPriority: by((x) => x.priority), byBoth: by((x) => `test=${x.test};priority=${x.priority}`) };
}

// ---------------------------------------------------------------- reading a MeasureReport

const codeOf = (c: { coding?: Array<{ code?: string }> } | undefined) => c?.coding?.[0]?.code ?? '';

export function figureOf(g: { population?: MeasureReportGroup['population']; measureScore?: MeasureReportGroup['measureScore'] }): Expected {
  const populations: Record<string, number> = {};
  for (const p of g.population ?? []) populations[codeOf(p.code)] = p.count ?? 0;
  return { populations, ...(g.measureScore?.value !== undefined ? { score: g.measureScore.value } : {}) };
}

export function groupOf(report: MeasureReport, code: string): MeasureReportGroup {
  const g = report.group?.find((x) => codeOf(x.code) === code);
  if (!g) throw new Error(`no group ${code}`);
  return g;
}

/** stratum value text (or components `code=value;…`) → figure */
export function strataOf(report: MeasureReport, groupCode: string, stratifier: string): Map<string, Expected> {
  const s = groupOf(report, groupCode).stratifier?.find((x) => codeOf(x.code?.[0]) === stratifier);
  const out = new Map<string, Expected>();
  for (const st of s?.stratum ?? []) {
    const key = st.value ? (st.value.text ?? '') : (st.component ?? []).map((c) => `${codeOf(c.code)}=${c.value.text}`).join(';');
    out.set(key, figureOf(st));
  }
  return out;
}

/** Parses the report CSV (RFC 4180 quoting) into rows of cells. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') (cell += '"'), i++;
      else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') row.push(cell), (cell = '');
    else if (ch === '\n') row.push(cell.replace(/\r$/, '')), rows.push(row), (row = []), (cell = '');
    else cell += ch;
  }
  if (cell || row.length) rows.push([...row, cell]);
  return rows;
}
