import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { encodeFrame, MllpDecoder } from './framing.js';

/** Messages received but not yet answered on one connection before reading from it pauses. */
const MAX_QUEUED_PER_CONNECTION = 32;

/** What to send back for one frame. */
export interface MllpAnswer {
  /** Sent at once, before the connection's next frame is handled (the ACK; in enhanced mode the commit ACK, if any). */
  reply?: string;
  /** Sent when it resolves, if the connection is still open (an enhanced-mode application ACK); undefined: nothing. */
  later?: Promise<string | undefined>;
}

export interface MllpServerOptions {
  /** Answers one frame (its bytes) of connection number `connection`. Never throws for bad input. */
  handle(body: Buffer, connection: number): Promise<MllpAnswer>;
  /** Records and answers a frame that was cut off for being too large (negative ACK), from its first bytes. */
  rejectOversized(head: Buffer, limit: number): Promise<string>;
  maxMessageBytes: number;
  /** A connection silent this long is closed (senders reconnect). */
  idleTimeoutMs: number;
  /** MLLP over TLS (certificate and key in PEM) when set; plain TCP otherwise. */
  tls?: { key: Buffer; cert: Buffer; minVersion: 'TLSv1.2' | 'TLSv1.3' };
  log?: (message: string, error?: unknown) => void;
}

/**
 * The MLLP listener: any number of connections, messages on one connection handled one after
 * the other (so acknowledgements come back in order), frames split or merged across packets.
 * An oversized frame is answered with a negative acknowledgement and the connection closed;
 * garbage outside frames is ignored up to the message size limit, then the connection is
 * closed; a connection idle past the timeout is closed, an unfinished frame with it.
 */
export class MllpServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  /** Messages being handled; close() waits for them so no ACK is lost to a shutdown. */
  private readonly inFlight = new Set<Promise<unknown>>();
  private closing = false;
  private connectionCount = 0;
  /** Counters for /metrics: frames received, oversized frames, ACKs sent by MSA-1 code. */
  readonly counters = { frames: 0, oversized: 0, acks: new Map<string, number>() };

  constructor(private readonly options: MllpServerOptions) {
    // A TLS socket is a net.Socket: framing, ordering and limits are the same over both.
    this.server = options.tls
      ? createTlsServer({ key: options.tls.key, cert: options.tls.cert, minVersion: options.tls.minVersion }, (socket) => this.accept(socket))
      : createServer((socket) => this.accept(socket));
  }

  /** Starts listening; port 0 binds a free port. Resolves to the bound port. */
  async listen(port: number, host?: string): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return (this.server.address() as AddressInfo).port;
  }

  get port(): number | undefined {
    const address = this.server.address();
    return address && typeof address === 'object' ? address.port : undefined;
  }

  get connections(): number {
    return this.sockets.size;
  }

  /** Stops accepting, lets messages being handled finish and answer, then closes every connection. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const closed = this.server.listening ? new Promise<void>((resolve) => this.server.close(() => resolve())) : Promise.resolve();
    await Promise.allSettled([...this.inFlight]);
    for (const socket of this.sockets) socket.end();
    const deadline = setTimeout(() => {
      for (const socket of this.sockets) socket.destroy();
    }, 2000);
    await closed;
    clearTimeout(deadline);
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.setTimeout(this.options.idleTimeoutMs);
    const decoder = new MllpDecoder(this.options.maxMessageBytes);
    // Enhanced-mode messages of one connection are mapped in the order they came (see ingest.ts).
    const connection = ++this.connectionCount;
    // One queue per connection: each message is answered before the next one is handled.
    let queue: Promise<void> = Promise.resolve();
    // A sender that does not wait for its ACKs is slowed down instead of filling memory.
    let queued = 0;
    // Application ACKs (enhanced mode) still to come on this connection.
    let pendingLater = 0;
    const send = (ack: string) => {
      const code = /(?:^|\r)MSA\|([A-Z]{2})/.exec(ack)?.[1] ?? (ack.startsWith('FHS') || ack.startsWith('BHS') ? 'batch' : 'other');
      this.counters.acks.set(code, (this.counters.acks.get(code) ?? 0) + 1);
      if (!socket.destroyed && socket.writable) socket.write(encodeFrame(ack));
    };
    // Idle means the sender is silent AND nothing of its is being answered: a connection
    // waiting for the ACK of a slow message is not closed (the timer restarts with the ACK).
    socket.on('timeout', () => {
      if (queued === 0 && pendingLater === 0) socket.destroy();
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('data', (chunk: Buffer) => {
      for (const event of decoder.push(chunk)) {
        if (event.kind === 'frame') {
          this.counters.frames++;
          const body = event.body;
          if (++queued >= MAX_QUEUED_PER_CONNECTION) socket.pause();
          queue = queue.then(async () => {
            const work = this.options.handle(body, connection);
            this.inFlight.add(work);
            try {
              const answer = await work;
              if (answer.reply !== undefined) send(answer.reply);
              if (answer.later) {
                // The application ACK goes out on this connection if it is still open then;
                // otherwise it stays stored with the message (replayed on retransmission).
                pendingLater++;
                const later = answer.later.then((ack) => {
                  pendingLater--;
                  if (ack !== undefined) send(ack);
                });
                this.inFlight.add(later);
                void later.finally(() => this.inFlight.delete(later));
              }
            } catch (e) {
              this.options.log?.('HL7 v2 message handling failed', e);
              socket.destroy();
            } finally {
              this.inFlight.delete(work);
              if (--queued < MAX_QUEUED_PER_CONNECTION / 2 && socket.isPaused() && !socket.destroyed) socket.resume();
            }
          });
        } else if (event.kind === 'oversized') {
          this.counters.oversized++;
          const { head, limit } = event;
          queue = queue.then(async () => {
            try {
              send(await this.options.rejectOversized(head, limit));
            } catch (e) {
              this.options.log?.('HL7 v2 oversized frame could not be recorded', e);
            }
            socket.end();
          });
          socket.pause();
          return;
        }
      }
      if (decoder.garbageBytes > this.options.maxMessageBytes) socket.destroy();
    });
  }
}
