// HAProxy in master-worker mode: config check, start or adopt, hitless reload, supervision, stop.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { logger, RETRY_POLICIES, retryDelays } from '@microflack/common';
import { serverRows } from './stats-csv.js';
import type { LbConfig } from './config.js';

const log = logger.child({ module: 'haproxy' });

const CHECK_TIMEOUT_MS = 10000;
const SOCKET_TIMEOUT_MS = 2000;
const RELOAD_TIMEOUT_MS = 10000;
const START_TIMEOUT_MS = 10000;
const SUPERVISE_INTERVAL_MS = 500;

export interface CheckResult {
  ok: boolean;
  output: string;
}

/** `haproxy -c -f file`: whether HAProxy would accept the file, and what it said. */
export function checkConfig(bin: string, file: string): Promise<CheckResult> {
  return new Promise((resolve) => {
    const child = spawn(bin, ['-c', '-q', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), CHECK_TIMEOUT_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ ok: false, output: err.message });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ ok: code === 0, output: output.trim().slice(0, 4000) });
    });
  });
}

/** Sends one command to a HAProxy CLI socket and returns the whole answer. */
export function socketCommand(socketPath: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socketPath);
    let out = '';
    s.setTimeout(SOCKET_TIMEOUT_MS);
    // Half-closing makes the CLI answer and close, as for a one-shot command.
    s.on('connect', () => s.end(`${command}\n`));
    s.on('data', (d) => (out += d));
    s.on('end', () => resolve(out));
    s.on('timeout', () => {
      s.destroy();
      reject(new Error(`${command}: no answer in ${SOCKET_TIMEOUT_MS} ms`));
    });
    s.on('error', reject);
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie still "exists"; its state letter says it is dead.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Haproxy {
  private pid: number | undefined;
  private child: ChildProcess | undefined;
  private superviseTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private restarting: Promise<void> | undefined;
  // The first restart is at once; a failed one is tried again on the haproxyRestart schedule.
  private restartDelayMs = 0;
  private readonly restartDelays = retryDelays(RETRY_POLICIES.haproxyRestart);
  reloads = 0;
  restarts = 0;

  constructor(private readonly cfg: LbConfig) {}

  get masterPid(): number | undefined {
    return this.pid;
  }

  /** A master already serving this config (the configurator restarted): keep it, traffic untouched. */
  adopt(): boolean {
    let pid: number;
    try {
      pid = Number(fs.readFileSync(this.cfg.pidFile, 'utf8').trim().split('\n')[0]);
    } catch {
      return false;
    }
    if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return false;
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    if (!cmdline.some((a) => a.endsWith('haproxy')) || !cmdline.includes(this.cfg.cfgFile))
      return false;
    this.pid = pid;
    log.info({ pid }, 'adopted running haproxy');
    return true;
  }

  async start(): Promise<void> {
    const out = fs.openSync(this.cfg.haproxyLog, 'a');
    // Detached: HAProxy outlives a crashed or restarted configurator and keeps routing.
    const child = spawn(
      this.cfg.haproxyBin,
      [
        '-W',
        '-db',
        '-f',
        this.cfg.cfgFile,
        '-p',
        this.cfg.pidFile,
        '-S',
        `${this.cfg.masterSocket},mode,600`,
      ],
      { detached: true, stdio: ['ignore', out, out] },
    );
    fs.closeSync(out);
    child.unref();
    this.child = child;
    this.pid = child.pid;
    child.on('error', (err) => log.error({ err }, 'haproxy could not be started'));
    child.on('exit', (code, signal) => {
      if (this.child !== child) return;
      this.child = undefined;
      if (!this.stopping) {
        log.error({ code, signal, pid: child.pid }, 'haproxy exited');
        this.restartSoon();
      }
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const proc = await socketCommand(this.cfg.masterSocket, 'show proc').catch(() => '');
      if (/^\d+\s+worker\s/m.test(proc)) break;
      if (this.child !== child || Date.now() > deadline) {
        throw new Error(`haproxy did not start; see ${this.cfg.haproxyLog}`);
      }
      await sleep(50);
    }
    log.info({ pid: child.pid }, 'haproxy started');
  }

  /** Restarts HAProxy whenever it is found dead, with the config file as it is now. */
  supervise(): void {
    this.superviseTimer = setInterval(() => {
      if (!this.stopping && !this.restarting && (this.pid === undefined || !isAlive(this.pid))) {
        log.error({ pid: this.pid }, 'haproxy is not running');
        this.restartSoon();
      }
    }, SUPERVISE_INTERVAL_MS);
    this.superviseTimer.unref();
  }

  private restartSoon(): void {
    if (this.restarting || this.stopping) return;
    this.restarting = (async () => {
      await sleep(this.restartDelayMs);
      // Workers of a killed master may linger a moment; they exit once they notice.
      try {
        await this.start();
        this.restarts++;
        this.restartDelayMs = 0;
        this.restartDelays.reset();
      } catch (err) {
        this.restartDelayMs = this.restartDelays.next();
        log.error(
          { err: (err as Error).message, retryInMs: this.restartDelayMs },
          'haproxy restart failed',
        );
      } finally {
        this.restarting = undefined;
      }
      if (!this.stopping && (this.pid === undefined || !isAlive(this.pid))) this.restartSoon();
    })();
  }

  private async reloadCount(): Promise<{ reloads: number; failed: number } | undefined> {
    const proc = await socketCommand(this.cfg.masterSocket, 'show proc').catch(() => '');
    const m = /^\d+\s+master\s+(\d+)\s+\[failed:\s*(\d+)\]/m.exec(proc);
    return m ? { reloads: Number(m[1]), failed: Number(m[2]) } : undefined;
  }

  /** Makes the master load the config file again; old workers finish their connections. */
  async reload(): Promise<void> {
    if (this.restarting) {
      // The restart reads the file we just wrote.
      await this.restarting;
      return;
    }
    const pid = this.pid;
    if (pid === undefined || !isAlive(pid)) {
      this.restartSoon();
      await this.restarting;
      return;
    }
    await this.saveServerState();
    const before = await this.reloadCount();
    process.kill(pid, 'SIGUSR2');
    const deadline = Date.now() + RELOAD_TIMEOUT_MS;
    for (;;) {
      await sleep(20);
      const now = await this.reloadCount();
      if (before && now && now.reloads > before.reloads) {
        if (now.failed > before.failed)
          throw new Error(`haproxy reload failed; see ${this.cfg.haproxyLog}`);
        break;
      }
      if (!before && now) break;
      if (Date.now() > deadline) throw new Error('haproxy did not confirm the reload');
    }
    this.reloads++;
  }

  /**
   * Every server's health as HAProxy sees it now, by `<backend>/<server>` (e.g. "UP", "DOWN",
   * "MAINT", "no check"); undefined when HAProxy does not answer.
   */
  async serverStatuses(): Promise<Map<string, string> | undefined> {
    let csv: string;
    try {
      csv = await socketCommand(this.cfg.socket, 'show stat');
    } catch {
      return undefined;
    }
    const header = (csv.split('\n', 1)[0] ?? '').replace(/^# /, '').split(',');
    if (!['pxname', 'svname', 'status'].every((c) => header.includes(c))) return undefined;
    const out = new Map<string, string>();
    for (const r of serverRows(csv)) out.set(`${r.pxname}/${r.svname}`, r.status ?? '');
    return out;
  }

  // Health states carried over a reload: without this, an instance known dead would get traffic again.
  private async saveServerState(): Promise<void> {
    try {
      const state = await socketCommand(this.cfg.socket, 'show servers state');
      const tmp = `${this.cfg.serverStateFile}.tmp`;
      fs.writeFileSync(tmp, state);
      fs.renameSync(tmp, this.cfg.serverStateFile);
    } catch (err) {
      log.debug({ err: (err as Error).message }, 'server state not saved');
    }
  }

  /** Stops supervising; with `stopHaproxy`, soft-stops HAProxy (requests in flight finish). */
  async stop(stopHaproxy: boolean, timeoutMs = 10000): Promise<void> {
    this.stopping = true;
    clearInterval(this.superviseTimer);
    const pid = this.pid;
    if (!stopHaproxy || pid === undefined || !isAlive(pid)) return;
    process.kill(pid, 'SIGUSR1');
    const deadline = Date.now() + timeoutMs;
    while (isAlive(pid) && Date.now() < deadline) await sleep(50);
    if (isAlive(pid)) process.kill(pid, 'SIGTERM');
    while (isAlive(pid) && Date.now() < deadline + 2000) await sleep(50);
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    log.info({ pid }, 'haproxy stopped');
  }
}
