import { r4Definitions } from './definitions.js';
const d = r4Definitions();
for (const rt of [...d.resourceTypes(), ...d.dataTypes]) for (const n of d.schema(rt)!.nodes.values()) if (n.binding && n.types.some((t) => t.code === 'Coding' || t.code === 'CodeableConcept')) console.log(n.path, n.types.map((t) => t.code).join(), n.binding);
