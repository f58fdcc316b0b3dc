import { describe, expect, test } from 'vitest';
import { Hl7ParseError, parseMessage, readHeader } from './er7.js';
import { escapeText, unescapeText } from './escapes.js';
import { STANDARD_DELIMITERS } from './message.js';

const MSG = [
  'MSH|^~\\&|APP|FAC|RCV|RFAC|20240101120000||ORU^R01^ORU_R01|C-1|P|2.5.1',
  'PID|1||A1^^^H&1.2.3&ISO^MR~B2^^^SSA^SS||Doe^John^Q',
  'OBX|1|TX|X^Y^L||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\g\\X4142\\h\\H\\i\\N\\',
].join('\r');

describe('ER7 parsing with hl7-standard (HL7 v2.5.1 §2.5–2.7)', () => {
  test.each([
    ['\\r', '\r'],
    ['\\n', '\n'],
    ['\\r\\n', '\r\n'],
  ])('segments ending with %s', (_name, eol) => {
    const m = parseMessage(MSG.split('\r').join(eol) + eol);
    expect(m.segments.map((s) => s.name)).toEqual(['MSH', 'PID', 'OBX']);
    expect(m.header).toMatchObject({ sendingApplication: 'APP', messageCode: 'ORU', triggerEvent: 'R01', messageStructure: 'ORU_R01', controlId: 'C-1', version: '2.5.1' });
  });

  test('mixed segment ends in one message', () => {
    const m = parseMessage(`${MSG.split('\r').slice(0, 2).join('\n')}\r\n${MSG.split('\r')[2]}\r`);
    expect(m.segments.map((s) => s.name)).toEqual(['MSH', 'PID', 'OBX']);
  });

  test('repetitions, components and subcomponents', () => {
    const pid = parseMessage(MSG).segments[1];
    expect(pid.repetitions(3)).toHaveLength(2);
    expect(pid.get(3, 1, 1, 0)).toBe('A1');
    expect(pid.get(3, 4, 2, 0)).toBe('1.2.3');
    expect(pid.get(3, 4, 3, 0)).toBe('ISO');
    expect(pid.get(3, 5, 1, 1)).toBe('SS');
    expect(pid.get(5, 2)).toBe('John');
  });

  test('escape sequences are decoded after splitting', () => {
    const obx = parseMessage(MSG).segments[2];
    expect(obx.get(5)).toBe('a|b^c&d~e\\f\ngABhi');
  });

  test('custom delimiters from MSH-1 and MSH-2', () => {
    const m = parseMessage(['MSH#*~$%#APP#FAC#R#RF#2024##ADT*A01#C-2#P#2.3', 'PID#1##X1***H%9.9%ISO##Doe*Jane', 'NTE#1##one$F$two$S$three'].join('\r'));
    const [, pid, nte] = m.segments;
    expect(m.header.messageCode).toBe('ADT');
    expect(pid.get(3, 4, 2)).toBe('9.9');
    expect(pid.get(5, 2)).toBe('Jane');
    expect(nte.get(3)).toBe('one#two*three');
  });

  test('a three-character MSH-2 (no subcomponent separator) keeps & as text', () => {
    const m = parseMessage('MSH|^~\\|A|B|C|D|2024||ADT^A01|C-3|P|2.2\rPID|1||X&Y');
    expect(m.segments[1].get(3)).toBe('X&Y');
  });

  test('MSH-2 without distinct separators is a parse error, but the header can still be read to answer', () => {
    const text = 'MSH|^~\\\\&|A|B|C|D|2024||ADT^A01|C-4|P|2.6\rPID|1||X';
    expect(() => parseMessage(text)).toThrow(Hl7ParseError);
    expect(readHeader(text).controlId).toBe('C-4');
    expect(() => readHeader('garbage')).toThrow(Hl7ParseError);
  });

  test('escaping for our own messages round-trips', () => {
    const text = 'a|b^c&d~e\\f';
    expect(unescapeText(escapeText(text, STANDARD_DELIMITERS), STANDARD_DELIMITERS)).toBe(text);
  });
});
