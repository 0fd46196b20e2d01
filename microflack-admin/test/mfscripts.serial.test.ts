// The operators' scripts end to end: mfup from nothing on a temporary MICROFLACK_HOME, a chat through
// the load balancer, more instances, a rolling upgrade under load, a crash, and mfdown --purge.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { io, type Socket } from 'socket.io-client';
import { run, type Result } from './support/run-script.js';
import { freePort, tempDir, waitFor } from '@microflack/testkit';

const admin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(admin, 'bin');
const SCRIPTS = [
  'mfup',
  'mfdown',
  'mfbuild',
  'mfrun',
  'mfkill',
  'mfstatus',
  'mflogs',
  'mfupgrade',
  'mfenv',
  'mfdev',
  'etcd-dump',
];

async function ok(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs?: number,
): Promise<string> {
  const r = await run(script, args, env, timeoutMs);
  assert.equal(r.code, 0, `${script} ${args.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Rows of mfstatus's instance table for one service: {instance, address, version, health, state}. */
function statusRows(out: string, service: string) {
  return out
    .split('\n')
    .filter((l) => l.startsWith(`${service} `))
    .map((l) => {
      const [, instance, address, version, health, state] = l.split(/\s+/);
      return { instance, address, version, health, state };
    });
}

/** Every process whose command line mentions the directory. */
function processesUsing(dir: string): string[] {
  const found: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(dir)) found.push(`${pid} ${cmd}`);
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

/** Every shell script of microflack-admin: the mf* scripts, the install and image scripts, the cluster's. */
function shellScripts(): string[] {
  return [
    ...fs.readdirSync(bin).map((f) => path.join(bin, f)),
    ...['install', 'images'].flatMap((dir) =>
      fs
        .readdirSync(path.join(admin, dir))
        .filter((f) => f.endsWith('.sh'))
        .map((f) => path.join(admin, dir, f)),
    ),
    path.join(admin, 'cluster', 'galera-start.sh'),
    ...fs
      .readdirSync(path.join(admin, 'cluster', 'sst-bin'))
      .map((f) => path.join(admin, 'cluster', 'sst-bin', f)),
  ];
}

describe('mf* scripts: --help and misuse', () => {
  const scratch = tempDir('nohome');
  const env = { MICROFLACK_HOME: path.join(scratch, 'none'), MICROFLACK_PORT: '1' };
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('answers --help with a usage and exit 0, for every script', async () => {
    for (const script of SCRIPTS) {
      const r = await run(script, ['--help'], env);
      assert.equal(r.code, 0, `${script} --help: ${r.stderr}`);
      assert.match(r.stdout, /Usage: /, script);
    }
  });

  it('exits 2 with a message on misuse', async () => {
    const cases: Array<[string, string[]]> = [
      ['mfup', ['--bogus']],
      ['mfdown', ['now']],
      ['mfbuild', ['--bogus']],
      ['mfbuild', ['bad/version']],
      ['mfbuild', ['--local-base']],
      ['mfrun', []],
      ['mfrun', ['nosuch']],
      ['mfrun', ['messages', '--count', 'x']],
      ['mfrun', ['messages', '--count']],
      ['mfkill', []],
      ['mfkill', ['a', 'b']],
      ['mfstatus', ['nosuch']],
      ['mflogs', ['-n', 'x']],
      ['mfupgrade', []],
      ['mfupgrade', ['jump']],
      ['mfupgrade', ['try']],
      ['mfupgrade', ['try', 'nosuch']],
      ['mfupgrade', ['abort', 'messages']],
      ['mfenv', ['nosuch']],
      ['mfdev', []],
      ['mfdev', ['start']],
      ['mfdev', ['start', 'users', 'port']],
      ['mfdev', ['start', 'users', '5000', 'no-slash']],
      ['etcd-dump', ['relative']],
      ['mfvars', ['--bogus']],
      ['mftest', ['--bogus']],
      ['mftest', ['no-test-file-is-named-like-this']],
      ['mfbench', ['--bogus']],
      ['mfbench', ['--duration']],
      ['mfbench', ['--duration', 'soon']],
      ['mfcluster', []],
      ['mfcluster', ['jump']],
      ['mfcluster', ['up', '--hosts', '2']],
      ['mfcluster', ['up', '--hosts']],
      ['mfcluster', ['down', 'now']],
      ['mfcluster', ['status', '--bogus']],
      ['mfcluster', ['cut']],
      ['mfcluster', ['crash', 'h1', 'h2']],
      ['mfcluster', ['exec', 'h1']],
    ];
    for (const [script, args] of cases) {
      const r = await run(script, args, env);
      assert.equal(r.code, 2, `${script} ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
      assert.match(r.stderr, /^[a-z-]+: .+/, `${script} ${args.join(' ')} says why`);
      assert.match(r.stderr, /Usage: /, `${script} ${args.join(' ')} shows the usage`);
    }
  });

  it('exits 1 with a clear message when there is no platform', async () => {
    for (const [script, args] of [
      ['mfstatus', []],
      ['mfrun', ['users']],
      ['mfenv', []],
      ['mfupgrade', ['abort']],
    ] as Array<[string, string[]]>) {
      const r = await run(script, args, env);
      assert.equal(r.code, 1, `${script}: ${r.stderr}`);
      assert.match(r.stderr, /no platform|not running|mfup/, script);
    }
  });

  it('passes shellcheck', async () => {
    const files = shellScripts();
    const r = await new Promise<Result>((resolve) => {
      const child = spawn('shellcheck', files, { cwd: path.dirname(admin) });
      let stdout = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.on('close', (code) => resolve({ code, stdout, stderr: '' }));
    });
    assert.equal(r.code, 0, r.stdout);
  });

  it('never makes a pipe in a condition stop reading early (pipefail would fail it)', () => {
    // `cmd | grep -q x` leaves at the first match; cmd then dies of SIGPIPE (141) and, under
    // pipefail, the condition is false although x was there (every apt package looked missing).
    const offenders = shellScripts().flatMap((file) =>
      fs
        .readFileSync(file, 'utf8')
        .split('\n')
        .map((line, i) => ({ line, at: `${path.relative(admin, file)}:${i + 1}` }))
        .filter(
          ({ line }) => /\|\s*grep\s+-[a-zA-Z]*q/.test(line) && !line.trimStart().startsWith('#'),
        )
        .map(({ at, line }) => `${at}: ${line.trim()}`),
    );
    assert.deepEqual(offenders, []);
  });
});

describe('mf* scripts: a platform from nothing to nothing', () => {
  let home: string;
  let env: NodeJS.ProcessEnv;
  let lb: string;
  let token: string;
  let socket: Socket | undefined;

  before(async () => {
    home = path.join(tempDir('mfhome'), 'home');
    const port = await freePort();
    env = { MICROFLACK_HOME: home, MICROFLACK_PORT: String(port), MICROFLACK_IP: '127.0.0.1' };
    lb = `http://127.0.0.1:${port}`;
  });
  after(async () => {
    socket?.close();
    // Whatever failed above, leave nothing running.
    if (fs.existsSync(home)) await run('mfdown', ['--purge'], env, 180000);
    fs.rmSync(path.dirname(home), { recursive: true, force: true });
  });

  async function api(
    method: string,
    url: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ) {
    const res = await fetch(`${lb}${url}`, {
      method,
      headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(10000),
    });
    const text = await res.text();
    return { status: res.status, body: text.startsWith('{') ? JSON.parse(text) : text };
  }

  it('mfup brings the platform up from nothing, and running it again changes nothing', async () => {
    // --no-install: the test command has installed and built the checkout already.
    const out = await ok('mfup', ['--no-install'], env, 240000);
    assert.match(out, new RegExp(`http://127\\.0\\.0\\.1:${env.MICROFLACK_PORT}/`));
    const secrets = path.join(home, 'secrets.env');
    assert.equal(fs.statSync(secrets).mode & 0o777, 0o600);
    const text = fs.readFileSync(secrets, 'utf8');
    assert.match(text, /^JWT_SECRET_KEY=[0-9a-f]{48}$/m);
    assert.match(text, /^MF_DB_PASSWORD_USERS=[0-9a-f]{48}$/m);
    assert.match(text, /^MF_DB_PASSWORD_MESSAGES=[0-9a-f]{48}$/m);

    const ctl = ['-c', path.join(home, 'supervisor/supervisord.conf'), 'status'];
    // Program, state and pid: what a second mfup must leave exactly as it was.
    const programs = async () =>
      (await supervisorStatus(ctl)).map((l) => l.replace(/,? *uptime.*/, ''));
    const before = await programs();
    assert.equal(before.filter((l) => l.includes('RUNNING')).length, 4 + 5, before.join('\n'));
    const again = await ok('mfup', ['--no-install'], env, 120000);
    assert.match(again, /MicroFlack is running/);
    assert.deepEqual(await programs(), before);
    assert.equal(fs.readFileSync(secrets, 'utf8'), text, 'secrets are generated once');
  });

  it('serves the chat through the load balancer: register, token, post, live update', async () => {
    const page = await api('GET', '/');
    assert.equal(page.status, 200);
    const nickname = `op${Date.now() % 100000}`;
    assert.equal(
      (await api('POST', '/api/users', { nickname, password: 'pw-1234567' })).status,
      201,
    );
    const basic = `Basic ${Buffer.from(`${nickname}:pw-1234567`).toString('base64')}`;
    const tok = await api('POST', '/api/tokens', undefined, { authorization: basic });
    assert.equal(tok.status, 200, JSON.stringify(tok.body));
    token = tok.body.token;

    socket = io(lb, { transports: ['websocket'], reconnection: false, timeout: 10000 });
    await new Promise<void>((resolve, reject) => {
      socket!.once('connect', resolve);
      socket!.once('connect_error', reject);
    });
    const updates: Array<{ class: string; model: { id: number } }> = [];
    socket.on('updated_model', (m) => updates.push(m));
    const posted = await api(
      'POST',
      '/api/messages',
      { source: 'hello *operators*' },
      { authorization: `Bearer ${token}` },
    );
    assert.equal(posted.status, 201);
    await waitFor('updated_model for the message', () =>
      updates.some((u) => u.class === 'Message' && u.model.id === posted.body.id),
    );
    socket.close();
    socket = undefined;
  });

  it('mfrun --count 2 adds instances; mfstatus shows three healthy messages instances', async () => {
    const out = await ok('mfrun', ['messages', '--count', '2'], env);
    assert.equal(out.trim().split('\n').length, 2);
    const status = await ok('mfstatus', [], env);
    const rows = statusRows(status, 'messages');
    assert.equal(rows.length, 3, status);
    for (const row of rows) {
      assert.equal(row.health, 'UP', status);
      assert.equal(row.state, 'RUNNING', status);
      assert.match(row.address ?? '', /^127\.0\.0\.1:\d+$/);
    }
    assert.match(status, /^etcd +RUNNING .* healthy$/m);
    assert.match(status, /^redis +RUNNING .* PONG$/m);
    assert.match(status, /^mariadb +RUNNING .* alive$/m);
    // Seven instances; the three messages instances also serve the rooms backend: 10 servers.
    assert.match(status, /^haproxy +RUNNING .* 10\/10 servers UP/m);
    console.log(status);
  });

  it('shows readable merged logs, the registry tree and a .env', async () => {
    const logs = await ok('mflogs', ['--no-follow', '-n', '5', 'messages'], env);
    assert.match(logs, /^messages-[0-9a-f]{6} +\| \d\d:\d\d:\d\d\.\d{3} INFO /m);
    assert.doesNotMatch(logs, /\| \{"level"/);
    const tree = await ok('etcd-dump', ['/services/messages'], env);
    assert.match(tree, /^ {2}messages\/$/m);
    assert.match(tree, /^ {6}messages-[0-9a-f]{6} = "127\.0\.0\.1:\d+" {2}\(lease [0-9a-f]+\)$/m);
    const dotenv = await ok('mfenv', ['messages'], env);
    assert.match(
      dotenv,
      /^DATABASE_URL=mysql:\/\/mf_messages:[0-9a-f]{48}@127\.0\.0\.1:\d+\/messages$/m,
    );
    assert.match(dotenv, /^JWT_SECRET_KEY=[0-9a-f]{48}$/m);
  });

  it('mfdev attaches and detaches a developer instance with a high weight', async () => {
    await ok('mfdev', ['start', 'devsvc', '5999', '/devsvc'], env);
    const tree = await ok('etcd-dump', ['/services/devsvc'], env);
    assert.match(tree, /dev = "127\.0\.0\.1:5999 weight 256"/);
    assert.match(tree, /location = "\/devsvc"/);
    await ok('mfdev', ['stop', 'devsvc', '5999'], env);
    assert.doesNotMatch(await ok('etcd-dump', ['/services/devsvc'], env), /dev = /);
  });

  it('mfupgrade roll replaces messages under load: no failed request, no lost message', async () => {
    const version = `v2-${Date.now()}`;
    await ok('mfbuild', ['--no-compile', version], env, 180000);

    const auth = { authorization: `Bearer ${token}` };
    const created = new Set<number>();
    const failures: string[] = [];
    let sent = 0;
    let inFlight = 0;
    let stop = false;
    const started = Date.now();
    async function one(i: number) {
      sent++;
      inFlight++;
      try {
        const res =
          i % 2 === 0
            ? await api('POST', '/api/messages', { source: `load ${i}` }, auth)
            : await api('GET', '/api/messages?limit=5');
        if (res.status === 201) created.add(res.body.id);
        else if (res.status !== 200) failures.push(`${res.status} ${JSON.stringify(res.body)}`);
      } catch (err) {
        failures.push(String(err));
      } finally {
        inFlight--;
      }
    }
    // 70 requests a second, half of them POSTs, on a clock: slow answers do not slow the load.
    const load = (async () => {
      let i = 0;
      while (!stop) {
        while (i < ((Date.now() - started) / 1000) * 70) void one(i++);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await new Promise((r) => setTimeout(r, 2000));
    const roll = await run('mfupgrade', ['roll', 'messages'], env, 240000);
    await new Promise((r) => setTimeout(r, 2000));
    stop = true;
    await load;
    await waitFor('the last requests', () => inFlight === 0, 15000);
    const seconds = (Date.now() - started) / 1000;
    assert.equal(roll.code, 0, `${roll.stdout}\n${roll.stderr}`);
    assert.match(roll.stdout, /upgrade of messages to .* completed/);

    // Every answer is bounded (1,000 messages): follow `next` from the first page to the last.
    const present = new Set<number>();
    let page: string | undefined = '/api/messages?limit=1000';
    while (page) {
      const list = await api('GET', page);
      assert.equal(list.status, 200, JSON.stringify(list.body));
      for (const m of list.body.messages as Array<{ id: number }>) present.add(m.id);
      page = list.body.next;
    }
    const lost = [...created].filter((id) => !present.has(id));
    console.log(
      `upgrade under load: ${sent} requests in ${seconds.toFixed(1)} s (${(sent / seconds).toFixed(0)}/s), ` +
        `${failures.length} failed, ${created.size} messages created, ${lost.length} lost`,
    );
    assert.ok(sent / seconds >= 50, `only ${(sent / seconds).toFixed(1)} requests/s`);
    assert.deepEqual(failures, []);
    assert.deepEqual(lost, []);

    const status = await ok('mfstatus', ['messages'], env);
    const rows = statusRows(status, 'messages');
    assert.equal(rows.length, 3, status);
    for (const row of rows) {
      assert.equal(row.version, version, status);
      assert.equal(row.health, 'UP', status);
    }
    console.log(status);
  });

  it('a kill -9 instance is restarted by supervisord and routed again', async () => {
    const conf = path.join(home, 'supervisor/supervisord.conf');
    const [victim] = statusRows(await ok('mfstatus', ['messages'], env), 'messages');
    assert.ok(victim?.instance);
    const pidOf = async () => {
      const line = (await supervisorStatus(['-c', conf, 'status', victim.instance!])).join('\n');
      return Number(/pid (\d+)/.exec(line)?.[1] ?? 0);
    };
    const pid = await pidOf();
    assert.ok(pid > 0);
    process.kill(pid, 'SIGKILL');
    const killedAt = Date.now();
    await waitFor(
      'a new process',
      async () => (await pidOf()) > 0 && (await pidOf()) !== pid,
      30000,
      200,
    );
    await waitFor(
      'the restarted instance to be routed',
      async () => {
        const row = statusRows(await ok('mfstatus', ['messages'], env), 'messages').find(
          (r) => r.instance === victim.instance,
        );
        // It keeps its port across restarts: the same address, served by a new process.
        return row?.health === 'UP' && row.state === 'RUNNING' && row.address === victim.address;
      },
      40000,
      500,
    );
    console.log(`killed instance routed again after ${Date.now() - killedAt} ms`);
    const res = await api('GET', '/api/messages?limit=1');
    assert.equal(res.status, 200);
  });

  it('mfdown --purge leaves no process and no state', async () => {
    await ok('mfdown', ['--purge'], env, 180000);
    assert.equal(fs.existsSync(home), false);
    assert.deepEqual(processesUsing(home), []);
    await assert.rejects(fetch(`${lb}/`, { signal: AbortSignal.timeout(2000) }));
  });
});

function supervisorStatus(args: string[]): Promise<string[]> {
  return new Promise((resolve) => {
    const child = spawn('supervisorctl', args);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('close', () => resolve(out.split('\n').filter((l) => l.trim() !== '')));
  });
}
