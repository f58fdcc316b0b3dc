import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';

/**
 * Builds the hospital web console (console/) into dist/console: one minified script and one
 * stylesheet with content-hashed names (cached for ever) and index.html naming them (never
 * cached). Everything the page needs is in these files: no CDN, nothing fetched at run time
 * but the server's own API. `npm run build` runs it after tsc.
 */

const ROOT = resolve(import.meta.dirname, '..');

export async function buildConsole(outDir = join(ROOT, 'dist', 'console')): Promise<string[]> {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const result = await build({
    entryPoints: { app: join(ROOT, 'console', 'src', 'main.ts'), style: join(ROOT, 'console', 'css', 'console.css') },
    bundle: true,
    minify: true,
    format: 'esm',
    target: ['chrome110', 'firefox110', 'safari16'],
    entryNames: '[name]-[hash]',
    outdir: outDir,
    metafile: true,
    legalComments: 'none',
    logLevel: 'warning',
  });
  const outputs = Object.keys(result.metafile.outputs).map((f) => basename(f));
  const script = outputs.find((f) => f.startsWith('app-') && f.endsWith('.js'));
  const style = outputs.find((f) => f.startsWith('style-') && f.endsWith('.css'));
  if (!script || !style) throw new Error(`console build: missing outputs (${outputs.join(', ')})`);
  const html = readFileSync(join(ROOT, 'console', 'index.html'), 'utf8').replace('%SCRIPT%', `./${script}`).replace('%STYLE%', `./${style}`);
  writeFileSync(join(outDir, 'index.html'), html);
  return [...outputs, 'index.html'];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const files = await buildConsole();
  console.log(`console built: dist/console/{${files.join(', ')}}`);
}
