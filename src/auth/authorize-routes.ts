import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { AuthStore, ClientRecord, PendingRecord, UserRecord } from '../storage/auth-store.js';
import type { ClientService } from './clients.js';
import type { GrantService } from './grants.js';
import { fieldsOf, withQuery } from './oauth-http.js';
import { consentPage, errorPage, patientPickerPage, signInPage, totpPage } from './pages.js';
import { redirectUriProblem } from './redirect-uris.js';
import { grantScopes, NON_RESOURCE_SCOPES, splitScopes } from './scopes.js';
import type { AuthEndpoints } from './smart-discovery.js';
import type { UserService } from './users.js';

/** How long a user has to get from the authorize request to consent. */
const PENDING_TTL_SECONDS = 10 * 60;
/** RFC 7636: BASE64URL(SHA-256(verifier)) is 43 characters. */
const S256_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;

export interface PatientDirectory {
  /** Patients the picker offers (first page, optionally by name). */
  find(name: string | undefined): Promise<Array<{ id: string; label: string }>>;
  exists(id: string): Promise<boolean>;
  /** The Patient id a RelatedPerson (a PATIENT-role proxy, e.g. a parent) is linked to. */
  relatedPersonPatient(id: string): Promise<string | undefined>;
}

export interface AuthorizeRouteDeps {
  store: AuthStore;
  clients: ClientService;
  users: UserService;
  grants: GrantService;
  endpoints: AuthEndpoints;
  patients: PatientDirectory;
  /** Sign-in and second-factor attempts per minute and client address. */
  signInRateLimitPerMinute: number;
  /** Told of every password and TOTP attempt (the audit trail). */
  onSignIn?: (attempt: SignInAttempt) => void;
}

export interface SignInAttempt {
  outcome: 'success' | 'failure' | 'locked';
  step: 'password' | 'totp';
  /** As typed: there may be no such user. */
  username: string;
  userId?: string;
  fhirUser?: string;
  clientId: string;
  address: string;
}

/** A PATIENT user's own compartment: their Patient, or the Patient their RelatedPerson is linked to. */
async function ownPatient(user: UserRecord, patients: PatientDirectory): Promise<string | undefined> {
  const match = /^(Patient|RelatedPerson)\/([A-Za-z0-9\-.]{1,64})$/.exec(user.fhirUser ?? '');
  if (!match) return undefined;
  return match[1] === 'Patient' ? match[2] : patients.relatedPersonPatient(match[2]);
}

/**
 * SMART App Launch authorization code flow, server-rendered: /auth/authorize (GET and POST)
 * checks the request and shows the sign-in page; then the TOTP page (enrolled ADMIN and
 * DOCTOR users), the patient picker (standalone launch without a patient) and the consent
 * page; consent redirects to the app with the code. The request in progress lives in the
 * database (`oauth_pending`), named by a random id carried in each form.
 */
export function registerAuthorizeRoutes(app: FastifyInstance, deps: AuthorizeRouteDeps): void {
  const { store, users, endpoints } = deps;
  const rateLimit = { max: deps.signInRateLimitPerMinute, timeWindow: 60_000 };
  const clientName = (client: ClientRecord) => client.name ?? client.clientId;

  const authorize = async (params: Record<string, string>, reply: FastifyReply) => {
    // Until client and redirect_uri are known good, errors are shown here, never redirected.
    const client = params.client_id ? await deps.clients.get(params.client_id) : undefined;
    if (!client) return errorPage(reply, 400, 'Unknown application (client_id).');
    let redirectUri = params.redirect_uri;
    if (!redirectUri && client.redirectUris.length === 1) redirectUri = client.redirectUris[0];
    if (!redirectUri || !client.redirectUris.includes(redirectUri)) {
      return errorPage(reply, 400, 'The redirect_uri is not registered for this application.');
    }
    // A stored client may predate the redirect URI rules, or have been written around the
    // registration endpoint (database, older versions): its URIs are checked again on use,
    // and a URI that breaks them is never redirected to (no code, no error redirect).
    const problem = redirectUriProblem(redirectUri);
    if (problem) return errorPage(reply, 400, `The registered redirect_uri is not allowed (${problem}); the application must be registered again with a valid one.`);
    const fail = (error: string, description: string) =>
      reply.redirect(withQuery(redirectUri, { error, error_description: description, state: params.state }), 302);
    if (params.response_type !== 'code') return fail('unsupported_response_type', 'response_type must be code');
    if (!client.grantTypes.includes('authorization_code')) return fail('unauthorized_client', 'this client may not use the authorization code grant');
    if ((params.aud ?? '').replace(/\/+$/, '') !== endpoints.fhirBase) return fail('invalid_request', `aud must be the FHIR base URL ${endpoints.fhirBase}`);
    if (!params.code_challenge) return fail('invalid_request', 'code_challenge is required (PKCE, S256)');
    if (params.code_challenge_method !== 'S256') return fail('invalid_request', 'code_challenge_method must be S256');
    if (!S256_CHALLENGE.test(params.code_challenge)) return fail('invalid_request', 'code_challenge is not a S256 challenge');
    if (splitScopes(params.scope).length === 0) return fail('invalid_scope', 'scope is required');
    const kept: Record<string, string> = { redirect_uri: redirectUri };
    // RFC 6749 §4.1.3: the token request repeats redirect_uri only when the authorize request had it.
    if (params.redirect_uri) kept.redirect_uri_given = 'true';
    for (const name of ['scope', 'state', 'code_challenge', 'nonce']) if (params[name] !== undefined) kept[name] = params[name];
    if (params.launch) {
      const launch = await store.getLaunch(params.launch);
      if (!launch) return fail('invalid_request', 'unknown or expired launch');
      kept.launch = params.launch;
      if (launch.patient) kept.launch_patient = launch.patient;
      if (launch.encounter) kept.launch_encounter = launch.encounter;
    }
    const pending: PendingRecord = {
      id: randomBytes(24).toString('base64url'),
      clientId: client.clientId,
      params: kept,
      stage: 'signin',
      expiresAt: new Date(Date.now() + PENDING_TTL_SECONDS * 1000),
    };
    await store.putPending(pending);
    return signInPage(reply, { requestId: pending.id, clientName: clientName(client) });
  };

  app.get('/auth/authorize', async (request, reply) => authorize(fieldsOf(request.query), reply));
  app.post('/auth/authorize', async (request, reply) => authorize(fieldsOf(request.body), reply));

  /** The request in progress at the expected stage, with its client, or an error page. */
  const resume = async (requestId: string | undefined, stage: PendingRecord['stage'], reply: FastifyReply) => {
    const pending = requestId ? await store.getPending(requestId) : undefined;
    const client = pending ? await deps.clients.get(pending.clientId) : undefined;
    if (!pending || !client || pending.stage !== stage) {
      errorPage(reply, 400, 'This sign-in has expired or is not at this step any more. Start again from the application.');
      return undefined;
    }
    const user = pending.userId ? await store.getUser(pending.userId) : undefined;
    return { pending, client, user };
  };

  /** The scopes this user may grant this client now: asked ∩ registered ∩ role. */
  const grantable = (pending: PendingRecord, client: ClientRecord, user: UserRecord) => {
    const role = users.roleOf(user);
    if (!role) return undefined;
    let granted = grantScopes(splitScopes(pending.params.scope), [splitScopes(client.scope), [...role.scopes, ...NON_RESOURCE_SCOPES]]);
    if (role.patientScoped) granted = granted.filter((s) => !s.startsWith('user/') && !s.startsWith('system/'));
    return { role, granted };
  };

  const redirectError = (reply: FastifyReply, pending: PendingRecord, error: string, description: string) =>
    reply.redirect(withQuery(pending.params.redirect_uri, { error, error_description: description, state: pending.params.state }), 302);

  /** After password (and TOTP): patient picker or consent. */
  const afterSignIn = async (reply: FastifyReply, pending: PendingRecord, client: ClientRecord, user: UserRecord) => {
    const allowed = grantable(pending, client, user);
    if (!allowed) {
      await store.deletePending(pending.id);
      return redirectError(reply, pending, 'access_denied', 'the account has no role');
    }
    const next: PendingRecord = { ...pending, userId: user.id, params: { ...pending.params, auth_time: String(Math.floor(Date.now() / 1000)) } };
    const needsPatient = allowed.granted.includes('launch/patient') || allowed.granted.some((s) => s.startsWith('patient/'));
    let patient: string | undefined = pending.params.launch_patient;
    if (allowed.role.patientScoped) {
      const own = await ownPatient(user, deps.patients);
      if (patient && patient !== own) {
        await store.deletePending(pending.id);
        return redirectError(reply, pending, 'access_denied', 'this launch is for another patient');
      }
      patient = own;
    }
    if (needsPatient && !patient) {
      if (allowed.role.patientScoped) {
        await store.deletePending(pending.id);
        return redirectError(reply, pending, 'access_denied', 'the account is not linked to a patient record');
      }
      await store.putPending({ ...next, stage: 'patient' });
      return patientPickerPage(reply, { requestId: pending.id, patients: await deps.patients.find(undefined) });
    }
    await store.putPending({ ...next, stage: 'consent', patient });
    return consentPage(reply, { requestId: pending.id, clientName: clientName(client), username: user.username, scopes: allowed.granted, patient });
  };

  app.post('/auth/authorize/signin', { config: { rateLimit } }, async (request, reply) => {
    const body = fieldsOf(request.body);
    const state = await resume(body.request, 'signin', reply);
    if (!state) return reply;
    const result = await users.signIn(body.username ?? '', body.password ?? '');
    deps.onSignIn?.({
      outcome: result.ok ? 'success' : result.reason === 'locked' ? 'locked' : 'failure',
      step: 'password',
      username: (body.username ?? '').slice(0, 128),
      userId: result.ok ? result.user.id : undefined,
      fhirUser: result.ok ? result.user.fhirUser : undefined,
      clientId: state.client.clientId,
      address: request.ip,
    });
    if (!result.ok) {
      const message =
        result.reason === 'locked'
          ? `Too many failed attempts: the account is locked until ${result.lockedUntil?.toISOString() ?? 'later'}.`
          : 'Wrong user name or password.';
      return signInPage(reply, { requestId: state.pending.id, clientName: clientName(state.client), message, status: result.reason === 'locked' ? 423 : 401, username: body.username });
    }
    if (result.needsTotp) {
      await store.putPending({ ...state.pending, userId: result.user.id, stage: 'totp' });
      return totpPage(reply, { requestId: state.pending.id });
    }
    return afterSignIn(reply, state.pending, state.client, result.user);
  });

  app.post('/auth/authorize/totp', { config: { rateLimit } }, async (request, reply) => {
    const body = fieldsOf(request.body);
    const state = await resume(body.request, 'totp', reply);
    if (!state) return reply;
    const { user } = state;
    if (!user || (user.lockedUntil && user.lockedUntil > new Date())) {
      if (user) deps.onSignIn?.({ outcome: 'locked', step: 'totp', username: user.username, userId: user.id, fhirUser: user.fhirUser, clientId: state.client.clientId, address: request.ip });
      await store.deletePending(state.pending.id);
      return errorPage(reply, 423, 'The account is locked. Try again later.');
    }
    const totpOk = await users.checkTotp(user, (body.code ?? '').trim());
    deps.onSignIn?.({ outcome: totpOk ? 'success' : 'failure', step: 'totp', username: user.username, userId: user.id, fhirUser: user.fhirUser, clientId: state.client.clientId, address: request.ip });
    if (!totpOk) return totpPage(reply, { requestId: state.pending.id, message: 'Wrong code.', status: 401 });
    return afterSignIn(reply, state.pending, state.client, user);
  });

  app.get('/auth/authorize/patient', async (request, reply) => {
    const query = fieldsOf(request.query);
    const state = await resume(query.request, 'patient', reply);
    if (!state) return reply;
    const name = query.name?.trim().slice(0, 100) || undefined;
    return patientPickerPage(reply, { requestId: state.pending.id, patients: await deps.patients.find(name), query: name });
  });

  app.post('/auth/authorize/patient', async (request, reply) => {
    const body = fieldsOf(request.body);
    const state = await resume(body.request, 'patient', reply);
    if (!state) return reply;
    const { pending, client, user } = state;
    const allowed = user && grantable(pending, client, user);
    if (!user || !allowed) return errorPage(reply, 400, 'This sign-in is not complete.');
    const patient = body.patient ?? '';
    if (!/^[A-Za-z0-9\-.]{1,64}$/.test(patient) || !(await deps.patients.exists(patient))) {
      return patientPickerPage(reply, { requestId: pending.id, patients: await deps.patients.find(undefined), message: 'Choose a patient from the list.' });
    }
    await store.putPending({ ...pending, stage: 'consent', patient });
    return consentPage(reply, { requestId: pending.id, clientName: clientName(client), username: user.username, scopes: allowed.granted, patient });
  });

  app.post('/auth/authorize/consent', async (request, reply) => {
    const body = fieldsOf(request.body);
    const state = await resume(body.request, 'consent', reply);
    if (!state) return reply;
    const { pending, client, user } = state;
    const allowed = user && grantable(pending, client, user);
    await store.deletePending(pending.id);
    if (!user || !allowed) return errorPage(reply, 400, 'This sign-in is not complete.');
    if (body.decision !== 'approve') return redirectError(reply, pending, 'access_denied', 'the user denied access');
    const code = await deps.grants.createCode({
      client,
      userId: user.id,
      scope: allowed.granted.join(' '),
      redirectUri: pending.params.redirect_uri_given ? pending.params.redirect_uri : '',
      codeChallenge: pending.params.code_challenge,
      context: {
        patient: pending.patient,
        encounter: pending.params.launch_encounter,
        fhirUser: user.fhirUser,
        role: user.role,
        // In an EHR launch the EHR already shows who the patient is.
        needPatientBanner: !pending.params.launch,
        authTime: Number(pending.params.auth_time) || undefined,
        nonce: pending.params.nonce,
      },
    });
    return reply.redirect(withQuery(pending.params.redirect_uri, { code, state: pending.params.state }), 302);
  });
}
