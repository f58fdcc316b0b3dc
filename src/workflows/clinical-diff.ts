import type { Parameters, ParametersParameter } from 'fhir/r4.js';

/**
 * The changes between two versions of a resource (issue 13 §1, `$diff`), as a Parameters
 * resource with one `change` per changed location, each with parts
 *   op    add | remove | replace   (the JSON Patch operation, RFC 6902)
 *   path  JSON Pointer (RFC 6901) into the resource, e.g. /section/0/text/div
 *   old / new  the JSON text of the value before / after (absent for add / remove).
 * Applying the ops in order as JSON Patch turns version `from` into version `to`. Objects are
 * compared member by member, arrays element by element (a longer array: `add` at the end; a
 * shorter one: `remove` from the end). `meta.versionId` and `meta.lastUpdated` always differ and
 * are left out.
 */
export interface JsonChange {
  op: 'add' | 'remove' | 'replace';
  path: string;
  old?: unknown;
  new?: unknown;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function pointer(parts: ReadonlyArray<string | number>): string {
  return parts.map((p) => '/' + String(p).replace(/~/g, '~0').replace(/\//g, '~1')).join('');
}

function isObject(v: Json): v is { [key: string]: Json } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function diffJson(from: Json, to: Json, path: Array<string | number> = [], out: JsonChange[] = []): JsonChange[] {
  if (isObject(from) && isObject(to)) {
    for (const key of Object.keys(from)) {
      if (!(key in to)) out.push({ op: 'remove', path: pointer([...path, key]), old: from[key] });
      else diffJson(from[key]!, to[key]!, [...path, key], out);
    }
    for (const key of Object.keys(to)) if (!(key in from)) out.push({ op: 'add', path: pointer([...path, key]), new: to[key] });
    return out;
  }
  if (Array.isArray(from) && Array.isArray(to)) {
    const common = Math.min(from.length, to.length);
    for (let i = 0; i < common; i++) diffJson(from[i]!, to[i]!, [...path, i], out);
    for (let i = common; i < to.length; i++) out.push({ op: 'add', path: pointer([...path, i]), new: to[i] });
    // From the end, so that each remove's index is still valid when applied in order.
    for (let i = from.length - 1; i >= common; i--) out.push({ op: 'remove', path: pointer([...path, i]), old: from[i] });
    return out;
  }
  if (JSON.stringify(from) !== JSON.stringify(to)) out.push({ op: 'replace', path: pointer(path), old: from, new: to });
  return out;
}

function withoutVersionMeta(resource: Record<string, Json>): Record<string, Json> {
  const meta = resource.meta;
  if (!isObject(meta)) return resource;
  const { versionId: _v, lastUpdated: _u, ...rest } = meta;
  const copy: Record<string, Json> = { ...resource };
  if (Object.keys(rest).length > 0) copy.meta = rest;
  else delete copy.meta;
  return copy;
}

export function diffParameters(type: string, id: string, fromVersion: string, toVersion: string, fromJson: string, toJson: string): Parameters {
  const changes = diffJson(withoutVersionMeta(JSON.parse(fromJson) as Record<string, Json>), withoutVersionMeta(JSON.parse(toJson) as Record<string, Json>));
  const parameter: ParametersParameter[] = [
    { name: 'resource', valueString: `${type}/${id}` },
    { name: 'from', valueString: fromVersion },
    { name: 'to', valueString: toVersion },
    ...changes.map((c) => ({
      name: 'change',
      part: [
        { name: 'op', valueCode: c.op },
        { name: 'path', valueString: c.path },
        ...(c.op !== 'add' ? [{ name: 'old', valueString: JSON.stringify(c.old) }] : []),
        ...(c.op !== 'remove' ? [{ name: 'new', valueString: JSON.stringify(c.new) }] : []),
      ],
    })),
  ];
  return { resourceType: 'Parameters', parameter };
}
