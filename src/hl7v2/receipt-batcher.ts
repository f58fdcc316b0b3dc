import type { Hl7MessageRecord, Hl7MessageStore, NewHl7Message } from '../storage/hl7v2-messages.js';

type Receipt = { record: Hl7MessageRecord; duplicate: boolean };

interface Waiting {
  message: NewHl7Message;
  resolve: (r: Receipt) => void;
  reject: (e: unknown) => void;
}

/** Raw text stored in one statement at most (messages may be up to HL7_MAX_MESSAGE_BYTES each). */
const MAX_BATCH_CHARS = 4 * 1024 * 1024;
const MAX_BATCH_MESSAGES = 64;

/**
 * Group commit of received messages: while one INSERT of raw rows is on its way to the
 * database, messages arriving on other connections wait and go together in the next one, so
 * eight busy connections pay for one commit (one WAL flush) instead of eight. A lone message
 * goes at once: no timer, no added latency when the channel is quiet. Each caller is answered
 * only after the statement holding its row committed, so the row is durable before mapping
 * starts and before any ACK, as with one INSERT per message.
 */
export class ReceiptBatcher {
  private queue: Waiting[] = [];
  private busy = false;

  constructor(private readonly messages: Hl7MessageStore) {}

  store(message: NewHl7Message): Promise<Receipt> {
    return new Promise<Receipt>((resolve, reject) => {
      this.queue.push({ message, resolve, reject });
      if (!this.busy) void this.drain();
    });
  }

  private take(): Waiting[] {
    let chars = 0;
    let n = 0;
    while (n < this.queue.length && n < MAX_BATCH_MESSAGES) {
      chars += this.queue[n].message.raw.length;
      if (n > 0 && chars > MAX_BATCH_CHARS) break;
      n++;
    }
    return this.queue.splice(0, n);
  }

  private async drain(): Promise<void> {
    this.busy = true;
    try {
      while (this.queue.length) {
        const batch = this.take();
        try {
          const receipts = await this.messages.insertMany(batch.map((w) => w.message));
          batch.forEach((w, i) => w.resolve(receipts[i]));
        } catch (e) {
          if (batch.length === 1) batch[0].reject(e);
          // One bad row must not fail the others: each alone, to find which one it was.
          else for (const w of batch) await this.messages.insertMany([w.message]).then(([r]) => w.resolve(r), w.reject);
        }
      }
    } finally {
      this.busy = false;
    }
  }
}
