// Chaos (issue 8, item 1): a platform brought up by mfup on a temporary MICROFLACK_HOME, three
// instances of every service under supervisord, and mfchaos killing (kill -9) a random instance
// every 10 s for 2 minutes under continuous mixed load. supervisord restarts every victim.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { run, type Result } from '../../test/support/run-script.js';
import { freePort, tempDir, waitFor } from '@microflack/testkit';
import {
  assertAllDelivered,
  createLogin,
  formatReport,
  LoadGenerator,
  type DeliveryReport,
  type LoadReport,
  type Login,
} from '@microflack/testkit/load';
import { serverStats } from '@microflack/testkit/stats';

const SERVICES = ['users', 'tokens', 'messages', 'socketio', 'ui'];
// The figures; MF_CHAOS_SECONDS shortens the run while working on it.
const CHAOS_SECONDS = Number(process.env.MF_CHAOS_SECONDS ?? 120);
const INTERVAL_SECONDS = 10;
const RATE_PER_SECOND = 40;

async function ok(script: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs?: number) {
  const r = await run(script, args, env, timeoutMs);
  assert.equal(r.code, 0, `${script} ${args.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

function statsPassword(home: string): string {
  const secrets = fs.readFileSync(path.join(home, 'secrets.env'), 'utf8');
  return /^LB_STATS_PASSWORD=(.*)$/m.exec(secrets)?.[1] ?? '';
}

describe('chaos: kill -9 a random instance every 10 s under load', () => {
  let home: string;
  let env: NodeJS.ProcessEnv;
  let lb: string;
  let logins: Login[];

  before(async () => {
    home = path.join(tempDir('chaos'), 'home');
    const port = await freePort();
    env = { MICROFLACK_HOME: home, MICROFLACK_PORT: String(port), MICROFLACK_IP: '127.0.0.1' };
    lb = `http://127.0.0.1:${port}`;
    // --no-install: the test command has installed and built the checkout already.
    await ok('mfup', ['--no-install'], env, 240000);
    await Promise.all(SERVICES.map((svc) => ok('mfrun', [svc, '--count', '2'], env, 120000)));
    // Settled: all 15 instances UP, and stay so for a few seconds (no reload in the middle).
    const password = statsPassword(home);
    let stable = 0;
    await waitFor(
      'all 15 instances UP',
      async () => {
        // The five services' own backends (messages instances also serve svc_rooms).
        const servers = (await serverStats(lb, password)).filter((s) =>
          SERVICES.includes(s.backend.replace(/^svc_/, '')),
        );
        stable = servers.length === 15 && servers.every((s) => s.status === 'UP') ? stable + 1 : 0;
        return stable >= 6;
      },
      60000,
      500,
    );
    logins = [];
    for (let i = 0; i < 4; i++) logins.push(await createLogin(lb, `chaos${i}${Date.now() % 1e6}`));
  });

  after(async () => {
    // Whatever failed above, leave nothing running.
    if (fs.existsSync(home)) await run('mfdown', ['--purge'], env, 180000);
    fs.rmSync(path.dirname(home), { recursive: true, force: true });
  });

  it(
    '≤ 0.1% failed requests, none after retries for GETs and posts, no message lost',
    { timeout: 300000 },
    async () => {
      const load = new LoadGenerator({ url: lb, logins, ratePerSecond: RATE_PER_SECOND });
      await load.start();
      let chaos: Result;
      let report: LoadReport;
      let delivery: DeliveryReport;
      try {
        chaos = await run(
          'mfchaos',
          ['--duration', String(CHAOS_SECONDS), '--interval', String(INTERVAL_SECONDS)],
          env,
          (CHAOS_SECONDS + 60) * 1000,
        );
        // Time for the last victim to come back before the load stops.
        await new Promise((r) => setTimeout(r, 5000));
        report = await load.stop();
        delivery = await load.checkDelivery(20000);
      } finally {
        // A failure above must not leave the load running (it would keep the test process alive).
        load.abort();
      }
      console.log(chaos.stdout.trimEnd());
      console.log(formatReport(`chaos ${CHAOS_SECONDS} s`, report, delivery));
      assert.equal(chaos.code, 0, chaos.stderr);

      const kills = chaos.stdout.split('\n').filter((l) => / killed /.test(l));
      assert.equal(kills.length, Math.ceil(CHAOS_SECONDS / INTERVAL_SECONDS), chaos.stdout);
      const rawShare = report.total.rawFailures / report.total.sent;
      assert.ok(
        rawShare <= 0.001,
        `${(rawShare * 100).toFixed(3)}% failed\n${report.samples.join('\n')}`,
      );
      assert.equal(report.kinds.getMessages.failedAfterRetries, 0, report.samples.join('\n'));
      // Posts carry an Idempotency-Key, so one cut off by a kill is sent again, never lost.
      assert.equal(report.kinds.postMessage.failedAfterRetries, 0, report.samples.join('\n'));
      assert.deepEqual(delivery.lost, []);
      assertAllDelivered(delivery);

      // Every victim was restarted by supervisord and is routed again.
      const password = statsPassword(home);
      await waitFor(
        'all 15 instances UP again',
        async () => {
          const servers = (await serverStats(lb, password)).filter((s) =>
            SERVICES.includes(s.backend.replace(/^svc_/, '')),
          );
          return servers.length === 15 && servers.every((s) => s.status === 'UP');
        },
        30000,
        500,
      );
    },
  );
});
