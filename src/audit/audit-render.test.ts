import type { AuditEvent } from 'fhir/r4.js';
import { describe, expect, it } from 'vitest';
import { authServerAuditEvent, restAuditEvent, signInAuditEvent, type AuditCaller, type RestAuditRecord } from './audit-event.js';
import { auditEventKeys } from './audit-keys.js';
import { AuditRenderer } from './audit-render.js';
import type { AuditInsert } from '../storage/audit-store.js';

const BASE = 'http://localhost:8080';
const FHIR_BASE = `${BASE}/fhir`;
const source = { baseUrl: BASE };
const recorded = '2026-12-04T10:00:00.000Z';

const callers: AuditCaller[] = [
  { kind: 'user', subject: 'u1', clientId: 'app', fhirUser: 'Practitioner/d1', role: 'DOCTOR', tokenId: 'j1' },
  { kind: 'user', subject: 'u2', clientId: 'app', fhirUser: `${FHIR_BASE}/Patient/p1`, role: 'PATIENT' },
  { kind: 'user', subject: 'u2b', fhirUser: 'Patient/p1', role: 'PATIENT' },
  { kind: 'user', subject: 'u3', role: 'NURSE' },
  { kind: 'user', subject: 'we"ird\\name' },
  { kind: 'client', subject: 'backend', clientId: 'backend' },
  { kind: 'anonymous' },
];

const records = (caller: AuditCaller): RestAuditRecord[] => [
  { interaction: 'read', action: 'R', status: 200, caller, address: '10.0.0.1', resources: ['Observation/o1'], patient: 'p1', requestId: 'r1', recorded },
  { interaction: 'read', action: 'R', status: 200, caller, address: '::1', resources: ['Patient/p1'], patient: 'p1', requestId: 'r2', recorded },
  { interaction: 'read', action: 'R', status: 404, caller, resources: ['Observation/gone'], recorded },
  { interaction: 'vread', action: 'R', status: 200, caller, address: '10.0.0.2', resources: ['Observation/o1'], requestId: 'x'.repeat(300), recorded },
  { interaction: 'search-type', action: 'R', status: 200, caller, resources: [], query: 'code=1234-5&name=J%C3%B6rg', queryType: 'Observation', patient: 'p2', requestId: 'r"3\u2028', recorded },
  { interaction: 'search-type', action: 'R', status: 200, caller, resources: [], query: '', queryType: 'Patient', recorded },
  { interaction: 'search-system', action: 'R', status: 200, caller, resources: [], query: '_type=Patient', recorded },
  { interaction: 'create', action: 'C', status: 201, caller, resources: ['Patient/p3'], patient: 'p3', recorded },
  { interaction: 'update', action: 'U', status: 422, caller, resources: ['Observation/o1'], recorded },
  { interaction: 'transaction', action: 'E', status: 500, caller, resources: ['Patient/p1', 'Encounter/e1', 'Patient/p4', 'Encounter/e1', `${FHIR_BASE}/Patient/p6`, 'Observation/o1/_history/2'], patient: 'p1', recorded },
  { interaction: 'batch', action: 'E', status: 200, caller, resources: [], recorded },
  { interaction: 'operation', operation: '$export', action: 'E', status: 202, caller, resources: [], recorded },
  { interaction: 'operation', operation: '$everything', action: 'E', status: 200, caller, address: '10.0.0.1', resources: ['Patient/p1'], patient: 'p1', requestId: 'r9', recorded },
  { interaction: 'history-instance', action: 'R', status: 200, caller, resources: ['Observation/o1'], patient: 'p5', recorded },
];

/** The stored form of a row: the content the database keeps and its keys. */
function stored(row: AuditInsert): { content: AuditEvent; keys: string[] } {
  const content = JSON.parse(`${row.head},"meta":{"versionId":"1","lastUpdated":"${recorded}"}}`) as AuditEvent;
  return { content, keys: (JSON.parse(row.keys) as string[]).sort() };
}

describe('AuditRenderer: the fast JSON equals the reference AuditEvent', () => {
  it('renders every kind of FHIR request, for every kind of caller, as restAuditEvent + auditEventKeys do', () => {
    const renderer = new AuditRenderer(source, [FHIR_BASE]);
    // One cache key per caller (as one token's context is), each used several times and from several addresses.
    const keysOf = callers.map(() => ({}));
    for (let round = 0; round < 2; round++) {
      callers.forEach((caller, c) => {
        for (const record of records(caller)) {
          const row = renderer.rest(record, keysOf[c]!);
          const { content, keys } = stored(row);
          const reference = restAuditEvent(record, source);
          expect(content, JSON.stringify(record)).toEqual({ ...reference, id: row.id, meta: { versionId: '1', lastUpdated: recorded } });
          expect(keys, JSON.stringify(record)).toEqual(auditEventKeys(reference, [FHIR_BASE]).sort());
          expect(new Set(keys).size, 'no key listed twice').toBe(keys.length);
          expect(row.recorded).toBe(recorded);
        }
      });
    }
  });

  it('does not reuse one caller\'s agents for another under the same cache key', () => {
    const renderer = new AuditRenderer(source, [FHIR_BASE]);
    const key = {};
    const [a, , , , , b] = callers;
    for (const caller of [a!, b!, a!]) {
      const record = records(caller)[0]!;
      const { content, keys } = stored(renderer.rest(record, key));
      expect(content.agent).toEqual(restAuditEvent(record, source).agent);
      expect(keys).toEqual(auditEventKeys(restAuditEvent(record, source), [FHIR_BASE]).sort());
    }
  });

  it('renders other AuditEvents (sign-in, authorization server) through the reference path', () => {
    const renderer = new AuditRenderer(source, [FHIR_BASE]);
    const events = [
      signInAuditEvent({ outcome: 'failure', username: 'mall"ory', step: 'password', address: '10.0.0.9', recorded }, source),
      authServerAuditEvent({ kind: 'authentication', event: 'token', action: 'E', status: 200, caller: callers[5]!, outcomeDesc: 'client_credentials token issued', entities: [{ patient: 'p1' }], recorded }, source),
    ];
    for (const event of events) {
      const row = renderer.event(event);
      const { content, keys } = stored(row);
      expect(content).toEqual({ ...event, id: row.id, meta: { versionId: '1', lastUpdated: recorded } });
      expect(keys).toEqual(auditEventKeys(event, [FHIR_BASE]).sort());
    }
  });
});
