import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import type { RelatedPerson, StructureDefinition } from 'fhir/r4.js';
import { sql } from 'kysely';
import { signInAuditEvent } from './audit/audit-event.js';
import { AuditLog, refuseAuditEventWrites } from './audit/audit-log.js';
import { AUDIT_EVENT_UNINDEXED_PARAMS, AuditSearch } from './audit/audit-search.js';
import { AuditRenderer } from './audit/audit-render.js';
import { AuditRetention } from './audit/audit-retention.js';
import { registerHttpAudit } from './audit/http-audit.js';
import { registerAuthServerAudit } from './audit/auth-server-audit.js';
import { createAuthServer, patientLabel, type AuthServer } from './auth/auth-server.js';
import type { PatientDirectory } from './auth/authorize-routes.js';
import { generateSigningKey, type SigningKeyPair } from './auth/keys.js';
import type { TokenService } from './auth/token-service.js';
import type { Config } from './config/config.js';
import { FhirError } from './fhir/errors.js';
import { loadUsCoreProfiles, ResourceValidator } from './fhir/validation/index.js';
import cors from '@fastify/cors';
import { bulkRoutes } from './http/bulk-routes.js';
import { importRoutes } from './http/import-routes.js';
import { createHl7v2, type Hl7v2Components } from './hl7v2/wiring.js';
import { loadMappingTables } from './hl7v2/maps/tables.js';
import { registerErrorHandling } from './http/errors.js';
import { registerMetrics, registerMllpMetrics, registerQueueMetrics } from './http/metrics.js';
import { registerBodyParsers } from './http/fhir-json.js';
import { registerBinaryContent } from './http/binary-content.js';
import { registerFhirFormats, VERSIONS_OPERATION } from './http/fhir-formats.js';
import { fhirRoutes } from './http/fhir-routes.js';
import { registerHealthRoutes } from './http/health-routes.js';
import { registerDrain } from './http/drain.js';
import { buildCapabilityStatement, mergeTypeOperations } from './interactions/capabilities.js';
import type { InteractionDeps } from './interactions/types.js';
import { BULK_OPERATIONS, type BulkComponents } from './operations/export-wiring.js';
import type { ImportService } from './operations/import-service.js';
import { createJobs, type JobComponents, type JobWiringDeps } from './operations/job-wiring.js';
import type { JobRunner, QueueDefinition } from './jobs/types.js';
import { indexTables } from './search/index-tables.js';
import { SearchIndexer } from './search/indexer.js';
import { SearchParameterRegistry } from './search/registry.js';
import { runtimeSearchParameters, type RuntimeSearchParameters } from './search/runtime-parameters.js';
import { storedProfiles } from './fhir/validation/stored-profiles.js';
import { COUNT_BESIDE_PAGE_AFTER_MS, SearchService } from './search/search-service.js';
import { checkTextSearchLanguage } from './search/text-search-config.js';
import { pdfTextHook } from './search/pdf-text.js';
import { openDatabase, openReplica, type DatabaseHandle } from './storage/db.js';
import { DatabaseMaintenance } from './storage/maintenance.js';
import { Backfills } from './storage/backfill.js';
import { loadOrCreateKey } from './storage/key-store.js';
import { migrateToLatest } from './storage/migrate.js';
import { ResourceStore } from './storage/resource-store.js';
import { registerChannels, type ChannelDeps } from './subscriptions/channels/index.js';
import { subscriptionCapability, SUBSCRIPTION_OPERATIONS, subscriptionRoutes } from './subscriptions/routes.js';
import { createSubscriptions, type SubscriptionComponents } from './subscriptions/wiring.js';
import { messageSenderHook, messagingRoutes } from './workflows/messaging.js';
import { TerminologyService } from './terminology/service.js';
import { terminologyRoutes } from './terminology/routes.js';
import { TERMINOLOGY_OPERATIONS } from './terminology/operations.js';
import { META_OPERATIONS, SYSTEM_META_OPERATION } from './interactions/meta.js';
import { DOCUMENT_OPERATION } from './operations/document.js';
import { FRONT_DESK_OPERATIONS, registerFrontDesk, registerFrontDeskRules } from './workflows/scheduling-wiring.js';
import { ERASE_OPERATIONS, legalHoldHook, registerErase } from './operations/erase.js';
import { CLINICAL_OPERATIONS, registerClinical, registerClinicalRules } from './workflows/clinical-wiring.js';
import { LAB_OPERATIONS, registerLab, registerLabOrderTracking, registerLabRules } from './workflows/lab/wiring.js';
import { FUZZY_SEARCH_OPERATION, patientNameIndexHook, registerFuzzySearch } from './workflows/patient-fuzzy-search.js';
import { REGISTER_CSV_OPERATION, registerCsvRegistration } from './workflows/patient-register-csv.js';
import { REPORT_OPERATIONS, registerReports } from './workflows/reports/routes.js';
import { PHARMACY_OPERATIONS, registerPharmacy, registerPharmacyRules } from './workflows/pharmacy/wiring.js';
import { EXPIRY_JOB, EXPIRY_QUEUE, expiryQueue } from './workflows/pharmacy/expiry.js';
import { BILLING_OPERATIONS, registerBilling, registerBillingRules } from './workflows/billing/billing-wiring.js';
import { loadPriceList } from './workflows/billing/price-list.js';
import { WEBSOCKET_OPERATIONS, websocketUrl } from './subscriptions/channels/websocket-routes.js';
import { withSubscriptionConformance } from './subscriptions/capability.js';
import { registerWriteContext } from './subscriptions/write-context.js';
import { registerApiRateLimits } from './http/rate-limits.js';
import type { RequestListener, Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createNotifications } from './workflows/notifications/wiring.js';
import { createSlotGeneration } from './workflows/schedules-generate.js';
import { GENERATE_SLOTS_OPERATION, registerSchedules } from './workflows/schedules-routes.js';
import { AuditStore } from './storage/audit-store.js';
import { consoleRoutes, registerConsoleClient } from './http/console-routes.js';

export interface ServerApp {
  http: FastifyInstance;
  store: ResourceStore;
  database: DatabaseHandle;
  validator: ResourceValidator;
  registry: SearchParameterRegistry;
  /** The process's one job runner, serving the export and import queues (tests pause it). */
  jobs: JobRunner;
  /** Bulk Data export and $everything (tests tune export paging). */
  bulk: BulkComponents;
  /** $import service. */
  imports: ImportService;
  /** Run-time SearchParameters and their reindex progress. */
  searchParameters: RuntimeSearchParameters;
  /** Rows an upgrade's migrations left to the running server (tests wait for them). */
  backfills: Backfills;
  /** HL7 v2 channel: MLLP listener (main.ts starts it on HL7_MLLP_PORT), ingest, raw message store. */
  hl7v2: Hl7v2Components;
  /** Set when the server made itself a development client because none was configured. */
  devClient?: { id: string; secret: string };
  /** The audit trail (tests flush it to see the AuditEvents of their requests). */
  audit: AuditLog;
  /** The server's own archival of old AuditEvents (AUDIT_RETENTION_DAYS with AUDIT_ARCHIVE_DIR); undefined when not configured. */
  auditRetention?: AuditRetention;
  /** Subscriptions: channel senders, dispatcher, delivery state (docs/subscriptions.md). */
  subscriptions: SubscriptionComponents;
  /** Access-token issuing and checking (benchmarks mint user tokens with it). */
  tokens: TokenService;
  /** First phase of a graceful shutdown (src/http/drain.ts): not ready, keep-alive connections closed after their next response. */
  drain(): void;
  close(): Promise<void>;
}

/** How soon a SearchParameter or StructureDefinition stored by another process is picked up (src/search/runtime-parameters.ts, src/fhir/validation/stored-profiles.ts). */
const DEFINITIONS_POLL_MS = 2_000;

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
  /** ANALYZE / VACUUM where nobody else does them; closing `database` stops it first. */
  maintenance: DatabaseMaintenance;
  /** Rows an upgrade left to the running server (src/storage/backfill.ts). */
  backfills: Backfills;
  /** Terminology operations and search modifiers over the terminology tables. */
  terminology: TerminologyService;
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
    poolTimeoutMs: config.databasePoolTimeoutMs,
    statementTimeoutMs: config.databaseStatementTimeoutMs,
    memoryTemplate: config.pgliteMemoryTemplate,
  });
  try {
    // Migrations may build indexes over big tables: not bound by the statement time limit.
    await migrateToLatest(database.unlimitedDb);
  } catch (e) {
    await database.close();
    throw e;
  }

  const fhirBase = `${config.baseUrl}/fhir`;
  const usCore = config.profilePacks.includes('us-core');
  const registry = new SearchParameterRegistry({ searchParamsDir: join(ROOT, 'search-params'), packs: usCore ? ['uscore'] : [], unindexed: AUDIT_EVENT_UNINDEXED_PARAMS, textSearchLanguage: config.textSearchLanguage });
  await checkTextSearchLanguage(database.db, registry.textSearchLanguage);
  const indexer = new SearchIndexer(registry, { baseUrls: [fhirBase] });
  const store = new ResourceStore(database.db, { tables: indexTables, extract: (r) => indexer.extract(r) });
  const extraProfiles = [...loadOwnProfiles(), ...(usCore ? loadUsCoreProfiles() : [])];
  const validator = new ResourceValidator({ strictProfiles: config.strictProfiles, extraProfiles });
  // First: no client writes AuditEvents by any path (REST, Bundles, $import, npm run import, HL7 v2);
  // the audit trail has its own write path (src/storage/audit-store.ts).
  store.onBeforeWrite(refuseAuditEventWrites);
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
  const log = config.logLevel === 'silent' ? () => undefined : (m: string) => console.log(m);
  const maintenance = new DatabaseMaintenance({ db: database.unlimitedDb, kind: database.kind, mode: config.databaseMaintenance, log });
  store.onAfterCommit((changes) => maintenance.noteCommitted(changes.length));
  // Terminology tables: stored CodeSystem / ValueSet / ConceptMap indexed in the write transaction;
  // the built-in definitions loaded on first use (once per database).
  const terminology = new TerminologyService({
    db: database.db,
    bulkDb: database.unlimitedDb,
    localDir: join(ROOT, 'terminology'),
    log,
    afterBulkWrite: () => void maintenance.afterBulkWrite(),
  });
  store.onBeforeWrite(terminology.beforeWrite);
  // Fuzzy patient name search (issue 12): folded name words kept in the write transaction.
  store.onBeforeWrite(patientNameIndexHook);
  // Hospital rules on every write path of every process (REST, Bundles, HL7 v2, $import in a
  // worker, npm run import): messages sent as their writer; registration, booking and beds.
  store.onBeforeWrite(messageSenderHook);
  // GDPR legal hold (issue 17 §5): lifted by ADMIN users only (src/operations/erase.ts).
  store.onBeforeWrite(legalHoldHook);
  registerFrontDeskRules(store, { terminologyDir: join(ROOT, 'terminology'), appointmentChangeWindowHours: config.appointmentChangeWindowHours, emergencyReleaseHours: config.schedules.emergencyReleaseHours, dischargeFollowUpDays: config.schedules.followUpDays });
  // Clinical records (issue 13 §1-2): signatures, amendments, draft notes, vital-sign units, flags and BMI.
  registerClinicalRules(store, { terminologyDir: join(ROOT, 'terminology'), amendmentWindowHours: config.clinicalAmendmentWindowHours });
  // Laboratory (issue 14): catalogue orders, accession numbers, result flags, dual verification.
  const labCatalog = registerLabRules(store, { terminologyDir: join(ROOT, 'terminology') });
  // Pharmacy (issue 13 §4): stock per batch, receipts, dispensing (src/workflows/pharmacy/).
  registerPharmacyRules(store);
  // Billing and insurance (issue 14 §3-4): charges, invoice guard, payment accounting, insurer payouts.
  registerBillingRules(store, loadPriceList(ROOT, config.billing.currency, config.billing.jurisdiction));
  // Lab order tracking Tasks (issue 14 §1), after the rules above have shaped each write.
  registerLabOrderTracking(store, labCatalog);
  // Full text (issue 15 §3): inline PDF attachments' text for `_content`, after every other
  // hook (it must see the resource as stored).
  store.onBeforeWrite(pdfTextHook, 'last');
  // Rows that an upgrade's migrations left to the running server (large databases): filled in the
  // background; full-text searches and reports answer 503 until theirs are complete.
  const backfills = new Backfills({ db: database.unlimitedDb, log, extract: (r) => indexer.extract(r), afterDone: () => void maintenance.afterBulkWrite() });
  const search = new SearchService({ db: database.db, registry, terminology, backfillProgress: (name) => backfills.progress(name), countBesidePageAfterMs: database.kind === 'postgres' ? COUNT_BESIDE_PAGE_AFTER_MS : undefined });
  // Several processes share a PostgreSQL database: each looks for SearchParameters the others stored.
  const searchParameters = await runtimeSearchParameters({ store, registry, indexer, search, db: database.db, log, afterReindex: () => void maintenance.afterBulkWrite(), pollMs: database.kind === 'postgres' ? DEFINITIONS_POLL_MS : 0 });
  // Profiles from stored StructureDefinitions, likewise looked for in the other processes' writes.
  const profiles = await storedProfiles({ store, search, validator, log, pollMs: database.kind === 'postgres' ? DEFINITIONS_POLL_MS : 0 });
  await maintenance.start();
  await backfills.start();
  const closeDatabase = database.close.bind(database);
  const owned: DatabaseHandle = {
    ...database,
    async close() {
      profiles.close();
      searchParameters.close();
      await backfills.close();
      await terminology.idle();
      await maintenance.close();
      await closeDatabase();
    },
  };
  return { database: owned, registry, store, validator, search, fhirBase, searchParameters, maintenance, terminology, backfills };
}

/**
 * Subscriptions and hospital notifications over a built core, with their channel senders and
 * queues: the same for the HTTP server (which adds `http` and `tokens` for the websocket
 * channel) and `npm run worker`.
 */
export function eventDelivery(core: AppCore, config: Config, log: (message: string, error?: unknown) => void, server: Pick<ChannelDeps, 'http' | 'tokens'> = {}) {
  const { store, search, database, fhirBase, validator } = core;
  const subscriptions = createSubscriptions({ store, search, db: database.db, fhirBase, config, isResourceType: (t) => validator.isResourceType(t), log });
  registerChannels(subscriptions.channels, { config, log, db: database.db, search, fhirBase, ...server });
  // Hospital notifications (issue 11 §4): committed writes → Communications sent on the channels above.
  const notifications = createNotifications({ store, search, fhirBase, config, channels: subscriptions.channels, root: ROOT, log });
  // Recurring schedules (issue 12 §2): Slots generated ahead of time by a job.
  const slotGeneration = createSlotGeneration({ store, db: database.db, settings: config.schedules, log });
  return {
    subscriptions,
    notifications,
    queues: [subscriptions.queue, ...notifications.queues, slotGeneration.queue],
    start(runner: JobRunner): void {
      subscriptions.start(runner);
      notifications.start(runner);
      slotGeneration.start(runner);
    },
    /** No new deliveries; running ones finish or hand back when the job runner closes. */
    async stop(): Promise<void> {
      notifications.close();
      slotGeneration.close();
      await subscriptions.close();
    },
  };
}

/** The job runner's wiring over a built core: the same for the HTTP server and `npm run worker`. */
export function jobWiring(core: AppCore, config: Config, extraQueues: readonly QueueDefinition[], log: (message: string, error?: unknown) => void): JobWiringDeps {
  const { database, store, search, validator, registry, fhirBase } = core;
  return {
    exports: {
      db: database.db,
      store,
      search,
      types: validator,
      referenceParams: (type) => registry.forType(type).filter((p) => p.type === 'reference'),
      fhirBase,
      database: { databaseUrl: config.databaseUrl, dataDir: config.dataDir },
      log,
    },
    imports: { db: database.db, interactions: { store, search, validator, fhirBase }, importDir: config.importDir, concurrency: database.kind === 'postgres' ? 2 : 1, log },
    database: { databaseUrl: config.databaseUrl, schema: config.databaseSchema, dataDir: config.dataDir },
    redisUrl: config.redisUrl,
    extraQueues,
    log,
  };
}

/** The one place that builds every component from its dependencies. */
export async function buildApp(config: Config): Promise<ServerApp> {
  const core = await buildCore(config);
  const { database, registry, store, validator, search, fhirBase, searchParameters, maintenance } = core;
  // The audit trail keeps search keys of its own (src/audit/audit-keys.ts), not generic index rows.
  const auditStore = new AuditStore(database.db);
  // AuditEvents live in their own table (migration 0014): their searches go to the audit store.
  search.searchOwnType('AuditEvent', new AuditSearch(auditStore));
  const auditSource = { baseUrl: config.baseUrl };
  // Queued items become AuditEvents (JSON and search keys) in the writer, not on the request path.
  const auditRenderer = new AuditRenderer(auditSource, [fhirBase]);
  const audit = new AuditLog({
    writer: auditStore,
    render: (item) => auditRenderer.render(item),
    enabled: config.auditEvents,
    queueLimit: config.auditQueueLimit,
    onWritten: (n) => maintenance.noteCommitted(n),
    log: (message, error) => (config.logLevel === 'silent' ? undefined : console.error(message, error ?? '')),
  });

  let auth: AuthServer;
  let devClient: ServerApp['devClient'];
  try {
    auth = await createAuthServer({
      db: database.db,
      baseUrl: config.baseUrl,
      accessTokenTtlSeconds: config.accessTokenTtlSeconds,
      rolesPath: join(ROOT, 'conformance', 'smart-roles.json'),
      legacyAccessKey: () => loadOrCreateKey<SigningKeyPair>(database.db, 'access-token-signing', () => generateSigningKey('ES256')),
      tokenRateLimitPerMinute: config.authTokenRateLimit,
      signInRateLimitPerMinute: config.authSignInRateLimit,
      onSignIn: (attempt) => audit.record(signInAuditEvent({ ...attempt, recorded: new Date().toISOString() }, auditSource)),
    });
    if (config.bootstrapClient) {
      await auth.clients.ensureSystemClient(config.bootstrapClient.id, config.bootstrapClient.secret);
    } else if (!config.databaseUrl) {
      // Embedded development mode with nothing configured: a random client, printed once by main.
      devClient = { id: `dev-${randomUUID().slice(0, 8)}`, secret: randomBytes(24).toString('base64url') };
      await auth.clients.ensureSystemClient(devClient.id, devClient.secret, true);
    }
    if (config.bootstrapAdmin) await auth.users.ensureBootstrapAdmin(config.bootstrapAdmin.user, config.bootstrapAdmin.password);
    // The hospital web console (issue 16) signs in as a public SMART client like any other app.
    const consoleProblem = await registerConsoleClient(auth.store, config.baseUrl);
    if (consoleProblem && config.logLevel !== 'silent') console.warn(`console: sign-in cannot redirect back (${consoleProblem})`);
  } catch (e) {
    await database.close();
    throw e;
  }
  const { tokens } = auth;
  // The standalone-launch patient picker: a first page of patients, by name when asked.
  const patients: PatientDirectory = {
    async find(name) {
      const bundle = await search.search({ resourceType: 'Patient', params: [['_count', '50'], ...(name ? [['name', name] as [string, string]] : [])], baseUrl: fhirBase });
      return (bundle.entry ?? []).flatMap((e) => (e.resource?.resourceType === 'Patient' && e.resource.id ? [{ id: e.resource.id, label: patientLabel(e.resource) }] : []));
    },
    async exists(id) {
      const found = await store.read('Patient', id);
      return Boolean(found && !found.deleted);
    },
    async relatedPersonPatient(id) {
      const found = await store.read('RelatedPerson', id);
      if (!found?.json || found.deleted) return undefined;
      const reference = (JSON.parse(found.json) as RelatedPerson).patient?.reference ?? '';
      return /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(reference)?.[1];
    },
  };

  const deps: InteractionDeps = { store, search, validator, fhirBase };
  const version = packageVersion();
  // Rebuilt when a SearchParameter or a profile is added, becomes ready or goes (run-time
  // definitions stored through the API); otherwise built once.
  let capability: { key: string; statement: ReturnType<typeof buildCapabilityStatement> } | undefined;
  const capabilityStatement = () => {
    const key = `${registry.generation}:${validator.profileGeneration}`;
    if (capability?.key !== key) capability = { key, statement: buildCapability() };
    return capability.statement;
  };
  const buildCapability = () =>
    withSubscriptionConformance(buildCapabilityStatement({
      basePath: join(ROOT, 'conformance', 'capability-statement-base.json'),
      baseUrl: config.baseUrl,
      version,
      resourceTypes: validator.resourceTypes(),
      searchParams: (type) => registry.forType(type).map((p) => ({ name: p.code, type: p.type, definition: p.url })),
      operations: [{ name: 'validate', definition: 'http://hl7.org/fhir/OperationDefinition/Resource-validate' }, ...META_OPERATIONS],
      typeOperations: mergeTypeOperations(
        TERMINOLOGY_OPERATIONS,
        BULK_OPERATIONS.types,
        { Subscription: [...SUBSCRIPTION_OPERATIONS, ...WEBSOCKET_OPERATIONS], Patient: [FUZZY_SEARCH_OPERATION, REGISTER_CSV_OPERATION], Schedule: [GENERATE_SLOTS_OPERATION], MeasureReport: REPORT_OPERATIONS },
        FRONT_DESK_OPERATIONS,
        ERASE_OPERATIONS,
        PHARMACY_OPERATIONS,
        LAB_OPERATIONS,
        CLINICAL_OPERATIONS,
        BILLING_OPERATIONS,
        DOCUMENT_OPERATION,
      ),
      typeDocumentation: { Subscription: subscriptionCapability(subscriptions.channels.types()) },
      systemOperations: [...BULK_OPERATIONS.system, VERSIONS_OPERATION, SYSTEM_META_OPERATION],
      readOnlyTypes: { AuditEvent: 'Written by the server only: one AuditEvent per FHIR request, sign-in, token request and administration call. Readable by ADMIN users and backend clients.' },
      supportedProfiles: (type) => validator.profilesOf(type),
    }), subscriptions.topics, subscriptions.channels.types().includes('websocket') ? websocketUrl(config.baseUrl) : undefined);

  const http = Fastify({
    // HTTPS when a certificate is configured (otherwise TLS is the reverse proxy's job). An
    // https.Server answers like an http.Server for fastify; only its type differs.
    ...(config.tls ? { serverFactory: (handler: RequestListener) => createHttpsServer({ key: config.tls!.key, cert: config.tls!.cert, minVersion: config.tls!.minVersion, maxHeaderSize: 128 * 1024 }, handler) as unknown as HttpServer } : {}),
    bodyLimit: config.bodyLimitBytes,
    // Once the listener closes, a request still arriving on an open keep-alive connection is
    // served (with Connection: close, which fastify adds), not refused with 503: the client sent
    // it already and may not be able to send it again (src/http/drain.ts).
    return503OnClosing: false,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    routerOptions: { maxParamLength: 256, ignoreTrailingSlash: true },
    // The request line counts against Node's header limit (16 KiB): cohort tools send searches
    // with OR lists of hundreds of codes by GET (~30 characters each).
    http: { maxHeaderSize: 128 * 1024 },
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
    // Browsers that reached us over HTTPS keep to it (seed: TLS in transit).
    if (config.tls) reply.header('Strict-Transport-Security', 'max-age=31536000; includeSubDomains');
    reply.header('X-Content-Type-Options', 'nosniff');
    done();
  });
  // Who writes a Subscription is recorded from the request's token (src/subscriptions/write-context.ts).
  registerWriteContext(http);
  // Browser-based SMART apps call the API from other origins; tokens, not cookies, authorise.
  await http.register(cors, {
    origin: true,
    credentials: false,
    // One string: the plugin joins an array again on every response.
    exposedHeaders: 'Location, ETag, Last-Modified, Content-Location, X-Progress, Retry-After, X-Request-Id',
  });
  await registerApiRateLimits(http, { perClient: config.apiRateLimitPerClient, perIp: config.apiRateLimitPerIp, tokens, redisUrl: config.redisUrl, deployment: config.databaseSchema ?? 'public' });
  const metrics = registerMetrics(http, database.poolStats);
  maintenance.registerMetrics(metrics);
  audit.registerMetrics(metrics);
  await registerBodyParsers(http);
  registerBinaryContent(http);
  registerFhirFormats(http);
  registerErrorHandling(http);
  registerHttpAudit(http, { audit, source: auditSource });
  registerAuthServerAudit(http, { audit, source: auditSource, tokens });
  const drain = registerDrain(http);
  registerHealthRoutes(http, {
    ready: async () => {
      if (drain.draining) throw new Error('shutting down');
      await sql`SELECT 1`.execute(database.db);
    },
  });
  await auth.register(http, patients);
  await http.register(fhirRoutes, { prefix: '/fhir', ...deps, tokens, capabilityStatement, reindexStatus: () => searchParameters.status() });
  const subscriptionLog = (message: string, error?: unknown) => http.log.error({ err: error }, message);
  const delivery = eventDelivery(core, config, subscriptionLog, { http, tokens });
  const { subscriptions, notifications } = delivery;
  let jobs: JobComponents;
  try {
    const log = (message: string, error?: unknown) => http.log.error({ err: error }, message);
    jobs = await createJobs(jobWiring(core, config, [...delivery.queues, expiryQueue(store, database.db, log)], log));
  } catch (e) {
    await database.close();
    throw e;
  }
  const { bulk, imports } = jobs;
  delivery.start(jobs.runner);
  registerQueueMetrics(metrics, () => jobs.runner.depths());
  // The daily pharmacy expiry sweep (one job, sleeping a day between runs; queued once across processes).
  jobs.runner.enqueue(EXPIRY_QUEUE, { jobId: EXPIRY_JOB }).catch((e: unknown) => http.log.error({ err: e }, 'pharmacy expiry job not queued'));
  await http.register(subscriptionRoutes, { prefix: '/fhir', tokens, store, state: subscriptions.state, fhirBase, topics: subscriptions.topics });
  // Secure messaging: Communication/[id]/$mark-read (read status; who reads what: src/workflows/messaging-policy.ts).
  await http.register(messagingRoutes, { prefix: '/fhir', ...deps, tokens });
  await http.register(terminologyRoutes, { prefix: '/fhir', tokens, terminology: core.terminology, fhirBase });
  // Front desk (issue 12): registration, booking and bed rules before commit; Patient/$match, Location/[ward]/$occupancy.
  await registerFrontDesk(http, { store, search, tokens, fhirBase, terminologyDir: join(ROOT, 'terminology'), appointmentChangeWindowHours: config.appointmentChangeWindowHours });
  // GDPR erasure with legal hold (issue 17 §5): Patient/[id]/$erase; the export is $everything (docs/backup.md).
  // The HL7 v2 mapping tables, read once: erasure finds a patient's messages as ingest maps them.
  const hl7Tables = loadMappingTables(join(ROOT, 'conformance', 'hl7v2'));
  await registerErase(http, { db: database.db, tokens, fhirBase, hl7Tables });
  // Clinical records (issue 13 §1-2): $sign, $amend, $diff on Encounter / Composition; Observation/$lastn, $stats.
  await registerClinical(http, { store, db: database.db, tokens, fhirBase });
  await registerLab(http, { store, db: database.db, tokens, fhirBase, terminologyDir: join(ROOT, 'terminology'), hospitalName: config.notifications.hospitalName });
  await registerFuzzySearch(http, { db: database.db, search, tokens, fhirBase });
  await registerSchedules(http, { store, tokens, fhirBase, settings: config.schedules });
  await http.register(consoleRoutes, { dir: join(ROOT, 'dist', 'console'), baseUrl: config.baseUrl, fhirBase });
  await registerCsvRegistration(http, { interactions: deps, tokens, fhirBase, terminologyDir: join(ROOT, 'terminology') });
  // Hospital reports (issue 14 §5): MeasureReport/$revenue, $appointment-statistics, $bed-occupancy, $lab-turnaround.
  // Reports only read: on a streaming replica when DATABASE_REPLICA_URL is set.
  const replica = config.databaseUrl && config.databaseReplicaUrl ? openReplica(config.databaseReplicaUrl, config.databaseSchema, config.databasePoolSize, config.databaseStatementTimeoutMs) : undefined;
  if (replica) http.addHook('onClose', async () => replica.close());
  await registerReports(http, { db: replica?.db ?? database.db, tokens, fhirBase, factsBackfill: () => core.backfills.progress('report-facts') });
  await registerPharmacy(http, { store, search, tokens, db: database.db, fhirBase, hospitalName: config.notifications.hospitalName });
  // Billing and insurance (issue 14 §3-4): Patient/$invoice, $balance; Invoice/$pay, $refund, $discount, $claim, …
  await registerBilling(http, { store, tokens, fhirBase, prices: loadPriceList(ROOT, config.billing.currency, config.billing.jurisdiction) });
  await http.register(bulkRoutes, { prefix: '/fhir', tokens, exports: bulk.exports, everything: bulk.everything, baseUrl: config.baseUrl, fhirBase, search });
  await http.register(importRoutes, { prefix: '/fhir', tokens, imports, baseUrl: config.baseUrl });
  const hl7v2 = createHl7v2({
    interactions: deps,
    db: database.db,
    tables: hl7Tables,
    maxMessageBytes: config.hl7MaxMessageBytes,
    idleTimeoutMs: config.hl7IdleTimeoutSeconds * 1000,
    tls: config.tls?.mllp ? config.tls : undefined,
    mappingBatch: config.hl7MappingBatch,
    ackOnReceipt: config.hl7AckOnReceipt,
    maxQueued: config.hl7MaxQueued,
    mappingBacklog: config.hl7MappingBacklog,
    retention: { processedDays: config.hl7RetentionDays, failedDays: config.hl7FailedRetentionDays },
    log: (message, error) => http.log.error({ err: error }, message),
  });
  // Critical results past a limit of the HL7 v2 catalog notify like flagged ones (issue 11 §4).
  hl7v2.ingest.onCriticalResult((c) => notifications.criticalResult(c.observation));
  await hl7v2.routes(http, tokens);
  registerMllpMetrics(metrics, hl7v2.mllp);
  // Messages stored but not mapped when an earlier run stopped: mapped now, in the background.
  hl7v2.startRecovery();
  const auditRetention = config.auditRetention
    ? new AuditRetention(database, { ...config.auditRetention, source: auditSource, baseUrls: [fhirBase], log: (message, error) => (error ? http.log.error({ err: error }, message) : http.log.info(message)) })
    : undefined;
  auditRetention?.start();

  let closed = false;
  return {
    http,
    store,
    database,
    validator,
    registry,
    searchParameters,
    backfills: core.backfills,
    jobs: jobs.runner,
    bulk,
    imports,
    hl7v2,
    audit,
    ...(auditRetention ? { auditRetention } : {}),
    tokens,
    subscriptions,
    devClient,
    drain: () => drain.start(),
    async close() {
      if (closed) return;
      drain.start();
      closed = true;
      // MLLP first: messages being handled finish and are acknowledged while the database is open.
      await hl7v2.close();
      await http.close();
      // Events of the last requests are written while the database is open.
      await audit.close();
      await auditRetention?.close();
      // No new deliveries once requests stopped; running ones finish or hand back below.
      await delivery.stop();
      // Running jobs stop at their next checkpoint and release their claim (database still open).
      await jobs.close();
      await subscriptions.closeChannels();
      searchParameters.close();
      await searchParameters.idle();
      await database.close();
    },
  };
}
