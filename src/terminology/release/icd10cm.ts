import { basename } from 'node:path';
import type { ReleaseStaging, StagedConcept } from '../../storage/terminology-release-store.js';
import type { CodeSystemRow } from '../../storage/terminology-rows.js';
import { Batcher } from './batch.js';
import { findOne, lines, ReleaseFormatError, type OnBytes } from './files.js';
import type { ReleasePlan } from './plan.js';

export const ICD10CM = 'http://hl7.org/fhir/sid/icd-10-cm';
/** Category (3 characters), then up to 4 more: letter, digit, then letters and digits (no dot in the file). */
const CODE = /^[A-Z][0-9][0-9A-Z]{1,5}$/;

/** `A0109` → `A01.09` (the form FHIR uses). */
export function dotted(code: string): string {
  return code.length > 3 ? `${code.slice(0, 3)}.${code.slice(3)}` : code;
}

/**
 * ICD-10-CM from the CMS / NCHS order file `icd10cm_order_<year>.txt` (fixed width: order
 * number 1-5, code 7-13 without its dot, 15 = 1 for a billable code and 0 for a header, short
 * description 17-76, long description from 78). Chosen over WHO's ClaML because it is the
 * edition US claims use and a plain text file. The hierarchy comes from the code structure: the
 * file lists each code right after its parent (the longest code above it that is a prefix of it),
 * so one stack of open ancestors is enough. Headers (categories and subcategories that are not
 * billable) carry `notSelectable` = true.
 */
export function icd10cmPlan(files: readonly string[]): ReleasePlan {
  const file = findOne(files, /^icd10cm_order_.*\.txt$/i, 'ICD-10-CM order file') ?? (files.length === 1 ? files[0] : undefined);
  if (!file) throw new ReleaseFormatError('ICD-10-CM: no icd10cm_order_<year>.txt under the given path');
  return {
    system: ICD10CM,
    files: [file],
    async stage(staging: ReleaseStaging, onBytes: OnBytes, version?: string): Promise<CodeSystemRow> {
      const concepts = new Batcher<StagedConcept>((rows) => staging.concepts(rows));
      const edges = new Batcher<[string, string]>((rows) => staging.edges(rows));
      const open: string[] = [];
      let count = 0;
      for await (const { line, n } of lines(file, onBytes)) {
        if (line.trim() === '') continue;
        const order = line.slice(0, 5);
        const code = line.slice(6, 13).trim();
        const billable = line[14];
        const short = line.slice(16, 76).trim();
        const long = line.slice(77).trim() || short;
        if (!/^[0-9]{5}$/.test(order) || line[5] !== ' ' || !CODE.test(code) || (billable !== '0' && billable !== '1') || !long) {
          throw new ReleaseFormatError(`${basename(file)}:${n}: not an ICD-10-CM order file line (order number, code, 0/1 flag, descriptions in fixed columns)`);
        }
        while (open.length && !code.startsWith(open[open.length - 1]!)) open.pop();
        const parent = open[open.length - 1];
        if (parent !== undefined) await edges.push([dotted(parent), dotted(code)]);
        open.push(code);
        await concepts.push({
          code: dotted(code),
          display: long,
          active: true,
          ...(billable === '0' ? { properties: [{ code: 'notSelectable', value: true, type: 'boolean' }] } : {}),
          ...(short && short !== long ? { designations: [{ language: 'en', use: { system: 'http://terminology.hl7.org/CodeSystem/designation-usage', code: 'display' }, value: short }] } : {}),
        });
        count++;
      }
      if (count === 0) throw new ReleaseFormatError(`${basename(file)}: no codes`);
      await concepts.flush();
      await edges.flush();
      const year = /icd10cm_order_([0-9]{4})/i.exec(basename(file))?.[1];
      const v = version ?? year;
      return {
        url: ICD10CM,
        ...(v ? { version: v } : {}),
        name: 'ICD10CM',
        title: 'International Classification of Diseases, 10th Revision, Clinical Modification',
        status: 'active',
        source: 'loaded',
        content: 'complete',
        hierarchyMeaning: 'is-a',
        caseSensitive: false,
        propertyDefs: [{ code: 'notSelectable', uri: 'http://hl7.org/fhir/concept-properties#notSelectable', type: 'boolean' }],
      };
    },
  };
}
