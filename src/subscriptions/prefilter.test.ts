import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseSearch } from '../search/parse.js';
import { SearchParameterRegistry } from '../search/registry.js';
import { criteriaNeedles, mayMatch } from './prefilter.js';

const registry = new SearchParameterRegistry({ searchParamsDir: join(import.meta.dirname, '..', '..', 'search-params'), packs: [] });
const needles = (type: string, query: string) => criteriaNeedles(parseSearch(registry, [...new URLSearchParams(query)] as [string, string][], { resourceType: type, strict: true }).filters);

describe('subscription matching pre-check', () => {
  it('takes literal token codes, reference ids and _id; leaves strings, dates, quantities and modifiers to the search', () => {
    expect(needles('Observation', 'code=http://loinc.org|1234-5,http://loinc.org|999-9&subject=Patient/p1')).toEqual([['1234-5', '999-9'], ['p1']]);
    expect(needles('Observation', '_id=abc')).toEqual([['abc']]);
    expect(needles('Patient', 'family=Müller&birthdate=ge2000&gender:not=male')).toEqual([]);
    expect(needles('Observation', 'value-quantity=gt5&code:text=glucose')).toEqual([]);
    // a value JSON would escape or a search would fold is not pre-checked
    expect(needles('Observation', 'code=a"b')).toEqual([]);
  });

  it('excludes only resources that contain none of a filter’s values (case-insensitively)', () => {
    const n = [['1234-5', '999-9'], ['p1']];
    expect(mayMatch('{"code":{"coding":[{"code":"1234-5"}]},"subject":{"reference":"patient/p1"}}', n)).toBe(true);
    expect(mayMatch('{"code":{"coding":[{"code":"1234-6"}]},"subject":{"reference":"patient/p1"}}', n)).toBe(false);
    expect(mayMatch('{"anything":1}', [])).toBe(true);
  });
});
