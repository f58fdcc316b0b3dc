import { SaxesParser } from 'saxes';
import { XHTML_NS } from '../xml/xml-common.js';

/**
 * Narrative.div (https://hl7.org/fhir/R4/narrative.html, invariants txt-1 and txt-2): well-formed XHTML,
 * one `div` element, and none of what the specification forbids in a narrative: "a head, a body,
 * external stylesheet references, scripts, forms, base/link/xlink, frames, iframes and
 * objects", nor event attributes. A narrative is shown to people in browsers (the console,
 * other EHRs), so what could run there is refused here, before it is stored.
 *
 * Only the predefined XML entities and character references can appear (`&nbsp;` cannot: XML
 * has no DTD here; `&#160;` can), as in any FHIR XML. A div without the XHTML namespace
 * declaration is read as XHTML (a common slip in JSON); the XML form adds the declaration.
 */

const FORBIDDEN_ELEMENTS = new Set([
  'html', 'head', 'body', 'title', 'meta', 'base', 'link', 'style',
  'script', 'noscript',
  'form', 'input', 'button', 'select', 'option', 'optgroup', 'textarea', 'fieldset', 'legend', 'label',
  'frame', 'frameset', 'noframes', 'iframe',
  'object', 'param', 'applet', 'embed',
]);

/** URL schemes that run code when followed or loaded. */
const ACTIVE_URL = /^\s*(javascript|vbscript|data\s*:\s*text\/html)\s*:?/i;
const URL_ATTRIBUTES = new Set(['href', 'src', 'longdesc', 'usemap', 'cite']);

class NarrativeProblem extends Error {}

/** Why `div` is not an acceptable narrative, or undefined when it is (txt-1, and txt-2: some content). */
export function narrativeProblem(div: string): string | undefined {
  const parser = new SaxesParser({ xmlns: true });
  let depth = 0;
  let roots = 0;
  /** txt-2: the narrative says something — text other than whitespace, or an image. */
  let content = false;
  parser.on('text', (text) => {
    if (!content && depth > 0 && /\S/.test(text)) content = true;
  });
  parser.on('doctype', () => {
    throw new NarrativeProblem('a DOCTYPE is not allowed');
  });
  parser.on('opentag', (tag) => {
    if (depth === 0) {
      roots++;
      if (tag.local !== 'div' || tag.prefix !== '') throw new NarrativeProblem(`the root element must be <div>, not <${tag.name}>`);
    }
    if (tag.uri !== '' && tag.uri !== XHTML_NS) throw new NarrativeProblem(`<${tag.name}> is not XHTML (namespace ${tag.uri})`);
    if (FORBIDDEN_ELEMENTS.has(tag.local.toLowerCase())) throw new NarrativeProblem(`<${tag.local}> is not allowed in a narrative`);
    if (tag.local.toLowerCase() === 'img') content = true;
    for (const attribute of Object.values(tag.attributes)) {
      const name = attribute.local.toLowerCase();
      if (name.startsWith('on')) throw new NarrativeProblem(`the event attribute ${attribute.name} is not allowed in a narrative`);
      if (URL_ATTRIBUTES.has(name) && ACTIVE_URL.test(attribute.value)) throw new NarrativeProblem(`a ${attribute.name} that runs a script is not allowed in a narrative`);
    }
    depth++;
  });
  parser.on('closetag', () => {
    depth--;
  });
  try {
    parser.write(div).close();
  } catch (e) {
    if (e instanceof NarrativeProblem) return `${e.message} (txt-1)`;
    return `not well-formed XHTML: ${(e instanceof Error ? e.message : String(e)).slice(0, 160)}`;
  }
  if (roots !== 1) return 'the narrative must be one <div> element';
  if (!content) return 'the narrative has no content: no text but whitespace, and no image (txt-2)';
  return undefined;
}
