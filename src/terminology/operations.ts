import { randomUUID } from 'node:crypto';
import type { Coding, Parameters, ParametersParameter, ValueSet, ValueSetExpansionContains } from 'fhir/r4.js';
import { errors, FhirError } from '../fhir/errors.js';
import { wordsOf, type ConceptProperty, type StoredCodeSystem, type StoredConcept } from '../storage/terminology-store.js';
import { parameters, type OperationInput } from './params.js';
import { stripVersion } from './resources.js';
import type { TerminologyService } from './service.js';

/** Largest expansion returned without `count` (larger: the client pages with count / offset). */
export const MAX_EXPANSION = 10_000;

/** The FHIR terminology operations of R4 (https://hl7.org/fhir/R4/terminology-service.html). */
export const TERMINOLOGY_OPERATIONS: Record<string, Array<{ name: string; definition: string }>> = {
  CodeSystem: [
    { name: 'lookup', definition: 'http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup' },
    { name: 'validate-code', definition: 'http://hl7.org/fhir/OperationDefinition/CodeSystem-validate-code' },
    { name: 'subsumes', definition: 'http://hl7.org/fhir/OperationDefinition/CodeSystem-subsumes' },
  ],
  ValueSet: [
    { name: 'expand', definition: 'http://hl7.org/fhir/OperationDefinition/ValueSet-expand' },
    { name: 'validate-code', definition: 'http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code' },
  ],
  ConceptMap: [{ name: 'translate', definition: 'http://hl7.org/fhir/OperationDefinition/ConceptMap-translate' }],
};

/** Which definition an operation is about: the instance in the URL, or a canonical URL parameter. */
export interface Subject {
  /** resource id of an instance-level call */
  id?: string;
}

async function codeSystemFor(t: TerminologyService, subject: Subject, system: string | undefined, version: string | undefined): Promise<StoredCodeSystem> {
  await t.ready();
  let cs: StoredCodeSystem | undefined;
  if (subject.id) {
    cs = await t.store.codeSystemOfResource(subject.id);
    if (!cs) throw errors.notFound(`CodeSystem/${subject.id} is not known (or defines no code system)`);
    if (system && stripVersion(system) !== cs.url) throw errors.incorrect(`system '${system}' is not the url of CodeSystem/${subject.id}`);
  } else {
    if (!system) throw errors.incorrect("Parameter 'system' (or 'coding') is required");
    cs = await t.store.codeSystem(stripVersion(system));
    if (!cs) {
      await t.ensureCodeSystem(stripVersion(system));
      cs = await t.store.codeSystem(stripVersion(system));
    }
    if (!cs) throw errors.notFound(`Code system '${system.slice(0, 200)}' is not known to this server`);
  }
  if (version && cs.version && version !== cs.version) throw errors.notFound(`Code system '${cs.url}' version '${version.slice(0, 64)}' is not known (this server has version ${cs.version})`);
  return cs;
}

async function findConcept(t: TerminologyService, cs: StoredCodeSystem, code: string): Promise<StoredConcept | undefined> {
  return (await t.store.concept(cs.url, code)) ?? (cs.case_sensitive === false ? await t.store.conceptIgnoringCase(cs.url, code) : undefined);
}

function propertyValue(p: ConceptProperty): ParametersParameter {
  switch (p.type) {
    case 'code':
      return { name: 'value', valueCode: String(p.value) };
    case 'Coding':
      return { name: 'value', valueCoding: { code: String(p.value) } };
    case 'integer':
      return { name: 'value', valueInteger: Number(p.value) };
    case 'boolean':
      return { name: 'value', valueBoolean: p.value === true };
    case 'dateTime':
      return { name: 'value', valueDateTime: String(p.value) };
    case 'decimal':
      return { name: 'value', valueDecimal: Number(p.value) };
    default:
      return { name: 'value', valueString: String(p.value) };
  }
}

/** CodeSystem/$lookup: display, designations and properties (parent / child included) of a code. */
export async function lookup(t: TerminologyService, subject: Subject, input: OperationInput): Promise<Parameters> {
  const coding = input.coding('coding');
  const code = input.string('code') ?? coding?.code;
  if (!code) throw errors.incorrect("Parameter 'code' (or 'coding') is required");
  const cs = await codeSystemFor(t, subject, input.string('system') ?? coding?.system, input.string('version') ?? coding?.version);
  const concept = await findConcept(t, cs, code);
  if (!concept) throw errors.notFound(`Code '${code.slice(0, 200)}' is not in code system '${cs.url}'`);
  const wanted = input.strings('property');
  const want = (p: string) => wanted.length === 0 || wanted.includes(p);
  const out: ParametersParameter[] = [{ name: 'name', valueString: cs.name ?? cs.title ?? cs.url }];
  if (cs.version) out.push({ name: 'version', valueString: cs.version });
  const displayLanguage = input.string('displayLanguage');
  out.push({ name: 'display', valueString: displayIn(concept, displayLanguage) || concept.code });
  if (concept.definition && want('definition')) out.push({ name: 'property', part: [{ name: 'code', valueCode: 'definition' }, { name: 'value', valueString: concept.definition }] });
  if (want('inactive')) out.push({ name: 'property', part: [{ name: 'code', valueCode: 'inactive' }, { name: 'value', valueBoolean: !concept.active }] });
  for (const d of concept.designations ?? []) {
    out.push({
      name: 'designation',
      part: [
        ...(d.language ? [{ name: 'language', valueCode: d.language }] : []),
        ...(d.use ? [{ name: 'use', valueCoding: { system: d.use.system, code: d.use.code, display: d.use.display } as Coding }] : []),
        { name: 'value', valueString: d.value },
      ],
    });
  }
  for (const p of concept.properties ?? []) {
    if (p.code === 'parent' || p.code === 'child' || !want(p.code)) continue;
    out.push({ name: 'property', part: [{ name: 'code', valueCode: p.code }, propertyValue(p)] });
  }
  if (want('parent') || want('child')) {
    const { parents, children } = await t.store.neighbours(cs.url, concept.code);
    const rel = (name: string, list: StoredConcept[]) =>
      want(name) ? list.map((c) => ({ name: 'property', part: [{ name: 'code', valueCode: name }, { name: 'value', valueCode: c.code }, ...(c.display ? [{ name: 'description', valueString: c.display }] : [])] })) : [];
    out.push(...rel('parent', parents), ...rel('child', children));
  }
  return parameters(out);
}

/** Whether `display` is the concept's display or one of its designations (case and spacing aside). */
function displayMatches(concept: StoredConcept | { display: string | null; designations?: StoredConcept['designations'] }, display: string): boolean {
  const norm = (s: string) => s.trim().replace(/\s+/g, ' ').toLowerCase();
  const want = norm(display);
  return (concept.display !== null && norm(concept.display) === want) || (concept.designations ?? []).some((d) => norm(d.value) === want);
}

interface CodeToCheck {
  system?: string;
  code: string;
  display?: string;
  version?: string;
}

/** The codes a validate-code call names: code (+ system, display), coding, or each coding of a codeableConcept. */
function codesToCheck(input: OperationInput, defaultSystem?: string): CodeToCheck[] {
  const code = input.string('code');
  if (code !== undefined) {
    const system = input.string('system') ?? defaultSystem;
    const display = input.string('display');
    const version = input.string('systemVersion') ?? input.string('version');
    return [{ code, ...(system ? { system } : {}), ...(display ? { display } : {}), ...(version ? { version } : {}) }];
  }
  const coding = input.coding('coding');
  const codings = coding ? [coding] : (input.codeableConcept('codeableConcept')?.coding ?? []);
  const out = codings.flatMap((c) => (c.code ? [{ code: c.code, ...(c.system ? { system: c.system } : {}), ...(c.display ? { display: c.display } : {}) }] : []));
  if (out.length === 0) throw errors.incorrect("One of 'code', 'coding' or 'codeableConcept' (with a code) is required");
  return out;
}

function validation(result: boolean, message: string | undefined, display: string | undefined): Parameters {
  return parameters([
    { name: 'result', valueBoolean: result },
    message !== undefined && { name: 'message', valueString: message },
    display !== undefined && { name: 'display', valueString: display },
  ]);
}

/** CodeSystem/$validate-code. */
export async function validateInCodeSystem(t: TerminologyService, subject: Subject, input: OperationInput): Promise<Parameters> {
  const url = input.string('url');
  const checks = codesToCheck(input, url);
  const cs = await codeSystemFor(t, subject, url ?? checks[0]?.system, input.string('version'));
  const messages: string[] = [];
  for (const c of checks) {
    if (c.system && stripVersion(c.system) !== cs.url) {
      messages.push(`'${c.system}' is not the code system '${cs.url}'`);
      continue;
    }
    const concept = await findConcept(t, cs, c.code);
    if (!concept) {
      messages.push(`Code '${c.code}' is not in code system '${cs.url}'`);
      continue;
    }
    if (c.display && !displayMatches(concept, c.display)) {
      return validation(false, `The display '${c.display}' is not a display of code '${c.code}' (expected '${concept.display ?? ''}')`, concept.display ?? undefined);
    }
    return validation(true, undefined, concept.display ?? undefined);
  }
  return validation(false, messages.join('; '), undefined);
}

/** CodeSystem/$subsumes: equivalent, subsumes, subsumed-by or not-subsumed. */
export async function subsumes(t: TerminologyService, subject: Subject, input: OperationInput): Promise<Parameters> {
  const codingA = input.coding('codingA');
  const codingB = input.coding('codingB');
  const a = input.string('codeA') ?? codingA?.code;
  const b = input.string('codeB') ?? codingB?.code;
  if (!a || !b) throw errors.incorrect("Parameters 'codeA' and 'codeB' (or 'codingA' and 'codingB') are required");
  const system = input.string('system') ?? codingA?.system ?? codingB?.system;
  for (const c of [codingA, codingB]) {
    if (c?.system && system && stripVersion(c.system) !== stripVersion(system)) throw errors.incorrect('codingA and codingB must be of the same code system');
  }
  const cs = await codeSystemFor(t, subject, system, input.string('version'));
  const conceptA = await findConcept(t, cs, a);
  const conceptB = await findConcept(t, cs, b);
  for (const [c, code] of [
    [conceptA, a],
    [conceptB, b],
  ] as const) {
    if (!c) throw errors.incorrect(`Code '${code.slice(0, 200)}' is not in code system '${cs.url}'`);
  }
  const x = conceptA!.code;
  const y = conceptB!.code;
  const outcome = x === y ? 'equivalent' : (await t.store.subsumes(cs.url, x, y)) ? 'subsumes' : (await t.store.subsumes(cs.url, y, x)) ? 'subsumed-by' : 'not-subsumed';
  return parameters([{ name: 'outcome', valueCode: outcome }]);
}

/**
 * Runs `fn` on the value set an operation is about: the instance in the URL, the `url`
 * parameter, or an inline `valueSet` resource (held for the call only). `shownUrl` is the URL the
 * answer names (an inline value set's own, if it has one).
 */
async function withValueSet<T>(t: TerminologyService, subject: Subject, input: OperationInput, fn: (url: string, shown: Shown) => Promise<T>): Promise<T> {
  await t.ready();
  if (subject.id) {
    const vs = await t.store.valueSetOfResource(subject.id);
    if (!vs) throw errors.notFound(`ValueSet/${subject.id} is not known (or has no url)`);
    return fn(vs.url, { inline: false });
  }
  if (input.has('valueSet')) {
    const inline = input.resource('valueSet');
    if (inline?.resourceType !== 'ValueSet') throw errors.incorrect("Parameter 'valueSet' must be a ValueSet resource");
    const vs = inline as ValueSet;
    if (!vs.compose?.include?.length && !vs.expansion?.contains?.length) throw errors.incorrect("The inline 'valueSet' has neither compose.include nor expansion.contains: nothing to expand");
    return t.withInlineValueSet(vs, (url) => fn(url, { inline: true, ...(vs.url ? { url: vs.url } : {}) }));
  }
  const url = input.string('url') ?? input.string('context');
  if (!url) throw errors.incorrect("Parameter 'url' (or 'valueSet') is required (or call the operation on a ValueSet instance)");
  return fn(url, { inline: false });
}

/** How the answer names the value set: an inline one by its own url (if any), never by the key it was held under. */
interface Shown {
  inline: boolean;
  url?: string;
}

/** The display in `language` (a designation of that language, `en` matching `en-US`), else the concept's. */
function displayIn(c: { display: string | null; designations: StoredConcept['designations'] }, language: string | undefined): string {
  const lang = language?.toLowerCase();
  const d = lang ? c.designations?.find((x) => x.language && (x.language.toLowerCase() === lang || x.language.toLowerCase().startsWith(`${lang}-`))) : undefined;
  return d?.value ?? c.display ?? '';
}

/** `designation` parameters: a language code, or a use as `system|code`; none given = all. */
function designationChosen(d: NonNullable<StoredConcept['designations']>[number], wanted: readonly string[]): boolean {
  if (wanted.length === 0) return true;
  return wanted.some((w) => (w.includes('|') ? `${d.use?.system ?? ''}|${d.use?.code ?? ''}` === w : d.language === w));
}

/** ValueSet/$expand: the expansion paged with count / offset, filtered with pick-list text matching. */
export async function expand(t: TerminologyService, subject: Subject, input: OperationInput): Promise<ValueSet> {
  return withValueSet(t, subject, input, (url, shown) => expandOne(t, subject, input, url, shown));
}

async function expandOne(t: TerminologyService, subject: Subject, input: OperationInput, url: string, shown: Shown): Promise<ValueSet> {
  const vs = await t.expanded(url);
  if (!vs) throw errors.notFound(`Value set '${url.slice(0, 200)}' is not known to this server`);
  const version = input.string('valueSetVersion');
  if (version && vs.version && version !== vs.version) throw errors.notFound(`Value set '${vs.url}' version '${version.slice(0, 64)}' is not known (this server has version ${vs.version})`);
  const whole = await t.store.wholeSystems(vs.url);
  if (whole.length) {
    throw new FhirError('too-costly', [
      { severity: 'error', code: 'too-costly', diagnostics: `Value set '${vs.url}' includes every code of ${whole.join(', ')}, which this server does not hold: it cannot be expanded (validate codes against it with $validate-code)` },
    ]);
  }
  const filter = input.string('filter');
  const countGiven = input.integer('count', MAX_EXPANSION);
  const count = countGiven ?? MAX_EXPANSION;
  const offset = input.integer('offset', 1_000_000_000) ?? 0;
  const activeOnly = input.boolean('activeOnly') ?? false;
  const includeDesignations = input.boolean('includeDesignations') ?? false;
  const excludeNotForUI = input.boolean('excludeNotForUI') ?? false;
  const displayLanguage = input.string('displayLanguage');
  // `designation`: which designations to include, by language (a code) or use (system|code).
  const designationWanted = input.strings('designation');
  const words = filter ? wordsOf(filter) : [];
  const { total, rows } = await t.store.expandPage(vs.url, {
    words,
    indexed: vs.word_indexed,
    offset,
    count: countGiven === undefined ? count + 1 : count,
    activeOnly,
    excludeNotSelectable: excludeNotForUI,
    withDesignations: includeDesignations || displayLanguage !== undefined,
  });
  // (a frequent filter word leaves the total uncounted: then the page itself tells)
  if (countGiven === undefined && (total ?? rows.length) > MAX_EXPANSION) {
    throw new FhirError('too-costly', [{ severity: 'error', code: 'too-costly', diagnostics: `The expansion of '${vs.url}' has ${total ?? 'more than ' + MAX_EXPANSION} codes: ask for pages with 'count' (at most ${MAX_EXPANSION}) and 'offset', or narrow it with 'filter'` }]);
  }
  const contains: ValueSetExpansionContains[] = rows.map((r) => ({
    system: r.system,
    ...(r.active === false ? { inactive: true } : {}),
    code: r.code,
    ...(r.notSelectable ? { abstract: true } : {}),
    ...(r.display ? { display: displayIn(r, displayLanguage) } : {}),
    ...(includeDesignations && r.designations?.length
      ? { designation: r.designations.filter((d) => designationChosen(d, designationWanted)).map((d) => ({ ...(d.language ? { language: d.language } : {}), ...(d.use ? { use: d.use as Coding } : {}), value: d.value })) }
      : {}),
  }));
  const used: NonNullable<ValueSet['expansion']>['parameter'] = [
    ...(filter !== undefined ? [{ name: 'filter', valueString: filter }] : []),
    ...(countGiven !== undefined ? [{ name: 'count', valueInteger: countGiven }] : []),
    ...(offset ? [{ name: 'offset', valueInteger: offset }] : []),
    ...(activeOnly ? [{ name: 'activeOnly', valueBoolean: true }] : []),
    ...(includeDesignations ? [{ name: 'includeDesignations', valueBoolean: true }] : []),
    ...(excludeNotForUI ? [{ name: 'excludeNotForUI', valueBoolean: true }] : []),
    ...(displayLanguage ? [{ name: 'displayLanguage', valueCode: displayLanguage }] : []),
  ];
  return {
    resourceType: 'ValueSet',
    ...(subject.id ? { id: subject.id } : {}),
    ...(shown.inline ? (shown.url ? { url: shown.url } : {}) : { url: vs.url }),
    ...(vs.version ? { version: vs.version } : {}),
    ...(vs.name ? { name: vs.name } : {}),
    ...(vs.title ? { title: vs.title } : {}),
    status: (vs.status as ValueSet['status']) ?? 'active',
    expansion: {
      identifier: `urn:uuid:${randomUUID()}`,
      timestamp: new Date().toISOString(),
      ...(total !== undefined ? { total } : {}),
      offset,
      ...(used.length ? { parameter: used } : {}),
      ...(contains.length ? { contains } : {}),
    },
  };
}

/** ValueSet/$validate-code: is the code in the value set's expansion. */
export async function validateInValueSet(t: TerminologyService, subject: Subject, input: OperationInput): Promise<Parameters> {
  return withValueSet(t, subject, input, (url) => validateOne(t, input, url));
}

async function validateOne(t: TerminologyService, input: OperationInput, url: string): Promise<Parameters> {
  const vs = await t.expanded(url);
  if (!vs) throw errors.notFound(`Value set '${url.slice(0, 200)}' is not known to this server`);
  const messages: string[] = [];
  for (const c of codesToCheck(input)) {
    const found = await t.store.members(vs.url, c.system === undefined ? undefined : stripVersion(c.system), c.code);
    const exact = found.find((m) => m.code === c.code) ?? found[0];
    if (!exact) {
      messages.push(`Code '${c.system ? `${c.system}|` : ''}${c.code}' is not in value set '${vs.url}'`);
      continue;
    }
    if (exact.code === '') {
      // A system the server does not hold: the code is taken as valid, unchecked.
      return validation(true, `Code '${c.code}' is taken from '${exact.system}', which this server does not hold: not verified`, undefined);
    }
    if (c.display) {
      const concept = (await t.store.concept(exact.system, exact.code)) ?? { display: exact.display, designations: null };
      if (!displayMatches(concept, c.display)) return validation(false, `The display '${c.display}' is not a display of code '${c.code}' (expected '${exact.display ?? ''}')`, exact.display ?? undefined);
    }
    return validation(true, undefined, exact.display ?? undefined);
  }
  return validation(false, messages.join('; '), undefined);
}

/** An equivalence read from target to source (https://hl7.org/fhir/R4/valueset-concept-map-equivalence.html). */
const REVERSED: Record<string, string> = { wider: 'narrower', narrower: 'wider', subsumes: 'specializes', specializes: 'subsumes' };

/** ConceptMap/$translate: the targets a concept map gives for a code (`reverse`: the sources mapped to it). */
export async function translate(t: TerminologyService, subject: Subject, input: OperationInput): Promise<Parameters> {
  await t.ready();
  // reverse: the code is a target; the answer is the sources mapped to it (equivalence read backwards).
  const reverse = input.boolean('reverse') ?? false;
  let mapUrl: string | undefined;
  if (subject.id) {
    mapUrl = await t.store.conceptMapUrlOfResource(subject.id);
    if (!mapUrl) throw errors.notFound(`ConceptMap/${subject.id} is not known (or has no url)`);
  } else if (input.string('url')) {
    mapUrl = stripVersion(input.string('url')!);
    await t.ensureConceptMaps(mapUrl);
    if (!(await t.store.conceptMapExists(mapUrl))) throw errors.notFound(`Concept map '${mapUrl.slice(0, 200)}' is not known to this server`);
  }
  const coding = input.coding('coding') ?? input.codeableConcept('codeableConcept')?.coding?.[0];
  const code = input.string('code') ?? coding?.code;
  const system = input.string('system') ?? coding?.system;
  if (!code || !system) throw errors.incorrect("Parameters 'code' and 'system' (or 'coding') are required");
  const targetSystem = input.string('targetsystem');
  if (!mapUrl) await t.ensureConceptMaps(undefined);
  const rows = (await t.store.translations(stripVersion(system), code, mapUrl, targetSystem, reverse)).map((r) => (reverse ? { ...r, equivalence: REVERSED[r.equivalence] ?? r.equivalence } : r));
  const matches = rows.filter((r) => r.equivalence !== 'unmatched' || r.target_code);
  const positive = matches.some((r) => r.equivalence !== 'unmatched' && r.equivalence !== 'disjoint');
  return parameters([
    { name: 'result', valueBoolean: positive },
    { name: 'message', valueString: positive ? `${matches.length} match(es)` : `No mapping of '${system}|${code}'${mapUrl ? ` in '${mapUrl}'` : ''}` },
    ...matches.map((r) => ({
      name: 'match',
      part: [
        { name: 'equivalence', valueCode: r.equivalence },
        ...(r.target_code ? [{ name: 'concept', valueCoding: { ...(r.target_system ? { system: r.target_system } : {}), code: r.target_code, ...(r.target_display ? { display: r.target_display } : {}) } }] : []),
        { name: 'source', valueUri: r.concept_map },
        ...(r.comment ? [{ name: 'comment', valueString: r.comment }] : []),
      ],
    })),
  ]);
}
