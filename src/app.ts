import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import type { StructureDefinition } from 'fhir/r4.js';
import { sql } from 'kysely';
import { ClientRegistry, SYSTEM_ALL_SCOPES } from './auth/clients.js';
import { registerTokenRoutes } from './auth/token-routes.js';
import { generateSigningKey, TokenService, type SigningKeyPair } from './auth/token-service.js';
import type { Config } from './config/config.js';
import { FhirError } from './fhir/errors.js';
import { loadUsCoreProfiles, ResourceValidator } from './fhir/validation/index.js';
import cors from '@fastify/cors';
import { bulkRoutes } from './http/bulk-routes.js';
import { importRoutes } from './http/import-routes.js';
import { registerErrorHandling } from './http/errors.js';
import { registerMetrics } from './http/metrics.js';
import { registerBodyParsers } from './http/fhir-json.js';
import { fhirRoutes } from './http/fhir-routes.js';
import { registerHealthRoutes } from './http/health-routes.js';
import { buildCapabilityStatement } from './interactions/capabilities.js';
import type { InteractionDeps } from './interactions/types.js';
import { BULK_OPERATIONS, createBulk, type BulkComponents } from './operations/export-wiring.js';
import { createImports, type ImportComponents } from './operations/import-wiring.js';
import { indexTables } from './search/index-tables.js';
import { SearchIndexer } from './search/indexer.js';
import { SearchParameterRegistry } from './search/registry.js';
import { runtimeSearchParameters, type RuntimeSearchParameters } from './workflows/search-parameters.js';
import { SearchService } from './search/search-service.js';
import { openDatabase, type DatabaseHandle } from './storage/db.js';
import { loadOrCreateKey } from './storage/key-store.js';
import { migrateToLatest } from './storage/migrate.js';
import { ResourceStore } from './storage/resource-store.js';

export interface ServerApp {
  http: FastifyInstance;
  store: ResourceStore;
  database: DatabaseHandle;
  validator: ResourceValidator;
  registry: SearchParameterRegistry;
  /** Job runner, Bulk Data export and $everything (tests pause the runner and tune export paging). */
  bulk: BulkComponents;
  /** $import service and its job runner (tests pause the runner). */
  imports: ImportComponents;
  /** Run-time SearchParameters and their reindex progress. */
  searchParameters: RuntimeSearchParameters;
  /** Set when the server made itself a development client because none was configured. */
  devClient?: { id: string; secret: string };
  close(): Promise<void>;
}

const ROOT = resolve(import.meta.dirname, import.meta.dirname.includes(`${join('dist', 'src')}`) ? '../..' : '..');

function packageVersion(): string {
  return (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

/** StructureDefinitions of our own in profiles/ (data, loaded at start-up). */
function loadOwnProfiles(): StructureDefinition[] {
  const dir = join(ROOT, 'profiles');
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  return files
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as StructureDefinition)
    .filter((r) => r.resourceType === 'StructureDefinition');
}

/** The storage and write pipeline without HTTP or jobs: what the server and `npm run import` share. */
export interface AppCore {
  database: DatabaseHandle;
  registry: SearchParameterRegistry;
  store: ResourceStore;
  validator: ResourceValidator;
  search: SearchService;
  fhirBase: string;
  searchParameters: RuntimeSearchParameters;
}

/**
 * Opens and migrates the database and builds the write pipeline (validation hook, search
 * index) and search. The caller owns `database` and closes it.
 */
export async function buildCore(config: Config): Promise<AppCore> {
  const database = await openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    schema: config.databaseSchema,
    poolSize: config.databasePoolSize,
  });
  try {
    await migrateToLatest(database.db);
  } catch (e) {
    await database.close();
    throw e;
  }

  const fhirBase = `${config.baseUrl}/fhir`;
  const usCore = config.profilePacks.includes('us-core');
  const registry = new SearchParameterRegistry({ searchParamsDir: join(ROOT, 'search-params'), packs: usCore ? ['uscore'] : [] });
  const indexer = new SearchIndexer(registry, { baseUrls: [fhirBase] });
  const store = new ResourceStore(database.db, { tables: indexTables, extract: (r) => indexer.extract(r) });
  const extraProfiles = [...loadOwnProfiles(), ...(usCore ? loadUsCoreProfiles() : [])];
  const validator = new ResourceValidator({ strictProfiles: config.strictProfiles, extraProfiles });
  store.onBeforeWrite((_tx, change) => {
    if (!change.resource) return;
    const issues = validator.validate(change.resource);
    if (issues.length === 0) return;
    const problems = issues.filter((i) => i.severity === 'error' || i.severity === 'fatal');
    if (problems.length > 0) throw new FhirError('invalid', problems);
    // Warnings (an unknown profile, say) do not stop the write; the client sees them with
    // Prefer: return=OperationOutcome.
    (change.issues ??= []).push(...issues);
  });
  const search = new SearchService({ db: database.db, registry });
  const searchParameters = await runtimeSearchParameters({ store, registry, indexer, search, db: database.db, log: config.logLevel === 'silent' ? () => undefined : (m) => console.log(m) });
  return { database, registry, store, validator, search, fhirBase, searchParameters };
}

/** The one place that builds every component from its dependencies. */
export async function buildApp(config: Config): Promise<ServerApp> {
  const { database, registry, store, validator, search, fhirBase, searchParameters } = await buildCore(config);

  const signingKey = await loadOrCreateKey<SigningKeyPair>(database.db, 'access-token-signing', generateSigningKey);
  const tokens = await TokenService.create(signingKey, config.baseUrl, config.accessTokenTtlSeconds);
  const clients = new ClientRegistry();
  let devClient: ServerApp['devClient'];
  if (config.bootstrapClient) {
    clients.register(config.bootstrapClient.id, config.bootstrapClient.secret, SYSTEM_ALL_SCOPES);
  } else if (!config.databaseUrl) {
    // Embedded development mode with nothing configured: a random client, printed once by main.
    devClient = { id: `dev-${randomUUID().slice(0, 8)}`, secret: randomBytes(24).toString('base64url') };
    clients.register(devClient.id, devClient.secret, SYSTEM_ALL_SCOPES);
  }

  const deps: InteractionDeps = { store, search, validator, fhirBase };
  const version = packageVersion();
  let capability: ReturnType<typeof buildCapabilityStatement> | undefined;
  const capabilityStatement = () =>
    (capability ??= buildCapabilityStatement({
      basePath: join(ROOT, 'conformance', 'capability-statement-base.json'),
      baseUrl: config.baseUrl,
      version,
      resourceTypes: validator.resourceTypes(),
      searchParams: (type) => registry.forType(type).map((p) => ({ name: p.code, type: p.type, definition: p.url })),
      operations: [{ name: 'validate', definition: 'http://hl7.org/fhir/OperationDefinition/Resource-validate' }],
      typeOperations: BULK_OPERATIONS.types,
      systemOperations: BULK_OPERATIONS.system,
    }));

  const http = Fastify({
    bodyLimit: config.bodyLimitBytes,
    return503OnClosing: true,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    routerOptions: { maxParamLength: 256, ignoreTrailingSlash: true },
    logger:
      config.logLevel === 'silent'
        ? false
        : {
            level: config.logLevel,
            // Paths only: query strings and bodies can carry PHI (names, birth dates).
            serializers: {
              req: (req) => ({ id: req.id, method: req.method, path: (req.url ?? '').split('?')[0] }),
              res: (res) => ({ statusCode: res.statusCode }),
            },
          },
  });
  http.addHook('onRequest', (request, reply, done) => {
    reply.header('X-Request-Id', request.id);
    done();
  });
  // Browser-based SMART apps call the API from other origins; tokens, not cookies, authorise.
  await http.register(cors, {
    origin: true,
    credentials: false,
    exposedHeaders: ['Location', 'ETag', 'Last-Modified', 'Content-Location', 'X-Progress', 'Retry-After', 'X-Request-Id'],
  });
  registerMetrics(http);
  await registerBodyParsers(http);
  registerErrorHandling(http);
  registerHealthRoutes(http, { ready: async () => void (await sql`SELECT 1`.execute(database.db)) });
  registerTokenRoutes(http, { clients, tokens });
  await http.register(fhirRoutes, { prefix: '/fhir', ...deps, tokens, capabilityStatement, reindexStatus: () => searchParameters.status() });
  let bulk: BulkComponents;
  try {
    bulk = await createBulk({
      db: database.db,
      store,
      search,
      types: validator,
      referenceParams: (type) => registry.forType(type).filter((p) => p.type === 'reference'),
      fhirBase,
      database: { databaseUrl: config.databaseUrl, schema: config.databaseSchema, dataDir: config.dataDir },
      redisUrl: config.redisUrl,
      log: (message, error) => http.log.error({ err: error }, message),
    });
  } catch (e) {
    await database.close();
    throw e;
  }
  await http.register(bulkRoutes, { prefix: '/fhir', tokens, exports: bulk.exports, everything: bulk.everything, baseUrl: config.baseUrl, fhirBase });
  let imports: ImportComponents;
  try {
    imports = await createImports({
      db: database.db,
      interactions: deps,
      importDir: config.importDir,
      concurrency: database.kind === 'postgres' ? 2 : 1,
      database: { databaseUrl: config.databaseUrl, schema: config.databaseSchema, dataDir: config.dataDir },
      redisUrl: config.redisUrl,
      log: (message, error) => http.log.error({ err: error }, message),
    });
  } catch (e) {
    await bulk.close();
    await database.close();
    throw e;
  }
  await http.register(importRoutes, { prefix: '/fhir', tokens, imports: imports.service, baseUrl: config.baseUrl });

  let closed = false;
  return {
    http,
    store,
    database,
    validator,
    registry,
    searchParameters,
    bulk,
    imports,
    devClient,
    async close() {
      if (closed) return;
      closed = true;
      await http.close();
      // Running jobs stop at their next checkpoint and release their claim (database still open).
      await bulk.close();
      await imports.close();
      await searchParameters.idle();
      await database.close();
    },
  };
}
