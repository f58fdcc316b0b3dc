import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Bundle, CapabilityStatement, DocumentReference, FhirResource, OperationOutcome, Resource } from 'fhir/r4.js';
import PDFDocument from 'pdfkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { parseTextQuery, resourceTexts, stripTags } from '../../src/search/full-text.js';
import { SearchIndexer } from '../../src/search/indexer.js';
import { reindex } from '../../src/search/reindex.js';
import { loadFhirExamples, sharedDataDir } from '../support/shared-data.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Issue 15 §3 — full text: `_content` (all text, text attachments included) and `_text` (the
 * narrative) on PostgreSQL full-text search, over Synthea notes (DocumentReference attachments,
 * DiagnosticReport presentedForm) and official examples: stemming, phrases, prefixes, boolean
 * forms, `_sort=_score`, combination with other parameters, paging, hostile input, and that
 * updated / deleted resources no longer match their old text.
 */
let t: TestApp;
let synthea: Resource[] = [];

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

function note(id: string, text: string, extra: Partial<DocumentReference> = {}): DocumentReference {
  return {
    resourceType: 'DocumentReference',
    id,
    status: 'current',
    content: [{ attachment: { contentType: 'text/plain; charset=utf-8', data: b64(text) } }],
    ...extra,
  };
}

async function put(resource: FhirResource): Promise<void> {
  const res = await t.request({ method: 'PUT', url: `/fhir/${resource.resourceType}/${resource.id}`, payload: resource });
  expect(res.statusCode, res.body).toBeLessThan(300);
}

async function search(query: string): Promise<Bundle> {
  const res = await t.request({ method: 'GET', url: `/fhir/${query}` });
  expect(res.statusCode, `${query}\n${res.body}`).toBe(200);
  return res.json() as Bundle;
}

async function ids(query: string): Promise<string[]> {
  const b = await search(query);
  return (b.entry ?? []).filter((e) => e.search?.mode !== 'outcome').map((e) => e.resource!.id!);
}

const q = encodeURIComponent;

/** A one-page PDF with `text` (pdfkit), base64. */
function pdf(text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const doc = new PDFDocument();
    const chunks: Buffer[] = [];
    doc.on('data', (c: Buffer) => chunks.push(c));
    doc.on('end', () => resolve(Buffer.concat(chunks).toString('base64')));
    doc.on('error', reject);
    doc.text(text);
    doc.end();
  });
}

beforeAll(async () => {
  t = await startTestApp();
  // The two smallest Synthea patient bundles (transactions): their notes are base64 text/plain.
  const dir = join(sharedDataDir, 'synthea');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.json.gz') && !f.startsWith('0-'))
    .sort((a, b) => statSync(join(dir, a)).size - statSync(join(dir, b)).size)
    .slice(0, 2);
  for (const f of files) {
    const bundle = JSON.parse(gunzipSync(readFileSync(join(dir, f))).toString('utf8')) as Bundle;
    // Only the notes (their references to the patient's other resources stay as written).
    synthea.push(...(bundle.entry ?? []).map((e) => e.resource!).filter((r) => r && (r.resourceType === 'DocumentReference' || r.resourceType === 'DiagnosticReport')));
  }
  for (const r of synthea) await put(r as FhirResource);
  const examples = loadFhirExamples().filter((r) => ['Patient-example.json', 'Condition-example.json'].includes(`${r.resourceType}-${r.id}.json`));
  for (const r of examples) await put(r as FhirResource);
  await put(note('ft-run', 'The patient was running late to the cardiology clinic. Hypertension reviewed.'));
  await put(note('ft-walk', 'Walks daily. Hypertension controlled; hypertension medication continued; hypertension follow-up.', { status: 'superseded' }));
  await put(note('ft-late', 'Late entry: blood pressure normal.'));
}, 180_000);

afterAll(async () => {
  await t?.close();
});

describe('issue 15 §3 full text: text gathering', () => {
  it('strips tags and decodes entities of the narrative; skips ids and links; decodes text attachments', () => {
    expect(stripTags('<div xmlns="http://www.w3.org/1999/xhtml"><p>Fever &amp; cough</p><td>a</td><td>b</td></div>')).toBe('Fever & cough a b');
    const texts = resourceTexts({
      resourceType: 'DocumentReference',
      id: 'abc123',
      status: 'current',
      text: { status: 'generated', div: '<div><b>Narrative</b> words</div>' },
      subject: { reference: 'Patient/xyz', display: 'Jane Roe' },
      content: [{ attachment: { contentType: 'text/plain', data: b64('decoded attachment words') } }],
    } as DocumentReference);
    expect(texts.narrative).toBe('Narrative words');
    expect(texts.content).toContain('decoded attachment words');
    expect(texts.content).toContain('Jane Roe');
    expect(texts.content).not.toContain('Patient/xyz');
    expect(texts.content).not.toContain('abc123');
  });

  it('parses phrases, prefixes, OR, NOT and refuses purely negative or empty queries', () => {
    expect(parseTextQuery('"heart attack" OR stroke*')).toEqual({ op: 'or', parts: [{ op: 'phrase', text: 'heart attack' }, { op: 'word', text: 'stroke', prefix: true }] });
    expect(parseTextQuery('fever -cough')).toEqual({ op: 'and', parts: [{ op: 'word', text: 'fever', prefix: false }, { op: 'not', part: { op: 'word', text: 'cough', prefix: false } }] });
    expect(() => parseTextQuery('-cough')).toThrow(/at least one word/);
    expect(() => parseTextQuery('  ()  ')).toThrow(/no word/);
  });
});

describe('issue 15 §3 full text: search', () => {
  it('finds Synthea notes by the words of their text attachments, stemmed (smoking finds "smoked")', async () => {
    const docs = synthea.filter((r): r is DocumentReference => r.resourceType === 'DocumentReference');
    expect(docs.length).toBeGreaterThan(0);
    const withWord = docs.filter((d) => /never smoked/.test(Buffer.from(d.content[0]!.attachment.data ?? '', 'base64').toString('utf8'))).map((d) => d.id!);
    expect(withWord.length).toBeGreaterThan(0);
    const found = await ids(`DocumentReference?_content=smoking&_count=500`);
    for (const id of withWord) expect(found).toContain(id);
    // a phrase, and the same words in the other order
    const phrase = await ids(`DocumentReference?_content=${q('"never smoked"')}&_count=500`);
    expect(phrase.sort()).toEqual([...withWord].sort());
    expect(await ids(`DocumentReference?_content=${q('"smoked never"')}`)).toEqual([]);
  });

  it('finds DiagnosticReport presentedForm text', async () => {
    const reports = synthea.filter((r) => r.resourceType === 'DiagnosticReport' && (r as { presentedForm?: unknown[] }).presentedForm?.length);
    expect(reports.length).toBeGreaterThan(0);
    const found = await ids(`DiagnosticReport?_content=${q('"chief complaint"')}&_count=500`);
    const expected = reports
      .filter((r) => /chief complaint/i.test(Buffer.from((r as unknown as { presentedForm: Array<{ data?: string }> }).presentedForm[0]!.data ?? '', 'base64').toString('utf8')))
      .map((r) => r.id!);
    expect(expected.length).toBeGreaterThan(0);
    expect(found.sort()).toEqual(expected.sort());
  });

  it('stems (run / runs find "running"), prefixes (hypert*), AND, OR and NOT', async () => {
    expect(await ids('DocumentReference?_content=run')).toEqual(['ft-run']);
    expect(await ids('DocumentReference?_content=runs')).toEqual(['ft-run']);
    expect((await ids(`DocumentReference?_content=${q('hypert*')}`)).sort()).toEqual(['ft-run', 'ft-walk']);
    expect(await ids(`DocumentReference?_content=${q('hypertension late')}`)).toEqual(['ft-run']);
    expect((await ids(`DocumentReference?_content=${q('walks OR pressure')}`)).sort()).toEqual(['ft-late', 'ft-walk']);
    expect((await ids(`DocumentReference?_content=${q('walks,pressure')}`)).sort()).toEqual(['ft-late', 'ft-walk']);
    expect(await ids(`DocumentReference?_content=${q('hypertension -running')}`)).toEqual(['ft-walk']);
    expect(await ids(`DocumentReference?_content=${q('late NOT (hypertension OR cardiology)')}`)).toEqual(['ft-late']);
    // two parameters are ANDed
    expect(await ids(`DocumentReference?_content=late&_content=cardiology`)).toEqual(['ft-run']);
  });

  it('finds the text of PDF attachments (DocumentReference and DiagnosticReport presentedForm); a broken PDF is stored without text', async () => {
    await put({ resourceType: 'DocumentReference', id: 'ft-pdf', status: 'current', content: [{ attachment: { contentType: 'application/pdf', data: await pdf('Echocardiogram shows moderate mitral regurgitation.') } }] });
    await put({ resourceType: 'DiagnosticReport', id: 'ft-pdf-report', status: 'final', code: { text: 'Echo' }, presentedForm: [{ contentType: 'application/pdf', data: await pdf('Left ventricular ejection fraction fifty-five percent.') }] });
    await put({ resourceType: 'DocumentReference', id: 'ft-pdf-broken', status: 'current', content: [{ attachment: { contentType: 'application/pdf', data: b64('%PDF-1.4 not really a pdf') } }] });
    expect(await ids(`DocumentReference?_content=${q('"mitral regurgitation"')}`)).toEqual(['ft-pdf']);
    expect(await ids(`DiagnosticReport?_content=${q('ventricular ejection')}`)).toEqual(['ft-pdf-report']);
  });

  it('_text searches the narrative only (official examples)', async () => {
    // Patient/example's narrative names Peter James Chalmers; the maiden name Windsor is in its data only
    expect(await ids('Patient?_text=chalmers')).toContain('example');
    expect(await ids('Patient?_content=chalmers')).toContain('example');
    // a word of the data that is not in the narrative
    expect(await ids('Patient?_content=windsor')).toContain('example');
    expect(await ids('Patient?_text=windsor')).not.toContain('example');
  });

  it('_sort=_score orders by relevance and pages by keyset without loss or repeats', async () => {
    expect(await ids(`DocumentReference?_content=hypertension&_sort=_score`)).toEqual(['ft-walk', 'ft-run']);
    expect(await ids(`DocumentReference?_content=hypertension&_sort=-_score`)).toEqual(['ft-run', 'ft-walk']);
    // paging one by one through every note mentioning "patient"
    const all = await ids(`DocumentReference?_content=patient&_sort=_score&_count=500`);
    expect(all.length).toBeGreaterThan(2);
    const paged: string[] = [];
    let url: string | undefined = `DocumentReference?_content=patient&_sort=_score&_count=2`;
    while (url) {
      const b = await search(url);
      paged.push(...(b.entry ?? []).filter((e) => e.search?.mode !== 'outcome').map((e) => e.resource!.id!));
      const next = b.link?.find((l) => l.relation === 'next')?.url;
      url = next ? next.slice(next.indexOf('/fhir/') + '/fhir/'.length) : undefined;
    }
    expect(paged).toEqual(all);
    const res = await t.request({ method: 'GET', url: '/fhir/DocumentReference?_sort=_score' });
    expect(res.statusCode).toBe(400);
  });

  it('the default order (by id) pages by keyset from the text rows, alone and with another filter', async () => {
    for (const query of ['DocumentReference?_content=patient', 'DocumentReference?_content=patient&status=current']) {
      const all = await ids(`${query}&_count=500`);
      expect(all.length).toBeGreaterThan(2);
      expect(all).toEqual([...all].sort());
      const paged: string[] = [];
      let url: string | undefined = `${query}&_count=2`;
      let last: Bundle | undefined;
      while (url) {
        last = await search(url);
        paged.push(...(last.entry ?? []).filter((e) => e.search?.mode !== 'outcome').map((e) => e.resource!.id!));
        const next = last.link?.find((l) => l.relation === 'next')?.url;
        url = next ? next.slice(next.indexOf('/fhir/') + '/fhir/'.length) : undefined;
      }
      expect(paged).toEqual(all);
      // and back from the last page
      const previous = last!.link?.find((l) => l.relation === 'previous')?.url;
      const back = await search(previous!.slice(previous!.indexOf('/fhir/') + '/fhir/'.length));
      const lastSize = (last!.entry ?? []).filter((e) => e.search?.mode !== 'outcome').length;
      expect((back.entry ?? []).map((e) => e.resource!.id!)).toEqual(all.slice(all.length - lastSize - 2, all.length - lastSize));
    }
  });

  it('combines with other parameters and _total', async () => {
    expect(await ids(`DocumentReference?_content=hypertension&status=superseded`)).toEqual(['ft-walk']);
    const b = await search(`DocumentReference?_content=hypertension&_total=accurate&_count=1`);
    expect(b.total).toBe(2);
    const sys = await search(`?_content=hypertension&_type=DocumentReference,Condition&_total=accurate`);
    expect(sys.total).toBeGreaterThanOrEqual(2);
  });

  it('updated and deleted resources no longer match their old text', async () => {
    await put(note('ft-change', 'Initial wording mentions zebrafish.'));
    expect(await ids('DocumentReference?_content=zebrafish')).toEqual(['ft-change']);
    await put(note('ft-change', 'Corrected wording mentions axolotl.'));
    expect(await ids('DocumentReference?_content=zebrafish')).toEqual([]);
    expect(await ids('DocumentReference?_content=axolotl')).toEqual(['ft-change']);
    const del = await t.request({ method: 'DELETE', url: '/fhir/DocumentReference/ft-change' });
    expect(del.statusCode).toBeLessThan(300);
    expect(await ids('DocumentReference?_content=axolotl')).toEqual([]);
  });

  it('the reindex path rebuilds search_text rows (how rows missing in an older database are filled)', async () => {
    const db = t.server.database.db;
    await sql`DELETE FROM search_text WHERE resource_type = 'DocumentReference' AND resource_id = 'ft-late'`.execute(db);
    expect(await ids('DocumentReference?_content=pressure')).toEqual([]);
    await reindex({ db, registry: t.server.registry, indexer: new SearchIndexer(t.server.registry) }, { resourceTypes: ['DocumentReference'] });
    expect(await ids('DocumentReference?_content=pressure')).toEqual(['ft-late']);
    // PDF text is extracted again by the reindex, not lost
    expect(await ids(`DocumentReference?_content=${q('"mitral regurgitation"')}`)).toEqual(['ft-pdf']);
  });

  it('hostile input is a 400 OperationOutcome or an empty result, never a 500', async () => {
    const values = ['-foo', '()', "'\\:*!&|<->", 'a:*&!b', '"unterminated', '((((((((((((((((((((a))))))))))))))))))))', 'x'.repeat(4000), '\u0000', ' OR OR AND', '!!!', 'NOT', '*'];
    for (const v of values) {
      const res = await t.request({ method: 'GET', url: `/fhir/DocumentReference?_content=${q(v)}` });
      expect([200, 400], `${JSON.stringify(v).slice(0, 40)}: ${res.body.slice(0, 300)}`).toContain(res.statusCode);
      if (res.statusCode === 400) expect((res.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
    }
    const mod = await t.request({ method: 'GET', url: '/fhir/DocumentReference?_content:exact=x' });
    expect(mod.statusCode).toBe(400);
  });

  it('the CapabilityStatement declares _content and _text', async () => {
    const cs = (await t.request({ method: 'GET', url: '/fhir/metadata' })).json() as CapabilityStatement;
    const rest = cs.rest![0]!;
    expect(rest.searchParam?.some((p) => p.name === '_content' && p.documentation)).toBe(true);
    const doc = rest.resource?.find((r) => r.type === 'DocumentReference');
    expect(doc?.searchParam?.some((p) => p.name === '_content')).toBe(true);
    expect(doc?.searchParam?.some((p) => p.name === '_text')).toBe(true);
  });
});
