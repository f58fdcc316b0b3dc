import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Communication, Extension } from 'fhir/r4.js';
import { scopesAllow } from '../auth/scopes.js';
import type { AuthContext, TokenService } from '../auth/token-service.js';
import { errors, FhirError } from '../fhir/errors.js';
import { sendResult, outputOptions } from '../http/respond.js';
import { queryOf } from '../http/fhir-routes.js';
import type { InteractionDeps } from '../interactions/types.js';
import { update } from '../interactions/update.js';
import { accessFilterFor } from '../search/sql/access.js';
import type { BeforeWriteHook } from '../storage/resource-store.js';
import { asSystem, currentWriter } from '../subscriptions/write-context.js';
import { messageParticipants, PRIVATE_MESSAGE_TYPES, relativeReference } from './messaging-policy.js';

/**
 * Secure messaging (issue 11 §5): a message is a Communication — `sender`, `recipient`,
 * `subject` (the patient), `payload.contentString`, `sent`; a reply names the message it answers
 * in `inResponseTo` and the thread's first message in `partOf` (both Communication references).
 * Who may read a message: src/workflows/messaging-policy.ts (enforced by the search side).
 *
 * Read status: R4 has no element for "read by". Each recipient that read a message is one
 * READ_BY extension (`reader` Reference, `at` dateTime) on the Communication; `received` is set
 * when the first recipient reads it (if the sender did not set it). Recipients mark a message
 * read with `POST Communication/[id]/$mark-read`, which needs only read access to the message:
 * a patient may not update Communications, and nobody may mark it read for someone else.
 */
export const READ_BY_EXTENSION = 'https://fhir.hospital.example.org/StructureDefinition/communication-read-by';

/** Whom the caller may mark a message read as: a recipient among the caller's participant references. */
function readerOf(auth: AuthContext, message: Communication): string | undefined {
  const own = messageParticipants(auth) ?? [relativeReference(auth.fhirUser)].filter((r): r is string => r !== undefined);
  const recipients = (message.recipient ?? []).map((r) => relativeReference(r.reference)).filter((r): r is string => r !== undefined);
  return own.find((r) => recipients.includes(r));
}

/** The readers already recorded on a message. */
export function readersOf(message: Communication): string[] {
  return (message.extension ?? [])
    .filter((e) => e.url === READ_BY_EXTENSION)
    .map((e) => e.extension?.find((x) => x.url === 'reader')?.valueReference?.reference)
    .filter((r): r is string => r !== undefined);
}

/** The message with `reader` recorded as having read it at `at`; undefined when already recorded. */
export function markedRead(message: Communication, reader: string, at: string): Communication | undefined {
  if (readersOf(message).includes(reader)) return undefined;
  const mark: Extension = { url: READ_BY_EXTENSION, extension: [{ url: 'reader', valueReference: { reference: reader } }, { url: 'at', valueDateTime: at }] };
  return { ...message, received: message.received ?? at, extension: [...(message.extension ?? []), mark] };
}

/**
 * Messages written by a participant-restricted user (messaging-policy.ts) are sent as that
 * user: `sender` must be the user's own FHIR identity (filled in when absent), and only the
 * sender may change a message afterwards. Backend clients, ADMIN users and server-side writes
 * (HL7 v2, import, `$mark-read`) are not held to it. Runs on every write path (REST, Bundles).
 */
export const messageSenderHook: BeforeWriteHook = (_tx, change) => {
  if (!change.resource || !PRIVATE_MESSAGE_TYPES.includes(change.resourceType)) return;
  const writer = currentWriter();
  if (!writer || !messageParticipants(writer)) return;
  const self = relativeReference(writer.fhirUser);
  if (!self) throw errors.forbidden('sending a message needs a user with a FHIR identity (fhirUser)');
  const message = change.resource as Communication;
  if (message.sender === undefined) change.resource = { ...message, sender: { reference: self } } as Communication;
  else if (relativeReference(message.sender.reference) !== self) throw errors.forbidden(`a message is sent as its writer: sender must be ${self}`);
  const before = change.previous?.json ? (JSON.parse(change.previous.json) as Communication) : undefined;
  if (before && relativeReference(before.sender?.reference) !== self) throw errors.forbidden('only the sender may change a message');
};

export interface MessagingRouteDeps extends InteractionDeps {
  tokens: TokenService;
}

/** `POST /fhir/Communication/[id]/$mark-read` (a static segment: preferred over the REST plugin's params). */
export async function messagingRoutes(app: FastifyInstance, deps: MessagingRouteDeps): Promise<void> {
  app.addHook('onRequest', async (request) => {
    request.auth = await deps.tokens.verify(request.headers.authorization);
  });
  app.post<{ Params: { id: string } }>('/Communication/:id/$mark-read', async (request, reply) => {
    const auth = request.auth!;
    if (!scopesAllow(auth.scopes, 'Communication', 'r')) throw errors.forbidden("the access token's scopes do not allow reading Communication");
    const id = request.params.id;
    if (!/^[A-Za-z0-9\-.]{1,64}$/.test(id)) throw errors.incorrect('not a Communication id');
    // Retried on a concurrent change (another recipient marking it read at the same time).
    for (let attempt = 0; ; attempt++) {
      const message = await visibleMessage(deps, request, id);
      const reader = readerOf(auth, message);
      if (!reader) throw errors.forbidden('only a recipient of the message can mark it read, and only for themselves');
      const next = markedRead(message, reader, new Date().toISOString());
      if (!next) return sendResult(request, reply, { status: 200, body: message }, outputOptions(queryOf(request)), deps.fhirBase);
      try {
        // A server-side edit: the reader is not the sender (see messageSenderHook).
        const result = await asSystem(() => update(deps, 'Communication', id, next, `W/"${message.meta?.versionId ?? ''}"`));
        return sendResult(request, reply, { ...result, status: 200 }, outputOptions(queryOf(request)), deps.fhirBase);
      } catch (e) {
        if (!(e instanceof FhirError && e.category === 'precondition-failed') || attempt >= 2) throw e;
      }
    }
  });
}

/** The current message if the caller may see it: 404 unknown, 403 not theirs. */
async function visibleMessage(deps: InteractionDeps, request: FastifyRequest, id: string): Promise<Communication> {
  const found = await deps.search.search({ resourceType: 'Communication', params: [['_id', id]], baseUrl: deps.fhirBase, accessFilter: accessFilterFor(request.auth!) });
  const message = found.entry?.[0]?.resource as Communication | undefined;
  if (message) return message;
  const exists = ((await deps.search.search({ resourceType: 'Communication', params: [['_id', id], ['_summary', 'count']], baseUrl: deps.fhirBase })).total ?? 0) > 0;
  throw exists ? errors.forbidden(`Communication/${id} is not a message the caller takes part in`) : errors.notFound(`Communication/${id} is not known`);
}
