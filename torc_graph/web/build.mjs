// Build the dashboard into dist/ (committed: `pip install` needs no Node.js, the page no CDN).
//   cd torc_graph/web && npm ci && npm run build
// dist/index.html           the page (GET /dashboard), referring to hashed asset names
// dist/assets/main-HASH.*   the bundle: our sources + preact, uplot, @dagrejs/dagre (+ graphlib)
// dist/assets/third-party-licenses.txt   the license text of every bundled npm package
// dist/build-info.json      the bundled packages and a SHA-256 over the build's inputs, which
//                           tests/web/test_bundle.py recomputes to catch a stale dist/
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = fileURLToPath(new URL('.', import.meta.url));
const dist = join(root, 'dist');
const assets = join(dist, 'assets');
// Inputs of the build, hashed into build-info.json (test_bundle.py lists the same).
export const INPUTS = ['build.mjs', 'package.json', 'package-lock.json', 'src'];

function files(path) {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path).sort().flatMap((name) => files(join(path, name)));
}

function inputsDigest() {
  const h = createHash('sha256');
  for (const file of INPUTS.flatMap((p) => files(join(root, p)))) {
    h.update(`${relative(root, file)}\n`);
    h.update(readFileSync(file));
    h.update('\n');
  }
  return h.digest('hex');
}

rmSync(dist, { recursive: true, force: true });
mkdirSync(assets, { recursive: true });
const result = await esbuild.build({
  entryPoints: [join(root, 'src/main.jsx')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir: assets,
  entryNames: '[name]-[hash]',
  legalComments: 'none', // the license texts are in third-party-licenses.txt
  banner: { js: '/* torc_graph dashboard; third-party licenses: third-party-licenses.txt */' },
  metafile: true,
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs).map((p) => relative(assets, join(root, p)));
const js = outputs.find((p) => p.endsWith('.js'));
const css = outputs.find((p) => p.endsWith('.css'));
const page = readFileSync(join(root, 'src/index.html'), 'utf8')
  .replace('__JS__', js).replace('__CSS__', css);
writeFileSync(join(dist, 'index.html'), page);

// Every npm package whose code went into the bundle, with its license text; a package's own
// dependencies count too (@dagrejs/dagre's ESM build inlines @dagrejs/graphlib).
const packages = new Map();
function addPackage(name) {
  if (packages.has(name)) return;
  const dir = join(root, 'node_modules', name);
  const meta = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const licenseFile = readdirSync(dir).find((f) => /^(license|licence|copying)/i.test(f));
  if (!licenseFile) throw new Error(`${name} ships no license file`);
  packages.set(name, { name, version: meta.version, license: meta.license,
    text: readFileSync(join(dir, licenseFile), 'utf8').trim() });
  for (const dep of Object.keys(meta.dependencies || {})) addPackage(dep);
}
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m) addPackage(m[1]);
}
const sorted = [...packages.values()].sort((a, b) => a.name.localeCompare(b.name));
writeFileSync(join(assets, 'third-party-licenses.txt'), sorted.map((p) =>
  `${p.name} ${p.version} (${p.license})\n${'='.repeat(72)}\n${p.text}\n`).join('\n'));
writeFileSync(join(dist, 'build-info.json'), `${JSON.stringify({
  inputs_sha256: inputsDigest(),
  packages: sorted.map((p) => ({ name: p.name, version: p.version, license: p.license })),
  assets: [js, css].sort(),
}, null, 2)}\n`);
for (const p of [js, css]) {
  console.log(`${p}  ${(statSync(join(assets, p)).size / 1024).toFixed(1)} KiB`);
}
