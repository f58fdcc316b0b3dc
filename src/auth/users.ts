import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hash, verify } from '@node-rs/argon2';
import { generateSecret, verify as verifyTotp } from 'otplib';
import type { AuthStore, UserRecord } from '../storage/auth-store.js';
import { passwordProblems } from './password-policy.js';

export { passwordProblems } from './password-policy.js';

/** Seed roles (004 §4.4 and the domain map). */
export const ROLES = ['PATIENT', 'DOCTOR', 'NURSE', 'ADMIN', 'PHARMACIST', 'LAB_TECHNICIAN', 'INSURANCE_PROVIDER', 'RECEPTIONIST', 'ACCOUNTANT'] as const;
export type Role = (typeof ROLES)[number];

export interface RoleDefinition {
  fhirUserTypes: string[];
  /** Only ever `patient/` scopes for the user's own record. */
  patientScoped?: boolean;
  /** A TOTP code is asked at sign-in once the user is enrolled. */
  secondFactor: boolean;
  /** The most the role may ever be granted. */
  scopes: string[];
}

export type RoleTable = Record<Role, RoleDefinition>;

/** Reads the role table (data: conformance/smart-roles.json); every seed role must be there. */
export function loadRoleTable(path: string): RoleTable {
  const data = JSON.parse(readFileSync(path, 'utf8')) as { roles: Partial<Record<string, RoleDefinition>> };
  for (const role of ROLES) {
    if (!data.roles[role]) throw new Error(`${path}: role ${role} is missing`);
  }
  return data.roles as RoleTable;
}

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

export const LOCKOUT_ATTEMPTS = 5;
export const LOCKOUT_SECONDS = 15 * 60;

/** argon2id with the library's defaults (19 MiB, 2 passes: the OWASP minimum). */
export const hashPassword = (password: string): Promise<string> => hash(password);

/** A hash to verify against for unknown usernames, so their answer takes as long as a real one. */
let decoyHash: Promise<string> | undefined;

export type SignInResult =
  | { ok: true; user: UserRecord; needsTotp: boolean }
  | { ok: false; reason: 'invalid' | 'locked'; lockedUntil?: Date };

export class UserService {
  constructor(
    private readonly store: AuthStore,
    readonly roles: RoleTable,
  ) {}

  roleOf(user: UserRecord): RoleDefinition | undefined {
    return isRole(user.role) ? this.roles[user.role] : undefined;
  }

  /**
   * Checks a password. Five failures lock the account for LOCKOUT_SECONDS; while locked even
   * the right password is refused. Unknown usernames cost the same hashing work.
   */
  async signIn(username: string, password: string, now = new Date()): Promise<SignInResult> {
    const user = await this.store.getUserByName(username);
    if (!user) {
      decoyHash ??= hash(randomUUID());
      await verify(await decoyHash, password).catch(() => false);
      return { ok: false, reason: 'invalid' };
    }
    if (user.lockedUntil && user.lockedUntil > now) return { ok: false, reason: 'locked', lockedUntil: user.lockedUntil };
    const good = await verify(user.passwordHash, password).catch(() => false);
    if (!good) {
      const result = await this.store.recordFailedSignIn(user.id, LOCKOUT_ATTEMPTS, new Date(now.getTime() + LOCKOUT_SECONDS * 1000));
      return result.locked ? { ok: false, reason: 'locked', lockedUntil: new Date(now.getTime() + LOCKOUT_SECONDS * 1000) } : { ok: false, reason: 'invalid' };
    }
    await this.store.recordSuccessfulSignIn(user.id);
    const needsTotp = Boolean(user.totpSecret) && Boolean(this.roleOf(user)?.secondFactor);
    return { ok: true, user, needsTotp };
  }

  /**
   * Checks a TOTP code (one step of clock drift either way). A wrong code counts as a failed
   * sign-in; a code already used (same or earlier time step) is refused (RFC 6238 §5.2).
   */
  async checkTotp(user: UserRecord, code: string, now = new Date()): Promise<boolean> {
    if (!user.totpSecret || !/^[0-9]{6}$/.test(code)) return this.failTotp(user, now);
    let step: number | undefined;
    try {
      const epoch = Math.floor(now.getTime() / 1000);
      const result = await verifyTotp({ secret: user.totpSecret, token: code, epochTolerance: 30, epoch });
      // RFC 6238 time step (30 s) at which the code matched.
      if (result.valid) step = Math.floor(epoch / 30) + result.delta;
    } catch {
      step = undefined;
    }
    if (step === undefined || !(await this.store.useTotpStep(user.id, step))) return this.failTotp(user, now);
    return true;
  }

  private async failTotp(user: UserRecord, now: Date): Promise<false> {
    await this.store.recordFailedSignIn(user.id, LOCKOUT_ATTEMPTS, new Date(now.getTime() + LOCKOUT_SECONDS * 1000));
    return false;
  }

  /** Creates a user; the error message says what is wrong (policy, role, taken name). */
  async create(input: { username: string; password: string; role: string; fhirUser?: string; totp?: boolean }): Promise<{ user?: UserRecord; totpSecret?: string; error?: string }> {
    if (!/^[A-Za-z0-9._@-]{1,128}$/.test(input.username)) return { error: 'username: 1 to 128 letters, digits or . _ @ -' };
    if (!isRole(input.role)) return { error: `role must be one of ${ROLES.join(', ')}` };
    const problems = passwordProblems(input.password);
    if (problems.length > 0) return { error: `password needs ${problems.join(', ')}` };
    const fhirUserProblem = this.fhirUserProblem(input.role, input.fhirUser);
    if (fhirUserProblem) return { error: fhirUserProblem };
    const totpSecret = input.totp ? generateSecret() : undefined;
    const user: UserRecord = {
      id: randomUUID(),
      username: input.username,
      passwordHash: await hashPassword(input.password),
      role: input.role,
      fhirUser: input.fhirUser,
      totpSecret,
      failedAttempts: 0,
    };
    if (!(await this.store.insertUser(user))) return { error: `username ${input.username} is taken` };
    return { user, totpSecret };
  }

  fhirUserProblem(role: Role, fhirUser: string | undefined): string | undefined {
    if (fhirUser === undefined) return this.roles[role].patientScoped ? `a ${role} user needs a fhirUser (e.g. Patient/123)` : undefined;
    const match = /^([A-Za-z]+)\/[A-Za-z0-9\-.]{1,64}$/.exec(fhirUser);
    if (!match) return 'fhirUser must be a relative reference such as Practitioner/123';
    if (!this.roles[role].fhirUserTypes.includes(match[1])) return `a ${role} user's fhirUser must be one of ${this.roles[role].fhirUserTypes.join(', ')}`;
    return undefined;
  }

  /** The bootstrap ADMIN: created at first start, its password kept in step with the variable. */
  async ensureBootstrapAdmin(username: string, password: string): Promise<void> {
    const existing = await this.store.getUserByName(username);
    if (!existing) {
      const created = await this.create({ username, password, role: 'ADMIN' });
      if (created.error && !created.error.includes('taken')) throw new Error(`FHIR_BOOTSTRAP_ADMIN_USER: ${created.error}`);
      return;
    }
    const same = await verify(existing.passwordHash, password).catch(() => false);
    if (!same || existing.role !== 'ADMIN') await this.store.updateUser(existing.id, { passwordHash: same ? undefined : await hashPassword(password), role: 'ADMIN' });
  }
}
