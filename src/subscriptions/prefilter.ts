import type { Filter, ParamValue } from '../search/request.js';

/**
 * A cheap, sound pre-check before the real (search engine) match: for criteria filters whose
 * every value must appear literally in a matching resource — token codes, reference ids, `_id`,
 * exact uris, without modifiers — a resource whose JSON text contains none of a filter's values
 * cannot match, and is not searched for. Anything else (strings, which match accent- and
 * case-insensitively by prefix; dates, numbers, quantities; modifiers; chains; `_has`) has no
 * needles, and the search alone decides. Only ever excludes; never decides a match.
 *
 * Returns one list of needles (lower case) per filter that can be pre-checked: a resource
 * passes when, for every list, its lower-cased JSON contains at least one needle.
 */
export function criteriaNeedles(filters: readonly Filter[]): string[][] {
  const out: string[][] = [];
  for (const f of filters) {
    if (f.kind !== 'param' || f.modifier !== undefined || f.values.length === 0) continue;
    const needles = f.values.map(needleOf);
    if (needles.every((n): n is string => n !== undefined)) out.push(needles.map((n) => n.toLowerCase()));
  }
  return out;
}

/** Values written in JSON exactly as searched: no character JSON would escape or a search would fold. */
const LITERAL = /^[A-Za-z0-9._:/-]{1,200}$/;

function needleOf(v: ParamValue): string | undefined {
  let text: string | undefined;
  if (v.kind === 'token' && v.v.code !== undefined && v.v.typeSystem === undefined) text = v.v.code;
  else if (v.kind === 'reference' && v.v.id !== undefined && v.v.identValue === undefined) text = v.v.id;
  else if (v.kind === 'uri') text = v.v;
  return text !== undefined && LITERAL.test(text) ? text : undefined;
}

/** Whether a resource (its lower-cased JSON) may match criteria with these needle lists. */
export function mayMatch(lowerJson: string, needles: readonly string[][]): boolean {
  return needles.every((list) => list.some((n) => lowerJson.includes(n)));
}
