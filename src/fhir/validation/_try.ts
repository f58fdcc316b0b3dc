import { ResourceValidator, loadUsCoreProfiles } from '/work/main/src/fhir/validation/index.js';
import { readFileSync, readdirSync } from 'node:fs';
let t = Date.now();
const v = new ResourceValidator();
console.log('ctor', Date.now() - t, v.resourceTypes().length);
const dir = '/work/shared/data/fhir-examples/';
let bad = 0;
t = Date.now();
const counts = new Map<string, number>();
for (const f of readdirSync(dir)) {
  if (!f.endsWith('.json')) continue;
  const r = JSON.parse(readFileSync(dir + f, 'utf8'));
  const issues = v.validate(r).filter((i) => i.severity === 'error');
  if (issues.length) {
    bad++;
    for (const i of issues.slice(0, 4)) console.log(f, i.code, i.expression?.[0], '|', i.diagnostics);
  }
}
console.log('bad', bad, 'ms', Date.now() - t);
