import type { Generated } from 'kysely';

/** Tables of migrations/0001: current versions and history of every resource. */
export interface ResourceTable {
  resource_type: string;
  id: string;
  version_id: string; // bigint: kept as text in JS
  last_updated: string; // timestamptz as ISO text
  deleted: Generated<boolean>;
  content: unknown; // jsonb
}

export interface ResourceHistoryTable extends ResourceTable {
  method: string;
}

export interface ServerKeyTable {
  name: string;
  value: unknown;
  created_at: Generated<string>;
}

export interface Database {
  server_key: ServerKeyTable;
  resource: ResourceTable;
  resource_history: ResourceHistoryTable;
}
