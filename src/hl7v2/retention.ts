import type { Hl7MessageStore } from '../storage/hl7v2-messages.js';

export interface RetentionOptions {
  /** HL7_MESSAGE_RETENTION_DAYS: processed messages kept this long (0: for ever). */
  processedDays: number;
  /** HL7_FAILED_MESSAGE_RETENTION_DAYS: error / rejected messages kept this long (0: until reprocessed). */
  failedDays: number;
  /** How often the purge runs. */
  intervalMs?: number;
  log: (message: string, error?: unknown) => void;
}

const HOUR = 3_600_000;

/**
 * Retention of hl7_message: the raw text of a message holds PHI and is needed only to answer
 * retransmissions and to reprocess, so processed messages are deleted after the configured
 * days; failed ones are kept until reprocessed (then they age as processed) or for their own,
 * longer limit. Runs at start and then every hour, in this process, whatever the database
 * maintenance mode; nothing runs when both limits are 0.
 */
export class Hl7Retention {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly messages: Hl7MessageStore,
    private readonly options: RetentionOptions,
  ) {}

  get enabled(): boolean {
    return this.options.processedDays > 0 || this.options.failedDays > 0;
  }

  start(): void {
    if (!this.enabled || this.timer) return;
    this.running = this.runOnce();
    this.timer = setInterval(() => {
      this.running = this.runOnce();
    }, this.options.intervalMs ?? HOUR);
    this.timer.unref();
  }

  /** One purge; never throws (the next run tries again). Resolves to the rows deleted. */
  async runOnce(): Promise<{ processed: number; failed: number }> {
    try {
      const deleted = await this.messages.purge({ processedDays: this.options.processedDays, failedDays: this.options.failedDays });
      if (deleted.processed || deleted.failed) {
        this.options.log(`hl7_message retention: deleted ${deleted.processed} processed and ${deleted.failed} failed messages`);
      }
      return deleted;
    } catch (e) {
      this.options.log('hl7_message retention failed', e);
      return { processed: 0, failed: 0 };
    }
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
