import type { OperationOutcomeIssue } from 'fhir/r4.js';

export type Issue = OperationOutcomeIssue;
export type IssueCode = OperationOutcomeIssue['code'];

export function error(issues: Issue[], code: IssueCode, path: string, diagnostics: string): void {
  issues.push({ severity: 'error', code, diagnostics, expression: [path] });
}

export function warning(issues: Issue[], code: IssueCode, path: string, diagnostics: string): void {
  issues.push({ severity: 'warning', code, diagnostics, expression: [path] });
}

export function hasErrors(issues: readonly Issue[]): boolean {
  return issues.some((i) => i.severity === 'error' || i.severity === 'fatal');
}

/**
 * The base definition and a profile may both report the same problem (e.g. the same required
 * binding); the user should see it once.
 */
export function dedupe(issues: Issue[]): Issue[] {
  if (issues.length < 2) return issues;
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.severity}|${i.code}|${i.expression?.[0]}|${i.diagnostics}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
