import { describe, expect, it } from 'vitest';
import { primitiveCheck } from './primitives.js';

const valid: [string, unknown][] = [
  ['boolean', false],
  ['integer', -2147483648],
  ['positiveInt', 1],
  ['unsignedInt', 0],
  ['decimal', 1.5e3],
  ['string', ' padded, with\u00a0no-break space '],
  ['code', 'a b'],
  ['id', 'A-1.b'],
  ['uri', 'urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e'],
  ['oid', 'urn:oid:1.2.840.10008'],
  ['uuid', 'urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e'],
  ['base64Binary', 'aGVs bG8='],
  ['date', '2024'],
  ['date', '2024-02'],
  ['date', '2024-02-29'],
  ['dateTime', '2024-02-29T23:59:60.123+14:00'],
  ['instant', '2015-02-07T13:28:17.239Z'],
  ['time', '23:59:59'],
  ['xhtml', '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'],
];

const invalid: [string, unknown][] = [
  ['boolean', 'true'],
  ['integer', 2147483648],
  ['integer', '1'],
  ['positiveInt', 0],
  ['unsignedInt', -1],
  ['decimal', '1.0'],
  ['string', ''],
  ['string', 'bell\u0007'],
  ['code', 'trailing '],
  ['code', 'two  spaces'],
  ['id', 'has_underscore'],
  ['uri', 'has space'],
  ['oid', 'urn:oid:3.1'],
  ['uuid', 'urn:uuid:0F8FAD5B-D9CB-469F-A165-70867728950E'],
  ['base64Binary', 'abc'],
  ['date', '2023-02-29'],
  ['date', '2020-1-01'],
  ['dateTime', '2020-01-01T10:00'],
  ['dateTime', '2020-01-01T10:00:00'],
  ['dateTime', '2020-04-31T10:00:00Z'],
  ['instant', '2020-01-01'],
  ['time', '24:00:00'],
  ['xhtml', 'plain text'],
];

describe('primitive datatypes', () => {
  it.each(valid)('%s accepts %j', (type, value) => {
    expect(primitiveCheck(type)?.(value)).toBeUndefined();
  });
  it.each(invalid)('%s rejects %j', (type, value) => {
    expect(primitiveCheck(type)?.(value)).toEqual(expect.any(String));
  });
});
