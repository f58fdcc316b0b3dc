import { sql, type Kysely } from 'kysely';

/**
 * The OAuth 2 / SMART authorization server's own records (src/auth, SQL in
 * src/storage/auth-store.ts). Secrets, codes and tokens are stored only as SHA-256 digests (they
 * are long random strings, so a fast digest is enough); passwords only as argon2id hashes.
 *
 * - `oauth_client`: registered clients (bootstrap, dynamic registration RFC 7591).
 * - `app_user`: people who sign in at /auth/authorize, with their role and fhirUser.
 * - `oauth_pending`: an authorization request between the authorize, sign-in and consent pages.
 * - `oauth_code`: authorization codes (single use).
 * - `oauth_refresh`: refresh tokens; `family_id` ties the rotations of one grant together so
 *   the reuse of a spent token revokes the whole family.
 * - `oauth_launch`: EHR launch contexts (`launch` parameter) minted by the EHR.
 * - `oauth_jti`: client assertion ids seen, so a replayed private_key_jwt is refused.
 * - `oauth_revoked`: revoked access tokens (by jti) until they would have expired anyway.
 * - `signing_key`: token signing keys with their kid, kept after rotation until tokens they
 *   signed have expired.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE oauth_client (
      client_id text PRIMARY KEY,
      kind text NOT NULL,
      secret_digest text,
      jwks jsonb,
      jwks_uri text,
      redirect_uris jsonb NOT NULL DEFAULT '[]',
      grant_types jsonb NOT NULL DEFAULT '[]',
      scope text NOT NULL DEFAULT '',
      name text,
      registration_token_digest text,
      metadata jsonb NOT NULL DEFAULT '{}',
      created_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`
    CREATE TABLE app_user (
      id text PRIMARY KEY,
      username text NOT NULL UNIQUE,
      password_hash text NOT NULL,
      role text NOT NULL,
      fhir_user text,
      totp_secret text,
      totp_last_step bigint,
      failed_attempts integer NOT NULL DEFAULT 0,
      locked_until timestamptz,
      created_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`
    CREATE TABLE oauth_pending (
      id text PRIMARY KEY,
      client_id text NOT NULL,
      params jsonb NOT NULL,
      user_id text,
      stage text NOT NULL,
      patient text,
      expires_at timestamptz NOT NULL
    )`.execute(db);
  await sql`
    CREATE TABLE oauth_code (
      code_digest text PRIMARY KEY,
      client_id text NOT NULL,
      user_id text NOT NULL,
      redirect_uri text NOT NULL,
      code_challenge text NOT NULL,
      scope text NOT NULL,
      context jsonb NOT NULL,
      family_id text NOT NULL,
      used boolean NOT NULL DEFAULT false,
      expires_at timestamptz NOT NULL
    )`.execute(db);
  await sql`
    CREATE TABLE oauth_refresh (
      token_digest text PRIMARY KEY,
      family_id text NOT NULL,
      client_id text NOT NULL,
      user_id text NOT NULL,
      scope text NOT NULL,
      context jsonb NOT NULL,
      spent boolean NOT NULL DEFAULT false,
      revoked boolean NOT NULL DEFAULT false,
      expires_at timestamptz NOT NULL
    )`.execute(db);
  await sql`CREATE INDEX oauth_refresh_family ON oauth_refresh (family_id)`.execute(db);
  await sql`
    CREATE TABLE oauth_launch (
      id text PRIMARY KEY,
      context jsonb NOT NULL,
      expires_at timestamptz NOT NULL
    )`.execute(db);
  await sql`
    CREATE TABLE oauth_jti (
      client_id text NOT NULL,
      jti text NOT NULL,
      expires_at timestamptz NOT NULL,
      PRIMARY KEY (client_id, jti)
    )`.execute(db);
  await sql`
    CREATE TABLE oauth_revoked (
      jti text PRIMARY KEY,
      expires_at timestamptz NOT NULL
    )`.execute(db);
  await sql`
    CREATE TABLE signing_key (
      kid text PRIMARY KEY,
      purpose text NOT NULL,
      alg text NOT NULL,
      private_jwk jsonb NOT NULL,
      public_jwk jsonb NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      retired_at timestamptz
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['signing_key', 'oauth_revoked', 'oauth_jti', 'oauth_launch', 'oauth_refresh', 'oauth_code', 'oauth_pending', 'app_user', 'oauth_client']) {
    await sql`DROP TABLE ${sql.table(table)}`.execute(db);
  }
}
