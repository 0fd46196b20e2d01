// Real backing servers (etcd, Redis, MariaDB, HAProxy) from the Debian binaries, on free ports in a temp dir.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

const tempDirs: string[] = [];

/** A fresh directory, removed when the process exits (kept with MF_KEEP_TMP=1, to debug). */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `mf-${prefix}-`));
  tempDirs.push(dir);
  installExitHook();
  return dir;
}

/** Thrown by a waitFor probe to stop waiting at once (the thing waited for can no longer happen). */
export class WaitAbort extends Error {
  override name = 'WaitAbort';
}

export async function waitFor(
  what: string,
  probe: () => Promise<boolean> | boolean,
  timeoutMs = 20000,
  intervalMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await probe()) return;
    } catch (err) {
      if (err instanceof WaitAbort) throw err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export function canConnect(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    s.setTimeout(500);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.once('timeout', () => {
      s.destroy();
      resolve(false);
    });
  });
}

const children = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Never leave a server behind, even when a test run dies.
  process.on('exit', () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    if (process.env.MF_KEEP_TMP === '1') return;
    for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true, maxRetries: 2 });
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => process.exit(130));
  }
}

/** A child process with its output in a log file under its directory. */
export class Proc {
  child: ChildProcess;
  readonly logFile: string;
  constructor(
    readonly name: string,
    readonly cmd: string,
    readonly args: string[],
    readonly dir: string,
    readonly env: NodeJS.ProcessEnv = process.env,
  ) {
    this.logFile = path.join(dir, `${name}.log`);
    this.child = this.spawn();
  }

  private spawn(): ChildProcess {
    installExitHook();
    const out = fs.openSync(this.logFile, 'a');
    const child = spawn(this.cmd, this.args, {
      stdio: ['ignore', out, out],
      env: this.env,
      cwd: this.dir,
    });
    fs.closeSync(out);
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
  }

  get pid(): number {
    return this.child.pid as number;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  log(): string {
    return fs.existsSync(this.logFile) ? fs.readFileSync(this.logFile, 'utf8') : '';
  }

  signal(sig: NodeJS.Signals): void {
    if (this.running) this.child.kill(sig);
  }

  async stop(timeoutMs = 10000): Promise<void> {
    if (!this.running) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(timer);
  }

  /** Starts the same command again (after stop, or after a kill). */
  restart(): void {
    if (this.running) throw new Error(`${this.name} is still running`);
    this.child = this.spawn();
  }
}

export interface Server {
  proc: Proc;
  dir: string;
  stop(): Promise<void>;
  /** Starts it again after stop(), same ports and data. */
  start(): Promise<void>;
}

export interface EtcdServer extends Server {
  url: string;
  port: number;
}

export async function startEtcd(dir = tempDir('etcd')): Promise<EtcdServer> {
  const port = await freePort();
  const peer = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const peerUrl = `http://127.0.0.1:${peer}`;
  const proc = new Proc(
    'etcd',
    'etcd',
    [
      '--name',
      'mf',
      '--data-dir',
      path.join(dir, 'data'),
      '--listen-client-urls',
      url,
      '--advertise-client-urls',
      url,
      '--listen-peer-urls',
      peerUrl,
      '--initial-advertise-peer-urls',
      peerUrl,
      '--initial-cluster',
      `mf=${peerUrl}`,
      '--log-level',
      'warn',
    ],
    dir,
    { ...process.env, ETCD_UNSUPPORTED_ARCH: process.arch === 'x64' ? '' : process.arch },
  );
  const ready = () =>
    waitFor(
      'etcd',
      async () => (await fetch(`${url}/health`, { signal: AbortSignal.timeout(500) })).ok,
    );
  await ready().catch((err) => {
    throw new Error(`${err.message}\n${proc.log()}`);
  });
  return {
    proc,
    dir,
    url,
    port,
    stop: () => proc.stop(),
    async start() {
      proc.restart();
      await ready();
    },
  };
}

export interface RedisServer extends Server {
  hostPort: string;
  port: number;
}

export async function startRedis(dir = tempDir('redis')): Promise<RedisServer> {
  const port = await freePort();
  const proc = new Proc(
    'redis',
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
    ],
    dir,
  );
  const ready = () => waitFor('redis', () => canConnect(port));
  await ready();
  return {
    proc,
    dir,
    port,
    hostPort: `127.0.0.1:${port}`,
    stop: () => proc.stop(),
    async start() {
      proc.restart();
      await ready();
    },
  };
}

export interface SentinelServer extends Server {
  port: number;
  /** The value of REDIS for clients of the primary it watches. */
  url: string;
}

/**
 * One Redis Sentinel watching `primaryPort` on 127.0.0.1 as master `name` (quorum 1, down after
 * 1 s), its config in its own directory (Sentinel rewrites it).
 */
export async function startSentinel(
  primaryPort: number,
  name = 'mf',
  dir = tempDir('sentinel'),
): Promise<SentinelServer> {
  const port = await freePort();
  const conf = path.join(dir, 'sentinel.conf');
  fs.writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${primaryPort} 1`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 5000`,
      '',
    ].join('\n'),
  );
  const proc = new Proc('sentinel', 'redis-server', [conf, '--sentinel'], dir);
  const ready = () => waitFor('sentinel', () => canConnect(port));
  await ready();
  return {
    proc,
    dir,
    port,
    url: `sentinel://127.0.0.1:${port}/${name}`,
    stop: () => proc.stop(),
    async start() {
      proc.restart();
      await ready();
    },
  };
}

export interface MariadbServer extends Server {
  port: number;
  /** Root URL over TCP: mysql://root@127.0.0.1:port */
  rootUrl: string;
}

export async function startMariadb(dir = tempDir('mariadb')): Promise<MariadbServer> {
  const port = await freePort();
  const datadir = path.join(dir, 'data');
  // Its own tmpdir: bootstraps sharing /tmp have been seen to trip over each other's temp tables.
  const tmp = path.join(dir, 'tmp');
  fs.mkdirSync(tmp, { recursive: true });
  const installed = path.join(dir, '.installed');
  for (let attempt = 1; !fs.existsSync(installed); attempt++) {
    fs.rmSync(datadir, { recursive: true, force: true });
    const install = new Proc(
      'mariadb-install-db',
      'mariadb-install-db',
      [
        '--no-defaults',
        '--user=root',
        '--auth-root-authentication-method=normal',
        '--skip-test-db',
        `--datadir=${datadir}`,
        `--tmpdir=${tmp}`,
      ],
      dir,
    );
    const code = await new Promise((resolve) => install.child.once('exit', resolve));
    if (code === 0) fs.writeFileSync(installed, '');
    else if (attempt >= 3) throw new Error(`mariadb-install-db failed:\n${install.log()}`);
  }
  const proc = new Proc(
    'mariadb',
    'mariadbd',
    [
      '--no-defaults',
      '--user=root',
      '--bind-address=127.0.0.1',
      '--skip-log-bin',
      `--datadir=${datadir}`,
      `--port=${port}`,
      `--socket=${path.join(dir, 'mysqld.sock')}`,
      `--tmpdir=${tmp}`,
      '--max-connections=500',
      '--innodb-buffer-pool-size=64M',
      '--innodb-flush-log-at-trx-commit=2',
      '--skip-name-resolve=0',
    ],
    dir,
  );
  const ready = () => waitFor('mariadb', () => canConnect(port), 60000);
  await ready().catch((err) => {
    throw new Error(`${err.message}\n${proc.log()}`);
  });
  return {
    proc,
    dir,
    port,
    rootUrl: `mysql://root@127.0.0.1:${port}`,
    stop: () => proc.stop(30000),
    async start() {
      proc.restart();
      await ready();
    },
  };
}
