import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Bundle, Parameters, ValueSet } from 'fhir/r4.js';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TerminologyStore } from '../../src/storage/terminology-store.js';
import { ReleaseFormatError } from '../../src/terminology/release/files.js';
import { loadRelease } from '../../src/terminology/release/load.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Issue 15 item 1: large external code systems loaded by an admin from their release files
 * (hand-written samples in the official formats under test/fixtures/terminology/), then
 * $lookup, $validate-code, $subsumes, $expand of implicit value sets and token :below searches
 * agree with each other.
 */

const FIXTURES = resolve(import.meta.dirname, '../fixtures/terminology');
const LOINC = 'http://loinc.org';
const SCT = 'http://snomed.info/sct';
const ICD = 'http://hl7.org/fhir/sid/icd-10-cm';

function param(p: Parameters, name: string): NonNullable<Parameters['parameter']> {
  return (p.parameter ?? []).filter((x) => x.name === name);
}

describe('terminology release loaders (issue 15 item 1: LOINC, SNOMED CT RF2, ICD-10-CM)', () => {
  let t: TestApp;
  const scratch = mkdtempSync(join(tmpdir(), 'term-release-'));
  const get = async (url: string) => t.request({ method: 'GET', url });
  const json = async <T>(url: string) => (await get(url)).json() as T;
  const ids = async (q: string) => ((await get(q)).json() as Bundle).entry?.map((e) => e.resource!.id!).sort() ?? [];
  // The tables are the state: a store over the app's database sees what the server sees.
  const store = () => new TerminologyStore(t.server.database.db, t.server.database.unlimitedDb);
  const count = async (table: string, system: string) =>
    Number((await sql<{ n: string | number }>`SELECT count(*) AS n FROM ${sql.raw(table)} WHERE system = ${system}`.execute(t.server.database.db)).rows[0]!.n);
  const expandCodes = async (url: string, extra = '') => ((await json<ValueSet>(`/fhir/ValueSet/$expand?url=${encodeURIComponent(url)}${extra}`)).expansion?.contains ?? []).map((c) => c.code!).sort();

  beforeAll(async () => {
    t = await startTestApp();
    const observations: Array<[string, string, string]> = [
      ['sct-t2', SCT, '44054006'],
      ['sct-dm', SCT, '73211009'],
      ['sct-ami', SCT, '57054005'],
      ['sct-asthma', SCT, '195967001'],
      ['loinc-glu', LOINC, '2345-7'],
      ['loinc-hdl', LOINC, '2085-9'],
      ['loinc-hgb', LOINC, '718-7'],
      ['icd-e1165', ICD, 'E11.65'],
      ['icd-i10', ICD, 'I10'],
      ['icd-fx', ICD, 'S72.001A'],
    ];
    for (const [id, system, code] of observations) {
      const res = await t.request({ method: 'PUT', url: `/fhir/Observation/${id}`, payload: { resourceType: 'Observation', id, status: 'final', code: { coding: [{ system, code }] } } });
      expect(res.statusCode).toBeLessThan(300);
    }
  }, 120_000);
  afterAll(async () => {
    rmSync(scratch, { recursive: true, force: true });
    await t?.close();
  });

  it('loads the three sample releases with progress reported and counts returned', async () => {
    for (const [kind, dir, system, concepts] of [
      ['loinc', 'loinc', LOINC, 13 + 7],
      ['snomed', 'snomed', SCT, 23],
      ['icd10', 'icd10cm', ICD, 27],
    ] as const) {
      const phases: string[] = [];
      let lastBytes = 0;
      let total = 0;
      const summary = await loadRelease(store(), kind, join(FIXTURES, dir), {
        onProgress: (p) => {
          phases.push(p.phase);
          lastBytes = p.bytes;
          total = p.totalBytes;
        },
      });
      expect(summary.system).toBe(system);
      expect(summary.concepts, kind).toBe(concepts);
      expect(lastBytes).toBe(total);
      expect(phases).toContain('hierarchy');
      expect(await count('terminology_concept', system)).toBe(concepts);
    }
    const sct = await store().codeSystem(SCT);
    expect(sct?.version).toBe('http://snomed.info/sct/900000000000207008/version/20240101');
    expect(sct?.source).toBe('loaded');
    expect((await store().codeSystem(ICD))?.version).toBe('2024');
    expect((await store().codeSystem(LOINC))?.version).toBe('2.77');
  });

  it('$lookup: LOINC display, short name, axes, parent part; SNOMED preferred term and FSN; ICD-10-CM header', async () => {
    const glu = await json<Parameters>(`/fhir/CodeSystem/$lookup?system=${LOINC}&code=2345-7`);
    expect(param(glu, 'display')[0]?.valueString).toBe('Glucose [Mass/volume] in Serum or Plasma');
    expect(param(glu, 'version')[0]?.valueString).toBe('2.77');
    const props = param(glu, 'property').map((p) => `${p.part![0]!.valueCode}=${p.part![1]!.valueString ?? p.part![1]!.valueCode ?? p.part![1]!.valueBoolean}`);
    expect(props).toEqual(expect.arrayContaining(['COMPONENT=Glucose', 'SYSTEM=Ser/Plas', 'STATUS=ACTIVE', 'parent=LP14635-4', 'inactive=false']));
    expect(param(glu, 'designation').map((d) => d.part!.find((x) => x.name === 'value')?.valueString)).toEqual(expect.arrayContaining(['Glucose SerPl-mCnc', 'Glucose:MCnc:Pt:Ser/Plas:Qn:']));
    const deprecated = await json<Parameters>(`/fhir/CodeSystem/$lookup?system=${LOINC}&code=2344-0&property=inactive`);
    expect(param(deprecated, 'property')[0]?.part?.[1]?.valueBoolean).toBe(true);

    const mi = await json<Parameters>(`/fhir/CodeSystem/$lookup?system=${SCT}&code=22298006`);
    expect(param(mi, 'display')[0]?.valueString).toBe('Myocardial infarction');
    const terms = param(mi, 'designation').map((d) => d.part!.find((x) => x.name === 'value')?.valueString);
    expect(terms).toEqual(expect.arrayContaining(['Myocardial infarction (disorder)', 'Heart attack', 'Cardiac infarction']));
    const miProps = param(mi, 'property').map((p) => `${p.part![0]!.valueCode}=${p.part![1]!.valueCode ?? p.part![1]!.valueBoolean}`);
    expect(miProps).toEqual(expect.arrayContaining(['parent=414545008', 'child=57054005', 'inactive=false']));
    // An inactive description is no designation; the inactive concept is found, marked inactive.
    const dm = await json<Parameters>(`/fhir/CodeSystem/$lookup?system=${SCT}&code=73211009`);
    expect(param(dm, 'designation').map((d) => d.part!.find((x) => x.name === 'value')?.valueString)).not.toContain('Sugar diabetes');
    expect(param(dm, 'property').filter((p) => p.part![0]!.valueCode === 'parent').map((p) => p.part![1]!.valueCode).sort()).toEqual(['126877002', '362969004']);
    const retired = await json<Parameters>(`/fhir/CodeSystem/$lookup?system=${SCT}&code=313435000&property=inactive&property=parent`);
    expect(param(retired, 'property').map((p) => `${p.part![0]!.valueCode}=${p.part![1]!.valueBoolean ?? p.part![1]!.valueCode}`)).toEqual(['inactive=true']);

    const e11 = await json<Parameters>(`/fhir/CodeSystem/$lookup?system=${ICD}&code=E11.6`);
    expect(param(e11, 'display')[0]?.valueString).toBe('Type 2 diabetes mellitus with other specified complications');
    const e11Props = param(e11, 'property').map((p) => `${p.part![0]!.valueCode}=${p.part![1]!.valueCode ?? p.part![1]!.valueBoolean}`);
    expect(e11Props).toEqual(expect.arrayContaining(['notSelectable=true', 'parent=E11', 'child=E11.65']));
    // ICD-10-CM codes are not case sensitive; the placeholder-less 7th character stays under its parent.
    expect(param(await json<Parameters>(`/fhir/CodeSystem/$lookup?system=${ICD}&code=s72.001a&property=parent`), 'property')[0]?.part?.[1]?.valueCode).toBe('S72.001');
  });

  it('$validate-code, $subsumes, implicit is-a value sets and :below agree (SNOMED CT, LOINC, ICD-10-CM)', async () => {
    const cases: Array<{ system: string; root: string; vs: string; all: string[] }> = [
      { system: SCT, root: '73211009', vs: `${SCT}?fhir_vs=isa/73211009`, all: ['138875005', '64572001', '362969004', '73211009', '46635009', '44054006', '22298006', '57054005', '195967001'] },
      { system: SCT, root: '49601007', vs: `${SCT}?fhir_vs=isa/49601007`, all: ['49601007', '38341003', '59621000', '414545008', '22298006', '57054005', '73211009'] },
      { system: LOINC, root: 'LP31388-9', vs: `${LOINC}?fhir_vs=isa/LP31388-9`, all: ['2345-7', '2085-9', '718-7', '1742-6', 'LP43571-6', 'LP7786-9'] },
      { system: ICD, root: 'E11', vs: `${ICD}?fhir_vs=isa/E11`, all: ['E11', 'E11.6', 'E11.65', 'E11.9', 'E10', 'E10.9', 'I10'] },
    ];
    for (const c of cases) {
      const expanded = new Set(await expandCodes(c.vs));
      expect(expanded.has(c.root), c.vs).toBe(true);
      for (const code of c.all) {
        const v = await json<Parameters>(`/fhir/ValueSet/$validate-code?url=${encodeURIComponent(c.vs)}&system=${c.system}&code=${code}`);
        const s = await json<Parameters>(`/fhir/CodeSystem/$subsumes?system=${c.system}&codeA=${c.root}&codeB=${code}`);
        const outcome = param(s, 'outcome')[0]?.valueCode;
        const below = outcome === 'subsumes' || outcome === 'equivalent';
        expect(param(v, 'result')[0]?.valueBoolean, `${c.vs} ${code}`).toBe(expanded.has(code));
        expect(below, `${c.root} subsumes ${code}`).toBe(expanded.has(code));
      }
    }
    // Two parents: diabetes is below both the endocrine and the glucose metabolism disorders.
    expect(param(await json<Parameters>(`/fhir/CodeSystem/$subsumes?system=${SCT}&codeA=126877002&codeB=44054006`), 'outcome')[0]?.valueCode).toBe('subsumes');
    expect(param(await json<Parameters>(`/fhir/CodeSystem/$subsumes?system=${SCT}&codeA=57054005&codeB=22298006`), 'outcome')[0]?.valueCode).toBe('subsumed-by');
    // An inactive is-a relationship is no edge.
    expect(param(await json<Parameters>(`/fhir/CodeSystem/$subsumes?system=${SCT}&codeA=362969004&codeB=233604007`), 'outcome')[0]?.valueCode).toBe('not-subsumed');

    // :below over the same closure as the expansions
    expect(await ids(`/fhir/Observation?code:below=${SCT}|73211009`)).toEqual(['sct-dm', 'sct-t2']);
    expect(await ids(`/fhir/Observation?code:below=${SCT}|64572001`)).toEqual(['sct-ami', 'sct-asthma', 'sct-dm', 'sct-t2']);
    expect(await ids(`/fhir/Observation?code:in=${encodeURIComponent(`${SCT}?fhir_vs=isa/49601007`)}`)).toEqual(['sct-ami']);
    expect(await ids(`/fhir/Observation?code:below=${LOINC}|LP43571-6`)).toEqual(['loinc-hdl']);
    expect(await ids(`/fhir/Observation?code:below=${LOINC}|LP29693-6`)).toEqual(['loinc-glu', 'loinc-hdl', 'loinc-hgb']);
    expect(await ids(`/fhir/Observation?code:below=${ICD}|E11`)).toEqual(['icd-e1165']);
    expect(await ids(`/fhir/Observation?code:below=${ICD}|S72`)).toEqual(['icd-fx']);
    expect(await ids(`/fhir/Observation?code:above=${ICD}|I10`)).toEqual(['icd-i10']);
    // every member of the implicit value set found by :in is found by :below, and the reverse
    for (const root of ['64572001', '49601007', '138875005']) {
      expect(await ids(`/fhir/Observation?code:in=${encodeURIComponent(`${SCT}?fhir_vs=isa/${root}`)}`), root).toEqual(await ids(`/fhir/Observation?code:below=${SCT}|${root}`));
    }
  });

  it('$expand with pick-list filter, paging, activeOnly, excludeNotForUI, designations over loaded systems', async () => {
    expect(await expandCodes(`${SCT}?fhir_vs`, '&filter=diab')).toEqual(['313435000', '44054006', '46635009', '73211009']);
    expect(await expandCodes(`${SCT}?fhir_vs`, '&filter=diab&activeOnly=true')).toEqual(['44054006', '46635009', '73211009']);
    expect(await expandCodes(`${SCT}?fhir_vs`, '&filter=myocard%20acu')).toEqual(['57054005']);
    expect(await expandCodes('http://loinc.org/vs', '&filter=chol%20ser')).toEqual(['13457-7', '2085-9', '2093-3']);
    expect(await expandCodes(`${ICD}?fhir_vs=isa/E11`, '&excludeNotForUI=true')).toEqual(['E11.65', 'E11.9']);
    const page = await json<ValueSet>(`/fhir/ValueSet/$expand?url=${encodeURIComponent(`${ICD}?fhir_vs`)}&count=5&offset=5`);
    expect(page.expansion?.total).toBe(27);
    expect(page.expansion?.contains?.map((c) => c.code)).toEqual(['E10.1', 'E10.10', 'E10.11', 'E10.9', 'E11']);
    expect(page.expansion?.contains?.find((c) => c.code === 'E11')?.abstract).toBe(true);
    const withFsn = await json<ValueSet>(`/fhir/ValueSet/$expand?url=${encodeURIComponent(`${SCT}?fhir_vs=isa/22298006`)}&includeDesignations=true&designation=${encodeURIComponent(`${SCT}|900000000000003001`)}`);
    expect(withFsn.expansion?.contains?.find((c) => c.code === '22298006')?.designation?.map((d) => d.value)).toEqual(['Myocardial infarction (disorder)']);
  });

  it('re-load is idempotent: the same rows, the same answers', async () => {
    const before = await Promise.all(['terminology_concept', 'terminology_closure'].map((tb) => count(tb, SCT)));
    const expandedBefore = await expandCodes(`${SCT}?fhir_vs=isa/64572001`);
    await loadRelease(store(), 'snomed', join(FIXTURES, 'snomed'));
    expect(await Promise.all(['terminology_concept', 'terminology_closure'].map((tb) => count(tb, SCT)))).toEqual(before);
    expect(await expandCodes(`${SCT}?fhir_vs=isa/64572001`)).toEqual(expandedBefore);
    expect(await ids(`/fhir/Observation?code:below=${SCT}|73211009`)).toEqual(['sct-dm', 'sct-t2']);
  });

  it('a malformed release file is a clear error naming file and line, and nothing is half-loaded', async () => {
    const closureBefore = await count('terminology_closure', LOINC);
    // LOINC: a record with an unclosed quote after good ones
    const loincDir = join(scratch, 'loinc');
    cpSync(join(FIXTURES, 'loinc'), loincDir, { recursive: true });
    const table = join(loincDir, 'LoincTable', 'Loinc.csv');
    writeFileSync(table, `${readFileSync(table, 'utf8')}"99999-9","Broken,"MCnc\r\n`);
    await expect(loadRelease(store(), 'loinc', loincDir, { version: '9.99' })).rejects.toThrow(ReleaseFormatError);
    expect((await store().codeSystem(LOINC))?.version).toBe('2.77');
    expect(await count('terminology_concept', LOINC)).toBe(20);
    expect(await count('terminology_closure', LOINC)).toBe(closureBefore);
    // SNOMED CT: a bad active flag deep in the relationships (after concepts and descriptions were staged)
    const sctDir = join(scratch, 'snomed');
    cpSync(join(FIXTURES, 'snomed'), sctDir, { recursive: true });
    const rel = join(sctDir, 'Snapshot', 'Terminology', 'sct2_Relationship_Snapshot_INT_20240101.txt');
    writeFileSync(rel, `${readFileSync(rel, 'utf8')}999999021\t20240101\tyes\t900000000000207008\t44054006\t73211009\t0\t116680003\t900000000000011006\t900000000000451002\r\n`);
    await expect(loadRelease(store(), 'snomed', sctDir)).rejects.toThrow(/sct2_Relationship_Snapshot_INT_20240101\.txt:27: active must be 0 or 1/);
    expect(await count('terminology_concept', SCT)).toBe(23);
    // ICD-10-CM: a line out of the fixed columns
    const icdFile = join(scratch, 'icd10cm_order_2025.txt');
    writeFileSync(icdFile, `${readFileSync(join(FIXTURES, 'icd10cm', 'icd10cm_order_2024.txt'), 'utf8')}00028 Z99.9   1 Dotted code is not the order file format\r\n`);
    await expect(loadRelease(store(), 'icd10', icdFile)).rejects.toThrow(/icd10cm_order_2025\.txt:28/);
    expect((await store().codeSystem(ICD))?.version).toBe('2024');
    // wrong folder for the kind
    await expect(loadRelease(store(), 'snomed', join(FIXTURES, 'loinc'))).rejects.toThrow(/sct2_Concept_Snapshot/);
    // the server still answers from the old version
    expect(await ids(`/fhir/Observation?code:below=${LOINC}|LP43571-6`)).toEqual(['loinc-hdl']);
  });
});
