import type { Bundle, DiagnosticReport, Observation, OperationOutcome, Patient, Resource } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { ackCode } from './hl7v2-helpers.js';
import { signInAs } from './smart-helpers.js';
import { pdfText } from '../support/pdf-text.js';

/**
 * Laboratory results (issue 14 §2, seed 004 FR-LAB-002 / FR-LAB-003): values checked against the
 * catalogue's ObservationDefinitions, flags and reference ranges filled in, critical results
 * notified at once, dual verification (technician, then a pathologist who is another user),
 * verified results immutable with corrections as new versions, HL7 v2 results arriving
 * preliminary, and the report PDF with the patient's previous results.
 */

const LAB = 'https://fhir.hospital.example.org/CodeSystem/lab-test';
const VERIFICATION = 'https://fhir.hospital.example.org/StructureDefinition/lab-verification';
const REASON = 'https://fhir.hospital.example.org/StructureDefinition/lab-correction-reason';
const TYPE_SYSTEM = 'https://fhir.hospital.example.org/CodeSystem/notification-type';

let t: TestApp;
let woman: string;
let man: string;
let child: string;
let orderer: string;

beforeAll(async () => {
  t = await startTestApp({ NOTIFICATIONS: 'on', NOTIFICATION_BACKOFF_MS: '50', NOTIFICATION_HOSPITAL_NAME: 'Bach Mai Hospital' });
  woman = await create<Patient>({ resourceType: 'Patient', name: [{ family: 'Nguyen', given: ['Thi', 'Mai'] }], gender: 'female', birthDate: '1980-05-01' });
  man = await create<Patient>({ resourceType: 'Patient', name: [{ family: 'Tran', given: ['Van'] }], gender: 'male', birthDate: '1975-01-01' });
  child = await create<Patient>({ resourceType: 'Patient', name: [{ family: 'Le', given: ['Bao'] }], gender: 'male', birthDate: `${new Date().getUTCFullYear() - 6}-03-01` });
  orderer = await create({ resourceType: 'Practitioner', name: [{ family: 'Hoang', prefix: ['Dr.'] }] });
}, 60_000);

afterAll(async () => {
  await t?.close();
});

const auth = (token?: string) => (token ? { headers: { authorization: `Bearer ${token}` } } : {});

async function create<T extends Resource>(resource: T, token?: string): Promise<string> {
  const res = await t.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource, ...auth(token) });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as { id: string }).id;
}

async function read<T extends Resource>(type: string, id: string): Promise<T> {
  const res = await t.request({ method: 'GET', url: `/fhir/${type}/${id}` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as T;
}

function result(patient: string, code: string, value: Observation['valueQuantity'] | string, extra: Partial<Observation> = {}): Observation {
  return {
    resourceType: 'Observation',
    status: 'preliminary',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }],
    code: { coding: [{ system: LAB, code }] },
    subject: { reference: `Patient/${patient}` },
    ...(typeof value === 'string' ? { valueString: value } : { valueQuantity: value }),
    ...extra,
  };
}

const flags = (o: Observation) => (o.interpretation ?? []).flatMap((c) => c.coding ?? []).map((c) => c.code);
const PATHOLOGIST = { system: 'https://fhir.hospital.example.org/CodeSystem/lab-role', code: 'pathologist' };

/** A DOCTOR user whose Practitioner holds the pathologist PractitionerRole (the second verifier). */
async function signInAsPathologist(practitioner: string): Promise<{ token: string; username: string }> {
  await create({ resourceType: 'PractitionerRole', active: true, practitioner: { reference: practitioner }, code: [{ coding: [PATHOLOGIST] }] });
  return signInAs(t, 'DOCTOR', practitioner);
}

const verify = (type: string, id: string, token: string) => t.request({ method: 'POST', url: `/fhir/${type}/${id}/$verify`, ...auth(token) });
const issueOf = (body: string) => (JSON.parse(body) as OperationOutcome).issue[0]!;

describe('FR-LAB-002 result entry against the catalogue', () => {
  it('FR-LAB-002: a value of the wrong type or unit, or an unknown test, is refused with 422 and the path', async () => {
    const cases: Array<[Observation, string]> = [
      [result(woman, 'HB', 'low-ish'), 'Observation.valueString'],
      [result(woman, 'HB', { value: 7.1, unit: 'mmol/L', system: 'http://unitsofmeasure.org', code: 'mmol/L' }), 'Observation.valueQuantity.code'],
      [result(woman, 'HB', { value: 12, unit: 'g/dL', system: 'http://example.org/units', code: 'g/dL' }), 'Observation.valueQuantity.system'],
      [result(woman, 'NOPE', { value: 1, unit: 'g/dL' }), 'Observation.code'],
    ];
    for (const [obs, path] of cases) {
      const res = await t.request({ method: 'POST', url: '/fhir/Observation', payload: obs });
      expect(res.statusCode, res.body).toBe(422);
      expect(issueOf(res.body)).toMatchObject({ code: 'business-rule', expression: [path] });
    }
  });

  it('FR-LAB-002: reference range by sex and age and the L / H / N flag are filled in when the writer gave none', async () => {
    const low = await read<Observation>('Observation', await create(result(woman, 'HB', { value: 11.5, unit: 'g/dL' })));
    expect(flags(low)).toEqual(['L']);
    expect(low.referenceRange?.[0]).toMatchObject({ low: { value: 12 }, high: { value: 15.5 }, text: 'female' });
    expect(low.valueQuantity).toEqual({ value: 11.5, unit: 'g/dL', system: 'http://unitsofmeasure.org', code: 'g/dL' });
    const normalMan = await read<Observation>('Observation', await create(result(man, 'HB', { value: 14.2, unit: 'g/dL' })));
    expect(flags(normalMan)).toEqual(['N']);
    expect(normalMan.referenceRange?.[0]).toMatchObject({ low: { value: 13 }, high: { value: 17 } });
    const kid = await read<Observation>('Observation', await create(result(child, 'HB', { value: 12.5, unit: 'g/dL' })));
    expect(kid.referenceRange?.[0]?.low?.value).toBe(11);
    expect(flags(kid)).toEqual(['N']);
    const high = await read<Observation>('Observation', await create(result(man, 'GLU', { value: 130, unit: 'mg/dL' })));
    expect(flags(high)).toEqual(['H']);
    // SI units are accepted beside the customary ones, the range converted to the result's unit.
    const si = await read<Observation>('Observation', await create(result(man, 'GLU', { value: 7.2, unit: 'mmol/L' })));
    expect(flags(si)).toEqual(['H']);
    expect(si.referenceRange?.[0]).toMatchObject({ low: { value: 3.89, code: 'mmol/L' }, high: { value: 5.5, code: 'mmol/L' } });
    const gPerL = await read<Observation>('Observation', await create(result(woman, 'HB', { value: 115, unit: 'g/L' })));
    expect(flags(gPerL)).toEqual(['L']);
    expect(gPerL.referenceRange?.[0]).toMatchObject({ low: { value: 120, code: 'g/L' } });
    // The writer's own range is kept and the flag follows it.
    const own = await read<Observation>('Observation', await create(result(man, 'GLU', { value: 105, unit: 'mg/dL' }, { referenceRange: [{ low: { value: 60 }, high: { value: 110 } }] })));
    expect(own.referenceRange).toEqual([{ low: { value: 60 }, high: { value: 110 } }]);
    expect(flags(own)).toEqual(['N']);
  });

  it('FR-LAB-002: a critical value is flagged HH / LL (added when the writer flagged only H) and notifies the ordering doctor at once, before verification', async () => {
    const tech = await signInAs(t, 'LAB_TECHNICIAN', 'Practitioner/tech-critical');
    const order = await create({ resourceType: 'ServiceRequest', status: 'active', intent: 'order', priority: 'stat', code: { coding: [{ system: LAB, code: 'ELEC' }] }, subject: { reference: `Patient/${man}` }, requester: { reference: `Practitioner/${orderer}` } });
    const k = await read<Observation>(
      'Observation',
      await create(result(man, 'K', { value: 6.9, unit: 'mmol/L' }, { basedOn: [{ reference: `ServiceRequest/${order}` }], interpretation: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: 'H' }] }] }), tech.token),
    );
    expect(k.status).toBe('preliminary');
    expect(flags(k)).toEqual(['H', 'HH']);
    const na = await read<Observation>('Observation', await create(result(man, 'NA', { value: 118, unit: 'mmol/L' }), tech.token));
    expect(flags(na)).toEqual(['LL']);
    const deadline = Date.now() + 30_000;
    let notified: Resource[] = [];
    while (Date.now() < deadline) {
      const res = await t.request({ method: 'GET', url: `/fhir/Communication?recipient=Practitioner/${orderer}&_count=50` });
      notified = ((res.json() as Bundle).entry ?? []).map((e) => e.resource!).filter((c) => JSON.stringify(c).includes(`${TYPE_SYSTEM}`) && JSON.stringify(c).includes('CRITICAL_LAB_RESULT_DOCTOR'));
      if (notified.length > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(notified.length).toBeGreaterThan(0);
    expect(JSON.stringify(notified[0])).toContain(`Observation/${k.id}`);
  });
});

describe('FR-LAB-002 dual verification', () => {
  async function report(patient: string): Promise<{ report: string; results: string[] }> {
    const hb = await create(result(patient, 'HB', { value: 11.2, unit: 'g/dL' }, { effectiveDateTime: '2026-12-03T08:00:00Z' }));
    const wbc = await create(result(patient, 'WBC', { value: 6.1, unit: '10*3/uL' }, { effectiveDateTime: '2026-12-03T08:00:00Z' }));
    const id = await create<DiagnosticReport>({
      resourceType: 'DiagnosticReport',
      status: 'preliminary',
      code: { coding: [{ system: LAB, code: 'CBC', display: 'Complete blood count' }] },
      subject: { reference: `Patient/${patient}` },
      effectiveDateTime: '2026-12-03T08:00:00Z',
      result: [{ reference: `Observation/${hb}` }, { reference: `Observation/${wbc}` }],
    });
    return { report: id, results: [hb, wbc] };
  }

  it('FR-LAB-002: technician then pathologist (two different users) make the report and its results final; the same user twice is refused', async () => {
    const { report: id, results } = await report(woman);
    const tech = await signInAs(t, 'LAB_TECHNICIAN', 'Practitioner/tech-a');
    const pathologist = await signInAs(t, 'DOCTOR', 'Practitioner/path-a');
    const other = await signInAsPathologist('Practitioner/path-b');

    // Writing final directly is not a verification.
    const direct = await t.request({ method: 'PUT', url: `/fhir/DiagnosticReport/${id}`, payload: { ...(await read<DiagnosticReport>('DiagnosticReport', id)), status: 'final' }, ...auth(pathologist.token) });
    expect(direct.statusCode, direct.body).toBe(409);
    expect(issueOf(direct.body).code).toBe('business-rule');
    // Nor is forging the verification record.
    const forged = await t.request({ method: 'PUT', url: `/fhir/DiagnosticReport/${id}`, payload: { ...(await read<DiagnosticReport>('DiagnosticReport', id)), extension: [{ url: VERIFICATION, extension: [{ url: 'step', valueCode: 'technician' }, { url: 'user', valueString: 'someone' }, { url: 'time', valueDateTime: '2026-12-03T09:00:00Z' }] }] } });
    expect(forged.statusCode).toBe(409);

    // The pathologist does the first (technical) verification, then tries the second one too.
    const first = await verify('DiagnosticReport', id, pathologist.token);
    expect(first.statusCode, first.body).toBe(200);
    expect((first.json() as DiagnosticReport).status).toBe('preliminary');
    const same = await verify('DiagnosticReport', id, pathologist.token);
    expect(same.statusCode, same.body).toBe(409);
    expect(issueOf(same.body)).toMatchObject({ code: 'business-rule', diagnostics: expect.stringContaining('different user') });
    // A technician cannot make the second (pathologist's) verification.
    expect((await verify('DiagnosticReport', id, tech.token)).statusCode).toBe(403);
    // A system client cannot verify at all.
    expect((await verify('DiagnosticReport', id, t.token)).statusCode).toBe(403);

    const second = await verify('DiagnosticReport', id, other.token);
    expect(second.statusCode, second.body).toBe(200);
    const final = second.json() as DiagnosticReport;
    expect(final.status).toBe('final');
    expect(final.resultsInterpreter).toEqual([{ reference: 'Practitioner/path-b' }]);
    const steps = (final.extension ?? []).filter((e) => e.url === VERIFICATION).map((e) => [e.extension?.find((x) => x.url === 'step')?.valueCode, e.extension?.find((x) => x.url === 'verifier')?.valueReference?.reference]);
    expect(steps).toEqual([
      ['technician', 'Practitioner/path-a'],
      ['pathologist', 'Practitioner/path-b'],
    ]);
    for (const r of results) {
      const o = await read<Observation>('Observation', r);
      expect(o.status).toBe('final');
      expect((o.extension ?? []).filter((e) => e.url === VERIFICATION)).toHaveLength(2);
    }
    expect((await verify('DiagnosticReport', id, other.token)).statusCode).toBe(409);
  });

  it('FR-LAB-003: the ordering doctor is told when the report is verified (final), not at the technician\'s step', async () => {
    const doctor = await create({ resourceType: 'Practitioner', name: [{ family: 'Ngo', prefix: ['Dr.'] }] });
    const order = await create({ resourceType: 'ServiceRequest', status: 'active', intent: 'order', code: { coding: [{ system: LAB, code: 'GLU' }] }, subject: { reference: `Patient/${man}` }, requester: { reference: `Practitioner/${doctor}` } });
    const glu = await create(result(man, 'GLU', { value: 92, unit: 'mg/dL' }, { basedOn: [{ reference: `ServiceRequest/${order}` }] }));
    const id = await create<DiagnosticReport>({ resourceType: 'DiagnosticReport', status: 'preliminary', basedOn: [{ reference: `ServiceRequest/${order}` }], code: { coding: [{ system: LAB, code: 'GLU' }] }, subject: { reference: `Patient/${man}` }, result: [{ reference: `Observation/${glu}` }] });
    const ready = async () => {
      const res = await t.request({ method: 'GET', url: `/fhir/Communication?recipient=Practitioner/${doctor}&_count=50` });
      return ((res.json() as Bundle).entry ?? []).filter((e) => JSON.stringify(e.resource).includes('LAB_RESULT_READY_DOCTOR'));
    };
    const tech = await signInAs(t, 'LAB_TECHNICIAN', 'Practitioner/tech-n');
    const pathologist = await signInAsPathologist('Practitioner/path-n');
    expect((await verify('DiagnosticReport', id, tech.token)).statusCode).toBe(200);
    await new Promise((r) => setTimeout(r, 500));
    expect(await ready()).toHaveLength(0);
    expect((await verify('DiagnosticReport', id, pathologist.token)).statusCode).toBe(200);
    const deadline = Date.now() + 30_000;
    while ((await ready()).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect((await ready()).length).toBeGreaterThan(0);
  });

  it('FR-LAB-002: two accounts of one practitioner count as the same verifier', async () => {
    const { report: id } = await report(man);
    const tech = await signInAs(t, 'LAB_TECHNICIAN', 'Practitioner/dual-1');
    const sameperson = await signInAs(t, 'DOCTOR', 'Practitioner/dual-1');
    expect((await verify('DiagnosticReport', id, tech.token)).statusCode).toBe(200);
    const res = await verify('DiagnosticReport', id, sameperson.token);
    expect(res.statusCode, res.body).toBe(409);
  });

  it('FR-LAB-002: the second verification needs a pathologist (PractitionerRole lab-role|pathologist, active, in its period): any other DOCTOR gets 403', async () => {
    const { report: id } = await report(woman);
    const tech = await signInAs(t, 'LAB_TECHNICIAN', 'Practitioner/tech-p');
    expect((await verify('DiagnosticReport', id, tech.token)).statusCode).toBe(200);
    const refused = async (token: string) => {
      const res = await verify('DiagnosticReport', id, token);
      expect(res.statusCode, res.body).toBe(403);
      expect(issueOf(res.body)).toMatchObject({ code: 'forbidden', diagnostics: expect.stringContaining('pathologist') });
    };
    // A doctor without the role, one whose role is inactive or over, one with another role, one without a fhirUser.
    await refused((await signInAs(t, 'DOCTOR', 'Practitioner/gp-p')).token);
    await create({ resourceType: 'PractitionerRole', active: false, practitioner: { reference: 'Practitioner/former-p' }, code: [{ coding: [PATHOLOGIST] }] });
    await refused((await signInAs(t, 'DOCTOR', 'Practitioner/former-p')).token);
    await create({ resourceType: 'PractitionerRole', active: true, period: { start: '2020-01-01', end: '2021-12-31' }, practitioner: { reference: 'Practitioner/expired-p' }, code: [{ coding: [PATHOLOGIST] }] });
    await refused((await signInAs(t, 'DOCTOR', 'Practitioner/expired-p')).token);
    await create({ resourceType: 'PractitionerRole', active: true, practitioner: { reference: 'Practitioner/cardio-p' }, code: [{ coding: [{ system: 'https://fhir.hospital.example.org/CodeSystem/user-role', code: 'DOCTOR' }] }] });
    await refused((await signInAs(t, 'DOCTOR', 'Practitioner/cardio-p')).token);
    await refused((await signInAs(t, 'DOCTOR')).token);
    expect((await read<DiagnosticReport>('DiagnosticReport', id)).status).toBe('preliminary');
    // A pathologist role held by the technician's practitioner does not make one person two verifiers.
    await create({ resourceType: 'PractitionerRole', active: true, practitioner: { reference: 'Practitioner/tech-p' }, code: [{ coding: [PATHOLOGIST] }] });
    const sameperson = await verify('DiagnosticReport', id, (await signInAs(t, 'DOCTOR', 'Practitioner/tech-p')).token);
    expect(sameperson.statusCode, sameperson.body).toBe(409);

    const pathologist = await signInAsPathologist('Practitioner/path-p');
    const done = await verify('DiagnosticReport', id, pathologist.token);
    expect(done.statusCode, done.body).toBe(200);
    expect((done.json() as DiagnosticReport).status).toBe('final');
  });

  it('FR-LAB-002: a value changed after the technician\'s verification is verified again from the start; records are kept when a writer leaves them out', async () => {
    const tech = await signInAs(t, 'LAB_TECHNICIAN', 'Practitioner/tech-r');
    const pathologist = await signInAsPathologist('Practitioner/path-r');
    const id = await create(result(man, 'ALT', { value: 40, unit: 'U/L' }));
    expect((await verify('Observation', id, tech.token)).statusCode).toBe(200);
    const verified = await read<Observation>('Observation', id);
    const { extension: _records, ...bare } = verified;
    const note = await t.request({ method: 'PUT', url: `/fhir/Observation/${id}`, payload: { ...bare, note: [{ text: 'lipaemic sample' }] }, ...auth(tech.token) });
    expect(note.statusCode, note.body).toBe(200);
    expect((note.json() as Observation).extension?.filter((e) => e.url === VERIFICATION)).toHaveLength(1);
    const changed = await t.request({ method: 'PUT', url: `/fhir/Observation/${id}`, payload: { ...(note.json() as Observation), valueQuantity: { value: 80, unit: 'U/L' }, interpretation: undefined }, ...auth(tech.token) });
    expect(changed.statusCode, changed.body).toBe(200);
    expect((changed.json() as Observation).extension?.filter((e) => e.url === VERIFICATION) ?? []).toHaveLength(0);
    expect(flags(changed.json() as Observation)).toEqual(['H']);
    // The pathologist's verification is now the first one: not final yet.
    const again = await verify('Observation', id, pathologist.token);
    expect((again.json() as Observation).status).toBe('preliminary');
  });

  it('FR-LAB-002: a verified result is immutable: corrections are corrected versions with a reason by a signed-in user; deletion refused', async () => {
    const { report: id, results } = await report(woman);
    const tech = await signInAs(t, 'LAB_TECHNICIAN', 'Practitioner/tech-c');
    const pathologist = await signInAsPathologist('Practitioner/path-c');
    expect((await verify('DiagnosticReport', id, tech.token)).statusCode).toBe(200);
    expect((await verify('DiagnosticReport', id, pathologist.token)).statusCode).toBe(200);
    const hb = await read<Observation>('Observation', results[0]!);

    const edited = await t.request({ method: 'PUT', url: `/fhir/Observation/${hb.id}`, payload: { ...hb, valueQuantity: { ...hb.valueQuantity, value: 12.4 } }, ...auth(tech.token) });
    expect(edited.statusCode, edited.body).toBe(409);
    const noReason = await t.request({ method: 'PUT', url: `/fhir/Observation/${hb.id}`, payload: { ...hb, status: 'corrected', valueQuantity: { ...hb.valueQuantity, value: 12.4 } }, ...auth(tech.token) });
    expect(noReason.statusCode, noReason.body).toBe(422);
    const byClient = await t.request({ method: 'PUT', url: `/fhir/Observation/${hb.id}`, payload: { ...hb, status: 'corrected', extension: [...(hb.extension ?? []), { url: REASON, valueString: 'analyzer recalibrated' }] } });
    expect(byClient.statusCode).toBe(409);
    const corrected = await t.request({
      method: 'PUT',
      url: `/fhir/Observation/${hb.id}`,
      payload: { ...hb, status: 'corrected', valueQuantity: { ...hb.valueQuantity, value: 12.4 }, interpretation: undefined, extension: [...(hb.extension ?? []), { url: REASON, valueString: 'transcription error' }] },
      ...auth(tech.token),
    });
    expect(corrected.statusCode, corrected.body).toBe(200);
    const now = corrected.json() as Observation;
    expect(now.status).toBe('corrected');
    expect(flags(now)).toEqual(['N']);
    expect(Number(now.meta?.versionId)).toBe(Number(hb.meta?.versionId) + 1);
    // The verified version stays in the history as it was.
    const old = await t.request({ method: 'GET', url: `/fhir/Observation/${hb.id}/_history/${hb.meta?.versionId}` });
    expect((old.json() as Observation).valueQuantity?.value).toBe(11.2);

    const deleted = await t.request({ method: 'DELETE', url: `/fhir/DiagnosticReport/${id}` });
    expect(deleted.statusCode, deleted.body).toBe(409);
    expect((await t.request({ method: 'DELETE', url: `/fhir/Observation/${hb.id}` })).statusCode).toBe(409);
  });
});

describe('FR-LAB-002 results written by analyzers (system clients, HL7 v2)', () => {
  it('FR-LAB-002: a system client\'s "final" result is stored preliminary and still needs the two verifications', async () => {
    const id = await create(result(man, 'CREA', { value: 1.1, unit: 'mg/dL' }, { status: 'final' }));
    const o = await read<Observation>('Observation', id);
    expect(o.status).toBe('preliminary');
    expect(flags(o)).toEqual(['N']);
    const tech = await signInAs(t, 'LAB_TECHNICIAN', 'Practitioner/tech-d');
    const pathologist = await signInAsPathologist('Practitioner/path-d');
    expect((await verify('Observation', id, tech.token)).statusCode).toBe(200);
    const done = await verify('Observation', id, pathologist.token);
    expect((done.json() as Observation).status).toBe('final');
  });

  it('FR-LAB-002: an HL7 v2 ORU^R01 with catalogue codes (HOSPLAB) arrives preliminary, validated and flagged', async () => {
    const message = [
      'MSH|^~\\&|ANALYZER|LAB|HIS|HOSP|20261204090000||ORU^R01|LAB-V2-1|P|2.5',
      'PID|1||V2-777^^^HOSP^MR||Vo^Thi||19800501|F',
      `OBR|1|PL-777|FL-777|ELEC^Electrolytes^HOSPLAB|||20261204083000${'|'.repeat(15)}20261204090000|||F`,
      'OBX|1|NM|K^Potassium^HOSPLAB||7.1|mmol/L|||||F|||20261204083000',
      'OBX|2|NM|NA^Sodium^HOSPLAB||140|mmol/L|||||F|||20261204083000',
    ].join('\r');
    const res = await t.request({ method: 'POST', url: '/hl7v2', headers: { 'content-type': 'x-application/hl7-v2+er7' }, payload: message });
    expect(res.statusCode).toBe(200);
    expect(ackCode(res.body), res.body).toBe('AA');
    const search = await t.request({ method: 'GET', url: `/fhir/Observation?code=${LAB}|K&_count=50` });
    const k = ((search.json() as Bundle).entry ?? []).map((e) => e.resource as Observation).find((o) => o.valueQuantity?.value === 7.1)!;
    expect(k.status).toBe('preliminary');
    expect(flags(k)).toContain('HH');
    expect(k.referenceRange?.[0]).toMatchObject({ low: { value: 3.5 }, high: { value: 5.1 } });
    const reports = await t.request({ method: 'GET', url: `/fhir/DiagnosticReport?code=${LAB}|ELEC` });
    const dr = ((reports.json() as Bundle).entry ?? [])[0]!.resource as DiagnosticReport;
    expect(dr.status).toBe('preliminary');
    // A wrong unit from the analyzer is refused (AE), nothing stored.
    const bad = message.replace('LAB-V2-1', 'LAB-V2-2').replace('7.1|mmol/L', '7.1|mg/dL');
    const refused = await t.request({ method: 'POST', url: '/hl7v2', headers: { 'content-type': 'x-application/hl7-v2+er7' }, payload: bad });
    expect(ackCode(refused.body)).not.toBe('AA');
  });
});

describe('FR-LAB-003 report PDF', () => {
  it('FR-LAB-003: the PDF carries the hospital name, patient, results with flags and ranges, previous results and the verifications', async () => {
    const patient = await create<Patient>({ resourceType: 'Patient', name: [{ family: 'Dang', given: ['Hoa'] }], gender: 'female', birthDate: '1990-02-02' });
    await create(result(patient, 'HB', { value: 12.9, unit: 'g/dL' }, { effectiveDateTime: '2026-10-01T08:00:00Z' }));
    await create(result(patient, 'HB', { value: 10.7, unit: 'g/dL' }, { effectiveDateTime: '2026-11-01T08:00:00Z' }));
    const hb = await create(result(patient, 'HB', { value: 6.5, unit: 'g/dL' }, { effectiveDateTime: '2026-12-03T08:00:00Z' }));
    const id = await create<DiagnosticReport>({ resourceType: 'DiagnosticReport', status: 'preliminary', code: { coding: [{ system: LAB, code: 'CBC', display: 'Complete blood count' }], text: 'Complete blood count' }, subject: { reference: `Patient/${patient}` }, effectiveDateTime: '2026-12-03T08:00:00Z', result: [{ reference: `Observation/${hb}` }] });
    const tech = await signInAs(t, 'LAB_TECHNICIAN', 'Practitioner/tech-e');
    const pathId = await create({ resourceType: 'Practitioner', name: [{ family: 'Vu', given: ['Minh'], prefix: ['Dr.'] }] });
    const pathologist = await signInAsPathologist(`Practitioner/${pathId}`);
    await verify('DiagnosticReport', id, tech.token);
    await verify('DiagnosticReport', id, pathologist.token);

    const res = await t.request({ method: 'GET', url: `/fhir/DiagnosticReport/${id}/$pdf?compress=false`, ...auth(pathologist.token) });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['content-type']).toBe('application/pdf');
    expect(res.rawPayload.subarray(0, 5).toString()).toBe('%PDF-');
    const text = pdfText(res.rawPayload);
    expect(text).toContain('Bach Mai Hospital');
    expect(text).toContain('Complete blood count');
    expect(text).toContain('Hoa Dang');
    expect(text).toContain('6.5 g/dL');
    expect(text).toContain('LL');
    expect(text).toContain('12 - 15.5 g/dL');
    expect(text).toContain('2026-11-01: 10.7 g/dL L');
    expect(text).toContain('2026-10-01: 12.9 g/dL');
    expect(text).toContain('Pathologist: Dr. Minh Vu');
    expect(text).toContain('Technician: Practitioner/tech-e');
    const compressed = await t.request({ method: 'GET', url: `/fhir/DiagnosticReport/${id}/$pdf`, ...auth(pathologist.token) });
    expect(compressed.statusCode).toBe(200);
    expect(pdfText(compressed.rawPayload)).not.toContain('Bach Mai Hospital');
  });
});
