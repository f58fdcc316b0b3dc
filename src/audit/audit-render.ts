import type { AuditEvent } from 'fhir/r4.js';
import type { AuditInsert } from '../storage/audit-store.js';
import { newResourceId } from '../storage/resource-store.js';
import { agentsOf, outcomeOf, restAuditEvent, type AuditCaller, type AuditSource, type RestAuditRecord } from './audit-event.js';
import { auditEventKeys, referenceKeys } from './audit-keys.js';
import type { AuditItem } from './audit-log.js';
import { RestAuditTuple, restRecordOf } from './http-audit.js';

const q = JSON.stringify;

/** The JSON of a list of keys without its brackets (`"a","b"`). */
const keyList = (keys: Iterable<string>) => [...keys].map((k) => q(k)).join(',');

/** What one caller contributes to every event of its requests (cached per access token). */
interface CallerParts {
  /** `agent` keys (`altid`, `agent`, `patient`), listed. */
  keys: string;
  keySet: Set<string>;
  /** The `agent` array's JSON per network address. */
  agents: Map<string | undefined, string>;
  caller: AuditCaller;
}

/** A relative reference without version (the indexer's `relativeRef` without its `_history` part). */
const RELATIVE_REFERENCE = /^([A-Z][A-Za-z]{1,63})\/[A-Za-z0-9\-.]{1,64}$/;

/** Addresses kept per caller (a caller seen from many addresses only rebuilds its agent JSON). */
const MAX_ADDRESSES = 16;

/**
 * Makes queued audit items into rows for the audit store, off the request path.
 *
 * A FHIR request's event (one per request, the audit trail's bulk) is written as JSON text
 * directly: the parts that are the same for every request (type, source, codings) or for every
 * request of one access token (the agents and their search keys) are serialized once and
 * reused; only the entities, the time and the outcome are new per event. The result equals
 * `restAuditEvent` + `auditEventKeys` (audit-render.test.ts compares them on every kind of
 * request and caller); the object path remains the reference and serves every other event.
 */
export class AuditRenderer {
  private readonly constant: { head: string; keys: string };
  private readonly subtypes = new Map<string, { json: string; keys: string }>();
  private readonly entity: { resource: string; query: string; patient: string; requestId: string };
  private readonly callers = new WeakMap<object, CallerParts>();
  private readonly anonymous: object = {};

  constructor(
    private readonly source: AuditSource,
    private readonly baseUrls: readonly string[],
  ) {
    // The constant parts are cut from events built the reference way, so they cannot drift from it.
    const probe = restAuditEvent(
      { interaction: 'search-type', action: 'R', status: 200, caller: { kind: 'anonymous' }, resources: ['Observation/x'], query: 'x', queryType: 'X', patient: 'x', requestId: 'x', recorded: '' },
      source,
    );
    const [resource, query, patient, requestId] = probe.entity!;
    this.constant = {
      head: `{"resourceType":"AuditEvent","type":${q(probe.type)},"source":${q(probe.source)}`,
      keys: keyList(auditEventKeys({ resourceType: 'AuditEvent', type: probe.type, source: probe.source, agent: [], recorded: '' }, baseUrls)),
    };
    this.entity = {
      resource: `"type":${q(resource!.type)},"role":${q(resource!.role)}`,
      query: `"type":${q(query!.type)},"role":${q(query!.role)}`,
      patient: `"type":${q(patient!.type)},"role":${q(patient!.role)}`,
      requestId: `"type":${q(requestId!.type)},"description":${q(requestId!.description)}`,
    };
  }

  render(item: AuditItem): AuditInsert {
    if (item instanceof RestAuditTuple) return this.rest(restRecordOf(item), item.auth ?? this.anonymous);
    return this.event(item);
  }

  /** Any AuditEvent, the reference way (sign-ins, the authorization server's calls). */
  event(event: AuditEvent): AuditInsert {
    const id = newResourceId();
    const { meta: _meta, ...rest } = event;
    const json = q({ ...rest, id });
    return { id, recorded: event.recorded, keys: q(auditEventKeys(event, this.baseUrls)), head: json.slice(0, -1) };
  }

  /** A FHIR request's event; `callerKey` is the same object for every request of one caller (its access token's context). */
  rest(r: RestAuditRecord, callerKey: object): AuditInsert {
    const id = newResourceId();
    const caller = this.callerParts(r.caller, callerKey);
    let agents = caller.agents.get(r.address);
    if (agents === undefined) {
      if (caller.agents.size >= MAX_ADDRESSES) caller.agents.clear();
      agents = q(agentsOf(r.caller, r.address, this.source));
      caller.agents.set(r.address, agents);
    }
    const subtype = this.subtype(r.interaction);
    const outcome = outcomeOf(r.status);

    // Entities in restAuditEvent's order: resources (but the patient's), the query, the patient, the request id.
    const entityKeys: string[] = [];
    let entities = '';
    const patientRef = r.patient ? `Patient/${r.patient}` : undefined;
    for (const reference of r.resources) {
      if (reference === patientRef) continue;
      entities += `${entities ? ',' : ''}{"what":{"reference":${q(reference)}},${this.entity.resource}}`;
      this.referenceKeys(reference, entityKeys);
    }
    if (r.query !== undefined) {
      entities += `${entities ? ',' : ''}{${this.entity.query}${r.queryType ? `,"description":${q(r.queryType)}` : ''}${r.query ? `,"query":"${Buffer.from(r.query, 'utf8').toString('base64')}"` : ''}}`;
    }
    if (patientRef) {
      entities += `${entities ? ',' : ''}{"what":{"reference":${q(patientRef)}},${this.entity.patient}}`;
      this.referenceKeys(patientRef, entityKeys);
    }
    if (r.requestId) {
      const value = r.requestId.slice(0, 200);
      entities += `${entities ? ',' : ''}{"what":{"identifier":{"value":${q(value)}}},${this.entity.requestId}}`;
      // As referenceKeys gives for an identifier without a system.
      entityKeys.push(`entity:identifier=${value}`, `entity:identifier=|${value}`);
    }

    let keys = `[${this.constant.keys},${subtype.keys},"action=|${r.action}","outcome=|${outcome}"`;
    if (caller.keys) keys += `,${caller.keys}`;
    // `patient>` keys may come from the agent (a Patient user) and an entity alike, and a Bundle
    // may name a resource twice: each key is listed once.
    for (let i = 0; i < entityKeys.length; i++) {
      const k = entityKeys[i]!;
      if (!caller.keySet.has(k) && entityKeys.indexOf(k) === i) keys += `,${q(k)}`;
    }
    keys += ']';

    let head = `${this.constant.head},"subtype":${subtype.json},"action":"${r.action}","recorded":"${r.recorded}","outcome":"${outcome}"`;
    if (r.status >= 400 || r.operation) head += `,"outcomeDesc":${q([r.operation, `HTTP ${r.status}`].filter(Boolean).join(' '))}`;
    head += `,"agent":${agents}`;
    if (entities) head += `,"entity":[${entities}]`;
    head += `,"id":"${id}"`;
    return { id, recorded: r.recorded, keys, head };
  }

  /** The `entity` (and `patient`) keys of a reference, as referenceKeys gives them; `Type/id` without a lookup. */
  private referenceKeys(reference: string, out: string[]): void {
    const relative = RELATIVE_REFERENCE.exec(reference);
    if (relative) {
      out.push(`entity>${reference}`);
      if (relative[1] === 'Patient') out.push(`patient>${reference}`);
      return;
    }
    referenceKeys({ add: (k: string) => out.push(k) }, 'entity', { reference }, true, this.baseUrls);
  }

  private subtype(interaction: string): { json: string; keys: string } {
    let parts = this.subtypes.get(interaction);
    if (!parts) {
      const { subtype } = restAuditEvent({ interaction: interaction as RestAuditRecord['interaction'], action: 'R', status: 200, caller: { kind: 'anonymous' }, resources: [], recorded: '' }, this.source);
      parts = { json: q(subtype), keys: keyList(auditEventKeys({ resourceType: 'AuditEvent', type: {}, subtype, agent: [], source: { observer: {} }, recorded: '' }, this.baseUrls)) };
      this.subtypes.set(interaction, parts);
    }
    return parts;
  }

  private callerParts(caller: AuditCaller, key: object): CallerParts {
    let parts = this.callers.get(key);
    if (!parts || !sameCaller(parts.caller, caller)) {
      const keySet = new Set(auditEventKeys({ resourceType: 'AuditEvent', type: {}, agent: agentsOf(caller, undefined, this.source), source: { observer: {} }, recorded: '' }, this.baseUrls));
      parts = { keys: keyList(keySet), keySet, agents: new Map(), caller };
      this.callers.set(key, parts);
    }
    return parts;
  }
}

/** Whether two callers give the same agents (the cache key is the token's context object, checked anyway). */
function sameCaller(a: AuditCaller, b: AuditCaller): boolean {
  return a.kind === b.kind && a.subject === b.subject && a.clientId === b.clientId && a.fhirUser === b.fhirUser && a.role === b.role;
}
