import { childTable, type ElementTable } from '../summary/element-table.js';

/** The FHIR namespace every FHIR XML element is in (https://hl7.org/fhir/R4/xml.html). */
export const FHIR_NS = 'http://hl7.org/fhir';
/** The namespace of the narrative's XHTML. */
export const XHTML_NS = 'http://www.w3.org/1999/xhtml';

/** The media types of FHIR XML bodies (https://hl7.org/fhir/R4/http.html#mime-type). */
export const XML_MEDIA_TYPES: readonly string[] = ['application/fhir+xml', 'application/xml', 'text/xml'];

/** Whether a Content-Type (or a Subscription's payload type) names FHIR XML; parameters such as charset aside. */
export function isXmlMediaType(contentType: string | undefined): boolean {
  return contentType !== undefined && XML_MEDIA_TYPES.includes(contentType.split(';')[0]!.trim().toLowerCase());
}

/** What cannot be carried between FHIR JSON and FHIR XML; the message names the element. */
export class XmlConversionError extends Error {
  override name = 'XmlConversionError';
}

let extensionTable: ElementTable | undefined;
let elementTable: ElementTable | undefined;

/** The Element datatype's table (id, extension): what a primitive's `_name` companion holds. */
export function primitiveElementTable(): ElementTable {
  return (elementTable ??= childTable({ kind: 'datatype', type: 'Element' })!);
}

/**
 * The JSON keys of a table that XML carries as attributes, not elements: `Element.id` (a
 * resource's own `id` is an element), and an Extension's `url`.
 */
export function attributeKeys(table: ElementTable, resourceLevel: boolean): readonly string[] {
  if (resourceLevel) return [];
  return table === (extensionTable ??= childTable({ kind: 'datatype', type: 'Extension' })) ? ['id', 'url'] : ['id'];
}
