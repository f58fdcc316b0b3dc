/**
 * AuditEvent search parameters the server does not index. Every index row is paid on each of
 * the many AuditEvents written (one per request), while an ADMIN's audit queries ask who
 * (agent, altid, agent-name), which patient and resource (patient, entity), what (type,
 * subtype, action), how it ended (outcome), where it was recorded (source, site) and when
 * (date, _lastUpdated, _id): those stay. Left out are the ones whose values are the same on
 * nearly every event the server writes (entity-type, entity-role: 3 of 13 rows per read),
 * never set by it (entity-name, policy), or better answered through another parameter
 * (agent-role: the user is in agent; address: network origin, kept in the event itself).
 * A search on one of these is an unknown parameter (400 with `Prefer: handling=strict`,
 * otherwise ignored and left out of the self link) instead of silently matching nothing.
 */
export const AUDIT_EVENT_UNINDEXED_PARAMS: Readonly<Record<string, readonly string[]>> = {
  AuditEvent: ['address', 'agent-role', 'entity-name', 'entity-role', 'entity-type', 'policy'],
};
