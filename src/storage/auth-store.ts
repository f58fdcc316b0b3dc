import { sql } from 'kysely';
import type { Db } from './db.js';

/**
 * The authorization server's records (tables of migrations/0008-auth.ts). Callers pass digests,
 * never raw secrets or tokens; the rules (expiry, rotation, lockout) live in src/auth.
 */

export type ClientKind = 'public' | 'confidential-symmetric' | 'confidential-asymmetric';

export interface ClientRecord {
  clientId: string;
  kind: ClientKind;
  secretDigest?: string;
  jwks?: { keys: Array<Record<string, unknown>> };
  jwksUri?: string;
  redirectUris: string[];
  grantTypes: string[];
  /** Space-separated scopes the client may be granted. */
  scope: string;
  name?: string;
  registrationTokenDigest?: string;
  /** The other RFC 7591 metadata, returned as registered. */
  metadata: Record<string, unknown>;
}

export interface UserRecord {
  id: string;
  username: string;
  passwordHash: string;
  role: string;
  fhirUser?: string;
  totpSecret?: string;
  failedAttempts: number;
  lockedUntil?: Date;
}

/** What a grant carries from the authorize step to its tokens. */
export interface GrantContext {
  patient?: string;
  encounter?: string;
  fhirUser?: string;
  role?: string;
  needPatientBanner?: boolean;
  /** Unix seconds at which the user signed in (id_token auth_time). */
  authTime?: number;
  /** The authorize request's nonce, echoed in the id_token. */
  nonce?: string;
}

export interface PendingRecord {
  id: string;
  clientId: string;
  params: Record<string, string>;
  userId?: string;
  stage: 'signin' | 'totp' | 'patient' | 'consent';
  patient?: string;
  expiresAt: Date;
}

export interface CodeRecord {
  clientId: string;
  userId: string;
  redirectUri: string;
  codeChallenge: string;
  scope: string;
  context: GrantContext;
  familyId: string;
  expiresAt: Date;
}

export interface RefreshRecord {
  familyId: string;
  clientId: string;
  userId: string;
  scope: string;
  context: GrantContext;
  spent: boolean;
  revoked: boolean;
  expiresAt: Date;
}

export interface SigningKeyRecord {
  kid: string;
  purpose: string;
  alg: string;
  privateJwk: Record<string, unknown>;
  publicJwk: Record<string, unknown>;
  createdAt: Date;
  retiredAt?: Date;
}

const json = (value: unknown) => sql`${JSON.stringify(value)}::jsonb`;
const date = (value: unknown) => (value instanceof Date ? value : new Date(String(value)));
const parsed = <T>(value: unknown): T => (typeof value === 'string' ? (JSON.parse(value) as T) : (value as T));

interface ClientRow {
  client_id: string;
  kind: ClientKind;
  secret_digest: string | null;
  jwks: unknown;
  jwks_uri: string | null;
  redirect_uris: unknown;
  grant_types: unknown;
  scope: string;
  name: string | null;
  registration_token_digest: string | null;
  metadata: unknown;
}

function clientFrom(row: ClientRow): ClientRecord {
  return {
    clientId: row.client_id,
    kind: row.kind,
    secretDigest: row.secret_digest ?? undefined,
    jwks: row.jwks ? parsed<ClientRecord['jwks']>(row.jwks) : undefined,
    jwksUri: row.jwks_uri ?? undefined,
    redirectUris: parsed<string[]>(row.redirect_uris),
    grantTypes: parsed<string[]>(row.grant_types),
    scope: row.scope,
    name: row.name ?? undefined,
    registrationTokenDigest: row.registration_token_digest ?? undefined,
    metadata: parsed<Record<string, unknown>>(row.metadata),
  };
}

interface UserRow {
  id: string;
  username: string;
  password_hash: string;
  role: string;
  fhir_user: string | null;
  totp_secret: string | null;
  failed_attempts: number;
  locked_until: unknown;
}

function userFrom(row: UserRow): UserRecord {
  return {
    id: row.id,
    username: row.username,
    passwordHash: row.password_hash,
    role: row.role,
    fhirUser: row.fhir_user ?? undefined,
    totpSecret: row.totp_secret ?? undefined,
    failedAttempts: Number(row.failed_attempts),
    lockedUntil: row.locked_until ? date(row.locked_until) : undefined,
  };
}

export class AuthStore {
  constructor(private readonly db: Db) {}

  // clients

  async getClient(clientId: string): Promise<ClientRecord | undefined> {
    const { rows } = await sql<ClientRow>`SELECT * FROM oauth_client WHERE client_id = ${clientId}`.execute(this.db);
    return rows[0] && clientFrom(rows[0]);
  }

  /** Inserts or replaces a client (registration update, bootstrap client at every start). */
  async putClient(c: ClientRecord): Promise<void> {
    await sql`
      INSERT INTO oauth_client (client_id, kind, secret_digest, jwks, jwks_uri, redirect_uris, grant_types, scope, name, registration_token_digest, metadata)
      VALUES (${c.clientId}, ${c.kind}, ${c.secretDigest ?? null}, ${c.jwks ? json(c.jwks) : null}, ${c.jwksUri ?? null},
              ${json(c.redirectUris)}, ${json(c.grantTypes)}, ${c.scope}, ${c.name ?? null}, ${c.registrationTokenDigest ?? null}, ${json(c.metadata)})
      ON CONFLICT (client_id) DO UPDATE SET kind = EXCLUDED.kind, secret_digest = EXCLUDED.secret_digest, jwks = EXCLUDED.jwks,
        jwks_uri = EXCLUDED.jwks_uri, redirect_uris = EXCLUDED.redirect_uris, grant_types = EXCLUDED.grant_types, scope = EXCLUDED.scope,
        name = EXCLUDED.name, registration_token_digest = EXCLUDED.registration_token_digest, metadata = EXCLUDED.metadata`.execute(this.db);
  }

  /** Removes the development clients of earlier runs (their secrets were printed to a console once). */
  async deleteDevelopmentClients(): Promise<void> {
    await sql`DELETE FROM oauth_client WHERE metadata->>'development' = 'true'`.execute(this.db);
  }

  async deleteClient(clientId: string): Promise<boolean> {
    const result = await sql`DELETE FROM oauth_client WHERE client_id = ${clientId}`.execute(this.db);
    await sql`UPDATE oauth_refresh SET revoked = true WHERE client_id = ${clientId}`.execute(this.db);
    return Number(result.numAffectedRows ?? 0) > 0;
  }

  // users

  async getUserByName(username: string): Promise<UserRecord | undefined> {
    const { rows } = await sql<UserRow>`SELECT * FROM app_user WHERE username = ${username}`.execute(this.db);
    return rows[0] && userFrom(rows[0]);
  }

  async getUser(id: string): Promise<UserRecord | undefined> {
    const { rows } = await sql<UserRow>`SELECT * FROM app_user WHERE id = ${id}`.execute(this.db);
    return rows[0] && userFrom(rows[0]);
  }

  async listUsers(): Promise<UserRecord[]> {
    const { rows } = await sql<UserRow>`SELECT * FROM app_user ORDER BY username`.execute(this.db);
    return rows.map(userFrom);
  }

  /** Creates a user; false when the username is taken. */
  async insertUser(u: UserRecord): Promise<boolean> {
    const result = await sql`
      INSERT INTO app_user (id, username, password_hash, role, fhir_user, totp_secret)
      VALUES (${u.id}, ${u.username}, ${u.passwordHash}, ${u.role}, ${u.fhirUser ?? null}, ${u.totpSecret ?? null})
      ON CONFLICT (username) DO NOTHING`.execute(this.db);
    return Number(result.numAffectedRows ?? 0) > 0;
  }

  async updateUser(id: string, changes: { passwordHash?: string; role?: string; fhirUser?: string | null; totpSecret?: string | null }): Promise<void> {
    const current = await this.getUser(id);
    if (!current) return;
    await sql`
      UPDATE app_user SET password_hash = ${changes.passwordHash ?? current.passwordHash}, role = ${changes.role ?? current.role},
        fhir_user = ${changes.fhirUser === undefined ? (current.fhirUser ?? null) : changes.fhirUser},
        totp_secret = ${changes.totpSecret === undefined ? (current.totpSecret ?? null) : changes.totpSecret}
      WHERE id = ${id}`.execute(this.db);
    if (changes.totpSecret !== undefined) await sql`UPDATE app_user SET totp_last_step = NULL WHERE id = ${id}`.execute(this.db);
  }

  /** Counts a failed sign-in; locks the account until `lockUntil` when the count reaches `limit`. */
  async recordFailedSignIn(id: string, limit: number, lockUntil: Date): Promise<{ failedAttempts: number; locked: boolean }> {
    const { rows } = await sql<{ failed_attempts: number }>`
      UPDATE app_user SET failed_attempts = failed_attempts + 1 WHERE id = ${id} RETURNING failed_attempts`.execute(this.db);
    const failedAttempts = Number(rows[0]?.failed_attempts ?? 0);
    if (failedAttempts >= limit) {
      await sql`UPDATE app_user SET locked_until = ${lockUntil.toISOString()}::timestamptz, failed_attempts = 0 WHERE id = ${id}`.execute(this.db);
      return { failedAttempts, locked: true };
    }
    return { failedAttempts, locked: false };
  }

  /** Records the time step of an accepted TOTP code; false when that step (or a later one) was used already (a replayed code). */
  async useTotpStep(id: string, step: number): Promise<boolean> {
    const result = await sql`
      UPDATE app_user SET totp_last_step = ${step} WHERE id = ${id} AND (totp_last_step IS NULL OR totp_last_step < ${step})`.execute(this.db);
    return Number(result.numAffectedRows ?? 0) > 0;
  }

  async recordSuccessfulSignIn(id: string): Promise<void> {
    await sql`UPDATE app_user SET failed_attempts = 0, locked_until = NULL WHERE id = ${id}`.execute(this.db);
  }

  // authorization requests in progress

  async putPending(p: PendingRecord): Promise<void> {
    await sql`
      INSERT INTO oauth_pending (id, client_id, params, user_id, stage, patient, expires_at)
      VALUES (${p.id}, ${p.clientId}, ${json(p.params)}, ${p.userId ?? null}, ${p.stage}, ${p.patient ?? null}, ${p.expiresAt.toISOString()}::timestamptz)
      ON CONFLICT (id) DO UPDATE SET params = EXCLUDED.params, user_id = EXCLUDED.user_id, stage = EXCLUDED.stage, patient = EXCLUDED.patient`.execute(this.db);
  }

  async getPending(id: string): Promise<PendingRecord | undefined> {
    const { rows } = await sql<{ id: string; client_id: string; params: unknown; user_id: string | null; stage: PendingRecord['stage']; patient: string | null; expires_at: unknown }>`
      SELECT * FROM oauth_pending WHERE id = ${id} AND expires_at > now()`.execute(this.db);
    const row = rows[0];
    if (!row) return undefined;
    return {
      id: row.id,
      clientId: row.client_id,
      params: parsed<Record<string, string>>(row.params),
      userId: row.user_id ?? undefined,
      stage: row.stage,
      patient: row.patient ?? undefined,
      expiresAt: date(row.expires_at),
    };
  }

  async deletePending(id: string): Promise<void> {
    await sql`DELETE FROM oauth_pending WHERE id = ${id}`.execute(this.db);
  }

  // authorization codes

  async putCode(digest: string, c: CodeRecord): Promise<void> {
    await sql`
      INSERT INTO oauth_code (code_digest, client_id, user_id, redirect_uri, code_challenge, scope, context, family_id, expires_at)
      VALUES (${digest}, ${c.clientId}, ${c.userId}, ${c.redirectUri}, ${c.codeChallenge}, ${c.scope}, ${json(c.context)}, ${c.familyId},
              ${c.expiresAt.toISOString()}::timestamptz)`.execute(this.db);
  }

  /**
   * Marks a code used and returns it; `reused` when it had been used before (the caller then
   * revokes what it yielded), undefined when unknown.
   */
  async takeCode(digest: string): Promise<{ code: CodeRecord; reused: boolean } | undefined> {
    type CodeRow = { client_id: string; user_id: string; redirect_uri: string; code_challenge: string; scope: string; context: unknown; family_id: string; expires_at: unknown };
    // The conditional UPDATE is the single-use guarantee: of two concurrent redemptions one wins.
    const fresh = await sql<CodeRow>`UPDATE oauth_code SET used = true WHERE code_digest = ${digest} AND NOT used RETURNING *`.execute(this.db);
    let row = fresh.rows[0];
    const reused = !row;
    if (!row) row = (await sql<CodeRow>`SELECT * FROM oauth_code WHERE code_digest = ${digest}`.execute(this.db)).rows[0];
    if (!row) return undefined;
    return {
      reused,
      code: {
        clientId: row.client_id,
        userId: row.user_id,
        redirectUri: row.redirect_uri,
        codeChallenge: row.code_challenge,
        scope: row.scope,
        context: parsed<GrantContext>(row.context),
        familyId: row.family_id,
        expiresAt: date(row.expires_at),
      },
    };
  }

  // refresh tokens

  async putRefresh(digest: string, r: Omit<RefreshRecord, 'spent' | 'revoked'>): Promise<void> {
    await sql`
      INSERT INTO oauth_refresh (token_digest, family_id, client_id, user_id, scope, context, expires_at)
      VALUES (${digest}, ${r.familyId}, ${r.clientId}, ${r.userId}, ${r.scope}, ${json(r.context)}, ${r.expiresAt.toISOString()}::timestamptz)`.execute(this.db);
  }

  async getRefresh(digest: string): Promise<RefreshRecord | undefined> {
    const { rows } = await sql<{ family_id: string; client_id: string; user_id: string; scope: string; context: unknown; spent: boolean; revoked: boolean; expires_at: unknown }>`
      SELECT * FROM oauth_refresh WHERE token_digest = ${digest}`.execute(this.db);
    const row = rows[0];
    if (!row) return undefined;
    return {
      familyId: row.family_id,
      clientId: row.client_id,
      userId: row.user_id,
      scope: row.scope,
      context: parsed<GrantContext>(row.context),
      spent: row.spent,
      revoked: row.revoked,
      expiresAt: date(row.expires_at),
    };
  }

  /** Spends a live refresh token; false when it was already spent or revoked (a race or a replay). */
  async spendRefresh(digest: string): Promise<boolean> {
    const result = await sql`UPDATE oauth_refresh SET spent = true WHERE token_digest = ${digest} AND NOT spent AND NOT revoked`.execute(this.db);
    return Number(result.numAffectedRows ?? 0) > 0;
  }

  async revokeFamily(familyId: string): Promise<void> {
    await sql`UPDATE oauth_refresh SET revoked = true WHERE family_id = ${familyId}`.execute(this.db);
  }

  // EHR launch contexts

  async putLaunch(id: string, context: GrantContext, expiresAt: Date): Promise<void> {
    await sql`INSERT INTO oauth_launch (id, context, expires_at) VALUES (${id}, ${json(context)}, ${expiresAt.toISOString()}::timestamptz)`.execute(this.db);
  }

  async getLaunch(id: string): Promise<GrantContext | undefined> {
    const { rows } = await sql<{ context: unknown }>`SELECT context FROM oauth_launch WHERE id = ${id} AND expires_at > now()`.execute(this.db);
    return rows[0] && parsed<GrantContext>(rows[0].context);
  }

  // client assertion replay

  /** Records a client assertion's jti; false when it was seen before. */
  async rememberJti(clientId: string, jti: string, expiresAt: Date): Promise<boolean> {
    await sql`DELETE FROM oauth_jti WHERE expires_at < now()`.execute(this.db);
    const result = await sql`
      INSERT INTO oauth_jti (client_id, jti, expires_at) VALUES (${clientId}, ${jti}, ${expiresAt.toISOString()}::timestamptz)
      ON CONFLICT DO NOTHING`.execute(this.db);
    return Number(result.numAffectedRows ?? 0) > 0;
  }

  // revoked access tokens

  async revokeAccessToken(jti: string, expiresAt: Date): Promise<void> {
    await sql`INSERT INTO oauth_revoked (jti, expires_at) VALUES (${jti}, ${expiresAt.toISOString()}::timestamptz) ON CONFLICT DO NOTHING`.execute(this.db);
  }

  async isAccessTokenRevoked(jti: string): Promise<boolean> {
    const { rows } = await sql<{ one: number }>`SELECT 1 AS one FROM oauth_revoked WHERE jti = ${jti}`.execute(this.db);
    return rows.length > 0;
  }

  // signing keys

  async signingKeys(purpose: string): Promise<SigningKeyRecord[]> {
    const { rows } = await sql<{ kid: string; purpose: string; alg: string; private_jwk: unknown; public_jwk: unknown; created_at: unknown; retired_at: unknown }>`
      SELECT * FROM signing_key WHERE purpose = ${purpose} ORDER BY created_at DESC, kid`.execute(this.db);
    return rows.map((row) => ({
      kid: row.kid,
      purpose: row.purpose,
      alg: row.alg,
      privateJwk: parsed<Record<string, unknown>>(row.private_jwk),
      publicJwk: parsed<Record<string, unknown>>(row.public_jwk),
      createdAt: date(row.created_at),
      retiredAt: row.retired_at ? date(row.retired_at) : undefined,
    }));
  }

  /**
   * Adds a signing key and retires the purpose's previous current key (it still verifies until
   * the caller drops it). With `onlyIfNone`, adds nothing when a key exists (first start of
   * several processes at once).
   */
  async addSigningKey(k: Omit<SigningKeyRecord, 'createdAt' | 'retiredAt'>, onlyIfNone = false): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await sql`SELECT pg_advisory_xact_lock(hashtext(${`signing_key:${k.purpose}`}))`.execute(tx);
      if (onlyIfNone) {
        const { rows } = await sql<{ one: number }>`SELECT 1 AS one FROM signing_key WHERE purpose = ${k.purpose} LIMIT 1`.execute(tx);
        if (rows.length > 0) return;
      }
      await sql`UPDATE signing_key SET retired_at = now() WHERE purpose = ${k.purpose} AND retired_at IS NULL`.execute(tx);
      await sql`
        INSERT INTO signing_key (kid, purpose, alg, private_jwk, public_jwk)
        VALUES (${k.kid}, ${k.purpose}, ${k.alg}, ${json(k.privateJwk)}, ${json(k.publicJwk)})`.execute(tx);
    });
  }

  /** Drops keys retired before `before` (no live token can still carry their signature). */
  async dropRetiredKeys(before: Date): Promise<void> {
    await sql`DELETE FROM signing_key WHERE retired_at IS NOT NULL AND retired_at < ${before.toISOString()}::timestamptz`.execute(this.db);
  }

  /** Removes expired pending requests, codes, launches and revocations. */
  async sweep(): Promise<void> {
    await sql`DELETE FROM oauth_pending WHERE expires_at < now()`.execute(this.db);
    await sql`DELETE FROM oauth_code WHERE expires_at < now() - interval '1 day'`.execute(this.db);
    await sql`DELETE FROM oauth_launch WHERE expires_at < now()`.execute(this.db);
    await sql`DELETE FROM oauth_revoked WHERE expires_at < now()`.execute(this.db);
    await sql`DELETE FROM oauth_refresh WHERE expires_at < now()`.execute(this.db);
  }
}
