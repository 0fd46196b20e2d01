// The bundled client's files, named by content hash at build time (build.mjs writes the manifest).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const DEFAULT_PUBLIC_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../dist/public',
);

export interface Assets {
  /** Where the hashed files are. */
  dir: string;
  /** File names (no directory) of the bundled script and stylesheet. */
  script: string;
  style: string;
}

export function loadAssets(dir = DEFAULT_PUBLIC_DIR): Assets {
  const file = path.join(dir, 'manifest.json');
  if (!fs.existsSync(file)) {
    throw new Error(`${file} missing: build the client first (npm run build -w @microflack/ui)`);
  }
  const manifest = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Assets>;
  if (typeof manifest.script !== 'string' || typeof manifest.style !== 'string') {
    throw new Error(`${file} is not a client manifest`);
  }
  return { dir, script: manifest.script, style: manifest.style };
}
