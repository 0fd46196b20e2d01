// Renders the Kubernetes overlays (microflack-admin/kubernetes) with `kubectl kustomize`, as an
// operator would, from a private copy holding a generated secrets.env (the real one is never in
// the repository) and, optionally, an overlay on top that changes the image tags.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './processes.js';

export const KUBERNETES_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../microflack-admin/kubernetes',
);

/** The keys of the Secret microflack-secrets, from secrets.env.example. */
export function secretKeys(): string[] {
  return fs
    .readFileSync(path.join(KUBERNETES_DIR, 'secrets.env.example'), 'utf8')
    .split('\n')
    .filter((l) => /^[A-Z_][A-Z0-9_]*=/.test(l))
    .map((l) => l.slice(0, l.indexOf('=')));
}

export interface Rendered {
  /** The multi-document YAML `kubectl kustomize` printed. */
  yaml: string;
  /** The secrets it was rendered with (random hex, as secrets.env.example asks). */
  secrets: Record<string, string>;
}

/** Renders overlays/<overlay>; `imageTag` re-tags every MicroFlack image (an overlay on top). */
export function renderOverlay(overlay: string, opts: { imageTag?: string } = {}): Rendered {
  const dir = tempDir('kustomize');
  fs.cpSync(KUBERNETES_DIR, dir, { recursive: true });
  const secrets = Object.fromEntries(secretKeys().map((k) => [k, randomBytes(20).toString('hex')]));
  fs.writeFileSync(
    path.join(dir, 'overlays', overlay, 'secrets.env'),
    Object.entries(secrets)
      .map(([k, v]) => `${k}=${v}\n`)
      .join(''),
    { mode: 0o600 },
  );
  let target = path.join(dir, 'overlays', overlay);
  if (opts.imageTag) {
    // The images the overlay names, re-tagged: what an operator's upgrade does (a new tag).
    const first = spawnSync('kubectl', ['kustomize', target], { encoding: 'utf8' });
    if (first.status !== 0) throw new Error(`kubectl kustomize failed: ${first.stderr}`);
    const names = [...new Set([...first.stdout.matchAll(/image: (\S+):\S+/g)].map((m) => m[1]!))];
    target = path.join(dir, 'retagged');
    fs.mkdirSync(target);
    fs.writeFileSync(
      path.join(target, 'kustomization.yaml'),
      [
        'apiVersion: kustomize.config.k8s.io/v1beta1',
        'kind: Kustomization',
        `resources: [../overlays/${overlay}]`,
        'images:',
        ...names.map((n) => `  - { name: ${n}, newTag: ${opts.imageTag} }`),
        '',
      ].join('\n'),
    );
  }
  const r = spawnSync('kubectl', ['kustomize', target], {
    encoding: 'utf8',
    maxBuffer: 16 * 1024 * 1024,
    timeout: 60000,
  });
  if (r.status !== 0) throw new Error(`kubectl kustomize ${overlay} failed: ${r.stderr}`);
  return { yaml: r.stdout, secrets };
}
