#!/usr/bin/env node
// Runs every package's tests with node's test runner, against one private etcd, Redis and MariaDB
// started here for the whole run (test files needing their own, to stop or break them, start their own).
// Files named `*.serial.test.ts` (whole platforms under load, fault injection) run afterwards, one at
// a time, so that their zero-failure checks do not compete with other tests for two cores.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEtcd, startMariadb, startRedis } from '@microflack/testkit';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const filters = process.argv.slice(2);

function testFiles() {
  const files = [];
  for (const pkg of fs
    .readdirSync(root)
    .filter((d) => d.startsWith('microflack-'))
    .sort()) {
    for (const sub of ['test', 'lb/test', 'bench/test', 'reliability/test', 'cluster/test']) {
      const dir = path.join(root, pkg, sub);
      if (!fs.existsSync(dir)) continue;
      for (const f of fs.readdirSync(dir).sort()) {
        if (f.endsWith('.test.ts')) files.push(path.join(dir, f));
      }
    }
  }
  return files.filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
}

const files = testFiles();
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}
const started = Date.now();
console.log(`starting private etcd, Redis and MariaDB for ${files.length} test files...`);
const [etcd, redis, mariadb] = await Promise.all([startEtcd(), startRedis(), startMariadb()]);
console.log(
  `  etcd ${etcd.url}  redis ${redis.hostPort}  mariadb ${mariadb.rootUrl}  (${Date.now() - started} ms)`,
);

const concurrency = process.env.MF_TEST_CONCURRENCY ?? '3';
const env = {
  ...process.env,
  MF_TEST_ETCD: etcd.url,
  MF_TEST_REDIS: redis.hostPort,
  MF_TEST_MARIADB: mariadb.rootUrl,
  LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
  // Services built in test processes hold every answer to its documented schema (the response check).
  NODE_ENV: process.env.NODE_ENV ?? 'test',
};

function runNodeTest(group, parallel) {
  if (group.length === 0) return Promise.resolve(0);
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--test',
      `--test-concurrency=${parallel}`,
      // Every test is bounded: one that hangs fails after 10 min instead of holding CI, and a
      // file whose tests are all done exits even if something it started was left open.
      '--test-timeout=600000',
      '--test-force-exit',
      '--test-reporter=spec',
      ...group,
    ],
    { stdio: 'inherit', cwd: root, env },
  );
  return new Promise((resolve) => child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0))));
}

const serial = files.filter((f) => f.endsWith('.serial.test.ts'));
const parallel = files.filter((f) => !serial.includes(f));
console.log(
  `${parallel.length} files ${concurrency} at a time, then ${serial.length} one at a time`,
);
const code1 = await runNodeTest(parallel, concurrency);
const code2 = await runNodeTest(serial, 1);
const code = code1 || code2;
await Promise.all([etcd.stop(), redis.stop(), mariadb.stop()]);
for (const s of [etcd, redis, mariadb]) fs.rmSync(s.dir, { recursive: true, force: true });
console.log(
  `tests ${code === 0 ? 'passed' : 'FAILED'} in ${Math.round((Date.now() - started) / 1000)} s`,
);
process.exit(code);
