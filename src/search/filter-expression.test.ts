import { describe, expect, it } from 'vitest';
import { FhirError } from '../fhir/errors.js';
import { FILTER_LIMITS, filterTerminologyPairs, parseFilterExpression, type FilterExpr } from './filter-expression.js';

/** Compact rendering of an AST, for readable expectations. */
function show(e: FilterExpr): string {
  switch (e.kind) {
    case 'cmp':
      return `${e.path} ${e.op} ${e.quoted ? JSON.stringify(e.value) : e.value}`;
    case 'not':
      return `not(${show(e.part)})`;
    default:
      return `${e.kind}(${e.parts.map(show).join(', ')})`;
  }
}

function refused(text: string): string {
  try {
    parseFilterExpression(text);
  } catch (e) {
    expect(e).toBeInstanceOf(FhirError);
    return (e as Error).message;
  }
  throw new Error(`accepted: ${text}`);
}

describe('_filter parser', () => {
  it('parses the spec examples', () => {
    expect(show(parseFilterExpression('name co "pet"'))).toBe('name co "pet"');
    expect(show(parseFilterExpression('given eq "peter" and birthdate ge 2014-10-10'))).toBe('and(given eq "peter", birthdate ge 2014-10-10)');
    expect(show(parseFilterExpression('code eq http://loinc.org|1234-5'))).toBe('code eq http://loinc.org|1234-5');
    expect(show(parseFilterExpression('subject.name co "pet"'))).toBe('subject.name co "pet"');
  });

  it('gives and precedence over or; parentheses and not group', () => {
    expect(show(parseFilterExpression('a eq 1 or b eq 2 and c eq 3'))).toBe('or(a eq 1, and(b eq 2, c eq 3))');
    expect(show(parseFilterExpression('(a eq 1 or b eq 2) and c eq 3'))).toBe('and(or(a eq 1, b eq 2), c eq 3)');
    expect(show(parseFilterExpression('not (a eq 1) and b pr true'))).toBe('and(not(a eq 1), b pr true)');
    expect(show(parseFilterExpression('not(a eq 1 or b eq 2)'))).toBe('not(or(a eq 1, b eq 2))');
    expect(show(parseFilterExpression('A EQ 1 AND b Ne 2'))).toBe('and(A eq 1, b ne 2)');
    expect(show(parseFilterExpression('((a eq x))'))).toBe('a eq x');
  });

  it('reads JSON string escapes and tokens up to a closing parenthesis', () => {
    expect(show(parseFilterExpression('name eq "a \\"b\\" \\\\ \\u00e9"'))).toBe(`name eq ${JSON.stringify('a "b" \\ é')}`);
    expect(show(parseFilterExpression('(code eq x)'))).toBe('code eq x');
    expect(show(parseFilterExpression('name eq "or and ( )"'))).toBe('name eq "or and ( )"');
  });

  it('refuses malformed expressions with a clear message', () => {
    expect(refused('')).toMatch(/empty/);
    expect(refused('name')).toMatch(/operator/);
    expect(refused('name xx "a"')).toMatch(/operator/);
    expect(refused('name eq')).toMatch(/value/);
    expect(refused('name eq "abc')).toMatch(/unterminated/);
    expect(refused('name eq "a\\q"')).toMatch(/escape/);
    expect(refused('(name eq a')).toMatch(/expected '\)'/);
    expect(refused('name eq a)')).toMatch(/expected 'and', 'or'/);
    expect(refused('name eq a and')).toMatch(/ends/);
    expect(refused('name eq a b eq c')).toMatch(/expected 'and', 'or'/);
    expect(refused('1abc eq x')).toMatch(/not a parameter name/);
    expect(refused('related[type eq has-component].target pr true')).toMatch(/not supported/);
  });

  it('bounds nesting, length and the number of comparisons', () => {
    const deep = `${'('.repeat(FILTER_LIMITS.maxDepth + 1)}a eq 1${')'.repeat(FILTER_LIMITS.maxDepth + 1)}`;
    expect(refused(deep)).toMatch(/nested too deeply/);
    expect(refused(`${'not ('.repeat(5000)}a eq 1${')'.repeat(5000)}`)).toMatch(/too long|nested/);
    const ok = `${'('.repeat(FILTER_LIMITS.maxDepth)}a eq 1${')'.repeat(FILTER_LIMITS.maxDepth)}`;
    expect(show(parseFilterExpression(ok))).toBe('a eq 1');
    expect(refused(Array.from({ length: FILTER_LIMITS.maxComparisons + 1 }, (_, i) => `a eq ${i}`).join(' or '))).toMatch(/at most/);
    expect(refused(`name eq "${'x'.repeat(FILTER_LIMITS.maxLength)}"`)).toMatch(/too long/);
  });

  it('lists the value sets and hierarchies the terminology must prepare', () => {
    expect(filterTerminologyPairs([['_filter', 'code in http://x/vs or (code ni "http://y/vs" and code ss http://s|A) or code sb B'], ['name', 'x'], ['_filter', '(']])).toEqual([
      ['code:in', 'http://x/vs'],
      ['code:not-in', 'http://y/vs'],
      ['code:below', 'http://s|A'],
      ['code:above', 'B'],
    ]);
  });
});
