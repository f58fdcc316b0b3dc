import type { AttachmentTexts } from './full-text.js';

/**
 * Text extracted from binary attachments (PDFs) before a write, handed to the indexer.
 * Extraction is asynchronous and the indexer's `extract` is not, so a before-write hook
 * (pdf-text.ts) extracts and records the texts here, keyed by the attachment object the store
 * then indexes (a hook that copies the resource shallowly keeps the same attachment objects);
 * a WeakMap, so nothing outlives the write.
 */
const texts = new WeakMap<object, string>();

export function setAttachmentText(attachment: object, text: string): void {
  texts.set(attachment, text);
}

const view: AttachmentTexts = { get: (attachment: object) => texts.get(attachment) };

/** The recorded texts (looked up per attachment object while the indexer walks the resource). */
export function attachmentTextsOf(): AttachmentTexts {
  return view;
}
