import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SubscriptionStore, type NewDelivery } from '../../src/storage/subscription-store.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Issue 11: a dispatch round stores its deliveries, numbers the events and moves the cursor in
 * ONE statement (`SubscriptionStore.addDeliveries`), and only while its process leads.
 * (The cursor only moves forward: the times used are past the migration's start position.)
 */

let t: TestApp;
let store: SubscriptionStore;

const event = (subscriptionId: string, resourceId: string, versionId = '1'): NewDelivery => ({
  subscriptionId,
  resourceType: 'Observation',
  resourceId,
  versionId,
  action: versionId === '1' ? 'create' : 'update',
  committedAt: '2026-12-04T10:00:00.000Z',
});

async function rows(): Promise<Array<{ subscription_id: string; resource_id: string; event_number: string; kind: string; batch_id: string }>> {
  const r = await sql<{ subscription_id: string; resource_id: string; event_number: string; kind: string; batch_id: string }>`
    SELECT subscription_id, resource_id, event_number::text AS event_number, kind, batch_id FROM subscription_delivery
    WHERE subscription_id IN ('st-1', 'st-2') ORDER BY subscription_id, event_number, kind`.execute(t.server.database.db);
  return r.rows;
}

async function position(): Promise<string> {
  const r = await sql<{ p: string }>`SELECT to_char(position AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS p FROM subscription_dispatch WHERE name = 'default'`.execute(t.server.database.db);
  return r.rows[0]!.p;
}

beforeAll(async () => {
  t = await startTestApp();
  // The app's own dispatcher gives the lease up: this test leads by hand.
  await t.server.subscriptions.close();
  store = new SubscriptionStore(t.server.database.db);
  await sql`INSERT INTO subscription_state (subscription_id) VALUES ('st-1'), ('st-2')`.execute(t.server.database.db);
});

afterAll(async () => {
  await t?.close();
});

describe('addDeliveries (one statement per dispatch round)', () => {
  it('dedupes, numbers events without gaps, cuts batches per Subscription and moves the cursor', async () => {
    expect(await store.lease('leader-a', 60_000)).toBeDefined();
    const handshake: NewDelivery = { ...event('st-1', 'st-1', '5'), resourceType: 'Subscription', action: 'update', kind: 'handshake' };
    const { batches, leading } = await store.addDeliveries(
      [event('st-1', 'o-1'), event('st-1', 'o-2'), event('st-1', 'o-1'), handshake, event('st-2', 'o-1')],
      'leader-a',
      '2099-01-01T00:00:01.000Z',
      2,
    );
    expect(leading).toBe(true);
    const stored = await rows();
    expect(stored.map((r) => [r.subscription_id, r.resource_id, r.event_number, r.kind])).toEqual([
      // the handshake carries the count before this call without taking a number
      ['st-1', 'st-1', '0', 'handshake'],
      ['st-1', 'o-1', '1', 'event'],
      ['st-1', 'o-2', '2', 'event'],
      ['st-2', 'o-1', '1', 'event'],
    ]);
    // batches of at most 2 rows, one Subscription each; the duplicate takes no place
    expect(batches.map((b) => [b.subscriptionId, b.ids.length]).sort()).toEqual([
      ['st-1', 1],
      ['st-1', 2],
      ['st-2', 1],
    ]);
    for (const b of batches) expect(new Set(stored.filter((r) => b.ids.length && r.batch_id === b.batchId).map((r) => r.subscription_id))).toEqual(new Set([b.subscriptionId]));
    expect(await position()).toBe('2099-01-01T00:00:01.000Z');

    // Read again (a late scan): only the new version is stored, numbered after the others.
    const again = await store.addDeliveries([event('st-1', 'o-1'), event('st-1', 'o-3')], 'leader-a');
    expect(again.batches.flatMap((b) => b.ids)).toHaveLength(1);
    expect((await rows()).filter((r) => r.subscription_id === 'st-1' && r.kind === 'event').map((r) => [r.resource_id, r.event_number])).toEqual([
      ['o-1', '1'],
      ['o-2', '2'],
      ['o-3', '3'],
    ]);
  });

  it('writes nothing, cursor included, for a process that no longer leads', async () => {
    await sql`UPDATE subscription_dispatch SET leader = 'leader-b' WHERE name = 'default'`.execute(t.server.database.db);
    const before = await rows();
    const { batches, leading } = await store.addDeliveries([event('st-2', 'o-9')], 'leader-a', '2099-01-01T01:00:00.000Z');
    expect(leading).toBe(false);
    expect(batches).toEqual([]);
    expect(await rows()).toEqual(before);
    expect(await position()).toBe('2099-01-01T00:00:01.000Z');
    // the cursor alone: refused too
    expect(await store.advance('leader-a', '2099-01-01T01:00:00.000Z')).toBe(false);
  });
});
