import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { generateSecret, generateURI } from 'otplib';
import type { AuthStore, UserRecord } from '../storage/auth-store.js';
import { requireAdministrator } from './admin-auth.js';
import type { PatientDirectory } from './authorize-routes.js';
import type { KeyPurpose } from './keys.js';
import type { TokenService } from './token-service.js';
import { hashPassword, isRole, passwordProblems, ROLES, type UserService } from './users.js';

export interface AdminRouteDeps {
  store: AuthStore;
  tokens: TokenService;
  users: UserService;
  patients: PatientDirectory;
  issuer: string;
}

const LAUNCH_TTL_SECONDS = 10 * 60;
const REFERENCE_ID = /^[A-Za-z0-9\-.]{1,64}$/;

function publicUser(user: UserRecord): Record<string, unknown> {
  return {
    id: user.id,
    username: user.username,
    role: user.role,
    ...(user.fhirUser ? { fhirUser: user.fhirUser } : {}),
    totp: Boolean(user.totpSecret),
    ...(user.lockedUntil && user.lockedUntil > new Date() ? { lockedUntil: user.lockedUntil.toISOString() } : {}),
  };
}

/**
 * Administration API (ADMIN users or system-write clients): user accounts and their roles,
 * EHR launch contexts, signing-key rotation. Answers are JSON, errors OAuth-style.
 */
export function registerAdminRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  const { store, users } = deps;
  const error = (reply: FastifyReply, status: number, description: string) => reply.code(status).header('Cache-Control', 'no-store').send({ error: status === 404 ? 'not_found' : 'invalid_request', error_description: description });
  const totpUri = (user: UserRecord, secret: string) => generateURI({ issuer: deps.issuer, label: user.username, secret });

  /** EHR launch: the EHR mints a `launch` value bound to a patient (and encounter) for the app. */
  app.post('/auth/launch', async (request, reply) => {
    if (!(await requireAdministrator(deps.tokens, request, reply))) return reply;
    const body = (request.body ?? {}) as Record<string, unknown>;
    const patient = body.patient;
    const encounter = body.encounter;
    if (patient !== undefined && (typeof patient !== 'string' || !REFERENCE_ID.test(patient))) return error(reply, 400, 'patient must be a Patient id');
    if (encounter !== undefined && (typeof encounter !== 'string' || !REFERENCE_ID.test(encounter))) return error(reply, 400, 'encounter must be an Encounter id');
    if (patient === undefined && encounter === undefined) return error(reply, 400, 'a launch needs a patient and/or an encounter');
    if (typeof patient === 'string' && !(await deps.patients.exists(patient))) return error(reply, 400, `no Patient/${patient}`);
    const launch = randomBytes(18).toString('base64url');
    await store.putLaunch(launch, { patient: patient as string | undefined, encounter: encounter as string | undefined }, new Date(Date.now() + LAUNCH_TTL_SECONDS * 1000));
    return reply.code(201).header('Cache-Control', 'no-store').send({ launch, expires_in: LAUNCH_TTL_SECONDS });
  });

  app.get('/auth/users', async (request, reply) => {
    if (!(await requireAdministrator(deps.tokens, request, reply))) return reply;
    return reply.header('Cache-Control', 'no-store').send((await store.listUsers()).map(publicUser));
  });

  app.post('/auth/users', async (request, reply) => {
    if (!(await requireAdministrator(deps.tokens, request, reply))) return reply;
    const body = (request.body ?? {}) as Record<string, unknown>;
    const text = (name: string) => (typeof body[name] === 'string' ? (body[name] as string) : undefined);
    const created = await users.create({ username: text('username') ?? '', password: text('password') ?? '', role: text('role') ?? '', fhirUser: text('fhirUser'), totp: body.totp === true });
    if (created.error || !created.user) return error(reply, created.error?.includes('taken') ? 409 : 400, created.error ?? 'not created');
    return reply
      .code(201)
      .header('Cache-Control', 'no-store')
      .send({ ...publicUser(created.user), ...(created.totpSecret ? { totpSecret: created.totpSecret, totpUri: totpUri(created.user, created.totpSecret) } : {}) });
  });

  /** Role assignment, fhirUser link, password reset, TOTP enrolment (`totp: true` returns a new secret) or removal. */
  app.patch<{ Params: { id: string } }>('/auth/users/:id', async (request, reply) => {
    if (!(await requireAdministrator(deps.tokens, request, reply))) return reply;
    const user = await store.getUser(request.params.id);
    if (!user) return error(reply, 404, 'no such user');
    const body = (request.body ?? {}) as Record<string, unknown>;
    const role = body.role === undefined ? user.role : body.role;
    if (!isRole(role)) return error(reply, 400, `role must be one of ${ROLES.join(', ')}`);
    const fhirUser = body.fhirUser === undefined ? user.fhirUser : body.fhirUser === null ? undefined : body.fhirUser;
    if (fhirUser !== undefined && typeof fhirUser !== 'string') return error(reply, 400, 'fhirUser must be a reference string');
    const fhirUserProblem = users.fhirUserProblem(role, fhirUser);
    if (fhirUserProblem) return error(reply, 400, fhirUserProblem);
    let passwordHash: string | undefined;
    if (body.password !== undefined) {
      const problems = typeof body.password === 'string' ? passwordProblems(body.password) : ['a string'];
      if (problems.length > 0) return error(reply, 400, `password needs ${problems.join(', ')}`);
      passwordHash = await hashPassword(body.password as string);
    }
    let totpSecret: string | null | undefined;
    if (body.totp === true) totpSecret = generateSecret();
    else if (body.totp === false) totpSecret = null;
    await store.updateUser(user.id, { role, fhirUser: fhirUser ?? null, passwordHash, totpSecret });
    if (body.unlock === true) await store.recordSuccessfulSignIn(user.id);
    const updated = (await store.getUser(user.id)) as UserRecord;
    return reply.header('Cache-Control', 'no-store').send({ ...publicUser(updated), ...(totpSecret ? { totpSecret, totpUri: totpUri(updated, totpSecret) } : {}) });
  });

  /** Starts signing with new keys; tokens signed by the old ones stay valid until they expire. */
  app.post('/auth/keys/rotate', async (request, reply) => {
    if (!(await requireAdministrator(deps.tokens, request, reply))) return reply;
    const body = (request.body ?? {}) as Record<string, unknown>;
    const purposes: KeyPurpose[] = body.purpose === 'access-token' || body.purpose === 'id-token' ? [body.purpose] : ['access-token', 'id-token'];
    const kids: Record<string, string> = {};
    for (const purpose of purposes) kids[purpose] = await deps.tokens.keys.rotate(purpose);
    return reply.header('Cache-Control', 'no-store').send({ kids });
  });
}
