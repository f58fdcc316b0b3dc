import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A registered OAuth client. Secrets are kept only as SHA-256 digests. */
export interface OAuthClient {
  id: string;
  secretDigest: Buffer;
  /** Scopes this client may be granted, e.g. `system/*.*`. */
  allowedScopes: string[];
  grantTypes: string[];
}

function digest(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** Clients known to the server. The SMART issue adds persistent registration. */
export class ClientRegistry {
  private readonly clients = new Map<string, OAuthClient>();

  register(id: string, secret: string, allowedScopes: string[], grantTypes = ['client_credentials']): void {
    this.clients.set(id, { id, secretDigest: digest(secret), allowedScopes, grantTypes });
  }

  /** The client when id and secret match, else undefined (constant-time on the secret). */
  authenticate(id: string, secret: string): OAuthClient | undefined {
    const client = this.clients.get(id);
    const candidate = digest(secret);
    const expected = client?.secretDigest ?? digest(randomBytes(16).toString('hex'));
    const equal = timingSafeEqual(candidate, expected);
    return client && equal ? client : undefined;
  }

  get size(): number {
    return this.clients.size;
  }
}

/** System scopes over everything, in v1 and v2 syntax. */
export const SYSTEM_ALL_SCOPES = ['system/*.*', 'system/*.cruds', 'system/*.read', 'system/*.write', 'system/*.rs'];
