import { sql, type Kysely } from 'kysely';

/**
 * HL7 v2 ingest: every received message, raw, with what became of it (src/hl7v2).
 *
 * A row is written before the message is acknowledged, so nothing acknowledged is lost: a
 * message still 'received' after a crash is mapped at the next start. `status` is received
 * (stored, not yet mapped), processed (mapped, AA), error (could not be mapped, AE; can be
 * reprocessed), rejected (unparseable or unsupported, AR). `ack` is the acknowledgement sent,
 * replayed when the sender retransmits the same message. A retransmission is the same sending
 * application + facility + MSH-10 with the same content (`content_hash`, MSH-7 left out); a
 * reused control id with other content is a new message, never silently dropped; without a
 * control id, the same content from the same sender is taken for a retransmission.
 * `resources` lists the versions written (`Type/id/_history/v`).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE hl7_message (
      id text PRIMARY KEY,
      received_at timestamptz NOT NULL DEFAULT now(),
      transport text NOT NULL,
      sending_application text NOT NULL,
      sending_facility text NOT NULL,
      control_id text NOT NULL,
      message_type text NOT NULL,
      version text NOT NULL,
      content_hash text NOT NULL,
      raw text NOT NULL,
      status text NOT NULL,
      error text,
      ack text,
      resources jsonb NOT NULL DEFAULT '[]'::jsonb,
      attempts integer NOT NULL DEFAULT 0,
      processed_at timestamptz
    )`.execute(db);
  await sql`
    CREATE UNIQUE INDEX hl7_message_retransmission
    ON hl7_message (sending_application, sending_facility, control_id, content_hash)`.execute(db);
  await sql`CREATE INDEX hl7_message_status ON hl7_message (status, received_at)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE hl7_message`.execute(db);
}
