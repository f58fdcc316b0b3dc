import type { Subscription } from 'fhir/r4.js';
import type { ResourceStore } from '../storage/resource-store.js';
import { asSystem } from './write-context.js';

/**
 * Status changes the server makes to a Subscription (error after a dead letter, off at its
 * end): a new version written as the server, so the client's recorded grant stays.
 */
export class SubscriptionStatusWriter {
  constructor(private readonly store: ResourceStore) {}

  setError(id: string, error: string): Promise<boolean> {
    return this.set(id, 'error', error);
  }

  setOff(id: string, reason: string): Promise<boolean> {
    return this.set(id, 'off', reason);
  }

  /** Only an active Subscription is changed (a client may have switched it off meanwhile). */
  private set(id: string, status: 'error' | 'off', error: string): Promise<boolean> {
    return asSystem(() =>
      this.store.transaction(async (tx) => {
        const current = await tx.readForUpdate('Subscription', id);
        if (!current?.json || current.deleted) return false;
        const sub = JSON.parse(current.json) as Subscription;
        if (sub.status !== 'active') return false;
        const changed: Subscription = { ...sub, status, error };
        await tx.update(changed, current);
        return true;
      }),
    );
  }
}
