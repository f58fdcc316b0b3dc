import { performance } from 'node:perf_hooks';
import { ReleaseStaging } from '../../storage/terminology-release-store.js';
import { WORD_INDEX_MIN, type TerminologyStore } from '../../storage/terminology-store.js';
import { sizeOf } from './files.js';
import { planRelease, type ReleaseKind } from './plan.js';

export interface LoadProgress {
  /** bytes of the release files read so far, of `totalBytes` */
  bytes: number;
  totalBytes: number;
  phase: string;
}

export interface LoadSummary {
  system: string;
  version: string | undefined;
  concepts: number;
  closurePairs: number;
  words: number;
  seconds: number;
}

/**
 * Loads a release of LOINC, SNOMED CT or ICD-10-CM (src/terminology/release/*.ts) into the
 * terminology tables: the files are streamed into staging tables in batches of multi-row
 * INSERTs, then the code system's rows are replaced in the same transaction (a new version
 * replaces the old one: one version of a code system is held), so a malformed file or a
 * failure leaves the previous version as it was. Loading the same release again gives the same
 * rows. Value sets drawing on the code system are expanded again on next use; the terminology
 * tables are ANALYZEd afterwards.
 */
export async function loadRelease(store: TerminologyStore, kind: ReleaseKind, path: string, o: { version?: string; onProgress?: (p: LoadProgress) => void } = {}): Promise<LoadSummary> {
  const plan = planRelease(kind, path);
  const totalBytes = plan.files.reduce((sum, f) => sum + sizeOf(f), 0);
  let bytes = 0;
  let phase = 'reading';
  const report = () => o.onProgress?.({ bytes, totalBytes, phase });
  const started = performance.now();
  report();
  const result = await store.bulkDb.transaction().execute(async (trx) => {
    const staging = await ReleaseStaging.open(trx);
    const row = await plan.stage(
      staging,
      (n) => {
        bytes += n;
        report();
      },
      o.version,
    );
    // Other terminology writers wait from here to the commit only (the reading above takes longer).
    await store.lock(trx, 'write');
    const counts = await staging.replace(row, WORD_INDEX_MIN, (p) => {
      phase = p;
      report();
    });
    phase = 'value sets';
    report();
    await store.invalidate(trx, [row.url], []);
    return { row, ...counts };
  });
  phase = 'statistics';
  report();
  await store.analyzeTables(store.bulkDb);
  return {
    system: result.row.url,
    version: result.row.version,
    concepts: result.concepts,
    closurePairs: result.closure,
    words: result.words,
    seconds: (performance.now() - started) / 1000,
  };
}
