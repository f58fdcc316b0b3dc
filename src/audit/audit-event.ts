import type { AuditEvent, AuditEventAgent, AuditEventEntity, Coding } from 'fhir/r4.js';
import type { AuthContext } from '../auth/token-service.js';

/** FHIR RESTful interactions (http://hl7.org/fhir/restful-interaction) an audited request performed. */
export type RestInteraction =
  | 'read'
  | 'vread'
  | 'update'
  | 'patch'
  | 'delete'
  | 'history-instance'
  | 'history-type'
  | 'history-system'
  | 'create'
  | 'search-type'
  | 'search-system'
  | 'transaction'
  | 'batch'
  | 'operation';

/** Who made the request, as far as the access token tells. */
export interface AuditCaller {
  kind: 'user' | 'client' | 'anonymous';
  /** User id (user tokens) or client id (client_credentials). */
  subject?: string;
  clientId?: string;
  /** The user's FHIR resource, e.g. Practitioner/123. */
  fhirUser?: string;
  role?: string;
  /** The token's jti: ties the event to one access token. */
  tokenId?: string;
}

/** The caller of a request, from its verified access token (none: anonymous). */
export function callerOf(auth: AuthContext | undefined): AuditCaller {
  if (!auth) return { kind: 'anonymous' };
  return { kind: auth.kind, subject: auth.subject, clientId: auth.clientId || undefined, fhirUser: auth.fhirUser, role: auth.role, tokenId: auth.jti };
}

export interface RestAuditRecord {
  interaction: RestInteraction;
  /** Operation name for interaction 'operation' (e.g. `$export`). */
  operation?: string;
  action: 'C' | 'R' | 'U' | 'D' | 'E';
  /** HTTP status of the response. */
  status: number;
  caller: AuditCaller;
  address?: string;
  /** Relative references the request was about (Patient/1, …). */
  resources: string[];
  /** The query of a search, as the client sent it (stored base64 in entity.query, as the spec does). */
  query?: string;
  /** The resource type searched (for the query entity). */
  queryType?: string;
  /** The patient whose data this was, when known. */
  patient?: string;
  requestId?: string;
  recorded: string;
}

export interface SignInAuditRecord {
  outcome: 'success' | 'failure' | 'locked';
  /** The user name as typed (there may be no such user). */
  username: string;
  userId?: string;
  fhirUser?: string;
  clientId?: string;
  address?: string;
  /** 'password' or 'totp': which step of the sign-in. */
  step: 'password' | 'totp';
  recorded: string;
}

const AUDIT_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-event-type';
const RESTFUL = 'http://hl7.org/fhir/restful-interaction';
const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
const ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';
const SOURCE_TYPE = 'http://terminology.hl7.org/CodeSystem/security-source-type';
const AGENT_TYPE = 'http://terminology.hl7.org/CodeSystem/extra-security-role-type';
const PARTICIPATION = 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType';

/** AuditEvent.outcome from an HTTP status: 0 success, 4 minor failure (client error), 8 serious failure (server error). */
export function outcomeOf(status: number): '0' | '4' | '8' {
  if (status < 400) return '0';
  return status < 500 ? '4' : '8';
}

/** Identity systems of the server's own users and clients (agent.who.identifier). */
export interface AuditSource {
  /** BASE_URL */
  baseUrl: string;
}

export function sourceOf(source: AuditSource): AuditEvent['source'] {
  return {
    observer: { display: `FHIR server ${source.baseUrl}` },
    type: [{ system: SOURCE_TYPE, code: '4', display: 'Application Server' }],
  };
}

/** The agents of an event: the user (and the app it used), the backend client, or an unauthenticated caller. */
export function agentsOf(caller: AuditCaller, address: string | undefined, source: AuditSource): AuditEventAgent[] {
  const network: AuditEventAgent['network'] = address ? { address, type: '2' } : undefined;
  const client = (requestor: boolean): AuditEventAgent => ({
    type: { coding: [{ system: AGENT_TYPE, code: 'datacollector', display: 'data collector' }] },
    who: { identifier: { system: `${source.baseUrl}/auth/clients`, value: caller.clientId ?? caller.subject ?? 'unknown' } },
    altId: caller.clientId ?? caller.subject,
    requestor,
    ...(requestor && network ? { network } : {}),
  });
  if (caller.kind === 'client') return [client(true)];
  if (caller.kind === 'anonymous') {
    return [{ type: { coding: [{ system: AGENT_TYPE, code: 'humanuser', display: 'human user' }] }, who: { display: 'unauthenticated caller' }, requestor: true, ...(network ? { network } : {}) }];
  }
  const user: AuditEventAgent = {
    type: { coding: [{ system: AGENT_TYPE, code: 'humanuser', display: 'human user' }] },
    who: caller.fhirUser ? { reference: caller.fhirUser } : { identifier: { system: `${source.baseUrl}/auth/users`, value: caller.subject ?? 'unknown' } },
    altId: caller.subject,
    ...(caller.role ? { role: [{ coding: [{ system: `${source.baseUrl}/auth/roles`, code: caller.role }] }] } : {}),
    requestor: true,
    ...(network ? { network } : {}),
  };
  return caller.clientId ? [user, client(false)] : [user];
}

const toBase64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');

/** An R4 AuditEvent for one FHIR REST request (type `rest`, subtype the interaction). */
export function restAuditEvent(record: RestAuditRecord, source: AuditSource): AuditEvent {
  const subtype: Coding[] = [{ system: RESTFUL, code: record.interaction }];
  const entity: AuditEventEntity[] = [];
  const patientRef = record.patient ? `Patient/${record.patient}` : undefined;
  for (const reference of record.resources) {
    if (reference === patientRef) continue;
    entity.push({ what: { reference }, type: { system: ENTITY_TYPE, code: '2', display: 'System Object' }, role: { system: OBJECT_ROLE, code: '4', display: 'Domain Resource' } });
  }
  if (record.query !== undefined) {
    entity.push({
      type: { system: ENTITY_TYPE, code: '2', display: 'System Object' },
      role: { system: OBJECT_ROLE, code: '24', display: 'Query' },
      ...(record.queryType ? { description: record.queryType } : {}),
      // base64Binary may not be empty: a search without parameters has no query element.
      ...(record.query ? { query: toBase64(record.query) } : {}),
    });
  }
  if (patientRef) {
    entity.push({ what: { reference: patientRef }, type: { system: ENTITY_TYPE, code: '1', display: 'Person' }, role: { system: OBJECT_ROLE, code: '1', display: 'Patient' } });
  }
  if (record.requestId) {
    entity.push({ what: { identifier: { value: record.requestId.slice(0, 200) } }, type: { system: ENTITY_TYPE, code: '4', display: 'Other' }, description: 'X-Request-Id' });
  }
  const event: AuditEvent = {
    resourceType: 'AuditEvent',
    type: { system: AUDIT_TYPE, code: 'rest', display: 'RESTful Operation' },
    subtype,
    action: record.action,
    recorded: record.recorded,
    outcome: outcomeOf(record.status),
    ...(record.status >= 400 || record.operation ? { outcomeDesc: [record.operation, `HTTP ${record.status}`].filter(Boolean).join(' ') } : {}),
    agent: agentsOf(record.caller, record.address, source),
    source: sourceOf(source),
    ...(entity.length > 0 ? { entity } : {}),
  };
  return event;
}

/** What the authorization server did (token endpoint, introspection, revocation, administration API). */
export interface AuthServerAuditRecord {
  /** The token endpoints authenticate (DICOM User Authentication); the admin API changes security settings (Security Alert). */
  kind: 'authentication' | 'administration';
  /** The server's own code for the call: token, introspect, revoke, user-create, client-register, … */
  event: string;
  /** DICOM event type code of an administration call (110137 User Security Attributes Changed, …). */
  dicom?: { code: string; display: string };
  action: 'C' | 'R' | 'U' | 'D' | 'E';
  status: number;
  caller: AuditCaller;
  address?: string;
  /** Short and free of secrets and PHI: e.g. `client_credentials token issued`, `authorization_code refused: invalid_grant`. */
  outcomeDesc: string;
  /** What the call was about: users, clients and tokens by identifier, a launch's patient by reference. */
  entities: Array<{ identifier: { system: string; value: string }; description?: string } | { patient: string }>;
  requestId?: string;
  recorded: string;
}

/** An R4 AuditEvent for an authorization-server call (tokens issued or refused, introspection, revocation, admin API). */
export function authServerAuditEvent(record: AuthServerAuditRecord, source: AuditSource): AuditEvent {
  const subtype: Coding[] = [];
  if (record.dicom) subtype.push({ system: DCM, ...record.dicom });
  subtype.push({ system: `${source.baseUrl}/auth/audit-events`, code: record.event });
  const entity: AuditEventEntity[] = record.entities.map((e) =>
    'patient' in e
      ? { what: { reference: `Patient/${e.patient}` }, type: { system: ENTITY_TYPE, code: '1', display: 'Person' }, role: { system: OBJECT_ROLE, code: '1', display: 'Patient' } }
      : { what: { identifier: e.identifier }, type: { system: ENTITY_TYPE, code: '2', display: 'System Object' }, ...(e.description ? { description: e.description } : {}) },
  );
  if (record.requestId) {
    entity.push({ what: { identifier: { value: record.requestId.slice(0, 200) } }, type: { system: ENTITY_TYPE, code: '4', display: 'Other' }, description: 'X-Request-Id' });
  }
  return {
    resourceType: 'AuditEvent',
    type: record.kind === 'authentication' ? { system: DCM, code: '110114', display: 'User Authentication' } : { system: DCM, code: '110113', display: 'Security Alert' },
    subtype,
    action: record.action,
    recorded: record.recorded,
    outcome: outcomeOf(record.status),
    outcomeDesc: record.outcomeDesc,
    agent: agentsOf(record.caller, record.address, source),
    source: sourceOf(source),
    ...(entity.length > 0 ? { entity } : {}),
  };
}

/** An R4 AuditEvent for a sign-in attempt (DICOM User Authentication / Login). */
export function signInAuditEvent(record: SignInAuditRecord, source: AuditSource): AuditEvent {
  const user: AuditEventAgent = {
    type: { coding: [{ system: AGENT_TYPE, code: 'humanuser', display: 'human user' }] },
    who: record.fhirUser ? { reference: record.fhirUser } : { identifier: { system: `${source.baseUrl}/auth/users`, value: record.userId ?? record.username } },
    ...(record.userId ? { altId: record.userId } : {}),
    name: record.username,
    requestor: true,
    ...(record.address ? { network: { address: record.address, type: '2' as const } } : {}),
  };
  const agents: AuditEventAgent[] = [user];
  if (record.clientId) {
    agents.push({
      type: { coding: [{ system: PARTICIPATION, code: 'DEV', display: 'device' }] },
      who: { identifier: { system: `${source.baseUrl}/auth/clients`, value: record.clientId } },
      altId: record.clientId,
      requestor: false,
    });
  }
  const outcome = record.outcome === 'success' ? '0' : record.outcome === 'failure' ? '4' : '8';
  return {
    resourceType: 'AuditEvent',
    type: { system: DCM, code: '110114', display: 'User Authentication' },
    subtype: [{ system: DCM, code: '110122', display: 'Login' }],
    action: 'E',
    recorded: record.recorded,
    outcome,
    outcomeDesc:
      record.outcome === 'success'
        ? `${record.step} accepted`
        : record.outcome === 'locked'
          ? `${record.step} refused: account locked`
          : `${record.step} refused`,
    agent: agents,
    source: sourceOf(source),
  };
}

/** What one run of the audit trail's archival did (src/audit/audit-archive.ts). */
export interface ArchiveAuditRecord {
  /** Who ran it: the operating-system user of `npm run audit:archive`, or the server itself. */
  operator: string;
  /** How: `npm run audit:archive`, or `AUDIT_RETENTION_DAYS=N` (the server's own schedule). */
  via: string;
  /** Events recorded before this instant were archived. */
  before: string;
  events: number;
  files: ReadonlyArray<{ name: string; events: number; sha256: string; first: string; last: string }>;
  recorded: string;
}

/**
 * An R4 AuditEvent for an archival of the audit trail (DICOM Export; action D: the events left the
 * server): one entity per archive file with its SHA-256, so the trail itself tells where the
 * archived events went and lets anyone check a file was not altered since.
 */
export function archiveAuditEvent(record: ArchiveAuditRecord, source: AuditSource): AuditEvent {
  return {
    resourceType: 'AuditEvent',
    type: { system: DCM, code: '110106', display: 'Export' },
    subtype: [{ system: `${source.baseUrl}/auth/audit-events`, code: 'audit-archive' }],
    action: 'D',
    recorded: record.recorded,
    outcome: '0',
    outcomeDesc: `${record.events} AuditEvent(s) recorded before ${record.before} archived to ${record.files.length} file(s) and deleted from the server`,
    agent: [
      {
        type: { coding: [{ system: AGENT_TYPE, code: 'humanuser', display: 'human user' }] },
        who: { display: `${record.operator} (${record.via})` },
        altId: record.operator,
        requestor: true,
      },
    ],
    source: sourceOf(source),
    entity: record.files.map((f) => ({
      what: { identifier: { value: f.name } },
      type: { system: ENTITY_TYPE, code: '2', display: 'System Object' },
      description: 'AuditEvent archive file (gzip NDJSON)',
      detail: [
        { type: 'sha256', valueString: f.sha256 },
        { type: 'events', valueString: String(f.events) },
        { type: 'first-recorded', valueString: f.first },
        { type: 'last-recorded', valueString: f.last },
      ],
    })),
  };
}
