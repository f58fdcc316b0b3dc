import { errors, isFhirError } from '../fhir/errors.js';
import type { SearchService } from '../search/search-service.js';

/** Subscription.criteria split into the type and the search parameters it filters by. */
export interface Criteria {
  resourceType: string;
  params: [string, string][];
  /** normalised text: equal criteria share one search per batch */
  key: string;
}

/** Parameters that shape a result rather than select resources: meaningless in criteria. */
const RESULT_PARAMS = new Set(['_sort', '_count', '_total', '_summary', '_elements', '_include', '_revinclude', '_type', '_cursor', '_format', '_pretty', '_contained', '_containedType']);

/** Splits `Type?a=b&c=d` without judging it (for criteria already stored and validated). */
export function splitCriteria(criteria: string): Criteria {
  const at = criteria.indexOf('?');
  const resourceType = (at < 0 ? criteria : criteria.slice(0, at)).trim();
  const params = at < 0 ? [] : ([...new URLSearchParams(criteria.slice(at + 1))] as [string, string][]);
  const sorted = [...params].sort((a, b) => (a[0] === b[0] ? a[1].localeCompare(b[1]) : a[0].localeCompare(b[0])));
  return { resourceType, params, key: `${resourceType}?${new URLSearchParams(sorted).toString()}` };
}

/**
 * Checks criteria as the search engine would run them (strict: an unknown parameter is an
 * error, not silently ignored — a Subscription matching more than meant leaks data).
 * Throws a 400 FhirError (OperationOutcome) naming the problem.
 */
export function parseCriteria(criteria: string | undefined, search: Pick<SearchService, 'parse'>, isResourceType: (t: string) => boolean, baseUrl: string): Criteria {
  if (!criteria?.trim()) throw errors.incorrect('Subscription.criteria is required: a search such as Observation?code=http://loinc.org|1234-5', ['Subscription.criteria']);
  const parsed = splitCriteria(criteria);
  if (!/^[A-Z][A-Za-z]+$/.test(parsed.resourceType) || !isResourceType(parsed.resourceType)) {
    throw errors.incorrect(`Subscription.criteria must start with a resource type, got '${parsed.resourceType}'`, ['Subscription.criteria']);
  }
  const shaping = parsed.params.find(([name]) => RESULT_PARAMS.has(name.split(':')[0]!));
  if (shaping) throw errors.incorrect(`Subscription.criteria may not use ${shaping[0]} (it selects no resources)`, ['Subscription.criteria']);
  try {
    search.parse({ resourceType: parsed.resourceType, params: parsed.params, strict: true, baseUrl });
  } catch (e) {
    if (isFhirError(e)) throw errors.incorrect(`Subscription.criteria is not a valid search: ${e.message}`, ['Subscription.criteria']);
    throw e;
  }
  return parsed;
}
