import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseSearch } from '../search/parse.js';
import { SearchParameterRegistry } from '../search/registry.js';
import type { SearchRequest } from '../search/request.js';
import { isResourceType } from '../search/fhir-model.js';
import { fhirPathPasses, TopicRegistry, TOPICS_DIR } from './topics.js';

const registry = new SearchParameterRegistry({ searchParamsDir: join(import.meta.dirname, '..', '..', 'search-params'), packs: [] });
const deps = {
  search: { parse: (i: { resourceType?: string; params: [string, string][]; strict?: boolean }): SearchRequest => parseSearch(registry, i.params, { resourceType: i.resourceType, strict: i.strict }) },
  isResourceType,
  baseUrl: 'http://localhost/fhir',
};
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function load(topic: object): TopicRegistry {
  const dir = mkdtempSync(join(tmpdir(), 'topics-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'a.json'), JSON.stringify({ resourceType: 'SubscriptionTopic', url: 'http://x.org/t', status: 'active', ...topic }));
  return TopicRegistry.load(dir, deps);
}

describe('subscription topics (conformance/subscription-topics)', () => {
  it('the shipped topics load', () => {
    const topics = TopicRegistry.load(TOPICS_DIR, deps).list().map((t) => t.url.split('/').pop());
    expect(topics).toEqual(expect.arrayContaining(['encounter-start', 'patient-admission', 'lab-result-ready', 'appointment-booked']));
  });

  it('a topic the server cannot evaluate stops the start, naming the file and the element', () => {
    const trigger = { resource: 'Encounter', supportedInteraction: ['create', 'update'] };
    expect(() => load({ resourceTrigger: [{ ...trigger, queryCriteria: { previous: 'status=planned', current: 'status=in-progress' } }] })).toThrow(/a\.json: resourceTrigger\[0\]\.queryCriteria\.previous is not supported/);
    expect(() => load({ resourceTrigger: [{ ...trigger, queryCriteria: { current: 'no-such-param=1' } }] })).toThrow(/queryCriteria\.current: .*Unknown search parameter/);
    expect(() => load({ resourceTrigger: [{ ...trigger, fhirPathCriteria: '%current.status = ' }] })).toThrow(/fhirPathCriteria/);
    expect(() => load({ resourceTrigger: [{ ...trigger, resource: 'Nothing' }] })).toThrow(/is not a resource type/);
    expect(() => load({ resourceTrigger: [trigger], canFilterBy: [{ resource: 'Observation', filterParameter: 'patient' }] })).toThrow(/canFilterBy\[0\]\.resource Observation has no resourceTrigger/);
    expect(() => load({ resourceTrigger: [] })).toThrow(/at least one resourceTrigger/);
    expect(() => load({ url: 'not-a-url', resourceTrigger: [trigger] })).toThrow(/url must be/);
  });

  it('FHIRPath criteria see %current and %previous (empty on create)', () => {
    const started = "%current.status = 'in-progress' and (%previous.empty() or %previous.status != 'in-progress')";
    expect(fhirPathPasses(started, { resourceType: 'Encounter', status: 'in-progress' }, undefined)).toBe(true);
    expect(fhirPathPasses(started, { resourceType: 'Encounter', status: 'in-progress' }, { resourceType: 'Encounter', status: 'planned' })).toBe(true);
    expect(fhirPathPasses(started, { resourceType: 'Encounter', status: 'in-progress' }, { resourceType: 'Encounter', status: 'in-progress' })).toBe(false);
    expect(fhirPathPasses(started, { resourceType: 'Encounter', status: 'finished' }, undefined)).toBe(false);
  });
});
