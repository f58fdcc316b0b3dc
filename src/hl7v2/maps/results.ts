import type { Attachment, DiagnosticReport, Identifier, Observation, ObservationReferenceRange, Quantity, Reference, Specimen } from 'fhir/r4.js';
import type { Segment } from '../parse/message.js';
import { MappingError, reference, type Lookup, type MappingContext, type Written } from './context.js';
import { identifierFromEi, identifierFromSubEi, personDisplay, toCodeableConcept, toDateTime, toInstant } from './datatypes.js';
import { patientIdentifiers, resolvePatient, requirePid } from './patient.js';
import { limitBreach } from './critical-limits.js';
import { lookup } from './tables.js';
import { expectSpecimens } from '../../workflows/lab/orders.js';

/** One OBR with what follows it up to the next OBR or ORC (v2.5.1 ORU_R01 ORDER_OBSERVATION group). */
interface ResultGroup {
  orc?: Segment;
  obr: Segment;
  obx: Array<{ segment: Segment; notes: string[] }>;
  spm: Segment[];
}

function groups(segments: Segment[]): ResultGroup[] {
  const result: ResultGroup[] = [];
  let orc: Segment | undefined;
  let current: ResultGroup | undefined;
  for (const s of segments) {
    if (s.name === 'ORC') {
      orc = s;
      current = undefined;
    } else if (s.name === 'OBR') {
      current = { orc, obr: s, obx: [], spm: [] };
      result.push(current);
      orc = undefined;
    } else if (s.name === 'OBX' && current) current.obx.push({ segment: s, notes: [] });
    else if (s.name === 'SPM' && current) current.spm.push(s);
    else if (s.name === 'NTE' && current?.obx.length) {
      const text = s.repetitions(3).map((r) => r.map((c) => c.join('&')).join(' ')).join('\n').trim();
      if (text) current.obx[current.obx.length - 1].notes.push(text);
    }
  }
  return result;
}

/** Placer and filler order numbers of a group: OBR-2/3, else ORC-2/3. */
export function orderNumbers(ctx: MappingContext, obr: Segment | undefined, orc: Segment | undefined): { placer?: Identifier; filler?: Identifier } {
  const t = ctx.tables;
  const pick = (field: number) => obr?.fields[field]?.[0]?.[0]?.[0] ? obr.fields[field][0] : orc?.fields[field]?.[0];
  return {
    placer: identifierFromEi(pick(2), 'placer-order', t),
    filler: identifierFromEi(pick(3), 'filler-order', t),
  };
}

/**
 * The identifier of each OBX's Observation (ED results become no Observation): the report's
 * order number, OBX-3 and OBX-4 — stable across corrections. Two OBX of one report with the
 * same code and no sub-id are told apart by OBX-1.
 */
function observationIds(ctx: MappingContext, group: ResultGroup, key: string): Identifier[] {
  const used = new Set<string>();
  return group.obx.map(({ segment: obx }) => {
    let value = `${key}|${obx.get(3, 1) || obx.get(3, 2)}|${obx.get(4)}`;
    if (used.has(value)) value = `${value}|${obx.get(1) || used.size}`;
    used.add(value);
    return { system: ctx.system('observation'), value };
  });
}

/** NM / SN / ST / TX / FT / CE / CWE / DT / TS values of one OBX (all repetitions of OBX-5). */
function observationValue(ctx: MappingContext, obx: Segment, obs: Observation): void {
  const t = ctx.tables;
  const type = obx.get(2).toUpperCase();
  const reps = obx.repetitions(5);
  if (reps.length === 0) return;
  const first = reps[0];
  const text = (rep: string[][]) => rep.map((c) => c.join('&')).join('^');
  switch (type) {
    case 'NM': {
      const raw = text(first).trim();
      if (!/^[+-]?(\d+\.?\d*|\.\d+)$/.test(raw)) throw new MappingError(`OBX-5 "${raw.slice(0, 40)}" of OBX ${obx.get(1)} is not a number (type NM)`, '102');
      obs.valueQuantity = quantity(ctx, obx, Number(raw));
      return;
    }
    case 'SN': {
      const [comparator, n1, separator, n2] = [first[0]?.[0] ?? '', first[1]?.[0] ?? '', first[2]?.[0] ?? '', first[3]?.[0] ?? ''];
      const num = (s: string) => (/^[+-]?(\d+\.?\d*|\.\d+)$/.test(s.trim()) ? Number(s) : undefined);
      const a = num(n1);
      const b = num(n2);
      if (a !== undefined && b !== undefined && (separator === '-' || separator === '')) {
        obs.valueRange = { low: quantity(ctx, obx, a), high: quantity(ctx, obx, b) };
      } else if (a !== undefined && b !== undefined && (separator === ':' || separator === '/')) {
        obs.valueRatio = { numerator: { value: a }, denominator: { value: b } };
      } else if (a !== undefined) {
        const q = quantity(ctx, obx, a);
        if (['<', '>', '<=', '>='].includes(comparator)) q.comparator = comparator as Quantity['comparator'];
        obs.valueQuantity = q;
      } else throw new MappingError(`OBX-5 of OBX ${obx.get(1)} is not a structured numeric (type SN)`, '102');
      return;
    }
    case 'CE':
    case 'CWE':
    case 'CNE': {
      const concept = toCodeableConcept(first, t);
      if (concept) obs.valueCodeableConcept = concept;
      return;
    }
    case 'DT':
    case 'TS':
    case 'DTM': {
      const dt = toDateTime(text(first), t);
      if (!dt) throw new MappingError(`OBX-5 of OBX ${obx.get(1)} is not a date/time (type ${type})`, '102');
      obs.valueDateTime = dt;
      return;
    }
    default: {
      // ST, TX, FT and other text-like types: the text, repetitions as lines.
      const value = reps.map(text).join('\n').trim();
      if (value) obs.valueString = value;
    }
  }
}

function quantity(ctx: MappingContext, obx: Segment, value: number): Quantity {
  const unitCode = obx.get(6, 1).trim();
  const unitSystem = obx.get(6, 3).trim().toUpperCase();
  const q: Quantity = { value };
  if (!unitCode) return q;
  q.unit = obx.get(6, 2).trim() || unitCode;
  const ucum = unitSystem === 'UCUM' ? unitCode : (ctx.tables.ucum[unitCode] ?? ctx.tables.ucum[unitCode.toLowerCase()]);
  if (ucum) {
    q.system = 'http://unitsofmeasure.org';
    q.code = ucum;
  }
  return q;
}

/** OBX-7: "low-high", "<x", ">x" or text. */
function referenceRange(ctx: MappingContext, obx: Segment): ObservationReferenceRange | undefined {
  const text = obx.text(7).trim();
  if (!text) return undefined;
  const unit = (v: number) => {
    const q = quantity(ctx, obx, v);
    return q;
  };
  const range = /^([+-]?\d+\.?\d*)\s*-\s*([+-]?\d+\.?\d*)$/.exec(text);
  if (range) return { low: unit(Number(range[1])), high: unit(Number(range[2])), text };
  // "<0.50 IU/mL": a bound, possibly followed by its unit.
  const upper = /^<=?\s*(\d+\.?\d*)(\s+\S.*)?$/.exec(text);
  if (upper) return { high: unit(Number(upper[1])), text };
  const lower = /^>=?\s*(\d+\.?\d*)(\s+\S.*)?$/.exec(text);
  if (lower) return { low: unit(Number(lower[1])), text };
  return { text };
}

/** ED type of data (HL7 table 0191) to the MIME major type. */
export const MEDIA_TYPES: Record<string, string> = { IM: 'image', IMAGE: 'image', AU: 'audio', AUDIO: 'audio', TX: 'text', TEXT: 'text', AP: 'application', APPLICATION: 'application', MULTIPART: 'multipart' };

/** ED (source^type^subtype^encoding^data) → an attachment for DiagnosticReport.presentedForm. */
export function attachment(obx: Segment): Attachment | undefined {
  const rep = obx.fields[5]?.[0];
  if (!rep) return undefined;
  const at = (i: number) => (rep[i - 1] ?? []).join('&').trim();
  const encoding = at(4).toUpperCase();
  const data = at(5).replace(/\s+/g, '');
  if (!data) return undefined;
  const subtype = at(3).toLowerCase();
  const major = MEDIA_TYPES[at(2).toUpperCase()] ?? 'application';
  const contentType = subtype.includes('/') ? subtype : subtype ? `${major}/${subtype}` : 'application/octet-stream';
  if (encoding === 'BASE64' || encoding === 'B64') {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(data) || data.length % 4 !== 0) throw new MappingError(`OBX-5 of OBX ${obx.get(1)} is not valid Base64 (type ED)`, '102');
    return { contentType, data };
  }
  return { contentType, data: Buffer.from(data, encoding === 'HEX' ? 'hex' : 'latin1').toString('base64') };
}

/**
 * ORU^R01: per OBR a DiagnosticReport (status OBR-25, code OBR-4, effective OBR-7, issued
 * OBR-22) with an Observation per OBX, Specimens from SPM, basedOn the ServiceRequest with the
 * same placer or filler order number, an embedded document (ED) as presentedForm. Observations
 * carry an identifier made of the report's order number, OBX-3 and OBX-4, so a corrected
 * result (OBX-11 = C) updates the stored one as a new version.
 */
export async function mapResult(ctx: MappingContext): Promise<void> {
  const t = ctx.tables;
  const pid = requirePid(ctx);
  const plans = resultPlans(ctx);
  // Every identifier the message will look up, known before anything is written: one prefetch
  // (nothing left to fetch when the batch this message is mapped in prefetched it already).
  await ctx.prefetch(resultLookups(ctx, pid, plans));
  // Mapped alone: its new Specimens' accession numbers in one step (a batch announced them already).
  expectSpecimens(ctx.tx, new Set(newSpecimens(ctx)).size);
  const patient = await resolvePatient(ctx, pid, false);
  const subject = reference(patient);
  for (const { group, placer, filler, reportId, key, specimenIds, observationIds: obsIds } of plans) {
    const { obr, orc } = group;

    const basedOn: Reference[] = [];
    for (const id of [placer, filler]) {
      if (!id || basedOn.length) continue;
      const found = await ctx.find('ServiceRequest', id);
      if (found.length === 1) basedOn.push({ reference: `ServiceRequest/${found[0]}` });
    }

    const specimens: Written[] = [];
    for (const [i, spm] of group.spm.entries()) {
      const specimenId = specimenIds[i];
      const specimen: Specimen = { resourceType: 'Specimen', identifier: [specimenId], subject };
      const type = toCodeableConcept(spm.fields[4]?.[0], t);
      if (type) specimen.type = type;
      const collected = toDateTime(spm.get(17), t);
      if (collected) specimen.collection = { collectedDateTime: collected };
      const received = toInstant(spm.get(18), t);
      if (received) specimen.receivedTime = received;
      specimens.push(await ctx.upsert(specimen, specimenId));
    }
    if (specimens.length === 0 && obr.get(15)) {
      // v2.3-style OBR-15 specimen source, collected at OBR-7.
      const specimenId = { system: ctx.system('specimen-of-order'), value: key };
      const specimen: Specimen = { resourceType: 'Specimen', identifier: [specimenId], subject };
      const type = toCodeableConcept(obr.fields[15]?.[0], t);
      if (type) specimen.type = type;
      const collected = toDateTime(obr.get(7), t);
      if (collected) specimen.collection = { collectedDateTime: collected };
      specimens.push(await ctx.upsert(specimen, specimenId));
    }

    const code = toCodeableConcept(obr.fields[4]?.[0], t);
    if (!code) throw new MappingError(`OBR-4 (universal service identifier) of OBR ${obr.get(1)} is empty`, '101');
    const effective = toDateTime(obr.get(7), t);
    const results: Written[] = [];
    const presentedForm: Attachment[] = [];
    for (const [o, { segment: obx, notes }] of group.obx.entries()) {
      if (obx.get(2).toUpperCase() === 'ED') {
        const form = attachment(obx);
        if (form) presentedForm.push(form);
        continue;
      }
      const obsCode = toCodeableConcept(obx.fields[3]?.[0], t);
      if (!obsCode) throw new MappingError(`OBX-3 (observation identifier) of OBX ${obx.get(1)} is empty`, '101');
      const obsId = obsIds[o];
      const obs: Observation = {
        resourceType: 'Observation',
        identifier: [obsId],
        status: lookup(t.observationStatus, obx.get(11).trim()) as Observation['status'],
        code: obsCode,
        subject,
      };
      observationValue(ctx, obx, obs);
      const range = referenceRange(ctx, obx);
      if (range) obs.referenceRange = [range];
      const flags = obx
        .repetitions(8)
        .map((r) => (r[0]?.[0] ?? '').trim())
        .map((f) => t.abnormalFlags.codes[f])
        .filter((c): c is string => c !== undefined);
      if (flags.length) obs.interpretation = flags.map((c) => ({ coding: [{ system: t.abnormalFlags.system, code: c }] }));
      const when = toDateTime(obx.get(14), t) ?? effective;
      if (when) obs.effectiveDateTime = when;
      if (specimens[0]) obs.specimen = reference(specimens[0]);
      if (basedOn.length) obs.basedOn = basedOn;
      if (notes.length) obs.note = notes.map((text) => ({ text }));
      const written = await ctx.upsert(obs, obsId);
      results.push(written);
      const critical = flags.filter((f) => t.criticalFlags.codes.includes(f));
      const breach = limitBreach(t.criticalLimits, obs);
      if (breach && !critical.includes(breach.flag)) critical.push(breach.flag);
      if (critical.length && written.changed) {
        const ordering = personDisplay(obr.fields[16]?.[0]) ?? personDisplay(orc?.fields[12]?.[0]);
        ctx.critical.push({
          observation: `Observation/${written.id}/_history/${written.versionId}`,
          patient: `Patient/${patient.id}`,
          ...(basedOn[0]?.reference ? { serviceRequest: basedOn[0].reference } : {}),
          ...(ordering ? { orderingProvider: ordering } : {}),
          flags: critical,
          ...(breach ? { criticalLimit: { ...pick(breach.limit, 'low', 'high'), unit: breach.limit.unit } } : {}),
        });
      }
    }

    const report: DiagnosticReport = {
      resourceType: 'DiagnosticReport',
      identifier: [reportId],
      status: lookup(t.resultStatus, obr.get(25).trim()) as DiagnosticReport['status'],
      code,
      subject,
    };
    if (basedOn.length) report.basedOn = basedOn;
    if (effective) report.effectiveDateTime = effective;
    const issued = toInstant(obr.get(22), t);
    if (issued) report.issued = issued;
    if (specimens.length) report.specimen = specimens.map(reference);
    if (results.length) report.result = results.map(reference);
    if (presentedForm.length) report.presentedForm = presentedForm;
    await ctx.upsert(report, reportId);
  }
}

/** Plans per message context: a batch's prefetch computes them, the mapping reuses them. */
const plansOf = new WeakMap<MappingContext, ReturnType<typeof computePlans>>();

/** Per OBR group: its order numbers and the identifiers of everything it becomes. */
function resultPlans(ctx: MappingContext): ReturnType<typeof computePlans> {
  let plans = plansOf.get(ctx);
  if (!plans) {
    plans = computePlans(ctx);
    plansOf.set(ctx, plans);
  }
  return plans;
}

function computePlans(ctx: MappingContext) {
  const t = ctx.tables;
  const list = groups(ctx.message.segments);
  if (list.length === 0) throw new MappingError('the ORU message has no OBR segment', '100');
  const h = ctx.message.header;
  return list.map((group, index) => {
    const { placer, filler } = orderNumbers(ctx, group.obr, group.orc);
    const reportId: Identifier = filler ??
      placer ?? { system: ctx.system('result-of-message'), value: `${h.sendingApplication}|${h.sendingFacility}|${h.controlId}|${group.obr.get(1) || index + 1}` };
    const key = `${reportId.system}|${reportId.value}`;
    const specimenIds = group.spm.map(
      (spm, i) =>
        identifierFromSubEi(spm.fields[2]?.[0]?.[1], 'specimen', t) ??
        identifierFromSubEi(spm.fields[2]?.[0]?.[0], 'specimen', t) ?? { system: ctx.system('specimen-of-order'), value: `${key}|${spm.get(1) || i + 1}` },
    );
    return { group, placer, filler, reportId, key, specimenIds, observationIds: observationIds(ctx, group, key) };
  });
}

/** Every identifier an ORU^R01's mapping looks up (for `prefetch`, of one message or a batch). */
export function resultLookups(ctx: MappingContext, pid = requirePid(ctx), plans = resultPlans(ctx)): Lookup[] {
  return [
    { type: 'Patient', identifiers: patientIdentifiers(ctx, pid) },
    { type: 'ServiceRequest', identifiers: plans.flatMap((p) => [p.placer, p.filler]) },
    { type: 'Specimen', identifiers: plans.flatMap((p) => [...p.specimenIds, { system: ctx.system('specimen-of-order'), value: p.key }]) },
    { type: 'Observation', identifiers: plans.flatMap((p) => p.observationIds) },
    { type: 'DiagnosticReport', identifiers: plans.map((p) => p.reportId) },
  ];
}

/**
 * `system|value` of each Specimen the mapping will create (after `prefetch`): the SPM specimens,
 * else the OBR-15 one, that nothing stored carries yet. Each gets a laboratory accession number
 * (specimenHook); knowing how many lets the transaction take them in one step (expectSpecimens).
 */
export function newSpecimens(ctx: MappingContext): string[] {
  const keys: string[] = [];
  for (const p of resultPlans(ctx)) {
    const ids = p.group.spm.length ? p.specimenIds : p.group.obr.get(15) ? [{ system: ctx.system('specimen-of-order'), value: p.key }] : [];
    for (const id of ids) if (ctx.absent('Specimen', id)) keys.push(`${id.system ?? ''}|${id.value ?? ''}`);
  }
  return keys;
}

/** The named bounds of a limit that are set. */
function pick(limit: { low?: number; high?: number }, ...names: Array<'low' | 'high'>): { low?: number; high?: number } {
  const out: { low?: number; high?: number } = {};
  for (const n of names) if (limit[n] !== undefined) out[n] = limit[n];
  return out;
}

