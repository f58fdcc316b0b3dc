import { ResourceValidator, loadUsCoreProfiles } from './index.js';
import { readFileSync, readdirSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
const v = new ResourceValidator({ extraProfiles: process.argv[2] === 'nous' ? [] : loadUsCoreProfiles() });
const dir = '/work/shared/data/synthea/';
const resources: unknown[] = [];
for (const f of readdirSync(dir)) {
  if (!f.endsWith('.json.gz')) continue;
  const b = JSON.parse(gunzipSync(readFileSync(dir + f)).toString('utf8'));
  for (const e of b.entry) resources.push(e.resource);
}
const msgs = new Map<string, number>();
const ex = new Map<string, string>();
let t = performance.now();
let errs = 0;
for (const r of resources) {
  const issues = v.validate(r);
  for (const i of issues) {
    const k = `${i.severity} ${i.code} ${i.expression?.[0]?.replace(/\[\d+\]/g, '[]')} ${i.diagnostics?.replace(/'[^']*'/, "'…'").slice(0, 200)}`;
    msgs.set(k, (msgs.get(k) ?? 0) + 1);
    if (i.severity === 'error') { errs++; if (!ex.has(k)) ex.set(k, (r as {id: string}).id); }
  }
}
const ms = performance.now() - t;
console.log(resources.length, 'resources', ms.toFixed(0), 'ms', (resources.length / ms * 1000).toFixed(0), '/s; errors', errs);
for (const [k, n] of [...msgs].sort((a, b) => b[1] - a[1]).slice(0, 60)) console.log(n, k, ex.get(k) ?? '');
t = performance.now();
for (const r of resources) v.validate(r);
const ms2 = performance.now() - t;
console.log('second pass', (resources.length / ms2 * 1000).toFixed(0), '/s');
