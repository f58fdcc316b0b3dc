import fhirpath from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4/index.js';
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
const b = JSON.parse(gunzipSync(readFileSync('/work/shared/data/synthea/057aa36e-b892-9964-75b9-ffb46b097e34.json.gz')).toString('utf8'));
const res = b.entry.map((e: any) => e.resource).filter((r: any) => r.resourceType === 'Observation');
const exprs = ['dataAbsentReason.empty() or value.empty()', 'value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()', 'contained.contained.empty()', 'contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()'];
const fns = exprs.map((e) => fhirpath.compile(e, r4 as any));
let t = performance.now();
let n = 0;
for (const r of res) for (const f of fns) { const out = f(r, { resource: r }); n++; }
const ms = performance.now() - t;
console.log(n, 'evals', ms.toFixed(0), 'ms', (ms * 1000 / n).toFixed(1), 'us/eval');
