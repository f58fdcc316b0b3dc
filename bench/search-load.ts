import type { Resource } from 'fhir/r4.js';
import type { ResourceStore } from '../src/storage/resource-store.js';
import { generatePractitioner, resourcesFor } from './search-data.js';

export interface LoadResult {
  resources: number;
  byType: Record<string, number>;
  seconds: number;
  perSecond: number;
}

/**
 * Writes resources through the server's own write path: `ResourceStore.transaction` with the
 * before-write hooks (validation) and index extraction, `batch` resources per transaction (one
 * set-based statement each), `inFlight` transactions at a time so JSON/index work in Node
 * overlaps with PostgreSQL's inserts.
 */
export async function writeAll(store: ResourceStore, source: Iterable<Resource>, opts: { batch: number; inFlight: number; onProgress?: (n: number) => void }): Promise<LoadResult> {
  const started = performance.now();
  const byType: Record<string, number> = {};
  const it = source[Symbol.iterator]();
  let done = false;
  let written = 0;
  const nextBatch = (): Resource[] => {
    const out: Resource[] = [];
    while (!done && out.length < opts.batch) {
      const n = it.next();
      if (n.done) done = true;
      else out.push(n.value);
    }
    return out;
  };
  const worker = async () => {
    for (;;) {
      const batch = nextBatch();
      if (batch.length === 0) return;
      await store.transaction(async (tx) => {
        for (const r of batch) await tx.create(r, 'POST', r.id);
      });
      for (const r of batch) byType[r.resourceType] = (byType[r.resourceType] ?? 0) + 1;
      written += batch.length;
      opts.onProgress?.(written);
    }
  };
  await Promise.all(Array.from({ length: opts.inFlight }, worker));
  const seconds = (performance.now() - started) / 1000;
  return { resources: written, byType, seconds, perSecond: written / seconds };
}

/** Practitioners [from, to) then patients [from, to) with their encounters and observations. */
export async function loadPopulation(
  store: ResourceStore,
  range: { practitioners: [number, number]; patients: [number, number]; practitionerTotal: number },
  opts: { batch: number; inFlight: number; onProgress?: (n: number) => void },
): Promise<LoadResult> {
  function* all(): Generator<Resource> {
    for (let i = range.practitioners[0]; i < range.practitioners[1]; i++) yield generatePractitioner(i);
    yield* resourcesFor(range.patients[0], range.patients[1], range.practitionerTotal);
  }
  return writeAll(store, all(), opts);
}
