import { describe, expect, test } from 'vitest';
import { CR, encodeFrame, FS, MllpDecoder, VT } from './framing.js';

const frames = (events: ReturnType<MllpDecoder['push']>) => events.filter((e) => e.kind === 'frame').map((e) => (e.kind === 'frame' ? e.body.toString() : ''));

describe('MLLP framing (<VT> message <FS><CR>)', () => {
  test('a frame delivered one byte at a time', () => {
    const decoder = new MllpDecoder(1024);
    const out: string[] = [];
    for (const byte of encodeFrame('MSH|x')) out.push(...frames(decoder.push(Buffer.from([byte]))));
    expect(out).toEqual(['MSH|x']);
  });

  test('several frames and garbage in one chunk', () => {
    const decoder = new MllpDecoder(1024);
    const chunk = Buffer.concat([Buffer.from('junk'), encodeFrame('A'), Buffer.from('\r\n'), encodeFrame('B')]);
    expect(frames(decoder.push(chunk))).toEqual(['A', 'B']);
    expect(decoder.garbageBytes).toBe(0);
  });

  test('<FS> not followed by <CR> is data', () => {
    const decoder = new MllpDecoder(1024);
    const events = decoder.push(Buffer.from([VT, 0x41, FS, 0x42, FS, CR]));
    expect(frames(events)).toEqual(['A\x1cB']);
  });

  test('a new <VT> inside a frame abandons the unfinished one', () => {
    const decoder = new MllpDecoder(1024);
    const events = decoder.push(Buffer.concat([Buffer.from([VT]), Buffer.from('half'), encodeFrame('whole')]));
    expect(events.map((e) => e.kind)).toEqual(['abandoned', 'frame']);
    expect(frames(events)).toEqual(['whole']);
  });

  test('a frame over the limit is reported once with its head', () => {
    const decoder = new MllpDecoder(10);
    const events = decoder.push(encodeFrame('MSH|0123456789'));
    expect(events).toHaveLength(1);
    expect(events[0].kind).toBe('oversized');
  });
});
