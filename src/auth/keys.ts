import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import type { AuthStore, SigningKeyRecord } from '../storage/auth-store.js';

/** What a key signs: access tokens (ES256, as before) and OpenID Connect id_tokens (RS256). */
export type KeyPurpose = 'access-token' | 'id-token';

const ALGORITHM: Record<KeyPurpose, 'ES256' | 'RS256'> = { 'access-token': 'ES256', 'id-token': 'RS256' };
/** Another process may have rotated; an unknown kid reloads the keys at most this often. */
const RELOAD_INTERVAL_MS = 5_000;

export interface SigningKeyPair {
  kid: string;
  privateJwk: JWK;
  publicJwk: JWK;
}

export async function generateSigningKey(alg: 'ES256' | 'RS256' = 'ES256'): Promise<SigningKeyPair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'RS256' ? { modulusLength: 2048 } : {}) });
  const kid = randomUUID();
  return {
    kid,
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg },
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' },
  };
}

interface LoadedKey {
  record: SigningKeyRecord;
  privateKey?: CryptoKey;
  publicKey?: CryptoKey;
}

/**
 * The server's signing keys, kept in the database so every process signs and verifies alike.
 * Rotation adds a key that signs from then on; the previous ones still verify (and stay in
 * the JWKS) until `retainSeconds` after their retirement, so live tokens keep working.
 */
export class KeyRing {
  private keys: LoadedKey[] = [];
  private lastLoad = 0;

  private constructor(
    private readonly store: AuthStore,
    private readonly retainSeconds: number,
  ) {}

  /**
   * Loads the keys, creating one per purpose at first start. `legacyAccessKey` is the ES256
   * key of earlier versions (server_key table), adopted so tokens it signed stay valid.
   */
  static async open(store: AuthStore, retainSeconds: number, legacyAccessKey?: () => Promise<SigningKeyPair>): Promise<KeyRing> {
    const ring = new KeyRing(store, retainSeconds);
    for (const purpose of ['access-token', 'id-token'] as const) {
      if ((await store.signingKeys(purpose)).length > 0) continue;
      const key = purpose === 'access-token' && legacyAccessKey ? await legacyAccessKey() : await generateSigningKey(ALGORITHM[purpose]);
      await store.addSigningKey({ kid: key.kid, purpose, alg: ALGORITHM[purpose], privateJwk: { ...key.privateJwk }, publicJwk: { ...key.publicJwk } }, true);
    }
    await ring.reload();
    return ring;
  }

  private async reload(): Promise<void> {
    await this.store.dropRetiredKeys(new Date(Date.now() - this.retainSeconds * 1000));
    const records = [...(await this.store.signingKeys('access-token')), ...(await this.store.signingKeys('id-token'))];
    this.keys = records.map((record) => this.keys.find((k) => k.record.kid === record.kid && k.record.retiredAt?.getTime() === record.retiredAt?.getTime()) ?? { record });
    this.lastLoad = Date.now();
  }

  /** The key that signs new tokens of this purpose. */
  async signing(purpose: KeyPurpose): Promise<{ kid: string; alg: string; key: CryptoKey }> {
    const current = this.keys.find((k) => k.record.purpose === purpose && !k.record.retiredAt) ?? this.keys.find((k) => k.record.purpose === purpose);
    if (!current) throw new Error(`no ${purpose} signing key`);
    current.privateKey ??= (await importJWK(current.record.privateJwk as JWK, current.record.alg)) as CryptoKey;
    return { kid: current.record.kid, alg: current.record.alg, key: current.privateKey };
  }

  /** The public key with this kid, reloading once when another process may have rotated. */
  async verifying(purpose: KeyPurpose, kid: string | undefined): Promise<CryptoKey | undefined> {
    let found = this.keys.find((k) => k.record.purpose === purpose && k.record.kid === kid);
    if (!found && kid && Date.now() - this.lastLoad > RELOAD_INTERVAL_MS) {
      await this.reload();
      found = this.keys.find((k) => k.record.purpose === purpose && k.record.kid === kid);
    }
    if (!found) return undefined;
    found.publicKey ??= (await importJWK(found.record.publicJwk as JWK, found.record.alg)) as CryptoKey;
    return found.publicKey;
  }

  /** Starts signing with a fresh key; returns its kid. */
  async rotate(purpose: KeyPurpose): Promise<string> {
    const key = await generateSigningKey(ALGORITHM[purpose]);
    await this.store.addSigningKey({ kid: key.kid, purpose, alg: ALGORITHM[purpose], privateJwk: { ...key.privateJwk }, publicJwk: { ...key.publicJwk } });
    await this.reload();
    return key.kid;
  }

  /** Every public key that may still verify a token (JWKS). */
  jwks(): { keys: JWK[] } {
    return { keys: this.keys.map((k) => k.record.publicJwk as JWK) };
  }
}
