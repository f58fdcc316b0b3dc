import { childTable, resourceTable, isResourceType, type ElementEntry, type ElementTable } from '../summary/element-table.js';
import { attributeKeys, FHIR_NS, primitiveElementTable, XHTML_NS, XmlConversionError } from './xml-common.js';

/**
 * FHIR JSON → FHIR XML (https://hl7.org/fhir/R4/xml.html), driven by the R4 StructureDefinitions:
 * elements in definition order, primitives as `value` attributes with their `_name` companion's
 * `id` and extensions, `Element.id` and `Extension.url` as attributes, resources nested in an
 * element of their type's name (`<contained><Patient>…`), the narrative's XHTML as it is.
 *
 * The server stores and works on JSON; XML is only a wire format, converted at the HTTP edge
 * (src/http/fhir-formats.ts).
 */

type Json = Record<string, unknown>;

/** Characters XML 1.0 cannot carry at all, not even as references (JSON strings can). */
const NOT_XML_CHAR = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Escapes an attribute value; whitespace other than spaces is written as character references so it survives attribute normalisation. */
export function escapeAttribute(value: string): string {
  if (NOT_XML_CHAR.test(value)) throw new XmlConversionError('a value holds a character XML 1.0 cannot carry (a control character, U+FFFE / U+FFFF or a lone surrogate)');
  return value.replace(/[&<>"\n\r\t]/g, (c) => ATTRIBUTE_ESCAPES[c]!);
}
const ATTRIBUTE_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', '\n': '&#10;', '\r': '&#13;', '\t': '&#9;' };

class XmlWriter {
  private readonly parts: string[] = [];
  constructor(private readonly pretty: boolean) {}

  private indent(depth: number): void {
    if (this.pretty) this.parts.push(this.parts.length ? '\n' : '', '  '.repeat(depth));
  }

  open(name: string, attributes: string, depth: number, empty: boolean): void {
    this.indent(depth);
    this.parts.push(`<${name}${attributes}${empty ? '/>' : '>'}`);
  }

  close(name: string, depth: number): void {
    this.indent(depth);
    this.parts.push(`</${name}>`);
  }

  raw(text: string, depth: number): void {
    this.indent(depth);
    this.parts.push(text);
  }

  text(): string {
    return this.parts.join('');
  }
}

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : value === undefined ? [] : [value];
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The keys of `names` that `value` holds (`id`, an Extension's `url`), written as attributes. */
function attributesOf(value: Json, names: readonly string[], path: string): string {
  let out = '';
  for (const name of names) {
    const v = value[name];
    if (v === undefined) continue;
    if (typeof v !== 'string') throw new XmlConversionError(`${path}.${name} must be a string`);
    out += ` ${name}="${escapeAttribute(v)}"`;
  }
  return out;
}

function primitiveText(value: unknown, path: string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  throw new XmlConversionError(`${path} is not a primitive value`);
}

function writePrimitive(w: XmlWriter, entry: ElementEntry, value: unknown, companion: unknown, depth: number, path: string): void {
  if (entry.type === 'xhtml') {
    // Narrative.div: XHTML carried as it is (the validator checked it is well-formed XHTML,
    // src/fhir/validation/narrative.ts); a div that does not declare its namespace gets it, or
    // its elements would be read as FHIR's.
    if (typeof value !== 'string') throw new XmlConversionError(`${path} must be XHTML text`);
    const div = value.trimStart();
    w.raw(/^<div[\s>/]/.test(div) && !/^<div\b[^>]*\bxmlns\s*=/.test(div) ? `<div xmlns="${XHTML_NS}"${div.slice(4)}` : value, depth);
    return;
  }
  const values = asArray(value);
  const companions = asArray(companion);
  const count = Math.max(values.length, companions.length);
  for (let i = 0; i < count; i++) {
    const v = values[i] ?? null;
    const c = companions[i] ?? null;
    if (v === null && c === null) continue;
    const at = entry.array ? `${path}[${i}]` : path;
    if (c !== null && (!isObject(c) || Object.keys(c).some((k) => k !== 'id' && k !== 'extension'))) throw new XmlConversionError(`_${at} must be an object of id and extension`);
    let attributes = c ? attributesOf(c, ['id'], at) : '';
    if (v !== null) attributes += ` value="${escapeAttribute(primitiveText(v, at))}"`;
    const extensions = c ? asArray(c.extension) : [];
    w.open(entry.key, attributes, depth, extensions.length === 0);
    if (extensions.length > 0) {
      writeChildren(w, { extension: c!.extension }, primitiveElementTable(), false, depth + 1, at);
      w.close(entry.key, depth);
    }
  }
}

function writeChildren(w: XmlWriter, value: Json, table: ElementTable, resourceLevel: boolean, depth: number, path: string): void {
  // Written by the caller, in the element's start tag.
  const attributes = attributeKeys(table, resourceLevel);
  for (const key of Object.keys(value)) {
    if ((key === 'resourceType' && resourceLevel) || attributes.includes(key)) continue;
    const base = key.charCodeAt(0) === 95 /* _ */ ? key.slice(1) : key;
    const entry = table.byKey.get(base);
    if (!entry || (base !== key && !entry.primitive)) throw new XmlConversionError(`${path}.${key} is not an element FHIR R4 defines here`);
  }
  for (const entry of table.byKey.values()) {
    const key = entry.key;
    if (attributes.includes(key)) continue;
    const v = value[key];
    const at = `${path}.${key}`;
    if (entry.primitive) {
      const companion = value[`_${key}`];
      if (v !== undefined || companion !== undefined) writePrimitive(w, entry, v, companion, depth, at);
      continue;
    }
    if (v === undefined) continue;
    const items = asArray(v);
    items.forEach((item, i) => {
      const itemPath = entry.array ? `${at}[${i}]` : at;
      if (!isObject(item)) throw new XmlConversionError(`${itemPath} must be an object`);
      if (entry.children === undefined) {
        // An element of type Resource: the resource nested in it.
        w.open(key, '', depth, false);
        writeResource(w, item, depth + 1, itemPath);
        w.close(key, depth);
        return;
      }
      const childTableOf = childTable(entry.children);
      if (!childTableOf) throw new XmlConversionError(`${itemPath}: no definition describes its elements`);
      const names = attributeKeys(childTableOf, false);
      const hasChildren = Object.keys(item).some((k) => !names.includes(k));
      w.open(key, attributesOf(item, names, itemPath), depth, !hasChildren);
      if (hasChildren) {
        writeChildren(w, item, childTableOf, false, depth + 1, itemPath);
        w.close(key, depth);
      }
    });
  }
}

function writeResource(w: XmlWriter, resource: Json, depth: number, path: string, root = false): void {
  const type = resource.resourceType;
  if (typeof type !== 'string' || !isResourceType(type)) throw new XmlConversionError(`${path} is not a FHIR R4 resource (resourceType ${JSON.stringify(type)?.slice(0, 60)})`);
  const hasChildren = Object.keys(resource).some((k) => k !== 'resourceType');
  w.open(type, root ? ` xmlns="${FHIR_NS}"` : '', depth, !hasChildren);
  if (!hasChildren) return;
  writeChildren(w, resource, resourceTable(type), true, depth + 1, type);
  w.close(type, depth);
}

/** A resource as FHIR XML text; throws XmlConversionError when it holds something XML cannot say (an element R4 does not define). */
export function resourceToXml(resource: Json, options: { pretty?: boolean } = {}): string {
  const w = new XmlWriter(options.pretty === true);
  writeResource(w, resource, 0, 'resource', true);
  return w.text();
}
