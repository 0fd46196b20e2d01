// The platform under test: brought up by mfup on a temporary MICROFLACK_HOME, or one already running.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const ADMIN_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const BIN = path.join(ADMIN_DIR, 'bin');

export interface Platform {
  lb: string;
  etcd?: string;
  home?: string;
  env: NodeJS.ProcessEnv;
  /** mysql:// URL of a service's database, when the platform's secrets are readable. */
  databaseUrl(service: 'users' | 'messages'): string | undefined;
  /** pid of every service instance, by instance name (mfup platforms only). */
  instancePids(): Promise<Map<string, number>>;
  /** pid of every running program (instances, mariadb, redis, etcd, lb), by name (mfup platforms only). */
  programPids(): Promise<Map<string, number>>;
  mf(script: string, ...args: string[]): Promise<string>;
  /** HAProxy's `show info` (Maxconn, CurrConns, Ulimit-n...), when its stats socket is readable. */
  lbInfo(): Promise<Record<string, string> | undefined>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function streamed(script: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(BIN, script), args, {
      env,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${script} exited with ${code}`)),
    );
  });
}

function readEnvFile(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!fs.existsSync(file)) return out;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1] as string] = (m[2] as string).replace(/^"(.*)"$/, '$1');
  }
  return out;
}

function fromHome(home: string, env: NodeJS.ProcessEnv, owned: boolean): Platform {
  const state = readEnvFile(path.join(home, 'state.env'));
  const secrets = readEnvFile(path.join(home, 'secrets.env'));
  const port = state.MF_LB_PORT ?? env.MICROFLACK_PORT ?? '8080';
  const fullEnv = { ...env, MICROFLACK_HOME: home, MICROFLACK_PORT: port };
  const mf = async (script: string, ...args: string[]) =>
    (await run(path.join(BIN, script), args, { env: fullEnv, timeout: 300000 })).stdout;
  return {
    lb: `http://127.0.0.1:${port}`,
    etcd: state.MF_ETCD_PORT ? `http://127.0.0.1:${state.MF_ETCD_PORT}` : undefined,
    home,
    env: fullEnv,
    databaseUrl(service) {
      const pw = secrets[`MF_DB_PASSWORD_${service.toUpperCase()}`];
      return pw && state.MF_MARIADB_PORT
        ? `mysql://mf_${service}:${pw}@127.0.0.1:${state.MF_MARIADB_PORT}/${service}`
        : undefined;
    },
    async programPids() {
      const conf = path.join(home, 'supervisor', 'supervisord.conf');
      const { stdout } = await run('supervisorctl', ['-c', conf, 'status'], {
        timeout: 10000,
      }).catch((e) => e);
      const pids = new Map<string, number>();
      for (const line of String(stdout ?? '').split('\n')) {
        const m = /^(?:\S+:)?(\S+)\s+RUNNING\s+pid (\d+)/.exec(line);
        if (m) pids.set(m[1] as string, Number(m[2]));
      }
      return pids;
    },
    async instancePids() {
      return new Map(
        [...(await this.programPids())].filter(([name]) =>
          /^(?:users|tokens|messages|socketio|ui)-[0-9a-f]+$/.test(name),
        ),
      );
    },
    mf,
    lbInfo: () => haproxyInfo(path.join(home, 'lb', 'haproxy.sock')),
    async stop() {
      if (owned) {
        await streamed('mfdown', ['--purge'], fullEnv);
      }
    },
  };
}

export async function bringUp(opts: {
  lb?: string;
  etcd?: string;
  install?: boolean;
}): Promise<Platform> {
  if (opts.lb) {
    const home = process.env.MICROFLACK_HOME ?? path.join(os.homedir(), '.microflack');
    const p = fromHome(home, process.env, false);
    return { ...p, lb: opts.lb.replace(/\/+$/, ''), etcd: opts.etcd ?? p.etcd };
  }
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'mfbench-'));
  const env = { ...process.env, MICROFLACK_HOME: home, MICROFLACK_PORT: String(await freePort()) };
  console.log(`==> bringing up a platform in ${home} with mfup`);
  const platform = fromHome(home, env, true);
  try {
    await streamed('mfup', opts.install === false ? ['--no-install'] : [], env);
  } catch (err) {
    // Whatever mfup started before it failed must not outlive the benchmark.
    await platform.stop().catch(() => undefined);
    throw err;
  }
  return fromHome(home, env, true);
}

export function rssMb(pid: number): number | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
    return Number.isFinite(kb) ? Math.round(kb / 102.4) / 10 : undefined;
  } catch {
    return undefined;
  }
}

/** `show info` on an HAProxy stats socket, as name → value; undefined if there is no socket. */
export function haproxyInfo(socket: string): Promise<Record<string, string> | undefined> {
  if (!fs.existsSync(socket)) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    let text = '';
    const conn = net.createConnection(socket, () => conn.end('show info\n'));
    conn.setTimeout(5000, () => conn.destroy());
    conn.on('data', (d) => (text += d));
    conn.on('error', () => resolve(undefined));
    conn.on('close', () => {
      const info: Record<string, string> = {};
      for (const line of text.split('\n')) {
        const m = /^([A-Za-z_-]+):\s*(.*)$/.exec(line);
        if (m) info[m[1] as string] = m[2] as string;
      }
      resolve(Object.keys(info).length > 0 ? info : undefined);
    });
  });
}

/** A process's open-files limit (soft) and the descriptors it has open; undefined if unreadable. */
export function openFiles(pid: number | 'self'): { limit: number; open: number } | undefined {
  try {
    const limits = fs.readFileSync(`/proc/${pid}/limits`, 'utf8');
    const soft = /^Max open files\s+(\S+)/m.exec(limits)?.[1];
    const limit = soft === 'unlimited' ? Infinity : Number(soft);
    const open = fs.readdirSync(`/proc/${pid}/fd`).length;
    return Number.isFinite(limit) || limit === Infinity ? { limit, open } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A process's memory not shared with any other (USS: private clean + private dirty pages), in MB.
 * RSS also counts the node binary's and the libraries' pages, which every Node process on the
 * host shares (about 40 MB here).
 */
export function privateMb(pid: number): number | undefined {
  try {
    const rollup = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(rollup)?.[1]);
    const total = kb('Private_Clean') + kb('Private_Dirty');
    return Number.isFinite(total) ? Math.round(total / 102.4) / 10 : undefined;
  } catch {
    return undefined;
  }
}
