// MicroFlack on three simulated hosts (issue 15), built with `mfcluster up` in network namespaces of
// its own, under continuous mixed load through the virtual address from a client host on the
// cluster's bridge: the host holding the VIP and the Redis primary cut off for 30 s, a host crashed
// and booted again, a host holding only a minority cut off while writes are sent to it, and
// `mfcluster down --purge` leaving nothing behind. Every request is counted as in the fault tests.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { tempDir, waitFor } from '@microflack/testkit';
import {
  assertAllDelivered,
  formatReport,
  type DeliveryReport,
  type LoadReport,
} from '@microflack/testkit/load';
import { RemoteLoad } from '@microflack/testkit/remote-load';

const admin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const mfcluster = path.join(admin, 'bin', 'mfcluster');
const RATE_PER_SECOND = 30;
const CUT_SECONDS = 30;
const CRASH_SECONDS = 20;
const MINORITY_CUT_SECONDS = 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// A cluster of its own: its own state folder, namespace prefix and /24, never an operator's.
const home = tempDir('mfcluster');
const prefix = `mft${process.pid % 100000}`;
const net = `10.213.${200 + (process.pid % 50)}`;
const env = {
  ...process.env,
  MF_CLUSTER_HOME: home,
  MF_CLUSTER_PREFIX: prefix,
  MF_CLUSTER_NET: net,
  MF_CLUSTER_WAIT: '150',
};

interface HostStatus {
  host: string;
  address: string;
  link: string;
  processes: string;
  roles: string[];
  etcd: string;
  redis: string;
  galera: string;
  instances: Array<{ name: string; service: string; state: string; health: string }>;
}
interface ClusterStatus {
  url: string;
  vip: string;
  vipHolder: string;
  redisPrimary: string;
  hosts: HostStatus[];
}

/** The hosts' logs, copied out of the home that `down --purge` deletes: with MF_KEEP_TMP=1, or
 * when `always` (a check failed: the logs are the only trace of why). */
function keepLogs(always = false): void {
  if ((!always && process.env.MF_KEEP_TMP !== '1') || !fs.existsSync(home)) return;
  const kept = fs.mkdtempSync(path.join(os.tmpdir(), 'mfcluster-logs-'));
  for (const h of ['h1', 'h2', 'h3']) {
    fs.cpSync(path.join(home, h, 'logs'), path.join(kept, h), { recursive: true });
  }
  console.log(`cluster logs kept in ${kept}`);
}

/** Runs mfcluster; resolves with its output and how long it took, rejects when it fails. */
function run(args: string[], timeoutMs = 300000): Promise<{ out: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    execFile(
      mfcluster,
      args,
      { env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err)
          reject(new Error(`mfcluster ${args.join(' ')}: ${err.message}\n${stdout}\n${stderr}`));
        else resolve({ out: stdout, ms: Date.now() - t0 });
      },
    );
  });
}

async function status(): Promise<ClusterStatus> {
  return JSON.parse((await run(['status', '--json'], 60000)).out) as ClusterStatus;
}

/** A command inside a host's namespace (what that host sees), bounded. */
function onHost(host: string, cmd: string[], timeoutMs = 15000) {
  return spawnSync('ip', ['netns', 'exec', `${prefix}-${host}`, ...cmd], {
    encoding: 'utf8',
    timeout: timeoutMs,
  });
}

/** SQL as root on one Galera node's socket (works on a node cut off from the others). */
function sql(host: string, query: string) {
  const secrets = fs.readFileSync(path.join(home, 'secrets.env'), 'utf8');
  const pw = /^MF_DB_ROOT_PASSWORD=(.*)$/m.exec(secrets)![1]!;
  return spawnSync(
    'mariadb',
    [
      '--no-defaults',
      '--connect-timeout=3',
      `--socket=${path.join(home, host, 'run', 'mariadb.sock')}`,
      '-uroot',
      `--password=${pw}`,
      '-N',
      '-B',
      '-e',
      query,
    ],
    { encoding: 'utf8', timeout: 15000 },
  );
}

/**
 * When attempts failed, as windows relative to the fault (in seconds): failed attempts less than
 * 3 s apart are one window (a cut makes one at the cut and may make one at the heal).
 */
function failureWindows(r: LoadReport, faultAt: number): Array<{ from: number; to: number }> {
  const times = [...r.failedAt].sort((a, b) => a - b);
  const windows: Array<{ from: number; to: number }> = [];
  for (const t of times) {
    const last = windows[windows.length - 1];
    const s = (t - faultAt) / 1000;
    if (last && s - last.to < 3) last.to = s;
    else windows.push({ from: s, to: s });
  }
  return windows;
}

const describeWindows = (ws: Array<{ from: number; to: number }>) =>
  ws.length === 0
    ? 'none (no attempt failed)'
    : ws
        .map(
          (w) =>
            `${(w.to - w.from).toFixed(1)} s (+${w.from.toFixed(1)} s to +${w.to.toFixed(1)} s)`,
        )
        .join(', ');

function assertShortWindows(r: LoadReport, faultAt: number): void {
  for (const w of failureWindows(r, faultAt)) {
    assert.ok(
      w.to - w.from < 5,
      `requests failed for ${(w.to - w.from).toFixed(1)} s from +${w.from.toFixed(1)} s`,
    );
  }
}

describe('MicroFlack on three hosts', { timeout: 20 * 60 * 1000 }, () => {
  let load: RemoteLoad | undefined;
  let url = '';
  const figures: string[] = [];
  let down = false;

  before(async () => {
    // A cluster that does not come up keeps its hosts' logs (down --purge deletes them after).
    const up = await run(['up', '--hosts', '3', '--no-install'], 600000).catch((err: Error) => {
      keepLogs(true);
      throw err;
    });
    const lines = up.out.trim().split('\n');
    url = lines[lines.length - 1]!;
    assert.match(url, new RegExp(`^http://${net.replace(/\./g, '\\.')}\\.100:8080/$`));
    url = url.replace(/\/$/, '');
    figures.push(`mfcluster up from nothing: ${(up.ms / 1000).toFixed(0)} s`);
    // Nothing of the cluster is reachable from this namespace: the load runs on the client host.
    const root = spawnSync('curl', ['-s', '--max-time', '2', url], { encoding: 'utf8' });
    assert.notEqual(root.status, 0, 'the cluster must not be reachable from the root namespace');
  });

  after(async () => {
    console.log(`\ncluster figures:\n${figures.join('\n')}`);
    await load?.close();
    keepLogs();
    if (!down) await run(['down', '--purge'], 300000).catch((e: Error) => console.error(e.message));
  });

  /** A fresh load through the VIP from hc: started, then `fault`, then stopped and checked. */
  async function underLoad(
    name: string,
    fault: () => Promise<number>,
  ): Promise<{ report: LoadReport; delivery: DeliveryReport; faultAt: number }> {
    await load?.close();
    load = new RemoteLoad(url, ['ip', 'netns', 'exec', `${prefix}-hc`]);
    await load.logins(`${name.replace(/\W/g, '').slice(0, 8)}${Date.now() % 1e5}u`, 4);
    await load.start({ ratePerSecond: RATE_PER_SECOND, sockets: 3 });
    await sleep(5000);
    const faultAt = await fault();
    await sleep(5000);
    const report = await load.stop();
    const delivery = await load.checkDelivery(20000);
    const text =
      `${formatReport(name, report, delivery)}\n` +
      `  failure windows after the fault: ${describeWindows(failureWindows(report, faultAt))}`;
    console.log(text);
    figures.push(text);
    assert.deepEqual(report.wrongBackend, [], 'answers from the wrong backend');
    return { report, delivery, faultAt };
  }

  function assertNothingLost(d: DeliveryReport): void {
    assert.ok(d.acknowledged > 100, `only ${d.acknowledged} messages were acknowledged`);
    assert.deepEqual(d.lost, [], 'acknowledged messages missing from the database');
    if (d.lost.length > 0 || d.undelivered.some((u) => u.length > 0)) keepLogs(true);
    assertAllDelivered(d);
  }

  /** Every Galera node has the same messages: same count, same checksum. */
  function assertNodesAgree(): void {
    const seen = ['h1', 'h2', 'h3'].map((h) => {
      const r = sql(
        h,
        'SELECT COUNT(*), MAX(id) FROM messages.messages; CHECKSUM TABLE messages.messages',
      );
      assert.equal(r.status, 0, `${h}: ${r.stderr}`);
      return r.stdout.replace(/messages\.messages\s+/, '').trim();
    });
    assert.equal(new Set(seen).size, 1, `the nodes differ: ${JSON.stringify(seen)}`);
  }

  it('the host holding the VIP, the Redis primary and an etcd member is cut off for 30 s', async () => {
    let s = await status();
    assert.equal(s.redisPrimary, 'h1');
    if (s.vipHolder !== 'h1') {
      // Put the address where the Redis primary is: keepalived restarted on the holder gives it up.
      const ctl = spawnSync('supervisorctl', [
        '-c',
        path.join(home, s.vipHolder, 'supervisor', 'supervisord.conf'),
        'restart',
        'keepalived',
      ]);
      assert.equal(ctl.status, 0);
      await waitFor('the VIP on h1', async () => (await status()).vipHolder === 'h1', 30000, 500);
    }
    let during: ClusterStatus | undefined;
    let rejoinMs = 0;
    const { report, delivery, faultAt } = await underLoad('h1 cut off 30 s', async () => {
      const at = Date.now();
      await run(['cut', 'h1']);
      await sleep((CUT_SECONDS - 5) * 1000);
      during = await status();
      await sleep(Math.max(0, at + CUT_SECONDS * 1000 - Date.now()));
      const heal = await run(['heal', 'h1']);
      rejoinMs = heal.ms;
      return at;
    });
    const byHost = Object.fromEntries(during!.hosts.map((h) => [h.host, h]));
    figures.push(
      `  during the cut: VIP on ${during!.vipHolder}, Redis primary ${during!.redisPrimary}, ` +
        `etcd ${during!.hosts.map((h) => `${h.host}=${h.etcd}`).join(' ')}, ` +
        `Galera ${during!.hosts.map((h) => `${h.host}=${h.galera}`).join(' / ')}; ` +
        `h1 rejoined ${(rejoinMs / 1000).toFixed(1)} s after heal`,
    );
    console.log(figures[figures.length - 1]);
    assert.equal(during!.vipHolder, 'h2', 'the VIP moved');
    assert.notEqual(during!.redisPrimary, 'h1', 'Redis failed over');
    assert.ok(['h2', 'h3'].includes(during!.redisPrimary));
    for (const h of ['h2', 'h3']) {
      assert.match(byHost[h]!.etcd, /^(leader|follower)$/, `${h}'s etcd member has quorum`);
      assert.equal(byHost[h]!.galera, 'Primary Synced 2', `${h}'s Galera node keeps quorum`);
    }
    assert.match(byHost.h1!.galera, /^non-Primary/, 'the cut node lost quorum');

    assertNothingLost(delivery);
    assertShortWindows(report, faultAt);
    s = await status();
    for (const h of s.hosts) {
      assert.equal(h.galera, 'Primary Synced 3', `${h.host} rejoined Galera`);
      assert.match(h.etcd, /^(leader|follower)$/);
      assert.match(h.redis, /^(master|slave)$/);
      for (const i of h.instances) assert.equal(i.health, 'UP', `${i.name} routed again`);
    }
    assert.equal(s.hosts.filter((h) => h.redis === 'master').length, 1, 'one Redis primary');
    assertNodesAgree();
  });

  it('a host is crashed (kill -9 of everything) and booted again', async () => {
    const victim = (await status()).vipHolder;
    let rejoinMs = 0;
    const { report, delivery, faultAt } = await underLoad(
      `${victim} crashed ${CRASH_SECONDS} s`,
      async () => {
        const at = Date.now();
        await run(['crash', victim]);
        await sleep(CRASH_SECONDS * 1000);
        const boot = await run(['boot', victim]);
        rejoinMs = boot.ms;
        return at;
      },
    );
    figures.push(`  ${victim} rejoined ${(rejoinMs / 1000).toFixed(1)} s after boot`);
    console.log(figures[figures.length - 1]);
    assertNothingLost(delivery);
    assertShortWindows(report, faultAt);
    const s = await status();
    for (const h of s.hosts) {
      assert.equal(h.galera, 'Primary Synced 3', `${h.host} rejoined Galera`);
      for (const i of h.instances) assert.equal(i.health, 'UP', `${i.name} routed again`);
    }
    assertNodesAgree();
  });

  it('a host holding only a minority is cut off: writes sent to it are refused, nothing acknowledged is lost', async () => {
    const s = await status();
    const minority =
      ['h3', 'h2', 'h1'].find((h) => h !== s.vipHolder && h !== s.redisPrimary) ?? 'h3';
    const home3 = path.join(home, minority, 'supervisor', 'conf.d');
    const conf = fs.readdirSync(home3).find((f) => f.startsWith('svc-messages-'))!;
    const port = /,PORT="(\d+)"/.exec(fs.readFileSync(path.join(home3, conf), 'utf8'))![1]!;
    const address = s.hosts.find((h) => h.host === minority)!.address;
    const token = (await load!.logins(`minor${Date.now() % 1e5}`, 1))[0]!.token;
    const refused: string[] = [];
    let directSql = '';
    let healMs = 0;
    const { report, delivery, faultAt } = await underLoad(
      `${minority} (minority) cut off ${MINORITY_CUT_SECONDS} s`,
      async () => {
        const at = Date.now();
        await run(['cut', minority]);
        await sleep(6000);
        // Writes on the cut-off host: through its own messages instance, and straight to its node.
        while (Date.now() - at < MINORITY_CUT_SECONDS * 1000) {
          const r = onHost(minority, [
            'curl',
            '-s',
            '--max-time',
            '8',
            '-o',
            '/dev/null',
            '-w',
            '%{http_code}',
            '-X',
            'POST',
            '-H',
            'content-type: application/json',
            '-H',
            `authorization: Bearer ${token}`,
            '-d',
            '{"source":"written on the minority side"}',
            `http://${address}:${port}/api/messages`,
          ]);
          refused.push(r.stdout.trim() || `curl ${r.status}`);
          await sleep(1000);
        }
        const direct = sql(
          minority,
          "INSERT INTO messages.messages (source, html, user_id, created_at, updated_at) VALUES ('direct', 'direct', 1, 0, 0)",
        );
        directSql = direct.status === 0 ? 'accepted' : direct.stderr.trim();
        healMs = (await run(['heal', minority])).ms;
        return at;
      },
    );
    const text =
      `  writes sent to ${minority} while cut off: ${refused.length}, answers ${JSON.stringify(refused)}; ` +
      `an INSERT on its own node: ${directSql.split('\n').pop()}; ` +
      `${minority} rejoined ${(healMs / 1000).toFixed(1)} s after heal`;
    figures.push(text);
    console.log(text);
    assert.ok(refused.length >= 5);
    for (const code of refused)
      assert.equal(code, '503', 'a write on the minority side was not refused');
    assert.notEqual(directSql, 'accepted', 'the node without quorum took a write');
    assertNothingLost(delivery);
    assertShortWindows(report, faultAt);
    // No message twice, none on the minority side, every node the same after the heal.
    const dup = sql('h1', 'SELECT COUNT(*) - COUNT(DISTINCT id) FROM messages.messages');
    assert.equal(dup.stdout.trim(), '0');
    const minorityRows = sql(
      'h1',
      "SELECT COUNT(*) FROM messages.messages WHERE source IN ('written on the minority side', 'direct')",
    );
    assert.equal(minorityRows.stdout.trim(), '0', 'a write refused on the minority side exists');
    assertNodesAgree();
  });

  it('mfcluster down --purge leaves no namespace, process, link or file behind', async () => {
    await load?.close();
    load = undefined;
    keepLogs();
    const t = await run(['down', '--purge'], 300000);
    down = true;
    figures.push(`mfcluster down --purge: ${(t.ms / 1000).toFixed(0)} s`);
    const namespaces = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    assert.doesNotMatch(namespaces, new RegExp(`^${prefix}-`, 'm'));
    const links = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout;
    assert.doesNotMatch(links, new RegExp(`${prefix}-`));
    const routes = spawnSync('ip', ['route', 'show', 'type', 'blackhole'], {
      encoding: 'utf8',
    }).stdout;
    assert.doesNotMatch(routes, new RegExp(net.replace(/\./g, '\\.')));
    assert.equal(fs.existsSync(home), false, `${home} is deleted`);
    const left: string[] = [];
    for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      try {
        const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        if (cmd.includes(home) || cmd.includes(`${prefix}-`))
          left.push(`${pid} ${cmd.replace(/\0/g, ' ')}`);
      } catch {
        // gone meanwhile
      }
    }
    assert.deepEqual(left, [], 'processes of the cluster are left');
  });
});
