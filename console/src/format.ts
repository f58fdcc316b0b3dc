import type { CodeableConcept, Extension, HumanName, Observation, Patient, Quantity, Range } from 'fhir/r4.js';

export const PATIENT_NUMBER_SYSTEM = 'https://fhir.hospital.example.org/sid/patient-number';
export const STOCK_QUANTITY = 'https://fhir.hospital.example.org/StructureDefinition/medication-stock-quantity';
export const REORDER_LEVEL = 'https://fhir.hospital.example.org/StructureDefinition/medication-reorder-level';

export function nameOf(names: HumanName[] | undefined): string {
  const name = names?.find((n) => n.use === 'official') ?? names?.[0];
  if (!name) return 'Unnamed';
  if (name.text) return name.text;
  // Synthea writes digits into names (Abe604): shown without them.
  return [...(name.given ?? []), name.family].filter(Boolean).join(' ').replace(/\d+/g, '') || 'Unnamed';
}

export function patientNumber(patient: Patient | undefined): string | undefined {
  return patient?.identifier?.find((i) => i.system === PATIENT_NUMBER_SYSTEM)?.value;
}

export function ageOf(birthDate: string | undefined, now = new Date()): number | undefined {
  if (!birthDate) return undefined;
  const born = new Date(birthDate);
  let age = now.getUTCFullYear() - born.getUTCFullYear();
  const before = now.getUTCMonth() < born.getUTCMonth() || (now.getUTCMonth() === born.getUTCMonth() && now.getUTCDate() < born.getUTCDate());
  if (before) age--;
  return age;
}

export function text(concept: CodeableConcept | undefined): string {
  return concept?.text ?? concept?.coding?.find((c) => c.display)?.display ?? concept?.coding?.[0]?.code ?? '—';
}

export function codeOf(concept: CodeableConcept | undefined): string | undefined {
  return concept?.coding?.[0]?.code;
}

export function day(iso: string | undefined): string {
  return iso ? iso.slice(0, 10) : '—';
}

export function time(iso: string | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export function dateTime(iso: string | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : `${iso.slice(0, 10)} ${time(iso)}`;
}

/** Local midnight today and tomorrow as FHIR dateTimes: "today's" appointments. */
export function todayRange(now = new Date()): [string, string] {
  const start = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  const end = new Date(start.getTime() + 24 * 3600_000);
  return [start.toISOString(), end.toISOString()];
}

export function isoDay(d: Date): string {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

export function quantity(q: Quantity | undefined): string {
  if (!q || q.value === undefined) return '—';
  return `${q.value}${q.unit ?? q.code ? ` ${q.unit ?? q.code}` : ''}`;
}

export function observationValue(o: Observation): string {
  if (o.valueQuantity) return quantity(o.valueQuantity);
  if (o.valueCodeableConcept) return text(o.valueCodeableConcept);
  if (o.valueString !== undefined) return o.valueString;
  if (o.component?.length) return o.component.map((c) => `${quantity(c.valueQuantity)}`).join(' / ');
  return '—';
}

export function rangeText(range: { low?: Quantity; high?: Quantity; text?: string } | Range | undefined): string {
  if (!range) return '—';
  if ('text' in range && range.text) return range.text;
  const low = range.low?.value;
  const high = range.high?.value;
  const unit = range.low?.unit ?? range.high?.unit ?? '';
  if (low !== undefined && high !== undefined) return `${low}–${high} ${unit}`.trim();
  if (low !== undefined) return `≥ ${low} ${unit}`.trim();
  if (high !== undefined) return `≤ ${high} ${unit}`.trim();
  return '—';
}

export type Severity = 'critical' | 'abnormal' | 'normal';

/** v3 ObservationInterpretation: HH / LL / AA (and "critical" texts) critical; H / L / A abnormal. */
export function severityOf(o: Observation): Severity {
  const codes = (o.interpretation ?? []).flatMap((i) => [...(i.coding ?? []).map((c) => c.code ?? ''), (i.text ?? '').toLowerCase()]);
  if (codes.some((c) => ['HH', 'LL', 'AA', '<', '>'].includes(c) || c.includes('critical'))) return 'critical';
  if (codes.some((c) => ['H', 'L', 'A', 'HU', 'LU'].includes(c) || c.includes('abnormal') || c === 'high' || c === 'low')) return 'abnormal';
  return 'normal';
}

export const SEVERITY_RANK: Record<Severity, number> = { critical: 0, abnormal: 1, normal: 2 };

export function flagLabel(o: Observation): string {
  const code = o.interpretation?.[0]?.coding?.[0]?.code;
  return code ?? (severityOf(o) === 'normal' ? '' : severityOf(o));
}

export function numberExtension(extensions: Extension[] | undefined, url: string): number | undefined {
  const e = extensions?.find((x) => x.url === url);
  return e?.valueQuantity?.value ?? e?.valueDecimal ?? e?.valueInteger ?? undefined;
}

export function percent(value: number | undefined): string {
  return value === undefined || Number.isNaN(value) ? '—' : `${Math.round(value * 1000) / 10} %`;
}

export function money(value: number | undefined, currency = ''): string {
  if (value === undefined) return '—';
  return `${value.toLocaleString(undefined, { maximumFractionDigits: 2 })}${currency ? ` ${currency}` : ''}`;
}
