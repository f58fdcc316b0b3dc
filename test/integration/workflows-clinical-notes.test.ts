import type { Bundle, CapabilityStatement, Composition, Encounter, FhirResource, OperationOutcome, Parameters, Provenance } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { signInAs } from './smart-helpers.js';

/**
 * Signed encounters and clinical notes (seed 004 FR-EMR-001 / FR-EMR-002, issue 13 §1;
 * src/workflows/clinical-records.ts, clinical-operations.ts, clinical-drafts.ts).
 */

let t: TestApp;
let patient: string;
let doctor: string;
let otherDoctor: string;
let doctorToken: string;

const AUTHOR_SIG = { system: 'urn:iso-astm:E1762-95:2013', code: '1.2.840.10065.1.12.1.1' };

async function send<T>(method: 'POST' | 'PUT' | 'GET' | 'DELETE', url: string, payload?: unknown, token?: string, headers: Record<string, string> = {}): Promise<{ status: number; body: T; etag?: string }> {
  const res = await t.request({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}), headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers } });
  return { status: res.statusCode, body: (res.body ? res.json() : undefined) as T, etag: res.headers.etag as string | undefined };
}

async function created<T>(resource: FhirResource | { resourceType: string; [key: string]: unknown }, token?: string): Promise<T> {
  const res = await send<T>('POST', `/fhir/${resource.resourceType}`, resource, token);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body;
}

function visit(extra: Partial<Encounter> = {}): Encounter {
  return {
    resourceType: 'Encounter',
    status: 'in-progress',
    class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
    subject: { reference: `Patient/${patient}` },
    period: { start: new Date().toISOString() },
    ...extra,
  };
}

function progressNote(encounterId: string, text: string): Composition {
  const section = (title: string, code: string, body: string) => ({
    title,
    code: { coding: [{ system: 'http://loinc.org', code }] },
    text: { status: 'generated' as const, div: `<div xmlns="http://www.w3.org/1999/xhtml">${body}</div>` },
  });
  return {
    resourceType: 'Composition',
    status: 'preliminary',
    type: { coding: [{ system: 'http://loinc.org', code: '11506-3', display: 'Progress note' }] },
    subject: { reference: `Patient/${patient}` },
    encounter: { reference: `Encounter/${encounterId}` },
    date: new Date().toISOString(),
    author: [{ reference: `Practitioner/${doctor}` }],
    title: 'Progress note (SOAP)',
    section: [section('Subjective', '61150-9', text), section('Objective', '61149-1', 'BP 120/80'), section('Assessment', '51848-0', 'Stable'), section('Plan', '18776-5', 'Review in 1 week')],
  };
}

function businessRule(body: OperationOutcome): string {
  const issue = body.issue?.find((i) => i.code === 'business-rule');
  expect(issue, JSON.stringify(body)).toBeTruthy();
  return issue!.diagnostics ?? '';
}

beforeAll(async () => {
  t = await startTestApp();
  patient = (await created<{ id: string }>({ resourceType: 'Patient', name: [{ family: 'Notes', given: ['Nora'] }] })).id;
  doctor = (await created<{ id: string }>({ resourceType: 'Practitioner', name: [{ family: 'Signer' }] })).id;
  otherDoctor = (await created<{ id: string }>({ resourceType: 'Practitioner', name: [{ family: 'Other' }] })).id;
  doctorToken = (await signInAs(t, 'DOCTOR', `Practitioner/${doctor}`)).token;
}, 60_000);

afterAll(async () => {
  await t?.close();
});

describe('FR-EMR-001 encounters: completion needs a practitioner signature; signed is immutable', () => {
  it('FR-EMR-001 finishing an encounter without a signature is refused (422 business-rule); $sign finishes and signs it', async () => {
    const enc = await created<Encounter>(visit(), doctorToken);
    const refused = await send<OperationOutcome>('PUT', `/fhir/Encounter/${enc.id}`, { ...enc, status: 'finished' }, doctorToken);
    expect(refused.status).toBe(422);
    expect(businessRule(refused.body)).toMatch(/signature/);

    const signed = await send<Encounter>('POST', `/fhir/Encounter/${enc.id}/$sign`, undefined, doctorToken);
    expect(signed.status, JSON.stringify(signed.body)).toBe(200);
    expect(signed.body.status).toBe('finished');
    expect(signed.body.period?.end).toBeTruthy();
    expect(signed.body.meta?.versionId).toBe('2');

    const provenances = await send<Bundle<Provenance>>('GET', `/fhir/Provenance?target=Encounter/${enc.id}`);
    const provenance = provenances.body.entry?.[0]?.resource;
    expect(provenance?.target[0]?.reference).toBe(`Encounter/${enc.id}/_history/2`);
    expect(provenance?.signature?.[0]?.who.reference).toBe(`Practitioner/${doctor}`);
    expect(provenance?.signature?.[0]?.type[0]).toMatchObject(AUTHOR_SIG);
    expect(provenance?.agent[0]?.who.reference).toBe(`Practitioner/${doctor}`);
  });

  it('FR-EMR-001 an encounter finished by a backend client (unsigned) can be signed afterwards, once (409 after)', async () => {
    const enc = await created<Encounter>(visit({ status: 'finished' }));
    const signed = await send<Encounter>('POST', `/fhir/Encounter/${enc.id}/$sign`, undefined, doctorToken);
    expect(signed.status, JSON.stringify(signed.body)).toBe(200);
    const twice = await send<OperationOutcome>('POST', `/fhir/Encounter/${enc.id}/$sign`, undefined, doctorToken);
    expect(twice.status).toBe(409);
    expect(businessRule(twice.body)).toMatch(/already signed/);
    // Signing is for practitioners: a backend client has no fhirUser.
    expect((await send('POST', `/fhir/Encounter/${(await created<Encounter>(visit())).id}/$sign`)).status).toBe(403);
  });

  it('FR-EMR-001 a client may instead write the signature Provenance in the same transaction Bundle as the finishing update', async () => {
    const enc = await created<Encounter>(visit(), doctorToken);
    const now = new Date().toISOString();
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { request: { method: 'PUT', url: `Encounter/${enc.id}` }, resource: { ...enc, status: 'finished' } },
        {
          request: { method: 'POST', url: 'Provenance' },
          resource: { resourceType: 'Provenance', target: [{ reference: `Encounter/${enc.id}` }], recorded: now, agent: [{ who: { reference: `Practitioner/${doctor}` } }], signature: [{ type: [AUTHOR_SIG], when: now, who: { reference: `Practitioner/${doctor}` } }] },
        },
      ],
    };
    const res = await send<Bundle>('POST', '/fhir', bundle, doctorToken);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect((await send<Encounter>('GET', `/fhir/Encounter/${enc.id}`)).body.status).toBe('finished');
  });

  it('FR-EMR-001 a signed-in user signs only as themselves (the signer is the token fhirUser)', async () => {
    const enc = await created<Encounter>(visit(), doctorToken);
    const now = new Date().toISOString();
    const forged = await send<OperationOutcome>(
      'POST',
      '/fhir/Provenance',
      { resourceType: 'Provenance', target: [{ reference: `Encounter/${enc.id}` }], recorded: now, agent: [{ who: { reference: `Practitioner/${otherDoctor}` } }], signature: [{ type: [AUTHOR_SIG], when: now, who: { reference: `Practitioner/${otherDoctor}` } }] },
      doctorToken,
    );
    expect(forged.status).toBe(422);
    expect(forged.body.issue?.[0]?.expression).toContain('Provenance.signature[0].who');
  });

  it('FR-EMR-001 a signed encounter changes only by $amend with a reason (new version, Provenance with who and why); deletes are refused', async () => {
    const enc = await created<Encounter>(visit(), doctorToken);
    const signed = (await send<Encounter>('POST', `/fhir/Encounter/${enc.id}/$sign`, undefined, doctorToken)).body;

    const plain = await send<OperationOutcome>('PUT', `/fhir/Encounter/${enc.id}`, { ...signed, serviceType: { text: 'Cardiology' } }, doctorToken);
    expect(plain.status).toBe(422);
    expect(businessRule(plain.body)).toMatch(/\$amend/);
    const deleted = await send<OperationOutcome>('DELETE', `/fhir/Encounter/${enc.id}`, undefined, doctorToken);
    expect(deleted.status).toBe(409);
    expect(businessRule(deleted.body)).toMatch(/cannot be deleted/);

    const noReason = await send<OperationOutcome>('POST', `/fhir/Encounter/${enc.id}/$amend`, { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: { ...signed, serviceType: { text: 'Cardiology' } } }] }, doctorToken);
    expect(noReason.status).toBe(400);

    const amend: Parameters = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'resource', resource: { ...signed, serviceType: { text: 'Cardiology' } } },
        { name: 'reason', valueString: 'Wrong service recorded' },
      ],
    };
    const amended = await send<Encounter>('POST', `/fhir/Encounter/${enc.id}/$amend`, amend, doctorToken);
    expect(amended.status, JSON.stringify(amended.body)).toBe(200);
    expect(amended.body.serviceType?.text).toBe('Cardiology');
    expect(amended.body.meta?.versionId).toBe('3');
    const trail = (await send<Bundle<Provenance>>('GET', `/fhir/Provenance?target=Encounter/${enc.id}`)).body.entry!.map((e) => e.resource!);
    const amendment = trail.find((p) => p.activity?.coding?.[0]?.code === 'amend');
    expect(amendment?.reason?.[0]?.text).toBe('Wrong service recorded');
    expect(amendment?.agent[0]?.who.reference).toBe(`Practitioner/${doctor}`);
    expect(amendment?.target[0]?.reference).toBe(`Encounter/${enc.id}/_history/3`);

    // The audit trail itself is append-only.
    const sig = trail.find((p) => p.signature?.length)!;
    expect((await send<OperationOutcome>('DELETE', `/fhir/Provenance/${sig.id}`)).status).toBe(409);
  });

  it('FR-EMR-001 an amendment more than 24 h after signing is refused (409 business-rule)', async () => {
    // An encounter signed 25 hours ago (history written by a backend client, with its signature).
    const enc = await created<Encounter>(visit({ status: 'finished', period: { start: new Date(Date.now() - 26 * 3600_000).toISOString(), end: new Date(Date.now() - 25 * 3600_000).toISOString() } }));
    const when = new Date(Date.now() - 25 * 3600_000).toISOString();
    await created({ resourceType: 'Provenance', target: [{ reference: `Encounter/${enc.id}` }], recorded: when, agent: [{ who: { reference: `Practitioner/${doctor}` } }], signature: [{ type: [AUTHOR_SIG], when, who: { reference: `Practitioner/${doctor}` } }] });
    const late = await send<OperationOutcome>(
      'POST',
      `/fhir/Encounter/${enc.id}/$amend`,
      { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: { ...enc, serviceType: { text: 'Late change' } } }, { name: 'reason', valueString: 'forgot' }] },
      doctorToken,
    );
    expect(late.status).toBe(409);
    expect(businessRule(late.body)).toMatch(/24 hours/);
    expect((await send<Encounter>('GET', `/fhir/Encounter/${enc.id}`)).body.meta?.versionId).toBe('1');
  });
});

describe('FR-EMR-002 clinical notes: drafts, signing, revisions, diff, concurrent edits', () => {
  it('FR-EMR-002 a draft note is saved only from a known version; a stale save is a 409 naming both versions (412 stays for other types)', async () => {
    const enc = await created<Encounter>(visit(), doctorToken);
    const draft = await created<Composition>(progressNote(enc.id!, 'Headache'), doctorToken);
    const { meta: _m, ...withoutVersion } = draft;

    const blind = await send<OperationOutcome>('PUT', `/fhir/Composition/${draft.id}`, { ...withoutVersion, title: 'x' }, doctorToken);
    expect(blind.status).toBe(422);
    expect(businessRule(blind.body)).toMatch(/If-Match/);

    // Two editors load version 1; the first autosave wins.
    const first = await send<Composition>('PUT', `/fhir/Composition/${draft.id}`, { ...withoutVersion, title: 'Editor A' }, doctorToken, { 'if-match': 'W/"1"' });
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    const second = await send<OperationOutcome>('PUT', `/fhir/Composition/${draft.id}`, { ...withoutVersion, title: 'Editor B' }, doctorToken, { 'if-match': 'W/"1"' });
    expect(second.status).toBe(409);
    const issue = second.body.issue[0]!;
    expect(issue.code).toBe('conflict');
    expect(issue.diagnostics).toMatch(/you edited version 1, the current version is 2/);
    expect(issue.details?.text).toBe('client version 1; current version 2');
    // meta.versionId in the body counts as If-Match.
    const byMeta = await send<OperationOutcome>('PUT', `/fhir/Composition/${draft.id}`, { ...draft, title: 'Editor B' }, doctorToken);
    expect(byMeta.status).toBe(409);
    const current = await send<Composition>('PUT', `/fhir/Composition/${draft.id}`, { ...first.body, title: 'Editor B merged' }, doctorToken);
    expect(current.status).toBe(200);

    const p = await created<{ id: string; resourceType: string }>({ resourceType: 'Patient', name: [{ family: 'Other' }] });
    expect((await send('PUT', `/fhir/Patient/${p.id}`, p, undefined, { 'if-match': 'W/"7"' })).status).toBe(412);
  });

  it('FR-EMR-002 a note becomes final only signed; a final note is immutable, amendable within the window (status amended); every revision is kept and diffable', async () => {
    const enc = await created<Encounter>(visit(), doctorToken);
    const draft = await created<Composition>(progressNote(enc.id!, 'Headache since Monday'), doctorToken);
    const unsigned = await send<OperationOutcome>('PUT', `/fhir/Composition/${draft.id}`, { ...draft, status: 'final' }, doctorToken);
    expect(unsigned.status).toBe(422);
    expect(businessRule(unsigned.body)).toMatch(/signature/);

    const edited = await send<Composition>('PUT', `/fhir/Composition/${draft.id}`, { ...draft, section: [{ ...draft.section![0]!, text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Headache since Sunday</div>' } }, ...draft.section!.slice(1)] }, doctorToken);
    expect(edited.status).toBe(200);
    const signed = await send<Composition>('POST', `/fhir/Composition/${draft.id}/$sign`, undefined, doctorToken, { 'if-match': 'W/"2"' });
    expect(signed.status, JSON.stringify(signed.body)).toBe(200);
    expect(signed.body.status).toBe('final');
    expect(signed.body.attester?.[0]).toMatchObject({ mode: 'legal', party: { reference: `Practitioner/${doctor}` } });

    const again = await send<OperationOutcome>('PUT', `/fhir/Composition/${draft.id}`, { ...signed.body, title: 'changed' }, doctorToken);
    expect(again.status).toBe(422);
    expect((await send('DELETE', `/fhir/Composition/${draft.id}`, undefined, doctorToken)).status).toBe(409);
    expect((await send('POST', `/fhir/Composition/${draft.id}/$sign`, undefined, doctorToken)).status).toBe(409);

    const amended = await send<Composition>(
      'POST',
      `/fhir/Composition/${draft.id}/$amend`,
      { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: { ...signed.body, title: 'Progress note (SOAP), corrected' } }, { name: 'reason', valueCodeableConcept: { text: 'Typo in title' } }] },
      doctorToken,
    );
    expect(amended.status, JSON.stringify(amended.body)).toBe(200);
    expect(amended.body.status).toBe('amended');
    expect(amended.body.meta?.versionId).toBe('4');

    const history = await send<Bundle>('GET', `/fhir/Composition/${draft.id}/_history`);
    expect(history.body.entry?.length).toBe(4);

    const diff = await send<Parameters>('GET', `/fhir/Composition/${draft.id}/$diff?from=1&to=4`, undefined, doctorToken);
    expect(diff.status, JSON.stringify(diff.body)).toBe(200);
    const changes = diff.body.parameter!.filter((p) => p.name === 'change').map((p) => Object.fromEntries(p.part!.map((x) => [x.name, x.valueCode ?? x.valueString])));
    expect(changes).toContainEqual({ op: 'replace', path: '/status', old: '"preliminary"', new: '"amended"' });
    expect(changes).toContainEqual({ op: 'replace', path: '/section/0/text/div', old: JSON.stringify('<div xmlns="http://www.w3.org/1999/xhtml">Headache since Monday</div>'), new: JSON.stringify('<div xmlns="http://www.w3.org/1999/xhtml">Headache since Sunday</div>') });
    expect(changes.find((c) => c.path === '/attester')?.op).toBe('add');
    expect(changes.some((c) => String(c.path).startsWith('/meta'))).toBe(false);
    // Default: the last change only.
    const last = await send<Parameters>('GET', `/fhir/Composition/${draft.id}/$diff`, undefined, doctorToken);
    const lastChanges = last.body.parameter!.filter((p) => p.name === 'change').map((p) => p.part!.find((x) => x.name === 'path')?.valueString);
    expect(lastChanges.sort()).toEqual(['/status', '/title']);
    expect((await send('GET', `/fhir/Composition/${draft.id}/$diff?from=abc`, undefined, doctorToken)).status).toBe(400);
  });

  it('FR-EMR-002 discharge summaries (18842-5) and notes in other types follow the same draft → final rule', async () => {
    const enc = await created<Encounter>(visit(), doctorToken);
    const summary = { ...progressNote(enc.id!, 'Discharged home'), type: { coding: [{ system: 'http://loinc.org', code: '18842-5' }] }, status: 'final' as const };
    const direct = await send<OperationOutcome>('POST', '/fhir/Composition', summary, doctorToken);
    expect(direct.status).toBe(422);
    const draft = await created<Composition>({ ...summary, status: 'preliminary' }, doctorToken);
    expect((await send<Composition>('POST', `/fhir/Composition/${draft.id}/$sign`, undefined, doctorToken)).body.status).toBe('final');
  });

  it('FR-EMR-001/002 the operations are declared in the CapabilityStatement', async () => {
    const cs = (await send<CapabilityStatement>('GET', '/fhir/metadata')).body;
    const ops = (type: string) => cs.rest?.[0]?.resource?.find((r) => r.type === type)?.operation?.map((o) => o.name) ?? [];
    expect(ops('Encounter')).toEqual(expect.arrayContaining(['sign', 'amend', 'diff']));
    expect(ops('Composition')).toEqual(expect.arrayContaining(['sign', 'amend', 'diff']));
  });
});

describe('FR-EMR-001 / FR-IP-002 encounters link to the appointment or admission', () => {
  const ACT = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
  const hour = (h: number) => new Date(Date.now() + h * 3600_000).toISOString();
  const appointment = async (status: string, who = patient) =>
    (
      await created<{ id: string }>({
        resourceType: 'Appointment',
        status,
        start: hour(1),
        end: hour(2),
        participant: [{ actor: { reference: `Patient/${who}` }, status: 'accepted' }, { actor: { reference: `Practitioner/${doctor}` }, status: 'accepted' }],
      })
    ).id;
  const refusal = (res: { status: number; body: OperationOutcome }, path: string) => {
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    const issue = res.body.issue.find((i) => i.code === 'business-rule');
    expect(issue?.expression, JSON.stringify(res.body)).toEqual([path]);
    return issue!.diagnostics ?? '';
  };

  it('FR-EMR-001 Encounter.appointment: an existing Appointment of the same patient in a status the encounter can follow; 422 business-rule otherwise', async () => {
    const other = (await created<{ id: string }>({ resourceType: 'Patient', name: [{ family: 'Other' }] })).id;
    const booked = await appointment('booked');
    const linked = await created<Encounter>(visit({ appointment: [{ reference: `Appointment/${booked}` }] }), doctorToken);
    expect(linked.appointment?.[0]?.reference).toBe(`Appointment/${booked}`);

    const post = (e: Encounter) => send<OperationOutcome>('POST', '/fhir/Encounter', e, doctorToken);
    expect(refusal(await post(visit({ appointment: [{ reference: 'Appointment/does-not-exist' }] })), 'Encounter.appointment[0]')).toMatch(/does not exist/);
    expect(refusal(await post(visit({ appointment: [{ reference: `Appointment/${await appointment('booked', other)}` }] })), 'Encounter.appointment[0]')).toMatch(/not for this encounter's Patient/);
    const cancelled = await appointment('cancelled');
    expect(refusal(await post(visit({ appointment: [{ reference: `Appointment/${cancelled}` }] })), 'Encounter.appointment[0]')).toMatch(/is cancelled/);
    // A cancelled encounter may record the cancelled appointment it belonged to.
    expect((await post(visit({ status: 'cancelled', appointment: [{ reference: `Appointment/${cancelled}` }] }))).status).toBe(201);
    const proposed = await appointment('proposed');
    expect(refusal(await post(visit({ appointment: [{ reference: `Appointment/${proposed}` }] })), 'Encounter.appointment[0]')).toMatch(/not booked/);
    expect((await post(visit({ status: 'planned', appointment: [{ reference: `Appointment/${proposed}` }] }))).status).toBe(201);

    // Checked when the link (or the status) changes, not on every later edit.
    const appt = (await send<{ status: string }>('GET', `/fhir/Appointment/${booked}`)).body;
    expect((await send('PUT', `/fhir/Appointment/${booked}`, { ...appt, status: 'noshow' })).status).toBe(200);
    const current = (await send<Encounter>('GET', `/fhir/Encounter/${linked.id}`)).body;
    expect((await send('PUT', `/fhir/Encounter/${linked.id}`, { ...current, reasonCode: [{ text: 'Follow-up' }] }, doctorToken)).status).toBe(200);

    // Without an API caller (bulk import, HL7 v2 feed): stored as sent.
    const imported = await t.server.store.transaction((tx) => tx.create(visit({ appointment: [{ reference: 'Appointment/elsewhere' }] })));
    expect(JSON.parse(imported.json!).appointment[0].reference).toBe('Appointment/elsewhere');
  });

  it('FR-IP-002 an inpatient encounter (class IMP) links to the admission: the patient\'s inpatient EpisodeOfCare, or partOf an encounter of the same patient', async () => {
    const who = (await created<{ id: string }>({ resourceType: 'Patient', name: [{ family: 'Admitted' }] })).id;
    const other = (await created<{ id: string }>({ resourceType: 'Patient', name: [{ family: 'Elsewhere' }] })).id;
    const episode = (subject: string, code: string, status = 'active') =>
      created<{ id: string }>({ resourceType: 'EpisodeOfCare', status, type: [{ coding: [{ system: ACT, code }] }], patient: { reference: `Patient/${subject}` }, period: { start: hour(-48) } }).then((e) => e.id);
    const admission = await episode(who, 'IMP');
    const inpatient = (extra: Partial<Encounter> = {}): Encounter => visit({ class: { system: ACT, code: 'IMP' }, subject: { reference: `Patient/${who}` }, ...extra });
    const post = (e: Encounter) => send<OperationOutcome>('POST', '/fhir/Encounter', e, doctorToken);

    // No link given: the open inpatient encounter joins the patient's active admission.
    const ward = await created<Encounter>(inpatient(), doctorToken);
    expect(ward.episodeOfCare?.map((e) => e.reference)).toEqual([`EpisodeOfCare/${admission}`]);
    expect((await created<Encounter>(inpatient({ episodeOfCare: [{ reference: `EpisodeOfCare/${admission}` }] }), doctorToken)).id).toBeTruthy();

    expect(refusal(await post(inpatient({ episodeOfCare: [{ reference: `EpisodeOfCare/${await episode(other, 'IMP')}` }] })), 'Encounter.episodeOfCare[0]')).toMatch(/not this encounter's Patient/);
    expect(refusal(await post(inpatient({ episodeOfCare: [{ reference: `EpisodeOfCare/${await episode(who, 'AMB')}` }] })), 'Encounter.episodeOfCare')).toMatch(/admission/);
    expect(refusal(await post(inpatient({ episodeOfCare: [{ reference: `EpisodeOfCare/${await episode(who, 'IMP', 'finished')}` }] })), 'Encounter.episodeOfCare[0]')).toMatch(/is finished/);
    expect(refusal(await post(inpatient({ episodeOfCare: [{ reference: 'EpisodeOfCare/none' }] })), 'Encounter.episodeOfCare[0]')).toMatch(/does not exist/);

    // partOf: the admission encounter of the same patient.
    expect((await created<Encounter>(inpatient({ partOf: { reference: `Encounter/${ward.id}` } }), doctorToken)).partOf?.reference).toBe(`Encounter/${ward.id}`);
    const elsewhere = await created<Encounter>(visit({ subject: { reference: `Patient/${other}` } }), doctorToken);
    expect(refusal(await post(inpatient({ partOf: { reference: `Encounter/${elsewhere.id}` } })), 'Encounter.partOf')).toMatch(/not this encounter's Patient/);
    expect(refusal(await post(inpatient({ partOf: { reference: 'Encounter/none' } })), 'Encounter.partOf')).toMatch(/does not exist/);

    // Outpatient encounters without links, and finished inpatient history, are left alone.
    expect((await created<Encounter>(visit({ subject: { reference: `Patient/${who}` } }), doctorToken)).episodeOfCare).toBeUndefined();
    const history = await created<Encounter>(inpatient({ status: 'finished', period: { start: hour(-400), end: hour(-300) } }));
    expect(history.episodeOfCare).toBeUndefined();
  });
});

describe('FR-EMR-001 amendment window from CLINICAL_AMENDMENT_WINDOW_HOURS', () => {
  it('FR-EMR-001 the window is configurable (default 24 h, 0: never amendable)', () => {
    expect(t.config.clinicalAmendmentWindowHours).toBe(24);
    expect(loadConfig({ ...process.env, CLINICAL_AMENDMENT_WINDOW_HOURS: '0' }).clinicalAmendmentWindowHours).toBe(0);
    expect(() => loadConfig({ ...process.env, CLINICAL_AMENDMENT_WINDOW_HOURS: '-1' })).toThrow(/CLINICAL_AMENDMENT_WINDOW_HOURS/);
  });
});
