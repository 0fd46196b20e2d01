// For tests of any package: a real load balancer (configurator + HAProxy) on a free port.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, Proc, tempDir, WaitAbort, waitFor } from './processes.js';

export interface TestLoadBalancerOptions {
  etcd: string;
  statsPassword?: string;
  /** More environment for the configurator (e.g. LB_TEMPLATE, LB_DEBOUNCE_MS). */
  env?: Record<string, string>;
}

export interface TestLoadBalancer {
  /** http://127.0.0.1:<port> */
  url: string;
  port: number;
  /** State directory: haproxy.cfg, haproxy.log, sockets. */
  dir: string;
  /** The configurator process. */
  proc: Proc;
  /** Reloads done by the configurator (all its runs so far). */
  reloads(): number;
  /** Pid of HAProxy's master process, from its pid file. */
  haproxyPid(): number | undefined;
  /** The haproxy.cfg in use. */
  config(): string;
  /** Kills the configurator with -9 (HAProxy keeps running) and starts a new one, as after a crash. */
  restartConfigurator(): Promise<void>;
  stop(): Promise<void>;
}

// The configurator as operators run it: the LB package's built main (microflack-admin/lb/dist/main.js).
function lbMain(): string {
  return path.join(
    path.dirname(fileURLToPath(import.meta.resolve('@microflack/lb/package.json'))),
    'dist/main.js',
  );
}

const haproxyPids = new Map<number, string>();
let exitHook = false;

function readPid(file: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

// Alive and still our HAProxy (its command line names our state directory), not a reused pid.
function ours(pid: number, dir: string): boolean {
  try {
    if (/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))) return false;
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
  } catch {
    return false;
  }
}

/** Starts the configurator (`node microflack-admin/lb/dist/main.js`) with its own HAProxy; resolves once HAProxy answers. */
export async function startTestLoadBalancer(
  opts: TestLoadBalancerOptions,
): Promise<TestLoadBalancer> {
  const main = lbMain();
  if (!fs.existsSync(main))
    throw new Error(`${main} is missing: run npx tsc -b microflack-admin/lb`);
  const port = await freePort();
  const dir = tempDir('lb');
  const pidFile = path.join(dir, 'haproxy.pid');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    // Its own home: never the operator's secrets file.
    MICROFLACK_HOME: dir,
    LB_STATE_DIR: dir,
    ETCD: opts.etcd,
    MICROFLACK_PORT: String(port),
    LB_BIND: '127.0.0.1',
    LB_HARD_STOP_AFTER: '30s',
    LB_STOP_TIMEOUT_MS: '1000',
    ...(opts.statsPassword ? { LB_STATS_PASSWORD: opts.statsPassword } : {}),
    ...opts.env,
  };
  if (!exitHook) {
    exitHook = true;
    // HAProxy is detached from the configurator; never leave one behind.
    process.on('exit', () => {
      for (const [pid, dir] of haproxyPids) if (ours(pid, dir)) process.kill(pid, 'SIGKILL');
    });
  }
  const url = `http://127.0.0.1:${port}`;
  const proc = new Proc('lb', process.execPath, [main], dir, env);
  const mine = new Set<number>();

  const readyLines = () =>
    proc
      .log()
      .split('\n')
      .filter((l) => l.includes('"load balancer ready"')).length;
  // The log file is appended by every run: wait for one more "ready" line than before.
  const ready = async (before: number) => {
    await waitFor(
      'load balancer',
      async () => {
        if (!proc.running) throw new WaitAbort('configurator exited');
        if (readyLines() <= before) return false;
        const res = await fetch(`${url}/`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        return true;
      },
      20000,
    ).catch((err) => {
      throw new Error(`${err.message}\n${proc.log().slice(-3000)}`);
    });
    const pid = readPid(pidFile);
    if (pid) {
      haproxyPids.set(pid, dir);
      mine.add(pid);
    }
  };
  await ready(0);

  return {
    url,
    port,
    dir,
    proc,
    reloads: () =>
      proc
        .log()
        .split('\n')
        .filter((l) => l.includes('"haproxy reloaded"')).length,
    haproxyPid: () => readPid(pidFile),
    config: () => fs.readFileSync(path.join(dir, 'haproxy.cfg'), 'utf8'),
    async restartConfigurator() {
      const before = readyLines();
      const exited = new Promise((r) => proc.child.once('exit', r));
      proc.signal('SIGKILL');
      await exited;
      proc.restart();
      await ready(before);
    },
    async stop() {
      await proc.stop();
      for (const pid of [readPid(pidFile), ...mine]) {
        if (pid && ours(pid, dir)) process.kill(pid, 'SIGKILL');
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
