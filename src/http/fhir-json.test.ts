import { describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH, scanJsonText } from './fhir-json.js';

const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

describe('scanJsonText: one check of a body before JSON.parse', () => {
  it('passes ordinary FHIR JSON, escapes and brackets inside strings included', () => {
    expect(scanJsonText('{"resourceType":"Patient","name":[{"family":"O\'Brien \\"[{x"}]}', MAX_JSON_DEPTH)).toBeUndefined();
    expect(scanJsonText('{"a":"back\\\\","b":"[[[[[["}', 3)).toBeUndefined();
    expect(scanJsonText('{"a":"\\u00e9\\n"}', 3)).toBeUndefined();
  });

  it('counts nesting outside strings only', () => {
    expect(scanJsonText(nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH)).toBeUndefined();
    expect(scanJsonText(nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)).toBe('too-deep');
    expect(scanJsonText(`{"s":"${'['.repeat(500)}"}`, MAX_JSON_DEPTH)).toBeUndefined();
    // a quote preceded by an escaped backslash ends the string: the brackets after it count
    expect(scanJsonText(`{"s":"x\\\\",${'['.repeat(10)}`, 5)).toBe('too-deep');
  });

  it('finds NUL as an escape or a raw character, but not an escaped backslash followed by u0000', () => {
    expect(scanJsonText('{"a":"x\\u0000y"}', MAX_JSON_DEPTH)).toBe('nul');
    expect(scanJsonText('{"a":"x\u0000y"}', MAX_JSON_DEPTH)).toBe('nul');
    expect(scanJsonText('{"a":"x\\\\u0000y"}', MAX_JSON_DEPTH)).toBeUndefined();
    expect(scanJsonText('{"a":"x\\\\\\u0000y"}', MAX_JSON_DEPTH)).toBe('nul');
  });

  it('leaves unterminated strings to JSON.parse', () => {
    expect(scanJsonText('{"a":"open', MAX_JSON_DEPTH)).toBeUndefined();
  });
});
