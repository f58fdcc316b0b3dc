import type { ChannelSender, SubscriptionChannelType } from './types.js';

/**
 * The channel senders of this process, by channel type. Looked up per delivery, so a sender
 * registered after the job runner started still serves the jobs queued for its type.
 */
export class ChannelRegistry {
  private readonly senders = new Map<SubscriptionChannelType, ChannelSender>();

  register(sender: ChannelSender): void {
    if (this.senders.has(sender.type)) throw new Error(`a ${sender.type} channel sender is already registered`);
    this.senders.set(sender.type, sender);
  }

  get(type: string): ChannelSender | undefined {
    return this.senders.get(type as SubscriptionChannelType);
  }

  types(): SubscriptionChannelType[] {
    return [...this.senders.keys()].sort();
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.senders.values()].map((s) => s.close?.()));
  }
}
