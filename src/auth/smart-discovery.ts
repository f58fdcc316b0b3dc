import type { FastifyInstance } from 'fastify';
import { ASSERTION_ALGORITHMS } from './clients.js';
import { NON_RESOURCE_SCOPES } from './scopes.js';

/**
 * Where everything of the authorization server lives. `issuer` is BASE_URL: the `iss` of
 * access and id tokens, serving `${issuer}/.well-known/openid-configuration`; the FHIR base
 * (BASE_URL/fhir) is the `aud` apps must name at /auth/authorize.
 */
export interface AuthEndpoints {
  issuer: string;
  fhirBase: string;
  authorize: string;
  token: string;
  introspect: string;
  revoke: string;
  register: string;
  jwks: string;
  style: string;
  userinfo: string;
}

export function authEndpoints(baseUrl: string): AuthEndpoints {
  return {
    issuer: baseUrl,
    fhirBase: `${baseUrl}/fhir`,
    authorize: `${baseUrl}/auth/authorize`,
    token: `${baseUrl}/auth/token`,
    introspect: `${baseUrl}/auth/introspect`,
    revoke: `${baseUrl}/auth/revoke`,
    register: `${baseUrl}/auth/register`,
    jwks: `${baseUrl}/auth/jwks`,
    style: `${baseUrl}/auth/smart-style.json`,
    userinfo: `${baseUrl}/auth/userinfo`,
  };
}

/** What the server really supports (SMART App Launch 2.x §Conformance). */
export const SMART_CAPABILITIES = [
  'launch-ehr',
  'launch-standalone',
  'authorize-post',
  'client-public',
  'client-confidential-symmetric',
  'client-confidential-asymmetric',
  'context-ehr-patient',
  'context-ehr-encounter',
  'context-standalone-patient',
  'context-banner',
  'context-style',
  'permission-offline',
  'permission-online',
  'permission-patient',
  'permission-user',
  'permission-v1',
  'permission-v2',
  'sso-openid-connect',
];

const SCOPES_SUPPORTED = [
  ...NON_RESOURCE_SCOPES,
  'patient/*.rs',
  'patient/*.cruds',
  'patient/*.read',
  'patient/*.write',
  'patient/*.*',
  'user/*.rs',
  'user/*.cruds',
  'user/*.read',
  'user/*.write',
  'user/*.*',
  'system/*.rs',
  'system/*.cruds',
  'system/*.read',
  'system/*.write',
  'system/*.*',
];

const GRANT_TYPES = ['authorization_code', 'client_credentials', 'refresh_token'];
const AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'];

export function smartConfiguration(e: AuthEndpoints): Record<string, unknown> {
  return {
    issuer: e.issuer,
    jwks_uri: e.jwks,
    authorization_endpoint: e.authorize,
    token_endpoint: e.token,
    introspection_endpoint: e.introspect,
    revocation_endpoint: e.revoke,
    registration_endpoint: e.register,
    grant_types_supported: GRANT_TYPES,
    response_types_supported: ['code'],
    token_endpoint_auth_methods_supported: AUTH_METHODS,
    token_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGORITHMS,
    scopes_supported: SCOPES_SUPPORTED,
    code_challenge_methods_supported: ['S256'],
    capabilities: SMART_CAPABILITIES,
  };
}

export function openidConfiguration(e: AuthEndpoints): Record<string, unknown> {
  return {
    issuer: e.issuer,
    authorization_endpoint: e.authorize,
    token_endpoint: e.token,
    userinfo_endpoint: e.userinfo,
    jwks_uri: e.jwks,
    registration_endpoint: e.register,
    introspection_endpoint: e.introspect,
    revocation_endpoint: e.revoke,
    response_types_supported: ['code'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['RS256'],
    grant_types_supported: GRANT_TYPES,
    token_endpoint_auth_methods_supported: AUTH_METHODS,
    token_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGORITHMS,
    scopes_supported: ['openid', 'fhirUser', 'profile', 'offline_access', 'online_access'],
    claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'auth_time', 'nonce', 'fhirUser', 'preferred_username'],
    code_challenge_methods_supported: ['S256'],
  };
}

/** The style apps may follow to look like the EHR (smart_style_url). */
const SMART_STYLE = {
  color_background: '#f6f7f9',
  color_error: '#b00020',
  color_highlight: '#1f6feb',
  color_modal_backdrop: '',
  color_success: '#1a7f37',
  color_text: '#1f2328',
  dim_border_radius: '6px',
  dim_font_size: '14px',
  dim_spacing_size: '16px',
  font_family_body: 'system-ui, sans-serif',
  font_family_heading: 'system-ui, sans-serif',
};

/** Discovery documents (no token needed): SMART at the FHIR base and the root, OpenID at the issuer. */
export function registerDiscoveryRoutes(app: FastifyInstance, endpoints: AuthEndpoints): void {
  const smart = smartConfiguration(endpoints);
  const openid = openidConfiguration(endpoints);
  for (const path of ['/fhir/.well-known/smart-configuration', '/.well-known/smart-configuration']) {
    app.get(path, { config: { public: true } }, async (_request, reply) => reply.header('Cache-Control', 'public, max-age=300').send(smart));
  }
  app.get('/.well-known/openid-configuration', { config: { public: true } }, async (_request, reply) => reply.header('Cache-Control', 'public, max-age=300').send(openid));
  app.get('/auth/smart-style.json', async (_request, reply) => reply.header('Cache-Control', 'public, max-age=3600').send(SMART_STYLE));
}
