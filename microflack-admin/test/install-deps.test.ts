// The project's own install step knows every program the scripts and tests start (issue 12): its
// --check names whatever is missing, so a fresh machine fails up front, not deep inside a test.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { tempDir } from '@microflack/testkit';

const admin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const script = path.join(admin, 'install', 'install-deps.sh');
const requirements = fs
  .readFileSync(path.join(admin, 'install', 'requirements.txt'), 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '' && !l.startsWith('#'))
  .map((l) => l.trim().split(/\s+/) as [string, string, string]);

function which(program: string): string | undefined {
  for (const dir of `${process.env.PATH}:/usr/sbin:/sbin`.split(':')) {
    const p = path.join(dir, program);
    if (fs.existsSync(p)) return p;
  }
  return undefined;
}

describe('install-deps.sh', () => {
  it('lists every program the scripts start, each with its Debian package', () => {
    const programs = requirements.map(([p]) => p);
    for (const p of [
      'etcd',
      'haproxy',
      'mariadbd',
      'redis-server',
      'supervisord',
      'shellcheck',
      'chromium',
      'keepalived',
      'ip',
      '/usr/lib/galera/libgalera_smm.so',
    ])
      assert.ok(programs.includes(p), `${p} is in requirements.txt`);
    for (const [program, pkg, need] of requirements) {
      assert.match(pkg, /^[a-z0-9][a-z0-9.+-]+$/, `${program}: package name`);
      assert.ok(
        need === 'run' || need === 'cluster' || need === 'test',
        `${program}: needed by run, cluster or test`,
      );
    }
  });

  it('--check passes on this machine, where the install step has run', () => {
    const r = spawnSync(script, ['--check'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  });

  it('--check names a missing program and its package, and fails', () => {
    // A PATH holding everything but shellcheck (sbin is searched by the script itself).
    const bin = tempDir('path');
    for (const p of ['bash', 'node', 'npm', 'dirname', ...requirements.map(([p]) => p)]) {
      const found = which(p);
      if (
        p !== 'shellcheck' &&
        found &&
        !found.startsWith('/usr/sbin') &&
        !found.startsWith('/sbin')
      )
        fs.symlinkSync(found, path.join(bin, p));
    }
    const r = spawnSync(which('bash')!, [script, '--check'], {
      encoding: 'utf8',
      env: { ...process.env, PATH: bin },
    });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /missing: shellcheck \(Debian package shellcheck/);
    assert.doesNotMatch(r.stderr, /missing: (node|etcd|haproxy)\b/);
    // Only what the platform needs to run: shellcheck is a test tool.
    const run = spawnSync(which('bash')!, [script, '--for', 'run', '--check'], {
      encoding: 'utf8',
      env: { ...process.env, PATH: bin },
    });
    assert.equal(run.status, 0, run.stderr);
  });

  it('installs a missing program from its Debian package, asking apt for it', () => {
    // What a fresh machine does: shellcheck missing, so the script asks the real apt-cache for the
    // package and apt-get to install it. apt-get only records what it was asked (no network here);
    // apt-cache is the real one, whose output reaches the script in several writes, so a check that
    // stops reading early must not make the package look missing (CI was red on that).
    // A PATH holding every program of this machine's /usr/bin and Node's but shellcheck, with an
    // apt-get and a sudo of the test's own.
    const bin = tempDir('path');
    for (const dir of new Set([
      '/usr/bin',
      path.dirname(which('node')!),
      path.dirname(which('npm')!),
    ]))
      for (const p of fs.readdirSync(dir))
        if (!['shellcheck', 'apt-get', 'sudo'].includes(p) && !fs.existsSync(path.join(bin, p)))
          fs.symlinkSync(path.join(dir, p), path.join(bin, p));
    const asked = path.join(tempDir('apt'), 'asked');
    fs.writeFileSync(
      path.join(bin, 'apt-get'),
      `#!${which('bash')}\nprintf '%s\\n' "$*" >>${JSON.stringify(asked)}\n`,
      // 'wx': a new file, never written through a link to the real apt-get.
      { mode: 0o755, flag: 'wx' },
    );
    // Run as another user, the script asks sudo: here it runs the command as it is.
    fs.writeFileSync(path.join(bin, 'sudo'), `#!${which('bash')}\nexec "$@"\n`, {
      mode: 0o755,
      flag: 'wx',
    });
    assert.ok(which('apt-cache'), 'apt-cache is on this Debian machine');
    const r = spawnSync(which('bash')!, [script, '--for', 'test', '--no-build'], {
      encoding: 'utf8',
      env: { ...process.env, PATH: bin },
    });
    assert.doesNotMatch(r.stderr, /no apt package/);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /installing system packages: shellcheck\n/);
    const lines = fs.readFileSync(asked, 'utf8').trim().split('\n');
    assert.equal(lines[0], 'update -q');
    assert.equal(lines[1], 'install -y -q --no-install-recommends shellcheck');
  });
});
