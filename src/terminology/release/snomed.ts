import { basename } from 'node:path';
import { SCT_FSN, SCT_PREFERRED, SCT_SYNONYM, type ReleaseStaging, type StagedConcept, type StagedDescription } from '../../storage/terminology-release-store.js';
import type { CodeSystemRow } from '../../storage/terminology-rows.js';
import { Batcher } from './batch.js';
import { findOne, ReleaseFormatError, tsvRows, type OnBytes } from './files.js';
import type { ReleasePlan } from './plan.js';

export const SNOMED = 'http://snomed.info/sct';
/** |Is a (attribute)|: the relationship type of the hierarchy. */
const IS_A = '116680003';
/** |Sufficiently defined concept definition status|. */
const DEFINED = '900000000000073002';
/** Language reference sets whose preferred synonym becomes the display, in this order: US English, GB English. */
const DISPLAY_REFSETS = ['900000000000509007', '900000000000508004'];
/** The module of the International Edition (its version URI names it). */
const INT_MODULE = '900000000000207008';
const SCTID = /^[0-9]{6,18}$/;

const CONCEPT_COLUMNS = ['id', 'effectiveTime', 'active', 'moduleId', 'definitionStatusId'];
const DESCRIPTION_COLUMNS = ['id', 'effectiveTime', 'active', 'moduleId', 'conceptId', 'languageCode', 'typeId', 'term', 'caseSignificanceId'];
const RELATIONSHIP_COLUMNS = ['id', 'effectiveTime', 'active', 'moduleId', 'sourceId', 'destinationId', 'relationshipGroup', 'typeId', 'characteristicTypeId', 'modifierId'];
const LANGUAGE_COLUMNS = ['id', 'effectiveTime', 'active', 'moduleId', 'refsetId', 'referencedComponentId', 'acceptabilityId'];

function flag(file: string, n: number, v: string | undefined): boolean {
  if (v === '1') return true;
  if (v === '0') return false;
  throw new ReleaseFormatError(`${basename(file)}:${n}: active must be 0 or 1, not '${String(v).slice(0, 20)}'`);
}

function sctid(file: string, n: number, v: string | undefined, what: string): string {
  if (!v || !SCTID.test(v)) throw new ReleaseFormatError(`${basename(file)}:${n}: ${what} '${String(v).slice(0, 40)}' is not a SNOMED CT identifier`);
  return v;
}

/**
 * SNOMED CT from an RF2 release (its folder; the Snapshot files are read):
 * `sct2_Concept_Snapshot*` (codes, active flags, definition status), `sct2_Description_Snapshot-en*`
 * (active FSNs and synonyms become designations), `sct2_Relationship_Snapshot*` (active inferred
 * |is a| relationships become the hierarchy) and, when present, `der2_cRefset_LanguageSnapshot-en*`
 * (the US English, else GB English, preferred synonym is the display; without it the FSN
 * without its semantic tag is).
 */
export function snomedPlan(files: readonly string[]): ReleasePlan {
  const concepts = findOne(files, /^sct2_Concept_Snapshot.*\.txt$/i, 'SNOMED CT concepts');
  const descriptions = findOne(files, /^sct2_Description_Snapshot-en.*\.txt$/i, 'SNOMED CT descriptions');
  const relationships = findOne(files, /^sct2_Relationship_Snapshot.*\.txt$/i, 'SNOMED CT relationships');
  const language = findOne(files, /^der2_cRefset_LanguageSnapshot-en.*\.txt$/i, 'SNOMED CT language reference set');
  if (!concepts || !descriptions || !relationships) {
    throw new ReleaseFormatError('SNOMED CT: the RF2 Snapshot needs sct2_Concept_Snapshot*, sct2_Description_Snapshot-en* and sct2_Relationship_Snapshot* files under the given path');
  }
  return {
    system: SNOMED,
    files: [concepts, descriptions, relationships, ...(language ? [language] : [])],
    async stage(staging: ReleaseStaging, onBytes: OnBytes, version?: string): Promise<CodeSystemRow> {
      const conceptRows = new Batcher<StagedConcept>((rows) => staging.concepts(rows));
      for await (const { row, n } of tsvRows(concepts, CONCEPT_COLUMNS, onBytes)) {
        const code = sctid(concepts, n, row.id, 'id');
        await conceptRows.push({
          code,
          active: flag(concepts, n, row.active),
          properties: [
            { code: 'moduleId', value: row.moduleId!, type: 'code' },
            { code: 'sufficientlyDefined', value: row.definitionStatusId === DEFINED, type: 'boolean' },
          ],
        });
      }
      await conceptRows.flush();
      const descRows = new Batcher<StagedDescription>((rows) => staging.descriptions(rows));
      for await (const { row, n } of tsvRows(descriptions, DESCRIPTION_COLUMNS, onBytes)) {
        if (!flag(descriptions, n, row.active)) continue;
        if (row.typeId !== SCT_FSN && row.typeId !== SCT_SYNONYM) continue; // text definitions live in another file
        await descRows.push({ id: sctid(descriptions, n, row.id, 'id'), concept: sctid(descriptions, n, row.conceptId, 'conceptId'), term: row.term!, type: row.typeId, language: row.languageCode || 'en' });
      }
      await descRows.flush();
      const edges = new Batcher<[string, string]>((rows) => staging.edges(rows));
      for await (const { row, n } of tsvRows(relationships, RELATIONSHIP_COLUMNS, onBytes)) {
        if (!flag(relationships, n, row.active) || row.typeId !== IS_A) continue;
        await edges.push([sctid(relationships, n, row.destinationId, 'destinationId'), sctid(relationships, n, row.sourceId, 'sourceId')]);
      }
      await edges.flush();
      if (language) {
        const prefs = new Batcher<{ description: string; refset: string }>((rows) => staging.preferred(rows));
        for await (const { row, n } of tsvRows(language, LANGUAGE_COLUMNS, onBytes)) {
          if (!flag(language, n, row.active) || row.acceptabilityId !== SCT_PREFERRED) continue;
          await prefs.push({ description: sctid(language, n, row.referencedComponentId, 'referencedComponentId'), refset: row.refsetId! });
        }
        await prefs.flush();
      }
      await staging.describeFromDescriptions(DISPLAY_REFSETS);
      // The release date is in every file name (…_INT_20240101.txt); the International Edition's version is a URI.
      const m = /_([A-Za-z0-9]+)_([0-9]{8})\.txt$/.exec(basename(concepts));
      const derived = m ? (m[1] === 'INT' ? `${SNOMED}/${INT_MODULE}/version/${m[2]}` : m[2]) : undefined;
      const v = version ?? derived;
      return {
        url: SNOMED,
        ...(v ? { version: v } : {}),
        name: 'SNOMED_CT',
        title: 'SNOMED CT',
        status: 'active',
        source: 'loaded',
        content: 'complete',
        hierarchyMeaning: 'is-a',
        caseSensitive: true,
        propertyDefs: [
          { code: 'moduleId', uri: `${SNOMED}/property/moduleId`, type: 'code' },
          { code: 'sufficientlyDefined', uri: `${SNOMED}/property/sufficientlyDefined`, type: 'boolean' },
        ],
      };
    },
  };
}
