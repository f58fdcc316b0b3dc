/**
 * The text an uncompressed pdfkit PDF shows, one line per TJ operator, for tests. Embedded fonts
 * (src/workflows/pdf.ts) write glyph ids (4 hex digits each); they are read back through each
 * font's ToUnicode CMap, following the `/Fn size Tf` font selections of the content streams.
 * Strings of fonts without a ToUnicode map are read as Latin-1 bytes.
 */
export function pdfText(pdf: Buffer): string {
  const source = pdf.toString('latin1');
  const objects = new Map<string, string>();
  for (const m of source.matchAll(/(\d+) 0 obj\b([\s\S]*?)\bendobj/g)) objects.set(m[1]!, m[2]!);
  // Font resource names (F1, F2, …) → the font's ToUnicode map.
  const maps = new Map<string, Map<string, string>>();
  for (const resources of source.matchAll(/\/Font\s*<<([^>]*)>>/g)) {
    for (const [, name, ref] of resources[1]!.matchAll(/\/(\w+)\s+(\d+) 0 R/g)) {
      const toUnicode = /\/ToUnicode\s+(\d+) 0 R/.exec(objects.get(ref!) ?? '')?.[1];
      const stream = toUnicode ? /stream\r?\n([\s\S]*?)\r?\nendstream/.exec(objects.get(toUnicode) ?? '')?.[1] : undefined;
      if (stream) maps.set(name!, cmap(stream));
    }
  }
  const lines: string[] = [];
  let font: Map<string, string> | undefined;
  for (const op of source.matchAll(/\/(\w+)\s+[\d.]+\s+Tf|\[([^\]]*)\]\s*TJ/g)) {
    if (op[1] !== undefined) {
      font = maps.get(op[1]);
      continue;
    }
    const hex = [...op[2]!.matchAll(/<([0-9a-fA-F]*)>/g)].map((h) => h[1]!).join('');
    lines.push(font ? (hex.match(/.{4}/g) ?? []).map((code) => font!.get(code.toLowerCase()) ?? '\uFFFD').join('') : Buffer.from(hex, 'hex').toString('latin1'));
  }
  return lines.join('\n');
}

/** A ToUnicode CMap's bfchar and bfrange entries: code (4 hex digits, lower case) → text. */
function cmap(stream: string): Map<string, string> {
  const map = new Map<string, string>();
  const utf16 = (hex: string) => {
    const clean = hex.replace(/\s+/g, '');
    const units: number[] = [];
    for (let i = 0; i + 4 <= clean.length; i += 4) units.push(parseInt(clean.slice(i, i + 4), 16));
    return String.fromCharCode(...units);
  };
  const code = (n: number) => n.toString(16).padStart(4, '0');
  for (const block of stream.matchAll(/beginbfchar([\s\S]*?)endbfchar/g)) {
    for (const [, from, to] of block[1]!.matchAll(/<([0-9a-fA-F]+)>\s*<([0-9a-fA-F\s]+)>/g)) map.set(from!.toLowerCase(), utf16(to!));
  }
  for (const block of stream.matchAll(/beginbfrange([\s\S]*?)endbfrange/g)) {
    for (const [, lo, hi, list, start] of block[1]!.matchAll(/<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>\s*(?:\[([^\]]*)\]|<([0-9a-fA-F]+)>)/g)) {
      const first = parseInt(lo!, 16);
      const last = parseInt(hi!, 16);
      if (list !== undefined) {
        const targets = [...list.matchAll(/<([0-9a-fA-F\s]*)>/g)].map((t) => utf16(t[1]!));
        for (let c = first; c <= last; c++) map.set(code(c), targets[c - first] ?? '');
      } else {
        const base = parseInt(start!, 16);
        for (let c = first; c <= last; c++) map.set(code(c), String.fromCharCode(base + c - first));
      }
    }
  }
  return map;
}

/** How many glyphs drawn in an embedded font are its .notdef (id 0: a character the font lacks, shown as a box). */
export function missingGlyphs(pdf: Buffer): number {
  let missing = 0;
  for (const op of pdf.toString('latin1').matchAll(/\[([^\]]*)\]\s*TJ/g)) {
    const hex = [...op[1]!.matchAll(/<([0-9a-fA-F]*)>/g)].map((h) => h[1]!).join('');
    missing += (hex.match(/.{4}/g) ?? []).filter((code) => code === '0000').length;
  }
  return missing;
}

/** The PostScript names of the fonts embedded in a PDF (subset prefix removed), e.g. `NotoSans-Regular`. */
export function embeddedFonts(pdf: Buffer): string[] {
  const names = new Set<string>();
  for (const m of pdf.toString('latin1').matchAll(/\/FontName\s*\/(?:[A-Z]{6}\+)?([\w-]+)/g)) names.add(m[1]!);
  return [...names].sort();
}
