// The gateway client against real etcd processes (/usr/bin/etcd), each started here in its own
// temp data dir on free ports in 23000-23999; a TCP proxy in front of one cuts connections at will.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  EtcdClient,
  isRecoverableError,
  type KeyValue,
  type Watcher,
} from '../src/etcd-gateway.js';
import { startTcpProxy, type TcpProxy } from '@microflack/testkit';

const ETCD_BIN = '/usr/bin/etcd';
/** Every test is bounded; the slowest takes about 10 s. */
const T = { timeout: 30000 };
const usedPorts = new Set<number>();

async function isFree(port: number): Promise<boolean> {
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

async function freePort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 23000 + Math.floor(Math.random() * 1000);
    if (usedPorts.has(port)) continue;
    usedPorts.add(port);
    if (await isFree(port)) return port;
  }
  throw new Error('no free port in 23000-23999');
}

/** A POST to the gateway, bypassing the client under test. */
function raw<T = Record<string, unknown>>(url: string, p: string, body: object): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}${p}`,
      { method: 'POST', agent: false, timeout: 5000 },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          try {
            const parsed = JSON.parse(text.split('\n', 1)[0] as string) as { result?: T };
            if ((res.statusCode ?? 0) >= 400) reject(new Error(text));
            else resolve(parsed.result ?? (parsed as T));
          } catch (err) {
            reject(err as Error);
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${p}: timeout`)));
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const rawGet = async (url: string, key: string) =>
  (
    await raw<{ kvs?: { value?: string; lease?: string }[] }>(url, '/v3/kv/range', {
      key: b64(key),
    })
  ).kvs?.[0];
const rawPut = (url: string, key: string, value: string) =>
  raw(url, '/v3/kv/put', { key: b64(key), value: b64(value) });

async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms: number) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(25);
  }
}

interface Member {
  name: string;
  client: number;
  peer: number;
  url: string;
  dir: string;
  proc?: ChildProcess;
}

async function newMember(name: string): Promise<Member> {
  const client = await freePort();
  const peer = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `etcdgw-${name}-`));
  return { name, client, peer, url: `http://127.0.0.1:${client}`, dir };
}

/** Starts (or restarts, on its data dir) one member of `cluster` and waits until it has a leader. */
async function startMember(m: Member, cluster: Member[], waitReady = true): Promise<void> {
  const peers = cluster.map((c) => `${c.name}=http://127.0.0.1:${c.peer}`).join(',');
  m.proc = spawn(
    ETCD_BIN,
    [
      `--name=${m.name}`,
      `--data-dir=${m.dir}`,
      `--listen-client-urls=${m.url}`,
      `--advertise-client-urls=${m.url}`,
      `--listen-peer-urls=http://127.0.0.1:${m.peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${m.peer}`,
      `--initial-cluster=${peers}`,
      `--initial-cluster-token=etcdgw-${cluster[0]?.client}`,
      '--initial-cluster-state=new',
      '--logger=zap',
      '--log-level=error',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  m.proc.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  if (waitReady) await waitReadyMember(m, () => stderr);
}

async function waitReadyMember(m: Member, stderr: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + 20000;
  for (;;) {
    const status = await raw<{ leader?: string }>(m.url, '/v3/maintenance/status', {}).catch(
      () => undefined,
    );
    if (status?.leader && status.leader !== '0') return;
    if (m.proc?.exitCode !== null || Date.now() > deadline)
      throw new Error(`etcd ${m.name} did not start: ${stderr()}`);
    await sleep(100);
  }
}

async function stopMember(m: Member): Promise<void> {
  const proc = m.proc;
  m.proc = undefined;
  if (!proc || proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return;
  process.kill(proc.pid, 'SIGCONT');
  process.kill(proc.pid, 'SIGTERM');
  const killer = setTimeout(
    () => proc.pid !== undefined && process.kill(proc.pid, 'SIGKILL'),
    5000,
  );
  await once(proc, 'exit');
  clearTimeout(killer);
}

/** SIGSTOP/SIGCONT, returning once the process is in the state asked for (signals are async). */
async function signal(m: Member, sig: 'SIGSTOP' | 'SIGCONT'): Promise<void> {
  const pid = m.proc?.pid;
  assert.ok(pid);
  process.kill(pid, sig);
  const stopped = () => /^\S+ \(.*\) T/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  await waitFor(`${m.name} ${sig}`, () => stopped() === (sig === 'SIGSTOP'), 2000);
}

/** Everything a watcher emits, in order. */
function record(w: Watcher) {
  const log = {
    events: [] as string[],
    connected: 0,
    disconnected: 0,
    errors: [] as Error[],
  };
  const ev = (type: string) => (kv: KeyValue) =>
    log.events.push(`${type} ${kv.key.toString()}${type === 'put' ? `=${kv.value}` : ''}`);
  w.on('put', ev('put'));
  w.on('delete', ev('delete'));
  w.on('connected', () => log.connected++);
  w.on('disconnected', () => log.disconnected++);
  w.on('error', (err: Error) => log.errors.push(err));
  return log;
}

describe('etcd gateway client, one member', { timeout: 120000 }, () => {
  let member: Member;
  let proxy: TcpProxy;
  let etcd: EtcdClient;
  // Through the proxy, for outages that leave etcd itself up.
  let viaProxy: EtcdClient;

  before(async () => {
    member = await newMember('solo');
    await startMember(member, [member]);
    proxy = await startTcpProxy(member.client);
    etcd = new EtcdClient({ hosts: [member.url], callTimeoutMs: 1500 });
    viaProxy = new EtcdClient({
      hosts: [proxy.url],
      callTimeoutMs: 1000,
      watchBackoff: { initialMs: 50, maxMs: 300 },
    });
  });

  after(async () => {
    etcd?.close();
    viaProxy?.close();
    await proxy?.close();
    if (member) {
      await stopMember(member);
      fs.rmSync(member.dir, { recursive: true, force: true });
    }
  });

  it(
    'reads, writes and deletes keys; a namespace prefixes keys and strips the prefix off',
    T,
    async () => {
      await etcd.put('/kv/a').value('1');
      await etcd.put('/kv/b').value(Buffer.from('two'));
      await etcd.put('/kv/c/d').value('3');
      await etcd.put('/kw').value('outside');
      assert.equal(await etcd.get('/kv/a').string(), '1');
      assert.equal(await etcd.get('/kv/missing').string(), null);
      assert.deepEqual(await etcd.getAll().prefix('/kv/').strings(), {
        '/kv/a': '1',
        '/kv/b': 'two',
        '/kv/c/d': '3',
      });
      const ns = etcd.namespace('/kv/');
      assert.equal(ns.prefix.toString(), '/kv/');
      assert.deepEqual((await ns.getAll().prefix('').keys()).sort(), ['a', 'b', 'c/d']);
      assert.equal(await ns.namespace('c/').get('d').string(), '3');
      await ns.put('e').value('5');
      assert.equal(await etcd.get('/kv/e').string(), '5');
      await ns.delete().key('a');
      await ns.delete().prefix('c/');
      assert.deepEqual(await ns.getAll().prefix('').strings(), { b: 'two', e: '5' });
      await ns.delete().all();
      assert.deepEqual(await etcd.getAll().prefix('/kv/').keys(), []);
      assert.equal(
        await etcd.get('/kw').string(),
        'outside',
        'a namespace stays within its prefix',
      );
      const status = (await etcd.maintenance.status()) as { version?: string };
      assert.match(status.version ?? '', /^3\./);
    },
  );

  it(
    'a watch delivers every put and delete in order, keys relative to its namespace',
    T,
    async () => {
      const ns = etcd.namespace('/order/');
      const w = await ns.watch().prefix('w/').create();
      const log = record(w);
      const keyWatch = await etcd.watch().key('/order/w/2').create();
      const keyLog = record(keyWatch);
      // create() resolved: etcd has the watch, so the very next write is seen.
      for (let i = 0; i < 5; i++) await ns.put(`w/${i}`).value(`v${i}`);
      await ns.put('x/outside').value('no');
      await ns.delete().key('w/1');
      await ns.put('w/2').value('again');
      await ns.delete().prefix('w/'); // one revision, several deletes
      const expected = [
        ...[0, 1, 2, 3, 4].map((i) => `put w/${i}=v${i}`),
        'delete w/1',
        'put w/2=again',
        ...['w/0', 'w/2', 'w/3', 'w/4'].map((k) => `delete ${k}`),
      ];
      await waitFor('all events', () => log.events.length >= expected.length, 3000);
      assert.deepEqual(log.events, expected);
      // Another stream: its events come in their own time.
      await waitFor('the key watch', () => keyLog.events.length >= 3, 3000);
      assert.deepEqual(keyLog.events, [
        'put /order/w/2=v2',
        'put /order/w/2=again',
        'delete /order/w/2',
      ]);
      assert.equal(log.connected, 0, "'connected' came before create() resolved");
      await w.cancel();
      await keyWatch.cancel();
    },
  );

  it(
    'a broken watch says disconnected once, resumes after its last revision and loses nothing',
    T,
    async () => {
      const w = await viaProxy.watch().prefix('/outage/').create();
      const log = record(w);
      await viaProxy.put('/outage/before').value('1');
      await waitFor('first event', () => log.events.length === 1, 2000);
      try {
        proxy.cut();
        await waitFor('disconnected', () => log.disconnected === 1, 2000);
        // Written while the watch is down (several reconnects fail meanwhile).
        for (let i = 0; i < 5; i++) await rawPut(member.url, `/outage/during-${i}`, `${i}`);
        await raw(member.url, '/v3/kv/deleterange', { key: b64('/outage/before') });
        await sleep(800);
        assert.equal(log.disconnected, 1, "'disconnected' once per outage");
        assert.equal(log.connected, 0);
      } finally {
        proxy.restore();
      }
      await waitFor('reconnected', () => log.connected === 1, 3000);
      await waitFor('events of the outage', () => log.events.length === 7, 2000);
      assert.deepEqual(log.events, [
        'put /outage/before=1',
        ...[0, 1, 2, 3, 4].map((i) => `put /outage/during-${i}=${i}`),
        'delete /outage/before',
      ]);
      await viaProxy.put('/outage/after').value('x');
      await waitFor('event after', () => log.events.at(-1) === 'put /outage/after=x', 2000);
      assert.equal(log.errors.length, 0);
      await w.cancel();
    },
  );

  it(
    'a watch whose resume revision was compacted watches from now on and says connected',
    T,
    async () => {
      const w = await viaProxy.watch().prefix('/compact/').create();
      const log = record(w);
      try {
        proxy.cut();
        await waitFor('disconnected', () => log.disconnected === 1, 2000);
        for (let i = 0; i < 3; i++) await rawPut(member.url, `/compact/gone-${i}`, 'x');
        const { header } = await raw<{ header: { revision: string } }>(member.url, '/v3/kv/range', {
          key: b64('/compact/'),
        });
        await raw(member.url, '/v3/kv/compaction', { revision: header.revision, physical: true });
      } finally {
        proxy.restore();
      }
      // Once when the resumed watch is created, once more when it is re-created from now on.
      await waitFor('connected after the compaction', () => log.connected >= 2, 4000);
      await rawPut(member.url, '/compact/after', 'y');
      await waitFor('event after', () => log.events.includes('put /compact/after=y'), 2000);
      assert.equal(log.disconnected, 1, 'the second connected is the re-creation, not an outage');
      assert.ok(!log.events.some((e) => e.includes('gone')), 'compacted events are not replayed');
      assert.equal(log.errors.length, 0);
      await w.cancel();
    },
  );

  it('cancel() ends a watch for good', T, async () => {
    const w = await viaProxy.watch().prefix('/cancel/').create();
    const log = record(w);
    await w.cancel();
    proxy.cut();
    proxy.restore();
    await etcd.put('/cancel/a').value('1');
    await sleep(500);
    assert.deepEqual(log, { events: [], connected: 0, disconnected: 0, errors: [] });
    // Cancelled before etcd confirmed it: never connects.
    const early = viaProxy.watch().key('/cancel/b').watcher();
    const earlyLog = record(early);
    await early.cancel();
    await etcd.put('/cancel/b').value('1');
    await sleep(300);
    assert.deepEqual(earlyLog, { events: [], connected: 0, disconnected: 0, errors: [] });
  });

  it(
    'leases: granted lazily and once, kept alive past their TTL, revoke() deletes their keys',
    T,
    async () => {
      const leases = async () =>
        new Set(
          (
            (await raw<{ leases?: { ID: string }[] }>(member.url, '/v3/lease/leases', {})).leases ??
            []
          ).map((l) => l.ID),
        );
      const before = await leases();
      const kept = etcd.lease(2);
      let succeeded = 0;
      kept.on('keepaliveSucceeded', () => succeeded++);
      await sleep(300);
      assert.deepEqual(
        [...(await leases())].filter((id) => !before.has(id)),
        [],
        'not granted yet',
      );
      await kept.put('/lease/kept').value('1');
      const keptAt = Date.now();
      const id = await kept.grant();
      assert.equal(await kept.grant(), id);
      assert.deepEqual(
        [...(await leases())].filter((x) => !before.has(x)),
        [id],
      );
      assert.equal((await rawGet(member.url, '/lease/kept'))?.lease, id);

      // Meanwhile: no keep-alives (autoKeepAlive: false), and keep-alives stopped (release()).
      const bare = etcd.lease(2, { autoKeepAlive: false });
      await bare.put('/lease/bare').value('1');
      const released = etcd.lease(2);
      await released.put('/lease/released').value('1');
      released.release();
      assert.ok(released.revoked());
      await waitFor(
        'keys of unkept leases gone',
        async () =>
          !(await rawGet(member.url, '/lease/bare')) &&
          !(await rawGet(member.url, '/lease/released')),
        5000,
      );
      await sleep(keptAt + 3500 - Date.now());
      assert.ok(await rawGet(member.url, '/lease/kept'), 'kept alive past its TTL');
      assert.ok(succeeded >= 3, `${succeeded} keep-alives`);
      await kept.put('/lease/kept2').value('2');
      await kept.revoke();
      assert.equal(await rawGet(member.url, '/lease/kept'), undefined);
      assert.equal(await rawGet(member.url, '/lease/kept2'), undefined);
      await assert.rejects(kept.put('/lease/kept3').value('3'));
    },
  );

  it("'lost' when etcd no longer has the lease; puts on it reject", T, async () => {
    const lease = etcd.lease(5);
    const lost = once(lease, 'lost') as Promise<[Error]>;
    await lease.put('/lost/a').value('1');
    await raw(member.url, '/v3/lease/revoke', { ID: await lease.grant() });
    const t0 = Date.now();
    const [err] = await lost;
    assert.ok(Date.now() - t0 < 2500, 'at the next keep-alive (every TTL/3)');
    assert.match(err.message, /lease/);
    assert.ok(lease.revoked());
    await assert.rejects(lease.put('/lost/b').value('2'));
    assert.equal(await rawGet(member.url, '/lost/b'), undefined);
  });

  it("'lost' when keep-alives fail for longer than the TTL", T, async () => {
    const lease = viaProxy.lease(2);
    let failed = 0;
    lease.on('keepaliveFailed', () => failed++);
    const lost = once(lease, 'lost') as Promise<[Error]>;
    await lease.put('/lost/cut').value('1');
    const t0 = Date.now();
    try {
      proxy.cut();
      await lost;
    } finally {
      proxy.restore();
    }
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 1000 && elapsed < 2600, `lost after ${elapsed} ms of a 2 s TTL`);
    assert.ok(failed >= 1);
    await assert.rejects(lease.put('/lost/cut2').value('2'));
  });

  it(
    'election: the first campaigner is elected; on resign the next one is, at once',
    T,
    async () => {
      const other = new EtcdClient({ hosts: [member.url] });
      try {
        const first = etcd.election('job', 5).campaign('one');
        await once(first, 'elected');
        const second = other.election('job', 5).campaign('two');
        let secondElected = false;
        const elected = once(second, 'elected').then(() => (secondElected = true));
        await sleep(500);
        assert.equal(secondElected, false);
        // etcd3's layout: election/<name>/<lease id> = value, attached to that lease.
        const keys = await etcd.getAll().prefix('election/job/').strings();
        assert.deepEqual(Object.values(keys), ['one', 'two']);
        for (const key of Object.keys(keys)) {
          const id = key.slice('election/job/'.length);
          assert.match(id, /^[0-9]+$/);
          assert.equal((await rawGet(member.url, key))?.lease, id);
        }
        const t0 = Date.now();
        await first.resign();
        await elected;
        const ms = Date.now() - t0;
        assert.ok(ms < 500, `second elected ${ms} ms after the resign`);
        await second.resign();
        assert.deepEqual(await etcd.getAll().prefix('election/job/').keys(), []);

        // In a namespace, the election is under the namespace's prefix.
        const ns = etcd.namespace('/nsel/');
        const c = ns.election('x', 5).campaign('v');
        await once(c, 'elected');
        assert.deepEqual(Object.values(await etcd.getAll().prefix('/nsel/election/x/').strings()), [
          'v',
        ]);
        await c.resign();
      } finally {
        other.close();
      }
    },
  );

  it("a campaign whose lease is lost emits 'error'", T, async () => {
    const campaign = etcd.election('lossy', 3).campaign('me');
    await once(campaign, 'elected');
    const [key] = await etcd.getAll().prefix('election/lossy/').keys();
    assert.ok(key);
    const error = once(campaign, 'error') as Promise<[Error]>;
    await raw(member.url, '/v3/lease/revoke', { ID: key.slice('election/lossy/'.length) });
    const t0 = Date.now();
    const [err] = await error;
    assert.ok(Date.now() - t0 < 2000);
    assert.match(err.message, /lease/);
    await campaign.resign();
  });

  it('close() leaves nothing that keeps the process alive', T, async () => {
    const script = path.join(member.dir, 'close-child.mts');
    const modUrl = new URL('../src/etcd-gateway.ts', import.meta.url).href;
    fs.writeFileSync(
      script,
      `import { EtcdClient } from ${JSON.stringify(modUrl)};
const etcd = new EtcdClient({ hosts: [${JSON.stringify(member.url)}] });
const w = await etcd.watch().prefix('/child/').create();
w.on('put', () => undefined);
const other = etcd.watch().key('/child/x').watcher();
await etcd.lease(5).put('/child/leased').value('1');
const campaign = etcd.election('child', 5).campaign('c');
await new Promise((r) => campaign.on('elected', r));
etcd.election('child', 5).campaign('waiting');
await etcd.put('/child/x').value('1');
await etcd.get('/child/x').string();
await new Promise((r) => setTimeout(r, 100));
etcd.close();
process.stdout.write('closed\\n');
`,
    );
    const child = spawn(process.execPath, [...process.execArgv, script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let closedAt = 0;
    child.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('closed')) closedAt = Date.now();
    });
    const killer = setTimeout(
      () => child.pid !== undefined && process.kill(child.pid, 'SIGKILL'),
      15000,
    );
    const [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(killer);
    assert.ok(closedAt > 0, 'the child got to close()');
    assert.equal(code, 0);
    const ms = Date.now() - closedAt;
    assert.ok(ms < 1000, `exited ${ms} ms after close()`);
  });

  it('a watch comes back after etcd restarts on the same data dir', T, async () => {
    const w = await etcd.watch().prefix('/restart/').create();
    const log = record(w);
    await etcd.put('/restart/a').value('1');
    await waitFor('first event', () => log.events.length === 1, 2000);
    await stopMember(member);
    await waitFor('disconnected', () => log.disconnected === 1, 3000);
    await startMember(member, [member]);
    // Possibly before the watch is back: resumed from its revision, it gets this one too.
    await rawPut(member.url, '/restart/b', '2');
    await waitFor('reconnected', () => log.connected === 1, 5000);
    await etcd.put('/restart/c').value('3');
    await waitFor('events', () => log.events.length === 3, 3000);
    assert.deepEqual(log.events, ['put /restart/a=1', 'put /restart/b=2', 'put /restart/c=3']);
    assert.equal(log.disconnected, 1);
    await w.cancel();
  });

  it(
    'a member that stops answering: calls fail within the deadline, the watch notices',
    T,
    async () => {
      const client = new EtcdClient({ hosts: [member.url], callTimeoutMs: 1000 });
      try {
        const w = await client.watch().prefix('/stopped/').create();
        const log = record(w);
        await client.get('/stopped/warm').string(); // a kept-alive socket, now in the pool
        await signal(member, 'SIGSTOP');
        const t0 = Date.now();
        try {
          const err = await client
            .get('/stopped/x')
            .string()
            .then(
              () => assert.fail('answered while stopped'),
              (e: unknown) => e,
            );
          const ms = Date.now() - t0;
          assert.ok(ms >= 1000 && ms < 1500, `failed after ${ms} ms`);
          assert.ok(isRecoverableError(err), String(err));
          assert.match((err as Error).message, /no answer in 1000 ms/);
          // Idle 2 s, then a probe that gets no answer within the deadline.
          await waitFor('watch disconnected', () => log.disconnected === 1, 4500);
          const noticed = Date.now() - t0;
          assert.ok(noticed < 4500, `noticed after ${noticed} ms`);
        } finally {
          await signal(member, 'SIGCONT');
        }
        await waitFor('watch back', () => log.connected === 1, 5000);
        await client.put('/stopped/after').value('1');
        await waitFor('event', () => log.events.length === 1, 2000);
        await w.cancel();
      } finally {
        client.close();
      }
    },
  );
});

describe('errors from the gateway', { timeout: 30000 }, () => {
  type Reply = { status: number; body: unknown } | 'hang';
  const servers: http.Server[] = [];

  async function fake(reply: () => Reply) {
    const hits = { n: 0 };
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        hits.n++;
        const r = reply();
        if (r === 'hang') return;
        res.writeHead(r.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(r.body));
      });
    });
    const port = await freePort();
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    servers.push(server);
    return { url: `http://127.0.0.1:${port}`, hits };
  }

  after(async () => {
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  });

  const notFound = () => ({
    status: 404,
    body: {
      error: 'etcdserver: requested lease not found',
      message: 'etcdserver: requested lease not found',
      code: 5,
    },
  });
  const unavailable = () => ({
    status: 503,
    body: { error: 'etcdserver: no leader', message: 'etcdserver: no leader', code: 14 },
  });
  const ok = () => ({ status: 200, body: { header: { revision: '9' } } });

  it('a 4xx is a clear, non-recoverable error, not tried on another member', T, async () => {
    const [a, b] = [await fake(notFound), await fake(notFound)];
    const etcd = new EtcdClient({ hosts: [a.url, b.url] });
    try {
      const err = await etcd
        .put('k')
        .value('v')
        .then(
          () => assert.fail('resolved'),
          (e: unknown) => e as Error,
        );
      assert.match(err.message, /requested lease not found \(HTTP 404, gRPC code 5\)/);
      assert.equal(isRecoverableError(err), false);
      assert.equal(a.hits.n + b.hits.n, 1);
      const bad = await fake(() => ({
        status: 400,
        body: { error: 'bad', message: 'invalid character', code: 3 },
      }));
      const one = new EtcdClient({ hosts: [bad.url] });
      await assert.rejects(
        one.get('k').string(),
        (e: Error) => /invalid character \(HTTP 400/.test(e.message) && !isRecoverableError(e),
      );
      one.close();
    } finally {
      etcd.close();
    }
  });

  it(
    'a 5xx is recoverable: the member is paused and the call made once on another',
    T,
    async () => {
      const [a, b] = [await fake(unavailable), await fake(unavailable)];
      const both = new EtcdClient({ hosts: [a.url, b.url] });
      const err = await both
        .get('k')
        .string()
        .then(
          () => assert.fail('resolved'),
          (e: unknown) => e as Error,
        );
      assert.match(err.message, /no leader \(HTTP 503, gRPC code 14\)/);
      assert.ok(isRecoverableError(err));
      assert.deepEqual([a.hits.n, b.hits.n], [1, 1]);
      both.close();

      const [bad, good] = [await fake(unavailable), await fake(ok)];
      const etcd = new EtcdClient({ hosts: [bad.url, good.url], memberPauseMs: 600 });
      try {
        await etcd.put('k').value('v');
        assert.deepEqual([bad.hits.n, good.hits.n], [1, 1]);
        for (let i = 0; i < 4; i++) await etcd.put('k').value('v');
        assert.deepEqual([bad.hits.n, good.hits.n], [1, 5], 'the failed member is skipped');
        await sleep(700);
        for (let i = 0; i < 2; i++) await etcd.put('k').value('v');
        assert.equal(bad.hits.n, 2, 'tried again after the pause');
      } finally {
        etcd.close();
      }
    },
  );

  it('a member that never answers fails the call at the deadline', T, async () => {
    const silent = await fake(() => 'hang');
    const etcd = new EtcdClient({ hosts: [silent.url], callTimeoutMs: 300 });
    try {
      const t0 = Date.now();
      const err = await etcd
        .get('k')
        .string()
        .then(
          () => assert.fail('resolved'),
          (e: unknown) => e as Error,
        );
      const ms = Date.now() - t0;
      assert.ok(ms >= 300 && ms < 700, `${ms} ms`);
      assert.ok(isRecoverableError(err));
    } finally {
      etcd.close();
    }
  });
});

describe('etcd gateway client, three-member cluster', { timeout: 90000 }, () => {
  let members: Member[] = [];

  before(async () => {
    members = [await newMember('m1'), await newMember('m2'), await newMember('m3')];
    await Promise.all(members.map((m) => startMember(m, members)));
  });

  after(async () => {
    await Promise.all(members.map((m) => stopMember(m)));
    for (const m of members) fs.rmSync(m.dir, { recursive: true, force: true });
  });

  it(
    'one member stopped: calls keep working within a deadline, its watch moves and loses nothing',
    T,
    async () => {
      const status = await raw<{ leader: string; header: { member_id: string } }>(
        members[0]!.url,
        '/v3/maintenance/status',
        {},
      );
      const ids = await Promise.all(
        members.map(
          async (m) =>
            (await raw<{ header: { member_id: string } }>(m.url, '/v3/maintenance/status', {}))
              .header.member_id,
        ),
      );
      // A follower: stopping the leader would add an election (a few seconds without writes).
      const victim = members.find((_, i) => ids[i] !== status.leader) as Member;
      const hosts = [victim, ...members.filter((m) => m !== victim)].map((m) => m.url);
      const timeout = 1500;
      const etcd = new EtcdClient({
        hosts,
        callTimeoutMs: timeout,
        watchBackoff: { initialMs: 100, maxMs: 1000 },
      });
      try {
        const w = await etcd.watch().prefix('/cl/').create();
        assert.equal(
          w.host,
          `127.0.0.1:${victim.client}`,
          'the first call goes to the first member',
        );
        const log = record(w);
        await etcd.put('/cl/0').value('0');
        await waitFor('first event', () => log.events.length === 1, 2000);

        await signal(victim, 'SIGSTOP');
        const stoppedAt = Date.now();
        try {
          const slowest: number[] = [];
          for (let i = 1; i <= 8; i++) {
            let t0 = Date.now();
            await etcd.put(`/cl/${i}`).value(`${i}`);
            slowest.push(Date.now() - t0);
            t0 = Date.now();
            assert.equal(await etcd.get(`/cl/${i}`).string(), `${i}`);
            slowest.push(Date.now() - t0);
          }
          const max = Math.max(...slowest);
          assert.ok(max < timeout + 700, `slowest call ${max} ms`);
          await waitFor('watch disconnected', () => log.disconnected === 1, 6000);
          await waitFor('watch back', () => log.connected === 1, 4000);
          const backIn = Date.now() - stoppedAt;
          assert.notEqual(w.host, `127.0.0.1:${victim.client}`, 'moved to another member');
          await waitFor('all events', () => log.events.length === 9, 3000);
          assert.deepEqual(
            log.events,
            [0, 1, 2, 3, 4, 5, 6, 7, 8].map((i) => `put /cl/${i}=${i}`),
          );
          console.log(
            `cluster: slowest call ${max} ms; watch back on another member after ${backIn} ms`,
          );
        } finally {
          await signal(victim, 'SIGCONT');
        }
        await etcd.put('/cl/9').value('9');
        await waitFor('event after', () => log.events.length === 10, 3000);
        await w.cancel();
      } finally {
        etcd.close();
      }
    },
  );
});
