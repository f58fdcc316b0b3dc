import { describe, expect, it } from 'vitest';
import { AUDIT_EVENT_UPKEEP } from '../../migrations/0039-audit-event-upkeep.js';
import { thresholdsOf } from './maintenance.js';

describe('maintenance thresholds', () => {
  it("are autovacuum's defaults for a table without storage parameters", () => {
    expect(thresholdsOf(null)).toEqual({ analyzeBase: 50, analyzeScale: 0.1, vacuumBase: 50, vacuumScale: 0.2, vacuumInsertBase: 1000, vacuumInsertScale: 0.2 });
  });

  it("take a table's own autovacuum storage parameters (audit_event's, migration 0039), ignoring others", () => {
    const options = [...Object.entries(AUDIT_EVENT_UPKEEP).map(([k, v]) => `${k}=${v}`), 'fillfactor=50', 'autovacuum_vacuum_insert_threshold=-1'];
    expect(thresholdsOf(options)).toEqual({ analyzeBase: 50, analyzeScale: 0.5, vacuumBase: 50, vacuumScale: 0.2, vacuumInsertBase: -1, vacuumInsertScale: 1 });
  });
});
