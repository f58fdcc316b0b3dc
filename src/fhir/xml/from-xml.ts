import { SaxesParser, type SaxesAttributeNS, type SaxesTagNS } from 'saxes';
import { childTable, isResourceType, resourceTable, type ElementEntry, type ElementTable } from '../summary/element-table.js';
import { escapeAttribute } from './to-xml.js';
import { attributeKeys, FHIR_NS, primitiveElementTable, XHTML_NS, XmlConversionError } from './xml-common.js';

/**
 * FHIR XML → FHIR JSON (https://hl7.org/fhir/R4/xml.html), driven by the R4 StructureDefinitions,
 * so that an XML body becomes exactly the JSON object a JSON body would have been and every
 * later step (validation, rules, storage) is the same. What the XML format forbids or JSON
 * cannot carry is refused with the element and line named: a DOCTYPE (no entity expansion, no
 * external entities), elements outside the FHIR namespace or not defined where they stand,
 * text outside the narrative, attributes other than `value`, `id` and `Extension.url`, a single
 * element repeated, a value that is not of its primitive type, nesting deeper than the JSON
 * parser allows.
 */

type Json = Record<string, unknown>;

const XMLNS_NS = 'http://www.w3.org/2000/xmlns/';
const XSI_NS = 'http://www.w3.org/2001/XMLSchema-instance';

interface XmlElement {
  local: string;
  uri: string;
  attributes: SaxesAttributeNS[];
  children: XmlElement[];
  /** non-whitespace text directly inside (refused outside the narrative) */
  hasText: boolean;
  line: number;
  /** Narrative.div: the XHTML as text */
  xhtml?: string;
}

const at = (e: XmlElement) => `line ${e.line}`;

function escapeText(text: string): string {
  return text.replace(/[&<>]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : '&gt;'));
}

/** XHTML attributes written back (namespace declarations are not: the div declares the one namespace). */
function xhtmlAttributes(tag: SaxesTagNS): string {
  let out = '';
  for (const a of Object.values(tag.attributes)) {
    if (a.uri === XMLNS_NS || a.name === 'xmlns' || a.name.startsWith('xmlns:')) continue;
    out += ` ${a.name}="${escapeAttribute(a.value)}"`;
  }
  return out;
}

/** No prefix on the element or its attributes but `xml:` (always declared). */
function selfContained(tag: SaxesTagNS): boolean {
  if (tag.prefix !== '') return false;
  for (const a of Object.values(tag.attributes)) if (a.prefix !== '' && a.prefix !== 'xml' && a.prefix !== 'xmlns') return false;
  return true;
}

/** Parses the text into elements; the narrative's div is kept as XHTML text. */
function parseElements(text: string, maxDepth: number): XmlElement {
  const parser = new SaxesParser({ xmlns: true, position: true });
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  /**
   * The narrative being read: its text is the document's own characters when the div is
   * self-contained (declares the XHTML namespace, no prefixes that lean on declarations
   * outside it), else re-written from the parsed elements.
   */
  let xhtml: { owner: XmlElement; depth: number; parts: string[]; selfClosing: boolean[]; start: number; verbatim: boolean } | undefined;
  let tagStart = 0;
  parser.on('opentagstart', () => {
    tagStart = text.lastIndexOf('<', parser.position);
  });
  parser.on('xmldecl', (decl) => {
    if (decl.encoding !== undefined && !/^utf-?8$/i.test(decl.encoding)) throw new XmlConversionError(`FHIR XML is UTF-8; the document declares encoding ${decl.encoding.slice(0, 40)}`);
  });
  parser.on('doctype', () => {
    throw new XmlConversionError(`a DOCTYPE is not accepted in FHIR XML (line ${parser.line})`);
  });
  parser.on('opentag', (tag) => {
    if (stack.length + (xhtml?.depth ?? 0) >= maxDepth) throw new XmlConversionError(`the document nests deeper than ${maxDepth} elements (line ${parser.line})`);
    if (xhtml) {
      if (tag.uri !== XHTML_NS) throw new XmlConversionError(`<${tag.name}> in the narrative is not XHTML (line ${parser.line})`);
      if (!selfContained(tag)) xhtml.verbatim = false;
      xhtml.parts.push(`<${tag.local}${xhtmlAttributes(tag)}${tag.isSelfClosing ? '/>' : '>'}`);
      xhtml.selfClosing.push(tag.isSelfClosing);
      xhtml.depth++;
      return;
    }
    const element: XmlElement = { local: tag.local, uri: tag.uri, attributes: Object.values(tag.attributes), children: [], hasText: false, line: parser.line };
    if (stack.length > 0) stack[stack.length - 1]!.children.push(element);
    else root = element;
    if (tag.uri === XHTML_NS && tag.local === 'div' && stack.length > 0) {
      xhtml = {
        owner: element,
        depth: 1,
        parts: [`<div xmlns="${XHTML_NS}"${xhtmlAttributes(tag)}${tag.isSelfClosing ? '/>' : '>'}`],
        selfClosing: [tag.isSelfClosing],
        start: tagStart,
        verbatim: tag.attributes.xmlns?.value === XHTML_NS && selfContained(tag),
      };
      return;
    }
    stack.push(element);
  });
  const onText = (t: string) => {
    if (xhtml) xhtml.parts.push(escapeText(t));
    else if (stack.length > 0 && /\S/.test(t)) stack[stack.length - 1]!.hasText = true;
  };
  parser.on('text', onText);
  parser.on('cdata', onText);
  parser.on('closetag', (tag) => {
    if (xhtml) {
      if (!xhtml.selfClosing.pop()) xhtml.parts.push(`</${tag.local}>`);
      if (--xhtml.depth === 0) {
        // XML reads every line end as \n: so does the verbatim text.
        xhtml.owner.xhtml = xhtml.verbatim ? text.slice(xhtml.start, parser.position).replace(/\r\n?/g, '\n') : xhtml.parts.join('');
        xhtml = undefined;
      }
      return;
    }
    stack.pop();
  });
  try {
    parser.write(text).close();
  } catch (e) {
    if (e instanceof XmlConversionError) throw e;
    // saxes reports well-formedness errors as "<line>:<column>: <reason>".
    throw new XmlConversionError(`the body is not well-formed XML: ${(e instanceof Error ? e.message : String(e)).slice(0, 200)}`);
  }
  if (!root) throw new XmlConversionError('the body holds no XML element');
  return root;
}

function checkAttributes(e: XmlElement, allowed: readonly string[], path: string, root = false): Map<string, string> {
  const out = new Map<string, string>();
  for (const a of e.attributes) {
    if (a.uri === XMLNS_NS || a.name === 'xmlns' || a.prefix === 'xmlns') continue;
    if (root && a.uri === XSI_NS) continue; // xsi:schemaLocation and the like: hints for schema tools
    if (a.uri !== '' || !allowed.includes(a.local)) throw new XmlConversionError(`${path} (${at(e)}) has an attribute ${a.name} that FHIR XML does not define there`);
    out.set(a.local, a.value);
  }
  if (e.hasText) throw new XmlConversionError(`${path} (${at(e)}) holds text; FHIR XML carries values in value attributes`);
  return out;
}

const DECIMAL = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;
const INTEGER = /^[-+]?[0-9]+$/;

function primitiveValue(type: string | undefined, text: string, path: string, e: XmlElement): string | number | boolean {
  switch (type) {
    case 'boolean':
    case 'http://hl7.org/fhirpath/System.Boolean':
      if (text === 'true') return true;
      if (text === 'false') return false;
      throw new XmlConversionError(`${path} (${at(e)}) must be true or false, not "${text.slice(0, 40)}"`);
    case 'integer':
    case 'positiveInt':
    case 'unsignedInt':
    case 'http://hl7.org/fhirpath/System.Integer': {
      const n = INTEGER.test(text) ? Number(text) : NaN;
      if (!Number.isSafeInteger(n)) throw new XmlConversionError(`${path} (${at(e)}) must be an integer, not "${text.slice(0, 40)}"`);
      return n;
    }
    case 'decimal':
    case 'http://hl7.org/fhirpath/System.Decimal': {
      const n = DECIMAL.test(text) ? Number(text) : NaN;
      if (!Number.isFinite(n)) throw new XmlConversionError(`${path} (${at(e)}) must be a decimal, not "${text.slice(0, 40)}"`);
      return n;
    }
    default:
      return text;
  }
}


/** Repeating primitives: values and `_name` companions kept aligned (null where one side has nothing). */
class PrimitiveLists {
  private readonly lists = new Map<string, { values: unknown[]; companions: unknown[] }>();
  push(key: string, value: unknown, companion: Json | undefined): void {
    let list = this.lists.get(key);
    if (!list) this.lists.set(key, (list = { values: [], companions: [] }));
    list.values.push(value);
    list.companions.push(companion ?? null);
  }
  writeTo(out: Json): void {
    for (const [key, { values, companions }] of this.lists) {
      if (values.some((v) => v !== null)) out[key] = values;
      if (companions.some((c) => c !== null)) out[`_${key}`] = companions;
    }
  }
}

/** A single element seen a second time (as a value or as a primitive's companion). */
function refuseRepeat(out: Json, entry: ElementEntry, path: string, e: XmlElement): void {
  if (out[entry.key] !== undefined || out[`_${entry.key}`] !== undefined) throw new XmlConversionError(`${path} (${at(e)}) occurs more than once; FHIR R4 allows it once`);
}

function place(out: Json, entry: ElementEntry, value: unknown, path: string, e: XmlElement): void {
  if (entry.array) {
    ((out[entry.key] ??= []) as unknown[]).push(value);
  } else {
    refuseRepeat(out, entry, path, e);
    out[entry.key] = value;
  }
}

function convertChildren(parent: XmlElement, table: ElementTable, out: Json, resourceLevel: boolean, path: string): void {
  // Carried by the parent's attributes (read by the caller), never as elements.
  const attributes = attributeKeys(table, resourceLevel);
  const lists = new PrimitiveLists();
  for (const e of parent.children) {
    const where = `${path}.${e.local}`;
    const entry = e.uri === FHIR_NS || e.xhtml !== undefined ? table.byKey.get(e.local) : undefined;
    if (!entry || attributes.includes(e.local)) {
      const ns = e.uri === FHIR_NS ? '' : ` (namespace ${e.uri || 'none'}; FHIR elements are in ${FHIR_NS})`;
      throw new XmlConversionError(`${where} (${at(e)}) is not an element FHIR R4 defines here${ns}`);
    }
    if (entry.primitive) {
      if (entry.type === 'xhtml') {
        if (e.xhtml === undefined) throw new XmlConversionError(`${where} (${at(e)}) must be an XHTML <div xmlns="${XHTML_NS}">`);
        place(out, entry, e.xhtml, where, e);
        continue;
      }
      const values = checkAttributes(e, ['value', 'id'], where);
      const companion: Json = {};
      if (values.has('id')) companion.id = values.get('id');
      convertChildren(e, primitiveElementTable(), companion, false, where);
      const text = values.get('value');
      const hasCompanion = Object.keys(companion).length > 0;
      if (text === undefined && !hasCompanion) throw new XmlConversionError(`${where} (${at(e)}) has no value attribute, id or extension`);
      const value = text === undefined ? null : primitiveValue(entry.type, text, where, e);
      if (entry.array) {
        lists.push(entry.key, value, hasCompanion ? companion : undefined);
      } else {
        refuseRepeat(out, entry, where, e);
        if (value !== null) out[entry.key] = value;
        if (hasCompanion) out[`_${entry.key}`] = companion;
      }
    } else if (entry.children !== undefined) {
      const table = childTable(entry.children);
      if (!table) throw new XmlConversionError(`${where} (${at(e)}): no definition describes its elements`);
      const names = attributeKeys(table, false);
      const value: Json = Object.fromEntries(checkAttributes(e, names, where));
      convertChildren(e, table, value, false, where);
      place(out, entry, value, where, e);
    } else {
      // An element of type Resource (contained, Bundle.entry.resource, …): one resource inside.
      checkAttributes(e, [], where);
      if (e.children.length !== 1) throw new XmlConversionError(`${where} (${at(e)}) must hold exactly one resource, not ${e.children.length}`);
      place(out, entry, convertResource(e.children[0]!, where), where, e);
    }
  }
  lists.writeTo(out);
}

function convertResource(e: XmlElement, path: string, root = false): Json {
  if (e.uri !== FHIR_NS) throw new XmlConversionError(`<${e.local}> (${at(e)}) is not in the FHIR namespace ${FHIR_NS}`);
  if (!isResourceType(e.local)) throw new XmlConversionError(`${path} (${at(e)}): ${e.local} is not a FHIR R4 resource type`);
  checkAttributes(e, [], e.local, root);
  const out: Json = { resourceType: e.local };
  convertChildren(e, resourceTable(e.local), out, true, e.local);
  return out;
}

/**
 * A FHIR XML document → the resource as FHIR JSON (an object). Throws XmlConversionError,
 * whose message names the problem and its line, for anything that is not FHIR R4 XML.
 */
export function xmlToResource(text: string, options: { maxDepth?: number } = {}): Json {
  const root = parseElements(text, options.maxDepth ?? 128);
  return convertResource(root, 'resource', true);
}
