import type { Migration } from 'kysely';
import * as m0001 from './0001-resources.js';
import * as m0002 from './0002-search-index.js';
import * as m0003 from './0003-jobs.js';
import * as m0004 from './0004-import.js';
import * as m0006 from './0006-system-search.js';
import * as m0008 from './0008-auth.js';
import * as m0009 from './0009-hl7v2.js';
import * as m0012 from './0012-subscriptions.js';
import * as m0014 from './0014-audit-events.js';
import * as m0016 from './0016-subscription-topics.js';
import * as m0018 from './0018-front-desk.js';
import * as m0019 from './0019-terminology.js';
import * as m0020 from './0020-patient-fuzzy-name.js';
import * as m0024 from './0024-pharmacy-stock.js';
import * as m0025 from './0025-lab-accession.js';
import * as m0027 from './0027-reports.js';
import * as m0029 from './0029-terminology-release.js';
import * as m0030 from './0030-report-facts.js';
import * as m0028 from './0028-full-text.js';
import * as m0032 from './0032-erasure-lookups.js';
import * as m0034 from './0034-audit-event-storage.js';
import * as m0035 from './0035-job-outbox.js';
import * as m0036 from './0036-reference-display.js';
import * as m0037 from './0037-subscription-delivery-fillfactor.js';
import * as m0038 from './0038-search-text-by-type.js';
import * as m0039 from './0039-audit-event-upkeep.js';
import * as m0040 from './0040-audit-event-archive.js';
import * as m0041 from './0041-meta-summary-index.js';

/** All migrations in order; the same list runs on PGlite and on PostgreSQL. */
export const migrations: Record<string, Migration> = {
  '0001-resources': m0001,
  '0002-search-index': m0002,
  '0003-jobs': m0003,
  '0004-import': m0004,
  '0006-system-search': m0006,
  '0008-auth': m0008,
  '0009-hl7v2': m0009,
  '0012-subscriptions': m0012,
  '0014-audit-events': m0014,
  '0016-subscription-topics': m0016,
  '0018-front-desk': m0018,
  '0019-terminology': m0019,
  '0020-patient-fuzzy-name': m0020,
  '0024-pharmacy-stock': m0024,
  '0025-lab-accession': m0025,
  '0027-reports': m0027,
  '0029-terminology-release': m0029,
  '0030-report-facts': m0030,
  '0028-full-text': m0028,
  '0032-erasure-lookups': m0032,
  '0034-audit-event-storage': m0034,
  '0035-job-outbox': m0035,
  '0036-reference-display': m0036,
  '0037-subscription-delivery-fillfactor': m0037,
  '0038-search-text-by-type': m0038,
  '0039-audit-event-upkeep': m0039,
  '0040-audit-event-archive': m0040,
  '0041-meta-summary-index': m0041,
};
