import type { Attachment, DocumentReference, Identifier } from 'fhir/r4.js';
import { MappingError, reference, type MappingContext } from './context.js';
import { identifierFromEi, personDisplay, toCodeableConcept, toInstant } from './datatypes.js';
import { resolvePatient, requirePid } from './patient.js';
import { attachment, MEDIA_TYPES } from './results.js';

/**
 * MDM^T02 (original document notification and content): a DocumentReference identified by
 * TXA-12 (unique document number): type TXA-2, date TXA-4, author TXA-9, docStatus from
 * TXA-17 (completion status, HL7 table 0271), content from the OBX segments (ED as it is,
 * text lines as one text/plain attachment).
 */
export async function mapDocument(ctx: MappingContext): Promise<void> {
  const t = ctx.tables;
  const pid = requirePid(ctx);
  const txa = ctx.message.segments.find((s) => s.name === 'TXA');
  if (!txa) throw new MappingError('the MDM message has no TXA segment', '100');
  const patient = await resolvePatient(ctx, pid, false);
  const h = ctx.message.header;
  const key: Identifier = identifierFromEi(txa.fields[12]?.[0], 'document', t) ?? { system: ctx.system('document-of-message'), value: `${h.sendingApplication}|${h.sendingFacility}|${h.controlId}` };
  const content: Attachment[] = [];
  const lines: string[] = [];
  for (const obx of ctx.message.segments.filter((s) => s.name === 'OBX')) {
    const type = obx.get(2).toUpperCase();
    if (type === 'ED') {
      const form = attachment(obx);
      const title = obx.get(3, 2) || obx.get(3, 1);
      if (form) content.push({ ...form, ...(title ? { title } : {}) });
      // An ED that names its kind but carries no data: the document is known, its bytes are not here.
      else if (obx.get(5, 3)) content.push({ contentType: `${MEDIA_TYPES[obx.get(5, 2).toUpperCase()] ?? 'application'}/${obx.get(5, 3).toLowerCase()}`, ...(title ? { title } : {}) });
    } else if (type === 'TX' || type === 'FT' || type === 'ST') {
      lines.push(...obx.repetitions(5).map((r) => r.map((c) => c.join('&')).join('^')));
    }
  }
  if (lines.length) content.push({ contentType: 'text/plain; charset=utf-8', data: Buffer.from(lines.join('\n'), 'utf8').toString('base64') });
  if (content.length === 0) throw new MappingError('the document has no content (no OBX with text or an embedded document)', '101');
  const completion = txa.get(17).trim().toUpperCase();
  const document: DocumentReference = {
    resourceType: 'DocumentReference',
    identifier: [key],
    status: 'current',
    subject: reference(patient),
    content: content.map((attachment) => ({ attachment })),
  };
  const docStatus = t.documentCompletion.codes[completion];
  if (docStatus) document.docStatus = docStatus as DocumentReference['docStatus'];
  const type = txa.get(2).trim();
  if (type) document.type = toCodeableConcept([[type], [''], ['HL70270']], t);
  const date = toInstant(txa.get(4), t);
  if (date) document.date = date;
  const author = personDisplay(txa.fields[9]?.[0]);
  if (author) document.author = [{ display: author }];
  await ctx.upsert(document, key);
}
