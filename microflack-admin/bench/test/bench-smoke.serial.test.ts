// A short run of mfbench (a few seconds per path) so the benchmark cannot rot; figures are not asserted.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const mfbench = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/mfbench');

describe('mfbench --smoke', () => {
  it('brings up a platform, measures every path and writes complete results', async () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mfbench-test-')), 'results.json');
    const output = await new Promise<string>((resolve, reject) => {
      execFile(
        mfbench,
        ['--smoke', '--no-install', '--out', out],
        { timeout: 8 * 60 * 1000, maxBuffer: 64 * 2 ** 20 },
        (err, stdout, stderr) =>
          err
            ? reject(new Error(`${err.message}\n${stdout.slice(-4000)}\n${stderr.slice(-4000)}`))
            : resolve(stdout),
      );
    });
    assert.match(output, /\| path \| conc\. \| req\/s/);
    const results = JSON.parse(fs.readFileSync(out, 'utf8'));
    const paths = new Set(results.load.map((r: { path: string }) => r.path));
    for (const p of [
      'GET /api/messages',
      'GET /api/messages (token)',
      'POST /api/messages',
      'GET /api/users',
      'POST /api/tokens',
      'GET /api/rooms (token)',
      'GET /api/messages history page',
      'GET /api/messages search',
    ]) {
      assert.ok(paths.has(p), `measured ${p}`);
    }
    for (const row of results.load) {
      const what = `${row.path} at ${row.concurrency}: ${JSON.stringify(row.non2xxStatuses)}`;
      assert.ok(row.requests > 0, `${row.path} at ${row.concurrency} sent requests`);
      const shedding =
        (row.path === 'POST /api/tokens' || row.path === 'GET /api/messages search') &&
        row.concurrency === 128;
      if (shedding) {
        // 128 sign-ins at once queue for bcrypt on 2 cores beyond tokens' 5 s call to users, and
        // 128 full-text searches at once overload the one messages instance (fast 503s: its
        // health checks fail and the LB sheds; issue 17 is to make search cheaper): the
        // overflow is shed as 503, never a hang or another failure.
        const shed = row.non2xxStatuses['503'] ?? 0;
        assert.deepEqual(
          Object.keys(row.non2xxStatuses).filter((c) => c !== '503'),
          [],
          what,
        );
        assert.equal(row.errors, shed, `only 503s, no timeouts: ${what}`);
      } else {
        assert.equal(row.errors, 0, what);
      }
      if (!row.path.startsWith('ceiling'))
        assert.ok(row.ceilingRps > 0, `${row.path} has a ceiling`);
    }
    // Where a write's CPU goes: the messages instance and the load generator are counted.
    const post = results.load.find((r: { path: string }) => r.path === 'POST /api/messages') as {
      cpuMsPerRequest?: Record<string, number>;
    };
    assert.ok((post.cpuMsPerRequest?.messages ?? 0) > 0, JSON.stringify(post.cpuMsPerRequest));
    assert.ok((post.cpuMsPerRequest?.bench ?? 0) > 0, JSON.stringify(post.cpuMsPerRequest));
    assert.match(output, /POST \/api\/messages at 32: CPU ms a request: messages /);
    assert.ok(results.bcrypt.hashesPerSecond > 0);
    assert.equal(results.live.revocation.samples, 3);
    assert.equal(results.live.registration.samples, 2);
    assert.deepEqual(
      results.live.fanout.map((f: { clients: number }) => f.clients),
      [1, 10],
    );
    for (const f of results.live.fanout) {
      assert.equal(f.samples, 5);
      assert.ok(
        f.first.p50Ms <= f.p50Ms,
        `the first client is no later than the last: ${f.clients}`,
      );
      assert.ok(f.cpuMsPerPost['bench (clients)'] >= 0);
      // Each post's time, and what the kernel retransmitted and dropped during it (Linux /proc).
      assert.equal(f.postsMs.length, 5);
      assert.ok(Number.isInteger(f.connectRetries) && f.connectRetries >= 0);
      assert.equal(f.postsNet.length, 5);
      for (const n of f.postsNet) {
        assert.ok(Number.isInteger(n.retransSegs) && n.retransSegs >= 0, JSON.stringify(n));
        assert.ok(Number.isInteger(n.backlogDrops) && n.backlogDrops >= 0, JSON.stringify(n));
        assert.ok(Number.isInteger(n.timeouts) && n.timeouts >= 0, JSON.stringify(n));
      }
    }
    assert.match(
      output,
      /kernel during the 5 posts: \d+ TCP segments sent again \(\d+ retransmission timeouts\), \d+ packets dropped/,
    );
    // A keypress in one Chromium page to the text on the other's, 1,000 messages on its screen,
    // each new message one node added and none replaced (no whole-list re-render).
    const browser = results.live.browser;
    assert.equal(browser.samples, 3);
    assert.ok(browser.shownBefore >= 1000, `${browser.shownBefore} messages shown`);
    assert.equal(browser.shownAfter, browser.shownBefore + 3);
    assert.deepEqual([browser.nodesAdded, browser.nodesRemoved], [3, 0]);
    assert.ok(browser.p50Ms > 0 && browser.dom.p50Ms > 0 && browser.dom.p50Ms <= browser.p50Ms);
    assert.match(output, /keypress to the other page's screen, Chromium, 1,\d{3} messages shown/);
    // Every list and search path at one size, at least the 1,000 stored messages asked for (earlier
    // steps store more), each answered (a failure throws).
    const growth = results.growth as Array<{ stored: number; path: string; samples: number }>;
    const stored = growth[0]?.stored ?? 0;
    assert.ok(stored >= 1000, `${stored} stored`);
    assert.deepEqual(
      growth.map((g) => [g.stored, g.samples]),
      growth.map(() => [stored, 20]),
    );
    const growthPaths = growth.map((g) => g.path);
    for (const expected of [
      /updated_since/,
      /newest page/,
      /before=<middle>/,
      /q=<rare word>/,
      /q=<word in 1 of/,
      /rooms/,
    ])
      assert.equal(
        growthPaths.filter((p) => expected.test(p)).length,
        1,
        `${expected}: ${growthPaths}`,
      );
    assert.ok(results.scaleOut.twoInstances.requests > 0);
    const services = Object.keys(results.memory).map((k) => k.replace(/-[0-9a-f]+$/, ''));
    for (const s of ['users', 'tokens', 'messages', 'socketio', 'ui'])
      assert.ok(services.includes(s), `RSS of ${s}`);
  });
});
