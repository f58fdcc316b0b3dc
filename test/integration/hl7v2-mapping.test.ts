import type { Appointment, Bundle, ChargeItem, DiagnosticReport, DocumentReference, Encounter, Immunization, MedicationRequest, Observation, Patient, Provenance, Resource, ServiceRequest, Specimen } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { ackCode, sample } from './hl7v2-helpers.js';

const SID = 'urn:x-hl7v2:';

describe('HL7 v2 → FHIR mapping (conformance/hl7v2 tables), field by field', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app?.close();
  });

  async function post(message: string): Promise<{ code: string; ack: string; messageId: string }> {
    const res = await app.request({ method: 'POST', url: '/hl7v2', headers: { 'content-type': 'x-application/hl7-v2+er7' }, payload: message });
    expect(res.statusCode).toBe(200);
    return { code: ackCode(res.body), ack: res.body, messageId: String(res.headers['x-hl7-message-id']) };
  }
  async function search<T extends Resource>(query: string): Promise<T[]> {
    const res = await app.request({ method: 'GET', url: `/fhir/${query}` });
    expect(res.statusCode).toBe(200);
    return ((res.json() as Bundle).entry ?? []).map((e) => e.resource as T);
  }
  const one = async <T extends Resource>(query: string): Promise<T> => {
    const list = await search<T>(query);
    expect(list, query).toHaveLength(1);
    return list[0];
  };

  test('ORU^R01 (SomeSystem v2.5 CBC): Patient, two DiagnosticReports, ten Observations with UCUM units, Specimen', async () => {
    expect((await post(sample('ms-LAB-ORU-2.hl7'))).code).toBe('AA');
    const patient = await one<Patient>(`Patient?identifier=${SID}assigner:1|10006579`);
    expect(patient.name?.[0]).toMatchObject({ family: 'DUCK', given: ['DONALD', 'D'] });
    expect(patient.gender).toBe('male');
    expect(patient.birthDate).toBe('1924-10-10');
    const report = await one<DiagnosticReport>('DiagnosticReport?code=http://loinc.org|26464-8');
    // This sender puts the result status one field late (OBR-26); OBR-25 is empty.
    expect(report.status).toBe('unknown');
    expect(report.identifier?.[0]).toEqual({ system: `${SID}filler-order`, value: '890775544' });
    expect(report.subject?.reference).toBe(`Patient/${patient.id}`);
    expect(report.result).toHaveLength(5);
    expect(report.specimen).toHaveLength(1);
    const baso = await one<Observation>('Observation?code=http://loinc.org|30180-4');
    expect(baso.valueQuantity).toEqual({ value: 0, unit: '%', system: 'http://unitsofmeasure.org', code: '%' });
    expect(baso.status).toBe('final');
    expect(baso.interpretation?.[0].coding?.[0]).toEqual({ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: 'N' });
    expect(baso.effectiveDateTime).toBe('2014-10-06T08:30:00+07:00');
    expect(report.result?.map((r) => r.reference)).toContain(`Observation/${baso.id}`);
    const hgb = await one<Observation>('Observation?code=http://loinc.org|20509-6');
    expect(hgb.valueQuantity).toEqual({ value: 13.4, unit: 'g/l-1', system: 'http://unitsofmeasure.org', code: 'g/L' });
    const wbc = await one<Observation>('Observation?code=http://loinc.org|11156-7');
    expect(wbc.valueQuantity?.code).toBe('10*9/L');
    const specimen = await one<Specimen>(`Specimen?identifier=SpecimenID`);
    expect(specimen.type?.coding?.[0].code).toBe('BLD');
    expect(specimen.collection?.collectedDateTime).toBe('2014-10-06T05:35:00+07:00');
    expect((await search<DiagnosticReport>(`DiagnosticReport?subject=Patient/${patient.id}`)).length).toBe(2);
    expect((await search<Observation>(`Observation?subject=Patient/${patient.id}&_count=100`)).length).toBe(10);
  });

  test('ORU^R01 (NIST v2.5.1): CWE values, NM with a UCUM unit, reference range text and bound, OBX-8 flags', async () => {
    expect((await post(sample('lfh-Hl7ORUMessageTest-05.hl7'))).code).toBe('AA');
    const hav = await one<Observation>('Observation?code=http://loinc.org|22314-9');
    expect(hav.valueCodeableConcept?.coding?.[0]).toEqual({ system: 'http://snomed.info/sct', code: '260385009', display: 'Negative (qualifier value)' });
    expect(hav.referenceRange?.[0].text).toBe('Negative');
    expect(hav.effectiveDateTime).toBe('2015-09-25');
    const hbc = await one<Observation>('Observation?code=http://loinc.org|22316-4');
    expect(hbc.valueQuantity).toEqual({ value: 0.7, unit: 'international unit per milliliter', system: 'http://unitsofmeasure.org', code: '[IU]/mL' });
    expect(hbc.referenceRange?.[0]).toMatchObject({ high: { value: 0.5 }, text: '<0.50 IU/mL' });
    expect(hbc.interpretation?.[0].coding?.[0].code).toBe('H');
    // The assigning authority's name has spaces: percent-encoded in the system URI.
    const report = await one<DiagnosticReport>(`DiagnosticReport?identifier=${encodeURIComponent(`${SID}assigner:NIST%20Lab%20Filler|R-511`)}`);
    expect(report.code.coding?.[0]).toEqual({ code: '1000', display: 'Hepatitis A B C Panel' });
    expect(report.effectiveDateTime).toBe('2012-06-28T07:01:00Z');
  });

  test('ORU^R01: SN values, ED PDF as presentedForm, basedOn the ServiceRequest of the same placer order (ORM^O01 first)', async () => {
    const orm = [
      'MSH|^~\\&|CPOE|HOSP|LAB|HOSP|20240301080000+0000||ORM^O01^ORM_O01|ORM-SN-1|P|2.5.1',
      'PID|1||MRN-SN^^^HOSP^MR||Roe^Richard||19600202|M',
      'ORC|NW|PLC-77^CPOE|||||^^^^^S||20240301080000+0000|||1234^Welby^Marcus',
      'OBR|1|PLC-77^CPOE||2951-2^Sodium^LN',
    ].join('\r');
    expect((await post(orm)).code).toBe('AA');
    const order = await one<ServiceRequest>(`ServiceRequest?identifier=${SID}assigner:CPOE|PLC-77`);
    expect(order).toMatchObject({ status: 'active', intent: 'order', priority: 'stat', authoredOn: '2024-03-01T08:00:00+00:00', requester: { display: 'Marcus Welby' } });
    const pdf = Buffer.from('%PDF-1.4 test report').toString('base64');
    const oru = [
      'MSH|^~\\&|LIS|HOSP|EHR|HOSP|20240301100000+0000||ORU^R01^ORU_R01|ORU-SN-1|P|2.5.1',
      'PID|1||MRN-SN^^^HOSP^MR||Roe^Richard||19600202|M',
      'OBR|1|PLC-77^CPOE|FIL-77^LIS|2951-2^Sodium^LN|||20240301090000+0000|||||||||||||||20240301100000+0000|||F',
      'OBX|1|SN|2951-2^Sodium^LN||>^150|mmol/L^^UCUM|135-145|HH|||F',
      'OBX|2|SN|2345-7^Glucose^LN||^5^-^7|mmol/L|||||F',
      `OBX|3|ED|PDF^Report^L||^AP^PDF^Base64^${pdf}||||||F`,
    ].join('\r');
    expect((await post(oru)).code).toBe('AA');
    const report = await one<DiagnosticReport>(`DiagnosticReport?identifier=${SID}assigner:LIS|FIL-77`);
    expect(report.basedOn?.[0].reference).toBe(`ServiceRequest/${order.id}`);
    expect(report.presentedForm).toEqual([{ contentType: 'application/pdf', data: pdf }]);
    expect(report.issued).toBe('2024-03-01T10:00:00+00:00');
    expect(report.result).toHaveLength(2);
    const sodium = await one<Observation>('Observation?code=http://loinc.org|2951-2');
    expect(sodium.valueQuantity).toEqual({ value: 150, comparator: '>', unit: 'mmol/L', system: 'http://unitsofmeasure.org', code: 'mmol/L' });
    expect(sodium.interpretation?.[0].coding?.[0].code).toBe('HH');
    expect(sodium.basedOn?.[0].reference).toBe(`ServiceRequest/${order.id}`);
    const glucose = await one<Observation>('Observation?code=http://loinc.org|2345-7');
    expect(glucose.valueRange).toEqual({
      low: { value: 5, unit: 'mmol/L', system: 'http://unitsofmeasure.org', code: 'mmol/L' },
      high: { value: 7, unit: 'mmol/L', system: 'http://unitsofmeasure.org', code: 'mmol/L' },
    });
  });

  test('a corrected result (OBX-11 = C) updates the stored Observation as a new version, not a second one', async () => {
    const original = sample('lfh-Hl7ORUMessageTest-05.hl7');
    const before = await one<Observation>('Observation?code=http://loinc.org|22316-4');
    const corrected = original
      .replace('|NIST-LOI_5.0_1.1-NG|', '|NIST-LOI-CORRECTION|')
      .replace('||0.70|[IU]/mL', '||0.40|[IU]/mL')
      .replace(/(OBX\|3\|[^\r]*?)\|H\|\|\|F\|/, '$1|N|||C|');
    expect((await post(corrected)).code).toBe('AA');
    const after = await one<Observation>('Observation?code=http://loinc.org|22316-4');
    expect(after.id).toBe(before.id);
    expect(after.meta?.versionId).toBe(String(Number(before.meta?.versionId) + 1));
    expect(after.status).toBe('corrected');
    expect(after.valueQuantity?.value).toBe(0.4);
    // The unchanged observations of the same report kept their version.
    const hav = await one<Observation>('Observation?code=http://loinc.org|22314-9');
    expect(hav.meta?.versionId).toBe('1');
  });

  test('ADT^A01 (HAPI v2.4) then A03 and A11: one Patient, one Encounter admitted, discharged, cancelled', async () => {
    const a01 = sample('hapi-ADT_A01.hl7');
    expect((await post(a01)).code).toBe('AA');
    const patient = await one<Patient>(`Patient?identifier=${SID}patient-id|2216506`);
    expect(patient).toMatchObject({ gender: 'male', birthDate: '1972-02-27', name: [{ family: 'Duck', given: ['Donald'], prefix: ['MR.'], suffix: ['MR.'] }] });
    expect(patient.address?.[0]).toMatchObject({ line: ['123 Foo ST.'], city: 'TORONTO', state: 'ON', postalCode: 'M6G 3E6', country: 'CA', use: 'home' });
    expect(patient.telecom?.[0]).toEqual({ system: 'phone', value: '(416)111-1111', use: 'home' });
    const encounter = await one<Encounter>(`Encounter?identifier=${SID}visit-number|211004554`);
    expect(encounter).toMatchObject({
      status: 'in-progress',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-NullFlavor', code: 'UNK' },
      subject: { reference: `Patient/${patient.id}` },
      period: { start: '2001-05-23T19:27:00Z' },
      location: [{ location: { display: 'ZFAST TRACK, room WAITING, bed 13' }, status: 'active' }],
    });
    const a03 = a01.replace('|ADT^A01^ADT_A01|22139243|', '|ADT^A03^ADT_A03|22139244|').replace(/(PV1(\|[^|\r]*){44})\|/, '$1|200105241200|');
    expect((await post(a03)).code).toBe('AA');
    const discharged = await one<Encounter>(`Encounter?identifier=${SID}visit-number|211004554`);
    expect(discharged.id).toBe(encounter.id);
    expect(discharged.status).toBe('finished');
    expect(discharged.period).toEqual({ start: '2001-05-23T19:27:00Z', end: '2001-05-24T12:00:00Z' });
    const a11 = a01.replace('|ADT^A01^ADT_A01|22139243|', '|ADT^A11^ADT_A09|22139245|');
    expect((await post(a11)).code).toBe('AA');
    expect((await one<Encounter>(`Encounter?identifier=${SID}visit-number|211004554`)).status).toBe('cancelled');
    expect((await search<Patient>(`Patient?identifier=${SID}patient-id|2216506`)).length).toBe(1);
  });

  test('ADT^A01 (Microsoft v2.8): PID-3 repetitions, names with FN subcomponents, encounter class and visit number', async () => {
    expect((await post(sample('ms-ADT-A01-01.hl7'))).code).toBe('AA');
    const patient = await one<Patient>(`Patient?identifier=${SID}assigner:test1|PATID1234`);
    expect(patient.identifier?.map((i) => i.value)).toEqual(['PATID1234', '123456789']);
    expect(patient.name?.[0]).toMatchObject({ family: 'EVERYMAN', given: ['ADAM', 'A'], prefix: ['Dr.'], suffix: ['III', 'MD'], use: 'usual' });
    expect(patient.gender).toBe('male');
    expect(patient.birthDate).toBe('1988-08-18');
    const encounter = await one<Encounter>(`Encounter?identifier=${SID}assigner:AccMng|40007716`);
    expect(encounter.class).toEqual({ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PRENC' });
    expect(encounter.period?.start).toBe('2015-02-08T11:34:19+01:10');
  });

  test('ADT^A40 merge: the prior patient becomes inactive and replaced-by the surviving one, which replaces it', async () => {
    const a04 = (id: string, mrn: string) =>
      [`MSH|^~\\&|REG|HOSP|FHIR|HOSP|20240101120000||ADT^A04^ADT_A01|${id}|P|2.5.1`, `PID|1||${mrn}^^^HOSP^MR||Merge^Test||19900101|F`, `PV1|1|O|CLINIC`].join('\r');
    expect((await post(a04('MRG-1', 'MRN-OLD'))).code).toBe('AA');
    expect((await post(a04('MRG-2', 'MRN-NEW'))).code).toBe('AA');
    const a40 = ['MSH|^~\\&|REG|HOSP|FHIR|HOSP|20240102120000||ADT^A40^ADT_A39|MRG-3|P|2.5.1', 'EVN|A40|20240102120000', 'PID|1||MRN-NEW^^^HOSP^MR||Merge^Test||19900101|F', 'MRG|MRN-OLD^^^HOSP^MR'].join('\r');
    expect((await post(a40)).code).toBe('AA');
    const prior = await one<Patient>(`Patient?identifier=${SID}assigner:HOSP|MRN-OLD`);
    const surviving = await one<Patient>(`Patient?identifier=${SID}assigner:HOSP|MRN-NEW`);
    expect(prior.active).toBe(false);
    expect(prior.link).toEqual([{ other: { reference: `Patient/${surviving.id}` }, type: 'replaced-by' }]);
    expect(surviving.link).toEqual([{ other: { reference: `Patient/${prior.id}` }, type: 'replaces' }]);
    // An ADT update of the surviving patient keeps the link.
    expect((await post(a04('MRG-4', 'MRN-NEW').replace('Merge^Test', 'Merge^Tested'))).code).toBe('AA');
    const updated = await one<Patient>(`Patient?identifier=${SID}assigner:HOSP|MRN-NEW`);
    expect(updated.name?.[0].given).toEqual(['Tested']);
    expect(updated.link).toEqual(surviving.link);
  });

  test('OML^O21 (HAPI) → ServiceRequest with placer and filler identifiers', async () => {
    expect((await post(sample('hapi-example_oml_o21.hl7'))).code).toBe('AA');
    const requests = await search<ServiceRequest>('ServiceRequest?_count=100');
    expect(requests.some((r) => r.identifier?.some((i) => i.type?.coding?.[0].code === 'PLAC'))).toBe(true);
  });

  test('VXU^V04 (Microsoft v2.5.1) → Immunization: vaccine, date, dose, lot, expiry, route, site', async () => {
    expect((await post(sample('ms-VXU-V04-01.hl7'))).code).toBe('AA');
    const immunization = await one<Immunization>('Immunization?identifier=urn:oid:2.16.840.1.114222.4.3.3.5.1.2|13696');
    expect(immunization).toMatchObject({
      status: 'completed',
      vaccineCode: { coding: [{ system: 'http://hl7.org/fhir/sid/ndc', code: '49281021588', display: 'TENIVAC' }] },
      occurrenceDateTime: '2021-08-18',
      primarySource: true,
      lotNumber: '315841',
      expirationDate: '2021-12-16',
      doseQuantity: { value: 0.5, unit: 'mL', system: 'http://unitsofmeasure.org', code: 'mL' },
      route: { text: 'Intramuscular' },
      site: { text: 'Right Deltoid' },
    });
  });

  test('RDE^O11 (LinuxForHealth v2.6) → MedicationRequest: medication, dose, frequency, dispense, refills', async () => {
    expect((await post(sample('lfh-Hl7MedicationRequestFHIRConversionTest-01.hl7'))).code).toBe('AA');
    const request = await one<MedicationRequest>(`MedicationRequest?identifier=${SID}assigner:OE|F800006`);
    expect(request).toMatchObject({
      status: 'active',
      intent: 'order',
      medicationCodeableConcept: { coding: [{ system: 'http://hl7.org/fhir/sid/ndc', code: '62756-017' }] },
      authoredOn: '2018-06-22T23:00:00Z',
      dosageInstruction: [{ text: 'BID', doseAndRate: [{ doseQuantity: { value: 100, code: 'mg' } }] }],
      dispenseRequest: { numberOfRepeatsAllowed: 5, quantity: { value: 10 } },
    });
  });

  test('SIU^S12 then S15 (Microsoft v2.5.1) → Appointment booked, then cancelled', async () => {
    const s12 = sample('ms-SIU-S12-01.hl7');
    expect((await post(s12)).code).toBe('AA');
    const booked = await one<Appointment>(`Appointment?identifier=${SID}filler-appointment|36996`);
    expect(booked).toMatchObject({ status: 'booked', start: '2020-10-01T11:26:00+02:15', end: '2020-10-09T11:26:00+02:15' });
    expect(booked.serviceType?.[0].coding?.[0]).toMatchObject({ system: 'http://snomed.info/sct', code: '76164006' });
    expect(booked.participant[0].actor?.reference).toMatch(/^Patient\//);
    const s15 = s12.replace(/\|SIU\^S12(\^SIU_S12)?\|([^|]*)\|/, '|SIU^S15^SIU_S12|$2-CANCEL|');
    expect((await post(s15)).code).toBe('AA');
    const cancelled = await one<Appointment>(`Appointment?identifier=${SID}filler-appointment|36996`);
    expect(cancelled.id).toBe(booked.id);
    expect(cancelled.status).toBe('cancelled');
  });

  test('MDM^T02 (Microsoft v2.5.1) → DocumentReference with the text of its OBX lines', async () => {
    expect((await post(sample('ms-MDM-T02-02.hl7'))).code).toBe('AA');
    const document = await one<DocumentReference>(`DocumentReference?identifier=${SID}document|1.2.840.317.5947431.51.20080131160038`);
    expect(document).toMatchObject({ status: 'current', docStatus: 'final', date: '2008-01-31T15:55:00+02:15', author: [{ display: 'IvanDoctorovich' }] });
    const text = Buffer.from(document.content[0].attachment.data ?? '', 'base64').toString('utf8');
    expect(text.split('\n')[0]).toBe('Toilet cylinder crackers model step-mother visor opening communication');
  });

  test('DFT^P03 (Microsoft v2.5.1) → a billable ChargeItem per FT1', async () => {
    expect((await post(sample('ms-DFT-P03-02.hl7'))).code).toBe('AA');
    const charge = await one<ChargeItem>(`ChargeItem?identifier=${SID}transaction:IMMAPP|12345`);
    expect(charge).toMatchObject({
      status: 'billable',
      code: { coding: [{ system: 'http://www.ama-assn.org/go/cpt', code: '71045' }] },
      occurrenceDateTime: '2019-11-22',
      quantity: { value: 2 },
      priceOverride: { value: 100, currency: 'USD' },
    });
    expect((await search<ChargeItem>(`ChargeItem?subject=${charge.subject.reference}`)).length).toBe(2);
  });

  test('a critical result (OBX-8 HH, LL or AA) raises one event after commit, naming patient and ordering provider', async () => {
    const events: Array<{ observation: string; patient: string; orderingProvider?: string; flags: string[]; messageId: string }> = [];
    app.server.hl7v2.ingest.onCriticalResult((event) => {
      events.push(event);
    });
    const obr = ['OBR', '1', 'PLC-C^CPOE', 'FIL-C^LIS', '2823-3^Potassium^LN', '', '', '20240301090000+0000', ...Array(8).fill(''), '1234^Welby^Marcus', ...Array(8).fill(''), 'F'];
    const oru = [
      'MSH|^~\\&|LIS|HOSP|EHR|HOSP|20240301100000+0000||ORU^R01^ORU_R01|ORU-CRIT-1|P|2.5.1',
      'PID|1||MRN-CRIT^^^HOSP^MR||Crit^Ical||19500101|F',
      obr.join('|'),
      'OBX|1|NM|2823-3^Potassium^LN||6.9|mmol/L|3.5-5.1|HH|||F',
      'OBX|2|NM|2951-2^Sodium^LN||140|mmol/L|135-145|N|||F',
    ].join('\r');
    const { code, messageId } = await post(oru);
    expect(code).toBe('AA');
    expect(events).toHaveLength(1);
    const potassium = await one<Observation>(`Observation?code=http://loinc.org|2823-3`);
    expect(events[0]).toMatchObject({ observation: `Observation/${potassium.id}/_history/1`, patient: potassium.subject?.reference, orderingProvider: 'Marcus Welby', flags: ['HH'], messageId });
    // The same message again: acknowledged, no second alert.
    expect((await post(oru)).code).toBe('AA');
    expect(events).toHaveLength(1);
  });

  test('a value beyond a limit of conformance/hl7v2/critical-limits.json raises the same event, flagged or not', async () => {
    const events: Array<{ observation: string; flags: string[]; criticalLimit?: { low?: number; high?: number; unit: string } }> = [];
    app.server.hl7v2.ingest.onCriticalResult((event) => {
      events.push(event);
    });
    const obr = ['OBR', '1', 'PLC-L^CPOE', 'FIL-L^LIS', '24320-4^Basic metabolic panel^LN', '', '', '20240302090000+0000', ...Array(8).fill(''), '1234^Welby^Marcus', ...Array(8).fill(''), 'F'];
    const oru = [
      'MSH|^~\\&|LIS|HOSP|EHR|HOSP|20240302100000+0000||ORU^R01^ORU_R01|ORU-LIMIT-1|P|2.5.1',
      'PID|1||MRN-LIMIT^^^HOSP^MR||Lim^It||19500101|F',
      obr.join('|'),
      // Below the catalog's 2.8 mmol/L and not flagged by the analyzer: LL from the catalog.
      'OBX|1|NM|2823-3^Potassium^LN||2.1|mmol/L|3.5-5.1||||F',
      // Flagged H only; above the catalog's 160 mmol/L: HH.
      'OBX|2|NM|2951-2^Sodium^LN||171|mmol/L|135-145|H|||F',
      // 45 g/L = 4.5 g/dL, below the catalog's 6 g/dL (units converted).
      'OBX|3|NM|718-7^Hemoglobin^LN||45|g/L|120-160|L|||F',
      // Within limits; and a unit the catalog's unit cannot be converted to (mmol/L against mg/dL): no event.
      'OBX|4|NM|2345-7^Glucose^LN||5.1|mmol/L|3.9-5.6||||F',
      'OBX|5|NM|17861-6^Calcium^LN||9.1|mg/dL|8.5-10.5||||F',
    ].join('\r');
    expect((await post(oru)).code).toBe('AA');
    const potassium = await one<Observation>(`Observation?code=http://loinc.org|2823-3&subject:Patient.identifier=MRN-LIMIT`);
    const sodium = await one<Observation>(`Observation?code=http://loinc.org|2951-2&subject:Patient.identifier=MRN-LIMIT`);
    const hemoglobin = await one<Observation>(`Observation?code=http://loinc.org|718-7&subject:Patient.identifier=MRN-LIMIT`);
    expect(events).toHaveLength(3);
    expect(events).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ observation: `Observation/${potassium.id}/_history/1`, flags: ['LL'], criticalLimit: { low: 2.8, high: 6.2, unit: 'mmol/L' } }),
        expect.objectContaining({ observation: `Observation/${sodium.id}/_history/1`, flags: ['HH'], criticalLimit: { low: 120, high: 160, unit: 'mmol/L' } }),
        expect.objectContaining({ observation: `Observation/${hemoglobin.id}/_history/1`, flags: ['LL'], criticalLimit: { low: 6, high: 20, unit: 'g/dL' } }),
      ]),
    );
    // The Observation keeps what the message said: no interpretation is invented from the catalog.
    expect(potassium.interpretation).toBeUndefined();
    // A retransmission raises nothing again.
    expect((await post(oru)).code).toBe('AA');
    expect(events).toHaveLength(3);
  });

  test('Provenance links what a message wrote to the stored raw message', async () => {
    const { messageId } = await post(sample('ms-ORU-R01-01.hl7'));
    const provenance = await one<Provenance>(`Provenance?_id=hl7v2-${messageId}`);
    expect(provenance.entity?.[0].what.identifier).toEqual({ system: `${SID}message`, value: messageId });
    const targets = provenance.target.map((t) => t.reference?.split('/')[0]);
    expect(targets).toEqual(expect.arrayContaining(['DiagnosticReport', 'Observation', 'Patient', 'Specimen']));
    const stored = await app.request({ method: 'GET', url: `/hl7v2/messages/${messageId}` });
    expect(stored.json()).toMatchObject({ status: 'processed', messageType: 'ORU^R01', raw: sample('ms-ORU-R01-01.hl7') });
  });
});
