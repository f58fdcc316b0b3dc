import type { AuditEvent } from 'fhir/r4.js';
import { describe, expect, it } from 'vitest';
import { SearchIndexer } from '../search/indexer.js';
import { SearchParameterRegistry } from '../search/registry.js';
import { archiveAuditEvent, authServerAuditEvent, restAuditEvent, signInAuditEvent, type AuditCaller } from './audit-event.js';
import { auditEventKeys, keysFromIndexRows } from './audit-keys.js';
import { AUDIT_EVENT_UNINDEXED_PARAMS } from './audit-search.js';

const BASE = 'http://localhost:8080';
const FHIR_BASE = `${BASE}/fhir`;
const registry = new SearchParameterRegistry({ unindexed: AUDIT_EVENT_UNINDEXED_PARAMS });
const indexer = new SearchIndexer(registry, { baseUrls: [FHIR_BASE] });
const source = { baseUrl: BASE };
const recorded = '2026-12-04T10:00:00.000Z';

const doctor: AuditCaller = { kind: 'user', subject: 'u1', clientId: 'app', fhirUser: 'Practitioner/d1', role: 'DOCTOR', tokenId: 'j1' };
const patientUser: AuditCaller = { kind: 'user', subject: 'u2', clientId: 'app', fhirUser: `${FHIR_BASE}/Patient/p9`, role: 'PATIENT' };
const noFhirUser: AuditCaller = { kind: 'user', subject: 'u3', role: 'NURSE' };
const client: AuditCaller = { kind: 'client', subject: 'backend', clientId: 'backend' };
const anonymous: AuditCaller = { kind: 'anonymous' };

/** Every kind of event the server writes, with every caller kind. */
const samples: AuditEvent[] = [
  ...[doctor, patientUser, noFhirUser, client, anonymous].flatMap((caller) => [
    restAuditEvent({ interaction: 'read', action: 'R', status: 200, caller, address: '10.0.0.1', resources: ['Observation/o1'], patient: 'p1', requestId: 'r1', recorded }, source),
    restAuditEvent({ interaction: 'search-type', action: 'R', status: 200, caller, resources: [], query: 'code=1234-5', queryType: 'Observation', recorded }, source),
    restAuditEvent({ interaction: 'transaction', action: 'E', status: 500, caller, resources: ['Patient/p1', 'Encounter/e1'], patient: 'p1', recorded }, source),
    restAuditEvent({ interaction: 'operation', operation: '$export', action: 'E', status: 202, caller, resources: [], recorded }, source),
    authServerAuditEvent(
      {
        kind: 'administration',
        event: 'user-update',
        dicom: { code: '110137', display: 'User Security Attributes Changed' },
        action: 'U',
        status: 200,
        caller,
        outcomeDesc: 'updated',
        entities: [{ identifier: { system: `${BASE}/auth/users`, value: 'u7' } }, { patient: 'p2' }],
        requestId: 'r2',
        recorded,
      },
      source,
    ),
  ]),
  signInAuditEvent({ outcome: 'failure', username: 'someone', address: '10.0.0.2', step: 'password', recorded }, source),
  signInAuditEvent({ outcome: 'success', username: 'doc', userId: 'u1', fhirUser: 'Practitioner/d1', clientId: 'app', step: 'totp', recorded }, source),
  archiveAuditEvent(
    { operator: 'ops', via: 'npm run audit:archive', before: '2020-01-01T00:00:00.000Z', events: 3, files: [{ name: 'AuditEvent-x-0001.ndjson.gz', events: 3, sha256: 'ab'.repeat(32), first: recorded, last: recorded }], recorded },
    source,
  ),
  {
    resourceType: 'AuditEvent',
    type: { code: 'no-system' },
    recorded,
    agent: [{ requestor: true, who: { reference: 'http://elsewhere.example/fhir/Patient/x' }, altId: 'alt' }],
    source: { observer: { reference: 'Device/d1' }, site: 'ward-3' },
    entity: [{ what: { identifier: { value: 'no-system-id' } } }],
  },
];

describe('AuditEvent search keys (src/audit/audit-keys.ts)', () => {
  it('equal the keys built from the generic indexer rows of the R4 AuditEvent search parameters, for every kind of event', () => {
    for (const sample of samples) {
      const event = { ...sample, id: 'a1' };
      expect(auditEventKeys(event, [FHIR_BASE]).sort(), JSON.stringify(event)).toEqual(keysFromIndexRows(indexer.extract(event)));
    }
  });

  it('name the patient from agent.who and entity.what, and the caller by reference, identifier and altId', () => {
    const keys = auditEventKeys(samples[0]!, [FHIR_BASE]);
    expect(keys).toEqual(expect.arrayContaining(['patient>Patient/p1', 'entity>Patient/p1', 'entity>Observation/o1', 'agent>Practitioner/d1', 'altid=|u1', 'action=|R', 'outcome=|0', 'subtype=read']));
    expect(keys).toContain('agent:identifier=http://localhost:8080/auth/clients|app');
    // a patient user's own absolute fhirUser (our base) is a patient reference too
    expect(auditEventKeys(samples[5]!, [FHIR_BASE])).toEqual(expect.arrayContaining(['agent>Patient/p9', 'patient>Patient/p9']));
  });
});
