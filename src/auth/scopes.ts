/**
 * SMART scopes, v1 (`patient/Observation.read`, `system/*.*`) and v2
 * (`patient/Observation.rs`, `system/*.cruds`), parsed into one form
 * (https://build.fhir.org/ig/HL7/smart-app-launch/scopes-and-launch-context.html).
 */
export type ScopeContext = 'patient' | 'user' | 'system';
export type Permission = 'c' | 'r' | 'u' | 'd' | 's';

export interface ResourceScope {
  context: ScopeContext;
  /** A resource type or '*'. */
  resourceType: string;
  permissions: ReadonlySet<Permission>;
}

const SCOPE = /^(patient|user|system)\/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|c?r?u?d?s?)(\?.*)?$/;

export function parseScope(text: string): ResourceScope | undefined {
  const match = SCOPE.exec(text);
  if (!match || match[3] === '') return undefined;
  const [, context, resourceType, access] = match;
  let permissions: Permission[];
  if (access === 'read') permissions = ['r', 's'];
  else if (access === 'write') permissions = ['c', 'u', 'd'];
  else if (access === '*') permissions = ['c', 'r', 'u', 'd', 's'];
  else permissions = access.split('') as Permission[];
  return { context: context as ScopeContext, resourceType, permissions: new Set(permissions) };
}

export function parseScopes(scope: string): ResourceScope[] {
  return scope
    .split(/\s+/)
    .filter(Boolean)
    .map(parseScope)
    .filter((s): s is ResourceScope => s !== undefined);
}

/** Whether any scope grants `permission` on `resourceType`. Patient-context narrowing comes with the SMART issue. */
export function scopesAllow(scopes: readonly ResourceScope[], resourceType: string, permission: Permission): boolean {
  return scopes.some((s) => (s.resourceType === '*' || s.resourceType === resourceType) && s.permissions.has(permission));
}
