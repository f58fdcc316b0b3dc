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
  redisUrl?: string;
  hl7MllpPort: number;
  bootstrapClient?: { id: string; secret: string };
  bootstrapAdmin?: { user: string; password: string };
  accessTokenTtlSeconds: number;
  bodyLimitBytes: number;
  strictProfiles: boolean;
  /** Extra profile packs switched on, e.g. ['us-core']. */
  profilePacks: string[];
  logLevel: string;
  /** Directory POST /fhir/$import may read files from (FHIR_IMPORT_DIR); unset: inline NDJSON only. */
  importDir?: string;
}

export class ConfigError extends Error {}

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

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const port = intFrom(env, 'PORT', 8080);
  const client = pairFrom(env, 'FHIR_BOOTSTRAP_CLIENT_ID', 'FHIR_BOOTSTRAP_CLIENT_SECRET');
  const admin = pairFrom(env, 'FHIR_BOOTSTRAP_ADMIN_USER', 'FHIR_BOOTSTRAP_ADMIN_PASSWORD');
  return {
    port,
    host: env.HOST ?? '0.0.0.0',
    baseUrl: (env.BASE_URL ?? `http://localhost:${port}`).replace(/\/+$/, ''),
    dataDir: env.DATA_DIR ?? './data',
    databaseUrl: env.DATABASE_URL || undefined,
    databaseSchema: env.DATABASE_SCHEMA || undefined,
    databasePoolSize: intFrom(env, 'DATABASE_POOL_SIZE', 10, 1),
    redisUrl: env.REDIS_URL || undefined,
    hl7MllpPort: intFrom(env, 'HL7_MLLP_PORT', 2575),
    bootstrapClient: client && { id: client[0], secret: client[1] },
    bootstrapAdmin: admin && { user: admin[0], password: admin[1] },
    accessTokenTtlSeconds: intFrom(env, 'ACCESS_TOKEN_TTL_SECONDS', 300, 30),
    // Synthea transaction Bundles reach 11 MB; leave room for bigger real ones.
    bodyLimitBytes: intFrom(env, 'BODY_LIMIT_BYTES', 64 * 1024 * 1024, 1024),
    strictProfiles: env.FHIR_STRICT_PROFILES === 'true',
    profilePacks: (env.FHIR_PROFILE_PACKS ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    logLevel: env.LOG_LEVEL ?? 'info',
    importDir: env.FHIR_IMPORT_DIR || undefined,
  };
}
