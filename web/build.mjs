// Builds the chat UI into dist/: one JS and one CSS bundle with content hashes
// in their names (cached for good by the server) and index.html pointing at
// them (always revalidated). The output depends only on the sources and the
// locked packages, so CI can rebuild and compare it with what is committed.
import * as esbuild from 'esbuild';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(root, 'dist');

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });

const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: { app: 'src/main.js', style: 'src/style.css' },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  outdir: 'dist',
  entryNames: 'assets/[name]-[hash]',
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
});

// Map each entry point to its hashed output file.
const outputs = {};
for (const [file, meta] of Object.entries(result.metafile.outputs)) {
  if (meta.entryPoint) outputs[meta.entryPoint] = '/' + path.relative('dist', file).split(path.sep).join('/');
}
const js = outputs['src/main.js'];
const css = outputs['src/style.css'];
if (!js || !css) throw new Error('build: missing an entry point output: ' + JSON.stringify(outputs));

const html = (await readFile(path.join(root, 'src/index.html'), 'utf8'))
  .replace('%APP_JS%', js)
  .replace('%STYLE_CSS%', css);
await writeFile(path.join(dist, 'index.html'), html);
console.log(`built dist/index.html, ${js.slice(1)}, ${css.slice(1)}`);
