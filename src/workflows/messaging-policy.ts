import type { AuthContext } from '../auth/token-service.js';

/**
 * Secure messaging (issue 11 §5): who may read a message thread. Messages are Communication
 * resources; a signed-in user (other than an ADMIN) sees only those they take part in. The
 * search side turns this into SQL for every path a resource can leave the server by
 * (`src/search/sql/access.ts`), so read, search, `_include`, chains and `_has` all agree.
 */

/** Resource types readable by participants only (for user tokens). */
export const PRIVATE_MESSAGE_TYPES: readonly string[] = ['Communication'];

/** The Communication search parameters that name a participant: who sent it, to whom, about whom. */
export const PARTICIPANT_PARAMS: readonly string[] = ['sender', 'recipient', 'subject'];

/** `Type/id` of an absolute or relative reference (`https://x/fhir/Patient/1` → `Patient/1`), else undefined. */
export function relativeReference(reference: string | undefined): string | undefined {
  const match = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/.exec(reference ?? '');
  return match ? `${match[1]}/${match[2]}` : undefined;
}

/**
 * The references (`Practitioner/1`, `Patient/2`) whose messages the caller may read, or
 * undefined when the caller is not restricted: backend clients (system scopes, e.g. the
 * notification workers) and ADMIN users (they run the notification service). A user without
 * a FHIR identity gets an empty list: no message is theirs. A PATIENT user also takes part
 * through the patient in the token (a RelatedPerson signed in for a patient reads that
 * patient's messages); other roles in a patient context do not: a doctor who opens a patient's
 * chart does not read the messages the patient exchanged with other staff.
 */
export function messageParticipants(auth: Partial<Pick<AuthContext, 'kind' | 'role' | 'fhirUser' | 'patient'>>): string[] | undefined {
  if (auth.kind !== 'user' || auth.role === 'ADMIN') return undefined;
  const refs = new Set<string>();
  const self = relativeReference(auth.fhirUser);
  if (self) refs.add(self);
  if (auth.role === 'PATIENT' && auth.patient) refs.add(`Patient/${auth.patient}`);
  return [...refs].sort();
}
