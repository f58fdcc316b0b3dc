import { r4Definitions } from './definitions.js';
import { r4Terminology } from './terminology.js';
const d = r4Definitions(); const t = r4Terminology();
const res = new Map<string, { ok: boolean; types: Set<string>; n: number }>();
for (const rt of [...d.resourceTypes(), ...d.dataTypes]) {
  const s = d.schema(rt)!;
  for (const n of s.nodes.values()) if (n.binding) {
    let e = res.get(n.binding); if (!e) res.set(n.binding, e = { ok: t.expand(n.binding) !== undefined, types: new Set(), n: 0 });
    e.n++; n.types.forEach((x) => e!.types.add(x.code));
  }
}
const bad = [...res].filter(([, e]) => !e.ok);
console.log('required VS', res.size, 'unexpandable', bad.length);
for (const [u, e] of bad) console.log(u, [...e.types].join(','), e.n);
