/**
 * Expand / contract (docs/migrations.md): during a rolling restart the previous release runs
 * against a database the new release has migrated, so a migration's `up` may only add. A
 * statement that removes or changes what the previous release reads or writes is allowed only
 * with an annotation giving the reason, on its line or one of the three lines above:
 *
 *   // expand-contract: <why the previous release does not use this>
 *
 * Only `up` is checked: `down` undoes by nature.
 */
export interface MigrationFinding {
  line: number;
  rule: string;
  text: string;
}

const ANNOTATION = /expand-contract:\s*\S.{2,}/;

const RULES: Array<{ rule: string; pattern: RegExp }> = [
  { rule: 'DROP TABLE / COLUMN / SCHEMA / TYPE / VIEW (drop one release later)', pattern: /\bDROP\s+(TABLE|COLUMN|SCHEMA|TYPE|VIEW|MATERIALIZED\s+VIEW)\b/gi },
  { rule: 'RENAME (add the new name, copy, drop the old one release later)', pattern: /\bRENAME\b/gi },
  { rule: 'ALTER COLUMN … TYPE (add a column of the new type instead)', pattern: /\bALTER\s+COLUMN\s+"?\w+"?\s+(SET\s+DATA\s+)?TYPE\b/gi },
  { rule: 'ALTER TYPE (enum / type changes break the previous release)', pattern: /\bALTER\s+TYPE\b/gi },
  { rule: 'SET NOT NULL (the previous release may write NULLs)', pattern: /\bSET\s+NOT\s+NULL\b/gi },
  { rule: 'ADD COLUMN … NOT NULL without DEFAULT (the previous release does not write it)', pattern: /\bADD\s+COLUMN\b[^,;`]*?\bNOT\s+NULL\b(?![^,;`]*\bDEFAULT\b)/gi },
  { rule: 'kysely dropTable / dropColumn / renameTo / renameColumn / setDataType', pattern: /\.(dropTable|dropColumn|renameTo|renameColumn|setDataType)\s*\(/g },
];

/** The `up` function's source: from `function up` to `function down` (or the end). */
function upBody(source: string): { text: string; offset: number } {
  const start = source.search(/export\s+async\s+function\s+up\b/);
  if (start < 0) return { text: '', offset: 0 };
  const rest = source.slice(start);
  const end = rest.search(/export\s+async\s+function\s+down\b/);
  return { text: end < 0 ? rest : rest.slice(0, end), offset: start };
}

/** Destructive statements in a migration's `up` without an `expand-contract:` reason. */
export function destructiveStatements(source: string): MigrationFinding[] {
  const { text, offset } = upBody(source);
  const lines = source.split('\n');
  const findings: MigrationFinding[] = [];
  for (const { rule, pattern } of RULES) {
    for (const match of text.matchAll(pattern)) {
      const line = source.slice(0, offset + (match.index ?? 0)).split('\n').length;
      const context = lines.slice(Math.max(0, line - 4), line).join('\n');
      // Prose in comments names these words too ("renamed copy"): only code counts.
      const own = lines[line - 1].trim();
      if (own.startsWith('*') || own.startsWith('//') || own.startsWith('/*')) continue;
      if (ANNOTATION.test(context)) continue;
      findings.push({ line, rule, text: own });
    }
  }
  return findings.sort((a, b) => a.line - b.line);
}
