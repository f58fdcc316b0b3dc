/**
 * SMART scopes, v1 (`patient/Observation.read`, `system/*.*`) and v2
 * (`patient/Observation.rs`, `system/*.cruds`, granular `patient/Observation.rs?category=laboratory`),
 * parsed into one form
 * (https://build.fhir.org/ig/HL7/smart-app-launch/scopes-and-launch-context.html).
 */
export type ScopeContext = 'patient' | 'user' | 'system';
export type Permission = 'c' | 'r' | 'u' | 'd' | 's';

const PERMISSION_ORDER: Permission[] = ['c', 'r', 'u', 'd', 's'];

export interface ResourceScope {
  context: ScopeContext;
  /** A resource type or '*'. */
  resourceType: string;
  permissions: ReadonlySet<Permission>;
  /**
   * The granular v2 restriction, e.g. `category=laboratory` (a search query the resources
   * must match). Carried for the search-side enforcement; see `scopesAllow`.
   */
  filter?: string;
  /** The scope as written. */
  text: string;
}

/** Scopes that are not about resources; granted when the client is registered for them. */
export const NON_RESOURCE_SCOPES = ['openid', 'fhirUser', 'profile', 'launch', 'launch/patient', 'launch/encounter', 'offline_access', 'online_access'] as const;

const SCOPE = /^(patient|user|system)\/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|c?r?u?d?s?)(?:\?([^\s?]+))?$/;
const FILTER = /^[A-Za-z0-9_\-.:]+=[^&\s=]+(?:&[A-Za-z0-9_\-.:]+=[^&\s=]+)*$/;

export function parseScope(text: string): ResourceScope | undefined {
  const match = SCOPE.exec(text);
  if (!match || match[3] === '') return undefined;
  const [, context, resourceType, access, filter] = match;
  // Granular restrictions exist only in v2 syntax.
  if (filter !== undefined && (access === 'read' || access === 'write' || access === '*' || !FILTER.test(filter))) return undefined;
  let permissions: Permission[];
  if (access === 'read') permissions = ['r', 's'];
  else if (access === 'write') permissions = ['c', 'u', 'd'];
  else if (access === '*') permissions = ['c', 'r', 'u', 'd', 's'];
  else permissions = access.split('') as Permission[];
  return { context: context as ScopeContext, resourceType, permissions: new Set(permissions), filter, text };
}

export function parseScopes(scope: string): ResourceScope[] {
  return splitScopes(scope)
    .map(parseScope)
    .filter((s): s is ResourceScope => s !== undefined);
}

export function splitScopes(scope: string | undefined): string[] {
  return (scope ?? '').split(/\s+/).filter(Boolean);
}

/**
 * Whether any scope grants `permission` on `resourceType`. A granular scope (`?category=…`)
 * grants nothing here: the request paths cannot yet check its filter, so it is refused rather
 * than widened to the whole type. Patient-compartment narrowing of `patient/` scopes is applied
 * by the search side (AuthContext.patient); see docs of issue 9.
 */
export function scopesAllow(scopes: readonly ResourceScope[], resourceType: string, permission: Permission): boolean {
  return scopes.some((s) => s.filter === undefined && (s.resourceType === '*' || s.resourceType === resourceType) && s.permissions.has(permission));
}

/** The v2 text of a scope. */
export function formatScope(s: Omit<ResourceScope, 'text'>): string {
  const perms = PERMISSION_ORDER.filter((p) => s.permissions.has(p)).join('');
  return `${s.context}/${s.resourceType}.${perms}${s.filter ? `?${s.filter}` : ''}`;
}

/**
 * What of `wanted` the `limit` allows, or undefined. A `user/` limit covers `patient/` requests
 * (a patient's data is a subset of what the user may see); `system/` only covers `system/`.
 */
export function intersectScope(wanted: ResourceScope, limit: ResourceScope): ResourceScope | undefined {
  if (limit.context !== wanted.context && !(limit.context === 'user' && wanted.context === 'patient')) return undefined;
  let resourceType: string;
  if (wanted.resourceType === '*') resourceType = limit.resourceType;
  else if (limit.resourceType === '*' || limit.resourceType === wanted.resourceType) resourceType = wanted.resourceType;
  else return undefined;
  const permissions = new Set([...wanted.permissions].filter((p) => limit.permissions.has(p)));
  if (permissions.size === 0) return undefined;
  let filter = wanted.filter;
  if (limit.filter !== undefined) {
    if (wanted.filter !== undefined && wanted.filter !== limit.filter) return undefined;
    filter = limit.filter;
  }
  const same = resourceType === wanted.resourceType && permissions.size === wanted.permissions.size && filter === wanted.filter;
  const result = { context: wanted.context, resourceType, permissions, filter };
  return { ...result, text: same ? wanted.text : formatScope(result) };
}

/**
 * The scopes of `requested` that every list in `limits` allows, narrowed where a limit is
 * narrower (a request for `user/*.cruds` under a limit of `user/Patient.rs` yields
 * `user/Patient.rs`). Non-resource scopes (openid, launch, …) pass when every limit lists them.
 */
export function grantScopes(requested: readonly string[], limits: ReadonlyArray<readonly string[]>): string[] {
  let granted: ResourceScope[] = [];
  const other: string[] = [];
  for (const text of requested) {
    const parsed = parseScope(text);
    if (parsed) granted.push(parsed);
    else if ((NON_RESOURCE_SCOPES as readonly string[]).includes(text) && limits.every((l) => l.includes(text))) other.push(text);
  }
  for (const limit of limits) {
    const limitScopes = limit.map(parseScope).filter((s): s is ResourceScope => s !== undefined);
    granted = granted.flatMap((w) => limitScopes.map((l) => intersectScope(w, l)).filter((s): s is ResourceScope => s !== undefined));
  }
  return [...new Set([...granted.map((s) => s.text), ...other])];
}

/** Whether `limit` (a list) allows all of `wanted` unchanged. */
export function scopeCovered(wanted: string, limit: readonly string[]): boolean {
  const granted = grantScopes([wanted], [limit]);
  return granted.includes(wanted);
}
