import { readFileSync } from 'node:fs';
import { passwordProblems } from '../auth/password-policy.js';
import { SmtpConfigError, smtpConfigFrom, type SmtpConfig } from '../subscriptions/channels/email-config.js';
import { NotificationConfigError, notificationConfigFrom, type NotificationConfig } from '../workflows/notifications/config.js';

/**
 * Server configuration from the environment. Names and defaults follow docs/contract.md;
 * no secret has a default value.
 */
export interface Config {
  port: number;
  host: string;
  baseUrl: string;
  /** Directory of the embedded database, or 'memory'. Ignored when databaseUrl is set. */
  dataDir: string;
  databaseUrl?: string;
  /** PostgreSQL schema to use (tests isolate themselves with one schema each). */
  databaseSchema?: string;
  databasePoolSize: number;
  /** DATABASE_REPLICA_URL: a streaming replica for read-only reporting queries (PostgreSQL only). */
  databaseReplicaUrl?: string;
  /** How long a request waits for a free database connection before a 503 (PostgreSQL pool). */
  databasePoolTimeoutMs: number;
  /** Requests per minute per OAuth client on the API (0: no limit). */
  apiRateLimitPerClient: number;
  /** Requests per minute per IP address for API requests without a valid token (0: no limit). */
  apiRateLimitPerIp: number;
  /** Time limit of one database statement in ms (DATABASE_STATEMENT_TIMEOUT_MS); 0 = none. */
  databaseStatementTimeoutMs: number;
  /** SHUTDOWN_DRAIN_MS: on SIGTERM, serve this long while not ready before the listener closes. */
  shutdownDrainMs: number;
  /** Own ANALYZE / VACUUM (DATABASE_MAINTENANCE): auto = on PGlite and on PostgreSQL without autovacuum. */
  databaseMaintenance: 'auto' | 'on' | 'off';
  redisUrl?: string;
  hl7MllpPort: number;
  /** TLS_CERT_FILE / TLS_KEY_FILE: HTTPS (and MLLP over TLS) when set; plain otherwise (a proxy's job). */
  tls?: TlsConfig;
  /** Largest HL7 v2 message accepted (MLLP frame or POST /hl7v2 body). */
  hl7MaxMessageBytes: number;
  /** An MLLP connection silent this long is closed. */
  hl7IdleTimeoutSeconds: number;
  /** ORU^R01 messages received together are mapped in one transaction, at most this many (1: one each). */
  hl7MappingBatch: number;
  /** HL7_ACK_ON_RECEIPT: original-mode MLLP senders get AA once their message is stored, not once mapped (default off). */
  hl7AckOnReceipt: boolean;
  /** HL7_MAX_QUEUED: messages acknowledged on receipt and not mapped yet, at most; past it a receipt waits for the mapping. */
  hl7MaxQueued: number;
  /** HL7_MAPPING_BACKLOG: acknowledged messages kept parsed in memory for mapping; past it they wait in the database. */
  hl7MappingBacklog: number;
  /** PGLITE_MEMORY_TEMPLATE: an in-memory embedded database (DATA_DIR=memory) starts as a copy of this dump instead of from initdb (the test suite's migrated template). */
  pgliteMemoryTemplate: string | undefined;
  /** hl7_message rows processed longer ago than this are deleted (0: kept for ever). */
  hl7RetentionDays: number;
  /** hl7_message rows still failed (`error`, `rejected`) longer ago than this are deleted (0: kept until reprocessed). */
  hl7FailedRetentionDays: number;
  /** APPOINTMENT_CHANGE_WINDOW_HOURS: appointments can be cancelled or rescheduled until this many hours before the start (seed 004 FR-AS-002: 24). */
  appointmentChangeWindowHours: number;
  /** CLINICAL_AMENDMENT_WINDOW_HOURS: signed encounters and final notes can be amended this many hours after signing (seed 004 FR-EMR-001: 24; 0: never). */
  clinicalAmendmentWindowHours: number;
  /** BILLING_CURRENCY (ISO 4217, default VND) and BILLING_JURISDICTION (a key of conformance/billing/tax-rates.json, default VN). */
  billing: { currency: string; jurisdiction: string };
  /** SLOT_GENERATION_* / SCHEDULE_TIME_ZONE / SLOT_EMERGENCY_RESERVE_PERCENT / SLOT_EMERGENCY_RELEASE_HOURS / DISCHARGE_FOLLOW_UP_DAYS (src/workflows/schedules.ts, inpatient-discharge.ts). */
  schedules: { horizonDays: number; intervalMinutes: number; timeZone: string; emergencyReservePercent: number; emergencyReleaseHours: number; followUpDays: number };
  bootstrapClient?: { id: string; secret: string };
  bootstrapAdmin?: { user: string; password: string };
  accessTokenTtlSeconds: number;
  /** Requests per minute and client address on /auth/token, /auth/introspect, /auth/revoke. */
  authTokenRateLimit: number;
  /** Sign-in and second-factor attempts per minute and client address. */
  authSignInRateLimit: number;
  bodyLimitBytes: number;
  strictProfiles: boolean;
  /** Extra profile packs switched on, e.g. ['us-core']. */
  profilePacks: string[];
  /** FHIR_TEXT_SEARCH_LANGUAGE: PostgreSQL text search configuration of `_content` / `_text` (default english). */
  textSearchLanguage?: string;
  logLevel: string;
  /** Directory POST /fhir/$import may read files from (FHIR_IMPORT_DIR); unset: inline NDJSON only. */
  importDir?: string;
  /** AUDIT_EVENTS=on (default) | off: an AuditEvent for every FHIR request and sign-in. */
  auditEvents: boolean;
  /** SMTP_URL or SMTP_HOST/PORT/SECURE/USER/PASSWORD, SMTP_FROM: the email channel (unset: not offered). */
  smtp?: SmtpConfig;
  /** AUDIT_QUEUE_LIMIT: unwritten AuditEvents at which new requests wait for the audit writer (back-pressure, then 503). */
  auditQueueLimit: number;
  /**
   * AUDIT_RETENTION_DAYS with AUDIT_ARCHIVE_DIR: the server archives AuditEvents older than that
   * many days into files in the directory, hourly (src/audit/audit-retention.ts). Unset: kept.
   */
  auditRetention?: { days: number; dir: string };
  /** SUBSCRIPTION_ENDPOINT_ALLOWLIST: hosts rest-hook endpoints may name (`host`, `*.domain`); empty = any. */
  subscriptionEndpointAllowList: string[];
  /** SUBSCRIPTION_TIMEOUT_MS: one rest-hook POST. */
  subscriptionTimeoutMs: number;
  /** SUBSCRIPTION_ATTEMPTS: deliveries tried before the dead letter. */
  subscriptionAttempts: number;
  /** SUBSCRIPTION_BACKOFF_MS: first retry delay, doubled each further attempt. */
  subscriptionBackoffMs: number;
  /** SUBSCRIPTION_POLL_MS: how often the dispatcher looks for writes of other processes. */
  subscriptionPollMs: number;
  /** NOTIFICATION_* (src/workflows/notifications/config.ts): hospital notifications. */
  notifications: NotificationConfig;
}

export class ConfigError extends Error {}

export interface TlsConfig {
  key: Buffer;
  cert: Buffer;
  /** TLS_MIN_VERSION: TLSv1.3 by default (seed: TLS 1.3 in transit); TLSv1.2 for older peers. */
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** HL7_MLLP_TLS: MLLP over TLS as well (on by default when a certificate is set). */
  mllp: boolean;
}

function tlsFrom(env: NodeJS.ProcessEnv): TlsConfig | undefined {
  const certFile = env.TLS_CERT_FILE || undefined;
  const keyFile = env.TLS_KEY_FILE || undefined;
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) throw new ConfigError('TLS_CERT_FILE and TLS_KEY_FILE go together: set both (PEM files) or neither');
  const read = (name: string, file: string) => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new ConfigError(`${name}: cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  const minVersion = env.TLS_MIN_VERSION ?? 'TLSv1.3';
  if (minVersion !== 'TLSv1.2' && minVersion !== 'TLSv1.3') throw new ConfigError(`TLS_MIN_VERSION must be TLSv1.2 or TLSv1.3, got "${minVersion}"`);
  return { cert: read('TLS_CERT_FILE', certFile), key: read('TLS_KEY_FILE', keyFile), minVersion, mllp: onOffFrom(env, 'HL7_MLLP_TLS', true) };
}

function intFrom(env: NodeJS.ProcessEnv, name: string, fallback: number, min = 0): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new ConfigError(`${name} must be an integer ≥ ${min}, got "${raw}"`);
  return value;
}

function pairFrom(env: NodeJS.ProcessEnv, a: string, b: string): [string, string] | undefined {
  const first = env[a];
  const second = env[b];
  if (first && second) return [first, second];
  if (first || second) throw new ConfigError(`${a} and ${b} must be set together`);
  return undefined;
}

function auditRetentionFrom(env: NodeJS.ProcessEnv): Config['auditRetention'] {
  const pair = pairFrom(env, 'AUDIT_RETENTION_DAYS', 'AUDIT_ARCHIVE_DIR');
  return pair ? { days: intFrom(env, 'AUDIT_RETENTION_DAYS', 0, 1), dir: pair[1] } : undefined;
}

function onOffFrom(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (raw === 'on' || raw === 'off') return raw === 'on';
  throw new ConfigError(`${name} must be on or off, got "${raw}"`);
}

function maintenanceFrom(env: NodeJS.ProcessEnv): Config['databaseMaintenance'] {
  const raw = env.DATABASE_MAINTENANCE || 'auto';
  if (raw === 'auto' || raw === 'on' || raw === 'off') return raw;
  throw new ConfigError(`DATABASE_MAINTENANCE must be auto, on or off, got "${raw}"`);
}

function smtpFrom(env: NodeJS.ProcessEnv): SmtpConfig | undefined {
  try {
    return smtpConfigFrom(env);
  } catch (e) {
    throw e instanceof SmtpConfigError ? new ConfigError(e.message) : e;
  }
}

function notificationsFrom(env: NodeJS.ProcessEnv): NotificationConfig {
  try {
    return notificationConfigFrom(env);
  } catch (e) {
    throw e instanceof NotificationConfigError ? new ConfigError(e.message) : e;
  }
}

/** An IANA time zone the runtime knows (schedules' local opening hours are read in it). */
function timeZoneFrom(zone: string): string {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return zone;
  } catch {
    throw new ConfigError(`SCHEDULE_TIME_ZONE: unknown time zone ${zone}`);
  }
}

function billingFrom(env: NodeJS.ProcessEnv): Config['billing'] {
  const currency = env.BILLING_CURRENCY || 'VND';
  if (!/^[A-Z]{3}$/.test(currency)) throw new ConfigError(`BILLING_CURRENCY must be an ISO 4217 code such as VND, got "${currency}"`);
  return { currency, jurisdiction: env.BILLING_JURISDICTION || 'VN' };
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const port = intFrom(env, 'PORT', 8080);
  const client = pairFrom(env, 'FHIR_BOOTSTRAP_CLIENT_ID', 'FHIR_BOOTSTRAP_CLIENT_SECRET');
  const admin = pairFrom(env, 'FHIR_BOOTSTRAP_ADMIN_USER', 'FHIR_BOOTSTRAP_ADMIN_PASSWORD');
  const weak = admin ? passwordProblems(admin[1]) : [];
  if (weak.length > 0) throw new ConfigError(`FHIR_BOOTSTRAP_ADMIN_PASSWORD needs ${weak.join(', ')}`);
  if (env.DATABASE_REPLICA_URL && !env.DATABASE_URL) throw new ConfigError('DATABASE_REPLICA_URL is a replica of the PostgreSQL database: set DATABASE_URL too');
  return {
    port,
    host: env.HOST ?? '0.0.0.0',
    baseUrl: (env.BASE_URL ?? `http://localhost:${port}`).replace(/\/+$/, ''),
    dataDir: env.DATA_DIR ?? './data',
    databaseUrl: env.DATABASE_URL || undefined,
    databaseSchema: env.DATABASE_SCHEMA || undefined,
    databasePoolSize: intFrom(env, 'DATABASE_POOL_SIZE', 10, 1),
    databaseReplicaUrl: env.DATABASE_REPLICA_URL || undefined,
    databasePoolTimeoutMs: intFrom(env, 'DATABASE_POOL_TIMEOUT_MS', 10_000, 1),
    // 100 requests/s sustained per client (seed NFR load), a tenth of that per anonymous IP.
    apiRateLimitPerClient: intFrom(env, 'API_RATE_LIMIT_PER_CLIENT', 6_000),
    apiRateLimitPerIp: intFrom(env, 'API_RATE_LIMIT_PER_IP', 600),
    databaseStatementTimeoutMs: intFrom(env, 'DATABASE_STATEMENT_TIMEOUT_MS', 30_000),
    shutdownDrainMs: intFrom(env, 'SHUTDOWN_DRAIN_MS', 0),
    databaseMaintenance: maintenanceFrom(env),
    redisUrl: env.REDIS_URL || undefined,
    hl7MllpPort: intFrom(env, 'HL7_MLLP_PORT', 2575),
    tls: tlsFrom(env),
    hl7MaxMessageBytes: intFrom(env, 'HL7_MAX_MESSAGE_BYTES', 10 * 1024 * 1024, 1024),
    hl7IdleTimeoutSeconds: intFrom(env, 'HL7_IDLE_TIMEOUT_SECONDS', 300, 1),
    hl7MappingBatch: intFrom(env, 'HL7_MAPPING_BATCH', 32, 1),
    hl7AckOnReceipt: onOffFrom(env, 'HL7_ACK_ON_RECEIPT', false),
    hl7MaxQueued: intFrom(env, 'HL7_MAX_QUEUED', 100_000, 1),
    hl7MappingBacklog: intFrom(env, 'HL7_MAPPING_BACKLOG', 128, 1),
    pgliteMemoryTemplate: env.PGLITE_MEMORY_TEMPLATE || undefined,
    hl7RetentionDays: intFrom(env, 'HL7_MESSAGE_RETENTION_DAYS', 0),
    hl7FailedRetentionDays: intFrom(env, 'HL7_FAILED_MESSAGE_RETENTION_DAYS', 0),
    appointmentChangeWindowHours: intFrom(env, 'APPOINTMENT_CHANGE_WINDOW_HOURS', 24),
    clinicalAmendmentWindowHours: intFrom(env, 'CLINICAL_AMENDMENT_WINDOW_HOURS', 24),
    billing: billingFrom(env),
    schedules: {
      horizonDays: intFrom(env, 'SLOT_GENERATION_HORIZON_DAYS', 28, 1),
      intervalMinutes: intFrom(env, 'SLOT_GENERATION_INTERVAL_MINUTES', 60),
      timeZone: timeZoneFrom(env.SCHEDULE_TIME_ZONE ?? 'UTC'),
      emergencyReservePercent: Math.min(100, intFrom(env, 'SLOT_EMERGENCY_RESERVE_PERCENT', 20)),
      // Reserved slots still free this close to their start open to ordinary bookings (0: never).
      emergencyReleaseHours: intFrom(env, 'SLOT_EMERGENCY_RELEASE_HOURS', 2),
      followUpDays: intFrom(env, 'DISCHARGE_FOLLOW_UP_DAYS', 14, 1),
    },
    bootstrapClient: client && { id: client[0], secret: client[1] },
    bootstrapAdmin: admin && { user: admin[0], password: admin[1] },
    // Seed 004 §4.1: access tokens live 15 to 30 minutes.
    accessTokenTtlSeconds: intFrom(env, 'ACCESS_TOKEN_TTL_SECONDS', 900, 30),
    authTokenRateLimit: intFrom(env, 'AUTH_TOKEN_RATE_LIMIT', 300, 1),
    authSignInRateLimit: intFrom(env, 'AUTH_SIGNIN_RATE_LIMIT', 30, 1),
    // Synthea transaction Bundles reach 11 MB; leave room for bigger real ones.
    bodyLimitBytes: intFrom(env, 'BODY_LIMIT_BYTES', 64 * 1024 * 1024, 1024),
    strictProfiles: env.FHIR_STRICT_PROFILES === 'true',
    profilePacks: (env.FHIR_PROFILE_PACKS ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    textSearchLanguage: textSearchLanguageFrom(env),
    logLevel: env.LOG_LEVEL ?? 'info',
    importDir: env.FHIR_IMPORT_DIR || undefined,
    auditEvents: onOffFrom(env, 'AUDIT_EVENTS', true),
    smtp: smtpFrom(env),
    auditQueueLimit: intFrom(env, 'AUDIT_QUEUE_LIMIT', 10_000, 100),
    auditRetention: auditRetentionFrom(env),
    subscriptionEndpointAllowList: (env.SUBSCRIPTION_ENDPOINT_ALLOWLIST ?? '').split(',').map((h) => h.trim().toLowerCase()).filter(Boolean),
    subscriptionTimeoutMs: intFrom(env, 'SUBSCRIPTION_TIMEOUT_MS', 10_000, 100),
    subscriptionAttempts: intFrom(env, 'SUBSCRIPTION_ATTEMPTS', 3, 1),
    subscriptionBackoffMs: intFrom(env, 'SUBSCRIPTION_BACKOFF_MS', 5_000, 10),
    subscriptionPollMs: intFrom(env, 'SUBSCRIPTION_POLL_MS', 1_000, 10),
    notifications: notificationsFrom(env),
  };
}

/** For the process entry points (`npm start`, `npm run worker`): a configuration error exits with status 2. */
/** A text search configuration name (english, german, simple, …); the database checks it exists at start-up. */
function textSearchLanguageFrom(env: NodeJS.ProcessEnv): string {
  const v = (env.FHIR_TEXT_SEARCH_LANGUAGE ?? '').trim() || 'english';
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(v)) throw new ConfigError(`FHIR_TEXT_SEARCH_LANGUAGE must name a PostgreSQL text search configuration (english, german, simple, …), not '${v.slice(0, 40)}'`);
  return v;
}

export function loadConfigOrExit(): Config {
  try {
    return loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`configuration error: ${e.message}`);
      process.exit(2);
    }
    throw e;
  }
}
