import { describe, expect, test } from 'vitest';
import { buildAck } from './ack.js';
import { readHeader } from './parse/er7.js';

const header = (version: string) => readHeader(`MSH|^~\\&|LAB^1.2.3^ISO|LABFAC|EHR|HOSP|20240101||ORU^R01^ORU_R01|CTRL|T|${version}`);
const fields = (ack: string, segment: string) => ack.split('\r').find((s) => s.startsWith(segment))?.split('|') ?? [];

describe('original-mode acknowledgement (HL7 v2.5.1 §2.9.2)', () => {
  test('AA: sender and receiver swapped, same version and processing id, MSA-2 = MSH-10, no ERR', () => {
    const ack = buildAck(header('2.5.1'), 'AA');
    const msh = fields(ack, 'MSH');
    expect(msh.slice(2, 6)).toEqual(['EHR', 'HOSP', 'LAB^1.2.3^ISO', 'LABFAC']);
    expect(msh[8]).toBe('ACK^R01^ACK');
    expect(msh[9].length).toBeLessThanOrEqual(20);
    expect(msh[10]).toBe('T');
    expect(msh[11]).toBe('2.5.1');
    expect(fields(ack, 'MSA').slice(0, 3)).toEqual(['MSA', 'AA', 'CTRL']);
    expect(fields(ack, 'ERR')).toEqual([]);
    expect(ack.endsWith('\r')).toBe(true);
  });

  test('AE in v2.5+: ERR-3 table 0357 code, ERR-4 severity, ERR-8 text (escaped)', () => {
    const ack = buildAck(header('2.6'), 'AE', { code: '101', text: 'PID-3 | empty' });
    expect(fields(ack, 'ERR')[3]).toBe('101^Required field missing^HL70357');
    expect(fields(ack, 'ERR')[4]).toBe('E');
    expect(fields(ack, 'ERR')[8]).toBe('PID-3 \\F\\ empty');
  });

  test('AR in v2.3: ERR-1 with the code, message type without structure', () => {
    const ack = buildAck(header('2.3'), 'AR', { code: '200', text: 'unsupported' });
    expect(fields(ack, 'MSH')[8]).toBe('ACK^R01');
    expect(fields(ack, 'ERR')[1]).toBe('^^^200&Unsupported message type&HL70357');
  });

  test('a message whose header could not be read is answered AR in v2.5.1 with an empty MSA-2', () => {
    const ack = buildAck(undefined, 'AR', { code: '100', text: 'not HL7' });
    expect(fields(ack, 'MSH')[11]).toBe('2.5.1');
    expect(fields(ack, 'MSA').slice(0, 3)).toEqual(['MSA', 'AR', '']);
  });
});
