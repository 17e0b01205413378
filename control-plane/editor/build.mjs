// Bundles src/editor.mjs and its npm dependencies (at the versions in package-lock.json)
// into one self-contained script, led by the name, version and licence text of every
// package in it. Deterministic: the same lockfile gives the same bytes.
// Run by scripts/build-editor.sh: `node build.mjs OUT`.
import { build } from 'esbuild';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2];
if (!out) {
  console.error('usage: node build.mjs OUT');
  process.exit(64);
}

const result = await build({
  absWorkingDir: here,
  entryPoints: ['src/editor.mjs'],
  bundle: true,
  format: 'iife',
  target: 'es2020',
  minify: true,
  legalComments: 'none', // replaced by the full notices below
  alias: { 'style-mod': './src/style-mod-csp.mjs' },
  metafile: true,
  write: false,
  logLevel: 'warning',
});

// Every npm package with code in the bundle, with its licence file.
const pkgs = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m) pkgs.set(m[1], join(here, 'node_modules', m[1]));
}
const notices = [...pkgs.keys()].sort().map((name) => {
  const dir = pkgs.get(name);
  const meta = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const text = readFileSync(join(dir, 'LICENSE'), 'utf8').trim();
  return `${meta.name} ${meta.version} (${meta.license})\n\n${text}`;
});
const banner = '/*! Outpost console SQL editor: CodeMirror 6, bundled by scripts/build-editor.sh from\n' +
  ' * control-plane/editor (package-lock.json). Do not edit; rebuild it.\n *\n' +
  ' * Third-party notices:\n *\n' +
  notices.join('\n\n---\n\n').replace(/\*\//g, '* /').split('\n').map((l) => (' * ' + l).trimEnd()).join('\n') +
  '\n */\n';
writeFileSync(out, banner + result.outputFiles[0].text);
