import type { OperationOutcome, Parameters, Resource } from 'fhir/r4.js';
import { errors } from '../fhir/errors.js';
import type { InteractionDeps, InteractionResult } from '../interactions/types.js';
import { checkId, parseStored } from '../interactions/versions.js';

/**
 * $validate on a type or an instance (https://hl7.org/fhir/R4/resource-operation-validate.html).
 * The body is the resource itself or a Parameters with `resource`, `mode` and `profile`; the
 * primitive `profile` and `mode` may come on the URL too (as clients send them with a resource
 * body). The answer is 200 with an OperationOutcome whether or not the resource is valid.
 */
export async function validateOperation(deps: InteractionDeps, resourceType: string, id: string | undefined, body: unknown, query: URLSearchParams): Promise<InteractionResult> {
  let resource: unknown;
  let mode: string | undefined = query.getAll('mode').find((m) => m !== '');
  const profiles: string[] = query.getAll('profile').filter((p) => p !== '');
  if (body && typeof body === 'object' && (body as Resource).resourceType === 'Parameters' && resourceType !== 'Parameters') {
    for (const p of (body as Parameters).parameter ?? []) {
      if (p.name === 'resource') resource = p.resource;
      else if (p.name === 'mode') mode = p.valueCode ?? p.valueString;
      else if (p.name === 'profile') {
        const url = p.valueUri ?? p.valueCanonical ?? p.valueString;
        if (url) profiles.push(url);
      }
    }
  } else if (body !== undefined && body !== null && body !== '') {
    resource = body;
  }
  if (mode && !['create', 'update', 'delete'].includes(mode)) {
    throw errors.incorrect(`mode must be create, update or delete; got "${mode.slice(0, 40)}"`);
  }
  if (id !== undefined) checkId(id);
  if (resource === undefined) {
    if (id === undefined) throw errors.incorrect('$validate needs a resource in the body');
    const stored = await deps.store.read(resourceType, id);
    if (!stored || stored.deleted) throw errors.notFound(`${resourceType}/${id} is not known`);
    if (mode === 'delete') return { status: 200, body: allOk() };
    resource = parseStored(stored);
  }
  const issues: OperationOutcome['issue'] = [];
  const type = (resource as Resource | null)?.resourceType;
  if (type !== resourceType) {
    issues.push({ severity: 'error', code: 'invalid', diagnostics: `the resource is a ${String(type).slice(0, 64)}, not a ${resourceType}`, expression: ['resourceType'] });
  } else {
    issues.push(...deps.validator.validate(resource, { profiles, warnings: true }));
    if (mode === 'update' && id !== undefined && (resource as Resource).id !== id) {
      issues.push({ severity: 'error', code: 'invalid', diagnostics: `the resource id does not match ${id}`, expression: ['id'] });
    }
  }
  return { status: 200, body: issues.length ? { resourceType: 'OperationOutcome', issue: issues } : allOk() };
}

function allOk(): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational', diagnostics: 'validation passed: no errors' }] };
}
