import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import fhirpath from 'fhirpath';
import type { Subscription } from 'fhir/r4.js';
import type { Issue } from '../fhir/errors.js';
import { isFhirError } from '../fhir/errors.js';
import { fhirpathModel } from '../search/fhir-model.js';
import type { SearchService } from '../search/search-service.js';

/**
 * Subscription topics (R4 Subscriptions Backport IG): defined as data in
 * conformance/subscription-topics/*.json in the shape of an R5 SubscriptionTopic (R4 has no such
 * resource; the IG makes a topic a canonical URL that R4 Subscriptions name in `criteria`).
 * Loaded and checked at start-up: a topic the server cannot evaluate stops the start.
 */

export const FILTER_CRITERIA_EXTENSION = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria';
export const HEARTBEAT_EXTENSION = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period';
export const TIMEOUT_EXTENSION = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-timeout';
export const MAX_COUNT_EXTENSION = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-max-count';

export type TopicInteraction = 'create' | 'update' | 'delete';

/** One resourceTrigger, compiled. */
export interface TopicTrigger {
  resourceType: string;
  interactions: ReadonlySet<TopicInteraction>;
  /** queryCriteria.current as search parameters (evaluated by the search engine on the current version) */
  current: [string, string][];
  /** fhirPathCriteria with %current and %previous (the version before; empty on create) */
  fhirPath?: string;
  /** whether a delete notifies (queryCriteria.resultForDelete; default test-passes) */
  deletePasses: boolean;
}

export interface TopicFilter {
  /** the resource type it filters; undefined: any trigger's type */
  resourceType?: string;
  parameter: string;
  modifiers: readonly string[];
}

export interface Topic {
  url: string;
  title: string;
  description?: string;
  triggers: readonly TopicTrigger[];
  filters: readonly TopicFilter[];
}

/** The R5 SubscriptionTopic elements the server reads (our data files). */
interface TopicFile {
  resourceType: 'SubscriptionTopic';
  url: string;
  title?: string;
  status?: string;
  description?: string;
  resourceTrigger?: Array<{
    resource: string;
    supportedInteraction?: string[];
    queryCriteria?: { previous?: string; current?: string; resultForCreate?: string; resultForDelete?: string; requireBoth?: boolean };
    fhirPathCriteria?: string;
  }>;
  canFilterBy?: Array<{ resource?: string; filterParameter: string; modifier?: string[] }>;
}

const compiled = new Map<string, (current: unknown, previous: unknown) => boolean>();

/** Evaluates a trigger's FHIRPath on a version and the one before (undefined: none). */
export function fhirPathPasses(expression: string, current: unknown, previous: unknown): boolean {
  let fn = compiled.get(expression);
  if (!fn) {
    const f = fhirpath.compile(expression, fhirpathModel);
    fn = (c, p) => {
      const out = f((c ?? {}) as never, { current: c ?? [], previous: p ?? [] } as never) as unknown[];
      return out.length === 1 && out[0] === true;
    };
    compiled.set(expression, fn);
  }
  return fn(current, previous);
}

/** A resource type from `Encounter` or `http://hl7.org/fhir/StructureDefinition/Encounter`. */
function typeOf(resource: string): string {
  return resource.replace(/^http:\/\/hl7\.org\/fhir\/StructureDefinition\//, '');
}

export interface TopicCheckDeps {
  search: Pick<SearchService, 'parse'>;
  isResourceType: (type: string) => boolean;
  baseUrl: string;
}

function compile(file: TopicFile, source: string, deps: TopicCheckDeps): Topic {
  const fail = (why: string): never => {
    throw new Error(`subscription topic ${source}: ${why}`);
  };
  if (file.resourceType !== 'SubscriptionTopic') fail('resourceType must be SubscriptionTopic');
  if (!/^https?:\/\/\S+$/.test(file.url ?? '')) fail('url must be an absolute http(s) canonical URL');
  if (file.status && file.status !== 'active') fail(`status ${file.status}: only active topics are loaded (remove the file instead)`);
  const triggers: TopicTrigger[] = (file.resourceTrigger ?? []).map((t, i) => {
    const resourceType = typeOf(t.resource ?? '');
    if (!deps.isResourceType(resourceType)) fail(`resourceTrigger[${i}].resource '${t.resource}' is not a resource type`);
    const interactions = new Set((t.supportedInteraction ?? ['create', 'update', 'delete']) as TopicInteraction[]);
    for (const x of interactions) if (!['create', 'update', 'delete'].includes(x)) fail(`resourceTrigger[${i}].supportedInteraction '${x}'`);
    const q = t.queryCriteria;
    // The search engine evaluates the current version only; a condition on the version before is
    // written as fhirPathCriteria with %previous.
    if (q?.previous) fail(`resourceTrigger[${i}].queryCriteria.previous is not supported: use fhirPathCriteria with %previous`);
    if (q?.requireBoth) fail(`resourceTrigger[${i}].queryCriteria.requireBoth is not supported`);
    const current = q?.current ? ([...new URLSearchParams(q.current)] as [string, string][]) : [];
    try {
      deps.search.parse({ resourceType, params: current, strict: true, baseUrl: deps.baseUrl });
    } catch (e) {
      fail(`resourceTrigger[${i}].queryCriteria.current: ${isFhirError(e) ? e.message : String(e)}`);
    }
    if (t.fhirPathCriteria) {
      try {
        fhirpath.compile(t.fhirPathCriteria, fhirpathModel);
      } catch (e) {
        fail(`resourceTrigger[${i}].fhirPathCriteria: ${(e as Error).message}`);
      }
    }
    const trigger: TopicTrigger = { resourceType, interactions, current, deletePasses: (q?.resultForDelete ?? 'test-passes') === 'test-passes' };
    if (t.fhirPathCriteria) trigger.fhirPath = t.fhirPathCriteria;
    return trigger;
  });
  if (triggers.length === 0) fail('needs at least one resourceTrigger');
  const types = new Set(triggers.map((t) => t.resourceType));
  const filters: TopicFilter[] = (file.canFilterBy ?? []).map((f, i) => {
    const filter: TopicFilter = { parameter: f.filterParameter, modifiers: f.modifier ?? [] };
    if (f.resource) {
      filter.resourceType = typeOf(f.resource);
      if (!types.has(filter.resourceType)) fail(`canFilterBy[${i}].resource ${f.resource} has no resourceTrigger`);
    }
    return filter;
  });
  const topic: Topic = { url: file.url, title: file.title ?? file.url, triggers, filters };
  if (file.description) topic.description = file.description;
  return topic;
}

/** conformance/subscription-topics, from src/subscriptions or dist/src/subscriptions. */
export const TOPICS_DIR = resolve(import.meta.dirname, import.meta.dirname.includes(join('dist', 'src')) ? '../../..' : '../..', 'conformance', 'subscription-topics');

/** The topics of this server, by canonical URL. */
export class TopicRegistry {
  private readonly byUrl = new Map<string, Topic>();

  constructor(topics: readonly Topic[]) {
    for (const t of topics) {
      if (this.byUrl.has(t.url)) throw new Error(`subscription topic ${t.url} is defined twice`);
      this.byUrl.set(t.url, t);
    }
  }

  /** Reads every `*.json` of `dir` (none: no topics). Throws naming the file on any error. */
  static load(dir: string, deps: TopicCheckDeps): TopicRegistry {
    let names: string[] = [];
    try {
      names = readdirSync(dir).filter((n) => n.endsWith('.json')).sort();
    } catch {
      names = [];
    }
    return new TopicRegistry(names.map((n) => compile(JSON.parse(readFileSync(join(dir, n), 'utf8')) as TopicFile, n, deps)));
  }

  get(url: string): Topic | undefined {
    // A canonical may carry a version (`url|1.0.0`): one version of each topic is served.
    return this.byUrl.get(url.split('|')[0]!);
  }

  list(): Topic[] {
    return [...this.byUrl.values()];
  }
}

/** Criteria of a topic-based Subscription are the topic's canonical URL (criteria-based ones start with a type). */
export function isTopicCriteria(criteria: string | undefined): boolean {
  return /^https?:\/\//.test(criteria?.trim() ?? '');
}

type Ext = { url?: string; valueString?: string; valueUnsignedInt?: number; valuePositiveInt?: number };

/** The filter criteria of a topic-based Subscription (`_criteria` extensions), as written. */
export function filterCriteriaOf(sub: Subscription): string[] {
  const ext = ((sub as { _criteria?: { extension?: Ext[] } })._criteria?.extension ?? []).filter((e) => e.url === FILTER_CRITERIA_EXTENSION);
  return ext.map((e) => e.valueString ?? '');
}

function channelExtension(sub: Subscription, url: string): Ext | undefined {
  return ((sub.channel as { extension?: Ext[] }).extension ?? []).find((e) => e.url === url);
}

/** heartbeat period in seconds (undefined: no heartbeat) */
export function heartbeatSeconds(sub: Subscription): number | undefined {
  const v = channelExtension(sub, HEARTBEAT_EXTENSION)?.valueUnsignedInt;
  return v && v > 0 ? v : undefined;
}

/** the Subscription's own delivery timeout in seconds (backport-timeout) */
export function timeoutSeconds(sub: Subscription): number | undefined {
  const v = channelExtension(sub, TIMEOUT_EXTENSION)?.valueUnsignedInt;
  return v && v > 0 ? v : undefined;
}

/** Shortest heartbeat period accepted: each one is a delivery job. */
export const MIN_HEARTBEAT_SECONDS = 1;

/** Filters split per resource type: the search parameters added to the trigger of that type. */
export interface TopicSelection {
  topic: Topic;
  /** resource type → filter parameters */
  filters: Map<string, [string, string][]>;
}

/**
 * Checks a topic-based Subscription (422 issues): a known topic, filters the topic allows
 * (canFilterBy: parameter and modifier, on a type the topic triggers on) with values the search
 * engine accepts, and well-formed channel extensions.
 */
export function topicProblems(sub: Subscription, topics: TopicRegistry, deps: TopicCheckDeps): { issues: Issue[]; selection?: TopicSelection } {
  const issues: Issue[] = [];
  const problem = (diagnostics: string, expression: string, code: Issue['code'] = 'invalid') => issues.push({ severity: 'error', code, diagnostics, expression: [expression] });
  const topic = topics.get(sub.criteria.trim());
  if (!topic) {
    problem(`unknown subscription topic '${sub.criteria}' (this server's topics: ${topics.list().map((t) => t.url).join(', ') || 'none'})`, 'Subscription.criteria', 'not-supported');
    return { issues };
  }
  const filters = new Map<string, [string, string][]>();
  for (const [i, text] of filterCriteriaOf(sub).entries()) {
    const where = `Subscription.criteria.extension[${i}]`;
    const at = text.indexOf('?');
    const type = (at < 0 ? '' : text.slice(0, at)).trim();
    if (!type || !topic.triggers.some((t) => t.resourceType === type)) {
      problem(`filter criteria '${text}' must be [type]?[parameter]=[value] for a type topic ${topic.url} triggers on (${[...new Set(topic.triggers.map((t) => t.resourceType))].join(', ')})`, where);
      continue;
    }
    const params = [...new URLSearchParams(text.slice(at + 1))] as [string, string][];
    if (params.length === 0) problem(`filter criteria '${text}' names no parameter`, where);
    let ok = params.length > 0;
    for (const [name] of params) {
      const [parameter, modifier] = name.split(':', 2) as [string, string | undefined];
      const allowed = topic.filters.find((f) => f.parameter === parameter && (f.resourceType === undefined || f.resourceType === type));
      if (!allowed) {
        problem(`topic ${topic.url} cannot be filtered by '${parameter}' on ${type} (canFilterBy: ${topic.filters.filter((f) => !f.resourceType || f.resourceType === type).map((f) => f.parameter).join(', ') || 'none'})`, where);
        ok = false;
      } else if (modifier !== undefined && !allowed.modifiers.includes(modifier)) {
        problem(`topic ${topic.url} does not allow the modifier :${modifier} on '${parameter}'`, where);
        ok = false;
      }
    }
    if (!ok) continue;
    try {
      deps.search.parse({ resourceType: type, params, strict: true, baseUrl: deps.baseUrl });
    } catch (e) {
      if (!isFhirError(e)) throw e;
      problem(`filter criteria '${text}' is not a valid search: ${e.message}`, where);
      continue;
    }
    filters.set(type, [...(filters.get(type) ?? []), ...params]);
  }
  const ext = (sub.channel as { extension?: Ext[] }).extension ?? [];
  for (const [url, name, field, min] of [
    [HEARTBEAT_EXTENSION, 'heartbeat period', 'valueUnsignedInt', 0],
    [TIMEOUT_EXTENSION, 'timeout', 'valueUnsignedInt', 0],
    [MAX_COUNT_EXTENSION, 'max count', 'valuePositiveInt', 1],
  ] as const) {
    const e = ext.find((x) => x.url === url);
    if (!e) continue;
    const v = e[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) problem(`the ${name} extension needs ${field} ≥ ${min}`, 'Subscription.channel.extension');
  }
  const hb = heartbeatSeconds(sub);
  if (hb !== undefined && hb < MIN_HEARTBEAT_SECONDS) problem(`heartbeat period must be at least ${MIN_HEARTBEAT_SECONDS} s`, 'Subscription.channel.extension');
  return issues.length ? { issues } : { issues, selection: { topic, filters } };
}
