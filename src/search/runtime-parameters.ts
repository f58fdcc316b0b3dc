import type { SearchParameter } from 'fhir/r4.js';
import { sql, type Kysely } from 'kysely';
import { FhirError } from '../fhir/errors.js';
import type { SearchIndexer } from './indexer.js';
import { reindex } from './reindex.js';
import type { SearchParameterRegistry } from './registry.js';
import type { SearchService } from './search-service.js';
import type { ResourceStore } from '../storage/resource-store.js';
import { pollEvery } from '../jobs/poll.js';

/** Progress of the background reindex of one run-time SearchParameter. */
export interface ReindexStatus {
  url: string;
  state: 'running' | 'ready' | 'failed';
  resourcesDone: number;
  error?: string;
}

export interface RuntimeSearchParameters {
  /** Reindex progress by SearchParameter url (this process). */
  status(): ReindexStatus[];
  /** Waits for every reindex this process started (tests, shutdown). */
  idle(): Promise<void>;
  /** Stops looking for SearchParameters stored by other processes. */
  close(): void;
}

/** Another process's clock may lag this one's: changes are looked for this far back again. */
const POLL_OVERLAP_MS = 60_000;

/**
 * SearchParameter resources created at run time (https://hl7.org/fhir/R4/searchparameter.html):
 * an active one is checked before it is stored (its expression must compile), then added to
 * the registry as pending, its base types are reindexed in the background, and only then do
 * searches accept it (until then they are refused with a 400 naming the parameter).
 * Other server processes on the same database learn of it within `pollMs`: each looks for
 * SearchParameter versions it has not activated yet (one probe of the (resource_type,
 * last_updated) index) and activates them the same way, reindex included.
 */
export async function runtimeSearchParameters(deps: {
  store: ResourceStore;
  registry: SearchParameterRegistry;
  indexer: SearchIndexer;
  search: SearchService;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  db: Kysely<any>;
  log: (message: string) => void;
  /** Called when a reindex has finished (the server ANALYZEs the rewritten index tables). */
  afterReindex?: () => void;
  /** How often to look for SearchParameters stored by other processes; 0: never (one process, e.g. the embedded database). */
  pollMs?: number;
}): Promise<RuntimeSearchParameters> {
  const statuses = new Map<string, ReindexStatus>();
  const running = new Set<Promise<void>>();
  /** Versions activated here, by SearchParameter id: what another process stored is the rest. */
  const activated = new Map<string, string>();

  const activate = (sp: SearchParameter) => {
    if (!sp.url) return;
    if (sp.id) activated.set(sp.id, sp.meta?.versionId ?? '');
    deps.registry.add(sp);
    const status: ReindexStatus = { url: sp.url, state: 'running', resourcesDone: 0 };
    statuses.set(sp.url, status);
    const job = reindex({ db: deps.db, registry: deps.registry, indexer: deps.indexer }, { url: sp.url, onProgress: (n) => (status.resourcesDone = n) })
      .then(() => {
        status.state = 'ready';
        deps.afterReindex?.();
        deps.log(`search parameter ${sp.url} is ready (${status.resourcesDone} resources reindexed)`);
      })
      .catch((e: unknown) => {
        status.state = 'failed';
        status.error = e instanceof Error ? e.message : String(e);
        deps.log(`reindex for search parameter ${sp.url} failed: ${status.error}`);
      })
      .finally(() => running.delete(job));
    running.add(job);
  };

  deps.store.onBeforeWrite((_tx, change) => {
    const sp = change.resource as SearchParameter | undefined;
    if (sp?.resourceType !== 'SearchParameter' || sp.status !== 'active') return;
    if (!sp.url) throw new FhirError('invalid', [{ severity: 'error', code: 'required', diagnostics: 'an active SearchParameter needs a url', expression: ['SearchParameter.url'] }]);
    try {
      // Compiles the expression against a scratch registry entry without activating it.
      deps.registry.check(sp);
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      throw new FhirError('invalid', [{ severity: 'error', code: 'invalid', diagnostics: `the SearchParameter cannot be used: ${message}`, expression: ['SearchParameter.expression'] }]);
    }
  });
  deps.store.onAfterCommit((changes) => {
    for (const change of changes) {
      const sp = change.resource as SearchParameter | undefined;
      if (sp?.resourceType === 'SearchParameter' && sp.status === 'active') activate(sp);
    }
  });

  // Parameters created before this process started: registered and reindexed again (idempotent).
  const ids = await deps.search.findIds('SearchParameter', 'status=active', { limit: 1000 });
  for (const id of ids) {
    const stored = await deps.store.read('SearchParameter', id);
    if (stored?.json) activate(JSON.parse(stored.json) as SearchParameter);
  }

  let since = new Date(Date.now() - POLL_OVERLAP_MS).toISOString();
  const poll = async () => {
    const from = since;
    since = new Date(Date.now() - POLL_OVERLAP_MS).toISOString();
    const rows = await sql<{ id: string; version_id: string }>`
      SELECT id, version_id::text AS version_id FROM resource
      WHERE resource_type = 'SearchParameter' AND last_updated >= ${from}::timestamptz AND NOT deleted`.execute(deps.db);
    for (const row of rows.rows) {
      if (activated.get(row.id) === row.version_id) continue;
      const stored = await deps.store.read('SearchParameter', row.id);
      const sp = stored?.json ? (JSON.parse(stored.json) as SearchParameter) : undefined;
      if (sp?.status === 'active') activate(sp);
      else activated.set(row.id, row.version_id);
    }
  };
  const stopPolling = pollEvery(deps.pollMs, poll, (e) => deps.log(`looking for new search parameters failed: ${e instanceof Error ? e.message : String(e)}`));

  return {
    close: stopPolling,
    status: () => [...statuses.values()].map((s) => ({ ...s })),
    idle: async () => {
      while (running.size > 0) await Promise.all([...running]);
    },
  };
}
