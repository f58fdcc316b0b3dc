import { sql, type Kysely } from 'kysely';
import { fillOrDefer, REPORT_FACT_TYPES } from '../src/storage/backfill.js';

/**
 * Report facts (issue 14 §5, src/storage/report-queries*.ts): the few fields the hospital
 * reports read of Invoices, PaymentReconciliations, Appointments, Encounters, ServiceRequests
 * and DiagnosticReports, kept in narrow tables beside `resource` so that a month's report is an
 * index range over small rows instead of a read of every document of the month from JSON
 * (EXPLAIN at 1 M resources: the revenue category statement spent ~600 ms unpacking a month of
 * invoice lines).
 *
 * Why a trigger and not a write hook: the rows must be exact (reports equal an independent
 * computation over the stored resources) whatever wrote the resource: REST, Bundles, HL7 v2,
 * $import, the blind writes whose previous version only the database knows, and $erase
 * (DELETE). An AFTER ROW trigger on `resource` runs inside the writing statement's transaction,
 * so the facts commit or roll back with the version, and sees the final content of every path.
 * Its WHEN clause is evaluated without calling the function, so other types pay nothing.
 * `ONLY resource`-style children (audit_event) have their own triggers: none here.
 *
 * Instants are read as the search index reads them (src/search/values.ts): a dateTime with a
 * zone as is, a partial date as the start of its UTC day / month / year.
 *
 * Every row is rewritten from the current content of its resource (delete, then insert), so a
 * fact never depends on a previous version. Invoice lines whose category comes from a
 * referenced ChargeItem are refreshed when that ChargeItem is written.
 */
const TYPES = `(${REPORT_FACT_TYPES.map((t) => `'${t}'`).join(', ')})`;

const statements = [
  `CREATE FUNCTION report_instant(v text) RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT CASE
      WHEN v ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2})$' THEN v::timestamptz
      WHEN v ~ '^[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?$' THEN ((CASE length(v) WHEN 4 THEN v || '-01-01' WHEN 7 THEN v || '-01' ELSE v END) || 'T00:00:00Z')::timestamptz
    END $$`,
  // A reference `Type/id` (relative, as the server stores them) to its id, else null.
  `CREATE FUNCTION report_ref_id(ref text, type text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN left(ref, length(type) + 1) = type || '/' THEN substr(ref, length(type) + 2) END $$`,

  // paid: what active PaymentReconciliations allocate to the invoice (detail.request / amount),
  // kept by the writes of both, so the outstanding figure is one index range, not a probe of
  // the payments per open invoice (EXPLAIN at 1 M: 13,700 probes, ~0.5 s on a loaded host).
  `CREATE TABLE report_invoice (
    id text PRIMARY KEY, at timestamptz, status text, currency text, gross numeric, net numeric, paid numeric NOT NULL DEFAULT 0)`,
  `CREATE INDEX report_invoice_at ON report_invoice (at) INCLUDE (status, currency, gross, net)`,
  // Outstanding: open invoices whatever their date.
  `CREATE INDEX report_invoice_open ON report_invoice (at) INCLUDE (currency, gross, paid) WHERE status = 'issued'`,
  `CREATE TABLE report_invoice_line (
    invoice_id text NOT NULL, n int NOT NULL, at timestamptz, status text, currency text,
    charge_item text, system text, code text, display text, net numeric, tax numeric,
    PRIMARY KEY (invoice_id, n))`,
  `CREATE INDEX report_invoice_line_at ON report_invoice_line (at) INCLUDE (status, currency, system, code, display, net, tax)`,
  `CREATE INDEX report_invoice_line_charge_item ON report_invoice_line (charge_item) WHERE charge_item IS NOT NULL`,

  `CREATE TABLE report_payment (
    id text PRIMARY KEY, payment_date text, status text, currency text, amount numeric)`,
  `CREATE INDEX report_payment_date ON report_payment (payment_date) INCLUDE (status, currency, amount)`,
  `CREATE TABLE report_payment_allocation (
    payment_id text NOT NULL, n int NOT NULL, invoice_id text NOT NULL, active boolean NOT NULL, amount numeric,
    PRIMARY KEY (payment_id, n))`,
  `CREATE INDEX report_payment_allocation_invoice ON report_payment_allocation (invoice_id) INCLUDE (active, amount)`,

  `CREATE TABLE report_appointment (
    id text PRIMARY KEY, at timestamptz NOT NULL, status text, practitioners text[] NOT NULL)`,
  `CREATE INDEX report_appointment_at ON report_appointment (at) INCLUDE (status, practitioners)`,

  // One row per counted bed stay: an Encounter location entry not planned, with a start, of an
  // encounter not cancelled / entered-in-error. span = [start, end) with an open end unbounded.
  `CREATE TABLE report_bed_stay (
    encounter_id text NOT NULL, n int NOT NULL, location_id text NOT NULL,
    start_at timestamptz NOT NULL, end_at timestamptz, span tstzrange NOT NULL,
    PRIMARY KEY (encounter_id, n))`,
  `CREATE INDEX report_bed_stay_span ON report_bed_stay USING gist (span)`,

  `CREATE TABLE report_lab_request (
    id text PRIMARY KEY, authored timestamptz NOT NULL, system text, code text, display text, priority text NOT NULL)`,
  `CREATE TABLE report_lab_result (
    id text PRIMARY KEY, issued timestamptz NOT NULL, status text, requests text[] NOT NULL)`,
  `CREATE INDEX report_lab_result_issued ON report_lab_result (issued) INCLUDE (status, requests)`,

  `CREATE FUNCTION report_facts_refresh(t text, rid text, c jsonb) RETURNS void LANGUAGE plpgsql AS $$
  DECLARE
    touched text[];
  BEGIN
    IF t = 'Invoice' THEN
      DELETE FROM report_invoice WHERE id = rid;
      DELETE FROM report_invoice_line WHERE invoice_id = rid;
      IF c IS NULL THEN RETURN; END IF;
      INSERT INTO report_invoice (id, at, status, currency, gross, net, paid)
      VALUES (rid, report_instant(c->>'date'), c->>'status', coalesce(c->'totalGross'->>'currency', c->'totalNet'->>'currency'),
        (c->'totalGross'->>'value')::numeric, (c->'totalNet'->>'value')::numeric,
        (SELECT coalesce(sum(a.amount), 0) FROM report_payment_allocation a WHERE a.invoice_id = rid AND a.active));
      INSERT INTO report_invoice_line (invoice_id, n, at, status, currency, charge_item, system, code, display, net, tax)
      SELECT rid, l.n, report_instant(c->>'date'), c->>'status', coalesce(c->'totalGross'->>'currency', c->'totalNet'->>'currency'),
        k.charge_item, k.concept->'coding'->0->>'system', coalesce(k.concept->'coding'->0->>'code', k.concept->>'text'),
        coalesce(k.concept->'coding'->0->>'display', k.concept->>'text'), a.net, a.tax
      FROM jsonb_array_elements(CASE WHEN jsonb_typeof(c->'lineItem') = 'array' THEN c->'lineItem' ELSE '[]'::jsonb END) WITH ORDINALITY AS l(item, n)
      CROSS JOIN LATERAL (SELECT CASE WHEN l.item->'chargeItemCodeableConcept' IS NULL THEN report_ref_id(l.item->'chargeItemReference'->>'reference', 'ChargeItem') END AS charge_item) r
      CROSS JOIN LATERAL (SELECT r.charge_item, coalesce(l.item->'chargeItemCodeableConcept',
        (SELECT ci.content->'code' FROM resource ci WHERE ci.resource_type = 'ChargeItem' AND ci.id = r.charge_item AND NOT ci.deleted)) AS concept) k
      CROSS JOIN LATERAL (
        SELECT sum(CASE WHEN p->>'type' IN ('base', 'surcharge') THEN (p->'amount'->>'value')::numeric
                        WHEN p->>'type' IN ('discount', 'deduction') THEN -abs((p->'amount'->>'value')::numeric) ELSE 0 END) AS net,
          sum(CASE WHEN p->>'type' = 'tax' THEN (p->'amount'->>'value')::numeric END) AS tax
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(l.item->'priceComponent') = 'array' THEN l.item->'priceComponent' ELSE '[]'::jsonb END) p) a;
    ELSIF t = 'ChargeItem' THEN
      UPDATE report_invoice_line SET system = c->'code'->'coding'->0->>'system',
        code = coalesce(c->'code'->'coding'->0->>'code', c->'code'->>'text'),
        display = coalesce(c->'code'->'coding'->0->>'display', c->'code'->>'text')
      WHERE charge_item = rid;
    ELSIF t = 'PaymentReconciliation' THEN
      DELETE FROM report_payment WHERE id = rid;
      WITH gone AS (DELETE FROM report_payment_allocation WHERE payment_id = rid RETURNING invoice_id)
      SELECT array_agg(invoice_id) INTO touched FROM gone;
      IF c IS NOT NULL THEN
      INSERT INTO report_payment (id, payment_date, status, currency, amount)
      VALUES (rid, c->>'paymentDate', c->>'status', c->'paymentAmount'->>'currency', (c->'paymentAmount'->>'value')::numeric);
      END IF;
      INSERT INTO report_payment_allocation (payment_id, n, invoice_id, active, amount)
      SELECT rid, d.n, report_ref_id(d.item->'request'->>'reference', 'Invoice'), c->>'status' = 'active', (d.item->'amount'->>'value')::numeric
      FROM jsonb_array_elements(CASE WHEN jsonb_typeof(c->'detail') = 'array' THEN c->'detail' ELSE '[]'::jsonb END) WITH ORDINALITY AS d(item, n)
      WHERE c IS NOT NULL AND report_ref_id(d.item->'request'->>'reference', 'Invoice') IS NOT NULL;
      -- The invoices this payment was and is allocated to: their paid amount again.
      UPDATE report_invoice i SET paid = (SELECT coalesce(sum(a.amount), 0) FROM report_payment_allocation a WHERE a.invoice_id = i.id AND a.active)
      WHERE i.id = ANY (coalesce(touched, '{}') || ARRAY(SELECT invoice_id FROM report_payment_allocation WHERE payment_id = rid));
    ELSIF t = 'Appointment' THEN
      DELETE FROM report_appointment WHERE id = rid;
      IF c IS NULL OR report_instant(c->>'start') IS NULL THEN RETURN; END IF;
      INSERT INTO report_appointment (id, at, status, practitioners)
      VALUES (rid, report_instant(c->>'start'), c->>'status', ARRAY(
        SELECT DISTINCT report_ref_id(p->'actor'->>'reference', 'Practitioner')
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(c->'participant') = 'array' THEN c->'participant' ELSE '[]'::jsonb END) p
        WHERE report_ref_id(p->'actor'->>'reference', 'Practitioner') IS NOT NULL));
    ELSIF t = 'Encounter' THEN
      DELETE FROM report_bed_stay WHERE encounter_id = rid;
      IF c IS NULL OR coalesce(c->>'status', '') IN ('cancelled', 'entered-in-error') THEN RETURN; END IF;
      INSERT INTO report_bed_stay (encounter_id, n, location_id, start_at, end_at, span)
      SELECT rid, s.n, s.location_id, s.start_at, s.end_at,
        CASE WHEN s.end_at IS NULL OR s.end_at >= s.start_at THEN tstzrange(s.start_at, s.end_at, '[)') ELSE 'empty'::tstzrange END
      FROM (
        SELECT l.n, report_ref_id(l.item->'location'->>'reference', 'Location') AS location_id,
          report_instant(l.item->'period'->>'start') AS start_at,
          coalesce(report_instant(l.item->'period'->>'end'), report_instant(c->'period'->>'end')) AS end_at
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(c->'location') = 'array' THEN c->'location' ELSE '[]'::jsonb END) WITH ORDINALITY AS l(item, n)
        WHERE coalesce(l.item->>'status', '') <> 'planned') s
      WHERE s.location_id IS NOT NULL AND s.start_at IS NOT NULL;
    ELSIF t = 'ServiceRequest' THEN
      DELETE FROM report_lab_request WHERE id = rid;
      IF c IS NULL OR report_instant(c->>'authoredOn') IS NULL THEN RETURN; END IF;
      INSERT INTO report_lab_request (id, authored, system, code, display, priority)
      VALUES (rid, report_instant(c->>'authoredOn'), c->'code'->'coding'->0->>'system',
        coalesce(c->'code'->'coding'->0->>'code', c->'code'->>'text'), coalesce(c->'code'->'coding'->0->>'display', c->'code'->>'text'),
        coalesce(c->>'priority', 'routine'));
    ELSIF t = 'DiagnosticReport' THEN
      DELETE FROM report_lab_result WHERE id = rid;
      IF c IS NULL OR report_instant(c->>'issued') IS NULL THEN RETURN; END IF;
      INSERT INTO report_lab_result (id, issued, status, requests)
      VALUES (rid, report_instant(c->>'issued'), c->>'status', ARRAY(
        SELECT report_ref_id(b->>'reference', 'ServiceRequest')
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(c->'basedOn') = 'array' THEN c->'basedOn' ELSE '[]'::jsonb END) b
        WHERE report_ref_id(b->>'reference', 'ServiceRequest') IS NOT NULL));
    END IF;
  END $$`,
  `CREATE FUNCTION report_facts_row() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF TG_OP = 'DELETE' THEN
      PERFORM report_facts_refresh(OLD.resource_type, OLD.id, NULL);
    ELSE
      PERFORM report_facts_refresh(NEW.resource_type, NEW.id, CASE WHEN NEW.deleted THEN NULL ELSE NEW.content END);
    END IF;
    RETURN NULL;
  END $$`,
  `CREATE TRIGGER report_facts_write AFTER INSERT OR UPDATE ON resource FOR EACH ROW
    WHEN (NEW.resource_type IN ${TYPES}) EXECUTE FUNCTION report_facts_row()`,
  `CREATE TRIGGER report_facts_delete AFTER DELETE ON resource FOR EACH ROW
    WHEN (OLD.resource_type IN ${TYPES}) EXECUTE FUNCTION report_facts_row()`,
];

export async function up(db: Kysely<unknown>): Promise<void> {
  for (const s of statements) await sql.raw(s).execute(db);
  // The live resources already stored: here when they are few, else after start-up in the
  // background (src/storage/backfill.ts); a call per row of the trigger's function either way.
  await fillOrDefer(db, 'report-facts');
  await sql`ANALYZE report_invoice, report_invoice_line, report_payment, report_payment_allocation, report_appointment, report_bed_stay, report_lab_request, report_lab_result`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const s of [
    'DROP TRIGGER IF EXISTS report_facts_write ON resource',
    'DROP TRIGGER IF EXISTS report_facts_delete ON resource',
    'DROP FUNCTION IF EXISTS report_facts_row()',
    'DROP FUNCTION IF EXISTS report_facts_refresh(text, text, jsonb)',
    'DROP TABLE IF EXISTS report_invoice, report_invoice_line, report_payment, report_payment_allocation, report_appointment, report_bed_stay, report_lab_request, report_lab_result',
    'DROP FUNCTION IF EXISTS report_ref_id(text, text)',
    'DROP FUNCTION IF EXISTS report_instant(text)',
  ])
    await sql.raw(s).execute(db);
}
