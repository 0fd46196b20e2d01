// The test's side of load-worker.ts: a LoadGenerator run by a child process that may live in
// another network namespace (`prefix`, e.g. ['ip', 'netns', 'exec', 'mfc-hc']).
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { DeliveryReport, LoadOptions, LoadReport, Login } from './load.js';

const worker = path.join(path.dirname(fileURLToPath(import.meta.url)), 'load-worker.js');

export class RemoteLoad {
  private readonly child: ChildProcess;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  private nextId = 1;
  private stderr = '';

  constructor(
    private readonly url: string,
    prefix: string[] = [],
  ) {
    const [cmd, ...args] = [...prefix, process.execPath, worker];
    this.child = spawn(cmd as string, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr?.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    readline.createInterface({ input: this.child.stdout! }).on('line', (line) => {
      let msg: { id?: number; result?: unknown; error?: string };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        return;
      }
      const p = this.pending.get(msg.id ?? -1);
      if (!p) return;
      this.pending.delete(msg.id!);
      if (msg.error !== undefined) p.reject(new Error(msg.error));
      else p.resolve(msg.result);
    });
    this.child.on('exit', (code) => {
      for (const p of this.pending.values()) {
        p.reject(new Error(`load worker exited (${code}): ${this.stderr}`));
      }
      this.pending.clear();
    });
  }

  private call<T>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 60000): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`load worker: ${cmd} did not answer in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.stdin!.write(`${JSON.stringify({ id, cmd, url: this.url, ...args })}\n`);
    });
  }

  /** Registers `count` users named `<prefix><i>` and signs them in; the load uses them. */
  logins(prefix: string, count: number): Promise<Login[]> {
    return this.call('logins', { prefix, count });
  }

  start(options: Omit<LoadOptions, 'logins' | 'url'>): Promise<void> {
    return this.call('start', { options: { ...options, url: this.url } });
  }

  stop(): Promise<LoadReport> {
    return this.call('stop', {}, 90000);
  }

  checkDelivery(waitMs = 10000): Promise<DeliveryReport & { acknowledgedIds: number[] }> {
    return this.call('checkDelivery', { waitMs }, waitMs + 120000);
  }

  /** One GET through the same network, as the worker sees it. */
  get(path: string): Promise<{ status: number; body: string }> {
    return this.call('get', { path }, 15000);
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    await this.call('exit', {}, 5000).catch(() => this.child.kill('SIGKILL'));
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}
