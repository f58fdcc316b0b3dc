import { basename } from 'node:path';
import type { ReleaseStaging, StagedConcept } from '../../storage/terminology-release-store.js';
import type { CodeSystemRow, ConceptProperty } from '../../storage/terminology-rows.js';
import { Batcher } from './batch.js';
import { csvRows, findOne, ReleaseFormatError, type OnBytes } from './files.js';
import type { ReleasePlan } from './plan.js';

export const LOINC = 'http://loinc.org';
/** The six axes of a LOINC name, then the other columns kept as concept properties. */
const AXES = ['COMPONENT', 'PROPERTY', 'TIME_ASPCT', 'SYSTEM', 'SCALE_TYP', 'METHOD_TYP'] as const;
const PROPERTIES = [...AXES, 'CLASS', 'STATUS'] as const;
const REQUIRED = ['LOINC_NUM', ...PROPERTIES, 'LONG_COMMON_NAME', 'SHORTNAME'];
const HIERARCHY_COLUMNS = ['PATH_TO_ROOT', 'SEQUENCE', 'IMMEDIATE_PARENT', 'CODE', 'CODE_TEXT'];
const LOINC_CODE = /^[0-9]{1,7}-[0-9]$/;
/** LOINC codes and LOINC parts (LP…), the nodes of the component hierarchy. */
const HIERARCHY_CODE = /^(LP[0-9]{1,8}-[0-9]|[0-9]{1,7}-[0-9])$/;
/** "Fully specified name" (SNOMED CT designation use), the colon-joined six axes as LOINC's own FHIR server gives it. */
const FSN_USE = { system: 'http://snomed.info/sct', code: '900000000000003001', display: 'Fully specified name' };

/**
 * LOINC from its release (the zip's folder, or `Loinc.csv` itself): `LoincTable/Loinc.csv` (one
 * concept per LOINC code; display LONG_COMMON_NAME, designations SHORTNAME and the six-axis name,
 * properties the axes, CLASS and STATUS; DEPRECATED = inactive) and, when present,
 * `AccessoryFiles/ComponentHierarchyBySystem/ComponentHierarchyBySystem.csv` (the is-a hierarchy
 * of LOINC parts LP… over LOINC codes; the parts become concepts too).
 */
export function loincPlan(files: readonly string[]): ReleasePlan {
  const table = findOne(files, /^Loinc\.csv$/i, 'LOINC table');
  if (!table) throw new ReleaseFormatError('LOINC: no Loinc.csv in the given path (the LoincTable folder of the release)');
  const hierarchy = findOne(files, /^ComponentHierarchyBySystem\.csv$/i, 'LOINC component hierarchy');
  return {
    system: LOINC,
    files: hierarchy ? [table, hierarchy] : [table],
    async stage(staging: ReleaseStaging, onBytes: OnBytes, version?: string): Promise<CodeSystemRow> {
      const concepts = new Batcher<StagedConcept>((rows) => staging.concepts(rows));
      let latest = '';
      for await (const { row, n } of csvRows(table, REQUIRED, onBytes)) {
        const code = row.LOINC_NUM!;
        if (!LOINC_CODE.test(code)) throw new ReleaseFormatError(`${basename(table)}:${n}: '${code.slice(0, 40)}' is not a LOINC code`);
        const properties: ConceptProperty[] = PROPERTIES.flatMap((p) => (row[p] ? [{ code: p, value: row[p]!, type: 'string' }] : []));
        const axes = AXES.map((a) => row[a] ?? '');
        const designations = [
          ...(row.SHORTNAME ? [{ language: 'en', use: { system: LOINC, code: 'SHORTNAME', display: 'Short name' }, value: row.SHORTNAME }] : []),
          { language: 'en', use: FSN_USE, value: axes.join(':') },
        ];
        await concepts.push({ code, display: row.LONG_COMMON_NAME || row.SHORTNAME || axes[0], active: row.STATUS !== 'DEPRECATED', properties, designations });
        const changed = row.VersionLastChanged;
        if (changed && compareVersions(changed, latest) > 0) latest = changed;
      }
      await concepts.flush();
      if (hierarchy) {
        const edges = new Batcher<[string, string]>((rows) => staging.edges(rows));
        for await (const { row, n } of csvRows(hierarchy, HIERARCHY_COLUMNS, onBytes)) {
          const code = row.CODE!;
          const parent = row.IMMEDIATE_PARENT!;
          if (!HIERARCHY_CODE.test(code) || (parent !== '' && !HIERARCHY_CODE.test(parent))) {
            throw new ReleaseFormatError(`${basename(hierarchy)}:${n}: '${code.slice(0, 40)}' / '${parent.slice(0, 40)}' are not LOINC codes or parts`);
          }
          // Parts are concepts of their own (display CODE_TEXT); a LOINC code keeps its Loinc.csv row.
          await concepts.push({ code, display: row.CODE_TEXT || code, active: true });
          if (parent) await edges.push([parent, code]);
        }
        await concepts.flush();
        await edges.flush();
      }
      return {
        url: LOINC,
        ...(version || latest ? { version: version ?? latest } : {}),
        name: 'LOINC',
        title: 'LOINC Code System',
        status: 'active',
        source: 'loaded',
        content: 'complete',
        hierarchyMeaning: 'is-a',
        caseSensitive: false,
        propertyDefs: PROPERTIES.map((code) => ({ code, uri: `${LOINC}/property/${code}`, type: 'string' })),
      };
    },
  };
}

/** Dotted release numbers compared part by part ("2.77" > "2.8"). */
function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
