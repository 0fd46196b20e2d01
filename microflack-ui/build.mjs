// Builds the browser client: typechecks client/, then bundles it with esbuild into dist/public
// under content-hashed names, and writes manifest.json so the page can name them.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.join(here, 'dist/public');
const require = createRequire(import.meta.url);

// esbuild only strips types; the client gets the same strict checking as the services.
const tsc = path.join(path.dirname(require.resolve('typescript/package.json')), 'bin/tsc');
const check = spawnSync(process.execPath, [tsc, '-p', path.join(here, 'client/tsconfig.json')], {
  stdio: 'inherit',
});
if (check.status !== 0) process.exit(check.status ?? 1);

fs.rmSync(outdir, { recursive: true, force: true });
const result = await esbuild.build({
  entryPoints: {
    app: path.join(here, 'client/main.ts'),
    style: path.join(here, 'client/style.css'),
  },
  outdir,
  entryNames: '[name]-[hash]',
  bundle: true,
  minify: true,
  sourcemap: 'linked',
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  metafile: true,
  logLevel: 'warning',
});

const manifest = {};
for (const [file, output] of Object.entries(result.metafile.outputs)) {
  if (!output.entryPoint) continue;
  const key = output.entryPoint.endsWith('.css') ? 'style' : 'script';
  manifest[key] = path.basename(file);
}
if (!manifest.script || !manifest.style)
  throw new Error('client bundle is missing its script or style');
fs.writeFileSync(path.join(outdir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
console.log(`client built: ${manifest.script}, ${manifest.style}`);
