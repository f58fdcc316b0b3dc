/**
 * MLLP framing (HL7 v2 Minimal Lower Layer Protocol, Release 2): a message travels as
 * <VT> message <FS><CR>. TCP delivers a byte stream, so a frame can arrive in many packets
 * and one packet can hold several frames; the decoder keeps state between chunks.
 */
export const VT = 0x0b;
export const FS = 0x1c;
export const CR = 0x0d;

export function encodeFrame(message: string): Buffer {
  const body = Buffer.from(message, 'utf8');
  const frame = Buffer.allocUnsafe(body.length + 3);
  frame[0] = VT;
  body.copy(frame, 1);
  frame[body.length + 1] = FS;
  frame[body.length + 2] = CR;
  return frame;
}

/** What the decoder found in the stream. */
export type FrameEvent =
  | { kind: 'frame'; body: Buffer }
  /** A frame grew past the limit; `head` is its beginning (for an acknowledgement naming the message). */
  | { kind: 'oversized'; head: Buffer; limit: number }
  /** A new <VT> arrived inside a frame: the unfinished frame was dropped (the sender cut it off). */
  | { kind: 'abandoned'; bytes: number };

/** How much of an oversized frame is kept to read its MSH. */
const HEAD_BYTES = 4096;

export class MllpDecoder {
  private chunks: Buffer[] = [];
  private size = 0;
  private inFrame = false;
  /** <FS> seen as the last byte of the previous chunk: the frame ends if <CR> follows. */
  private pendingFs = false;
  /** Bytes outside any frame since the last frame (garbage). */
  private outside = 0;

  constructor(private readonly maxMessageBytes: number) {}

  /** Bytes received outside frames since the last good frame. */
  get garbageBytes(): number {
    return this.outside;
  }

  /** True while a frame has started and not ended. */
  get midFrame(): boolean {
    return this.inFrame;
  }

  push(chunk: Buffer): FrameEvent[] {
    const events: FrameEvent[] = [];
    let i = 0;
    if (this.pendingFs) {
      this.pendingFs = false;
      if (chunk[0] === CR) {
        events.push(this.finish());
        i = 1;
      } else {
        // <FS> not followed by <CR>: it was data after all.
        this.append(Buffer.from([FS]), events);
      }
    }
    while (i < chunk.length) {
      if (!this.inFrame) {
        const start = chunk.indexOf(VT, i);
        if (start < 0) {
          this.outside += chunk.length - i;
          break;
        }
        this.outside += start - i;
        this.inFrame = true;
        i = start + 1;
        continue;
      }
      const fs = chunk.indexOf(FS, i);
      const vt = chunk.indexOf(VT, i);
      if (vt >= 0 && (fs < 0 || vt < fs)) {
        // A new start block before the end of this frame: the sender gave up on the frame.
        events.push({ kind: 'abandoned', bytes: this.size + (vt - i) });
        this.reset();
        this.inFrame = true;
        i = vt + 1;
        continue;
      }
      if (fs < 0) {
        this.append(chunk.subarray(i), events);
        break;
      }
      this.append(chunk.subarray(i, fs), events);
      if (fs + 1 >= chunk.length) {
        this.pendingFs = true;
        break;
      }
      if (chunk[fs + 1] === CR) {
        if (this.inFrame) events.push(this.finish());
        i = fs + 2;
      } else {
        this.append(chunk.subarray(fs, fs + 1), events);
        i = fs + 1;
      }
    }
    return events;
  }

  private append(part: Buffer, events: FrameEvent[]): void {
    if (!this.inFrame || part.length === 0) return;
    if (this.size + part.length > this.maxMessageBytes) {
      const head = Buffer.concat([...this.chunks, part]).subarray(0, HEAD_BYTES);
      events.push({ kind: 'oversized', head, limit: this.maxMessageBytes });
      this.reset();
      return;
    }
    this.chunks.push(part);
    this.size += part.length;
  }

  private finish(): FrameEvent {
    const body = Buffer.concat(this.chunks);
    this.reset();
    this.outside = 0;
    return { kind: 'frame', body };
  }

  private reset(): void {
    this.chunks = [];
    this.size = 0;
    this.inFrame = false;
    this.pendingFs = false;
  }
}
