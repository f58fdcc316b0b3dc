import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { RetryLaterError } from '../../jobs/types.js';
import type { ChannelSender, Delivery } from './types.js';
import type { WebSocketHub } from './websocket-hub.js';

/**
 * The `websocket` channel. A socket is connected to one server process, while the delivery job
 * runs in any process (or `npm run worker`). With REDIS_URL every delivery is published on a
 * Redis channel and each HTTP server process pushes it to its own sockets; without Redis there
 * is one process, which pushes directly.
 *
 * The published message is encrypted (AES-256-GCM, key shared through the database): a
 * full-resource notification is PHI, and Redis holds none in the clear (as for job data).
 * Delivery is best effort, as in the Backport IG: an event with no socket bound is not kept
 * for the socket (clients catch up with `$events`); the job succeeds once it was handed over.
 */
export interface WebsocketSenderOptions {
  /** This process's sockets; absent in a process without the HTTP server (`npm run worker`). */
  hub?: WebSocketHub;
  /** Redis fan-out: the URL, the channel name (per database) and the 32-byte key (base64url). */
  redis?: { url: string; channel: string; key: string };
  log: (message: string, error?: unknown) => void;
}

export class WebsocketSender implements ChannelSender {
  readonly type = 'websocket' as const;
  private publisher?: Redis;
  private subscriber?: Redis;
  private readonly key?: Buffer;

  private constructor(private readonly options: WebsocketSenderOptions) {
    if (options.redis) this.key = Buffer.from(options.redis.key, 'base64url');
  }

  /** Subscribes to the fan-out channel (HTTP server processes) before resolving. */
  static async create(options: WebsocketSenderOptions): Promise<WebsocketSender> {
    const sender = new WebsocketSender(options);
    const { redis, hub } = options;
    if (redis) {
      sender.publisher = new Redis(redis.url, { maxRetriesPerRequest: 2 });
      // Reconnects are ioredis's; a failed publish fails the delivery (retried by the job layer).
      sender.publisher.on('error', (e: unknown) => options.log('websocket fan-out: Redis publisher error', e));
      if (hub) {
        const subscriber = new Redis(redis.url, { maxRetriesPerRequest: null });
        sender.subscriber = subscriber;
        subscriber.on('error', (e: unknown) => options.log('websocket fan-out: Redis subscriber error', e));
        subscriber.on('message', (_channel: string, message: string) => {
          const delivery = sender.open(message);
          if (delivery) void hub.push(delivery);
        });
        await subscriber.subscribe(redis.channel);
      }
    }
    return sender;
  }

  async deliver(delivery: Delivery): Promise<void> {
    if (this.publisher && this.options.redis) {
      await this.publisher.publish(this.options.redis.channel, this.seal(delivery));
      return;
    }
    // No fan-out and no sockets here: another process (the HTTP server) must take the job.
    if (!this.options.hub) throw new RetryLaterError('websocket sockets are served by the HTTP server process', 5_000);
    await this.options.hub.push(delivery);
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.subscriber?.quit(), this.publisher?.quit()]);
  }

  private seal(delivery: Delivery): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key!, iv);
    const body = Buffer.concat([cipher.update(JSON.stringify(delivery), 'utf8'), cipher.final()]);
    return [iv, cipher.getAuthTag(), body].map((b) => b.toString('base64url')).join('.');
  }

  /** The delivery of a message sealed with our key; messages of anything else are ignored. */
  private open(message: string): Delivery | undefined {
    try {
      const [iv, tag, body] = message.split('.').map((p) => Buffer.from(p, 'base64url'));
      const decipher = createDecipheriv('aes-256-gcm', this.key!, iv!);
      decipher.setAuthTag(tag!);
      return JSON.parse(Buffer.concat([decipher.update(body!), decipher.final()]).toString('utf8')) as Delivery;
    } catch (e) {
      this.options.log('websocket fan-out: a message that is not ours was ignored', e instanceof Error ? e.message : undefined);
      return undefined;
    }
  }
}
