import { describe, expect, it } from 'vitest';
import { closureOf, wordsOf } from '../storage/terminology-store.js';

describe('terminology rows', () => {
  it('closure of a polyhierarchy: every ancestor once, at its shortest depth, self rows included', () => {
    const rows = closureOf(['R', 'A', 'B', 'C'], [
      ['R', 'A'],
      ['R', 'B'],
      ['A', 'C'],
      ['B', 'C'],
      ['R', 'C'],
    ]);
    const of = (d: string) => rows.filter((r) => r[1] === d).map(([a, , depth]) => `${a}:${depth}`).sort();
    expect(of('C')).toEqual(['A:1', 'B:1', 'C:0', 'R:1']);
    expect(of('A')).toEqual(['A:0', 'R:1']);
    expect(of('R')).toEqual(['R:0']);
  });

  it('a cycle in bad data ends instead of recursing for ever', () => {
    const rows = closureOf(['X', 'Y'], [
      ['X', 'Y'],
      ['Y', 'X'],
    ]);
    expect(rows.filter((r) => r[1] === 'Y').map((r) => r[0]).sort()).toEqual(['X', 'Y']);
  });

  it('display words are folded (case, accents) and split on anything not a letter or digit', () => {
    expect(wordsOf('Hémoglobine A1c (sang) — HbA1c')).toEqual(['hemoglobine', 'a1c', 'sang', 'hba1c']);
  });
});
