// What confd did: watch /services in etcd, render, check, swap in atomically and reload HAProxy.
import fs from 'node:fs';
import { createEtcd, logger, type Etcd, type Watcher } from '@microflack/common';
import type { LbConfig } from './config.js';
import { checkConfig, Haproxy } from './haproxy.js';
import { renderConfig } from './render.js';
import { buildModel, SERVICES_PREFIX, type ServicesModel } from './services.js';
import { UpstreamGrace } from './upstream-grace.js';

const log = logger.child({ module: 'lb' });

// Keep coalescing a burst, but never delay a change by more than this.
const MAX_DEBOUNCE_MS = 1000;
// How often upstreams kept through the grace period are checked again.
const GRACE_RECHECK_MS = 500;

/** The LB's etcd client: the platform's (fail fast, watches back within 2 s of etcd). */
export function createLbEtcd(hosts: string[]): Etcd {
  return createEtcd(hosts);
}

export class Configurator {
  readonly haproxy: Haproxy;
  private readonly etcd: Etcd;
  private watcher: Watcher | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private firstChangeAt = 0;
  private resyncTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private pending = false;
  private stopped = false;
  private etcdDown = false;
  /** The config HAProxy is running now (the file on disk). */
  private current: string | undefined;
  /** The last config `haproxy -c` refused: not checked (nor logged) again at every resync. */
  private refused: string | undefined;
  private readonly warned = new Set<string>();
  private readonly grace: UpstreamGrace;
  private graceTimer: NodeJS.Timeout | undefined;
  private watchLost = false;

  constructor(private readonly cfg: LbConfig) {
    this.haproxy = new Haproxy(cfg);
    this.etcd = createLbEtcd(cfg.etcd);
    this.grace = new UpstreamGrace(cfg.upstreamGraceMs);
  }

  async start(): Promise<void> {
    fs.mkdirSync(this.cfg.stateDir, { recursive: true });
    if (!fs.existsSync(this.cfg.serverStateFile)) fs.writeFileSync(this.cfg.serverStateFile, '1\n');
    const template = fs.readFileSync(this.cfg.template, 'utf8');
    if (fs.existsSync(this.cfg.cfgFile)) this.current = fs.readFileSync(this.cfg.cfgFile, 'utf8');

    // First config: from etcd if it answers; else the last good file (a restart during an etcd
    // outage changes nothing); else no services at all, so the port answers 404/503 meanwhile.
    const fresh = await this.readServices().catch((err) => {
      log.warn({ err: err.message }, 'etcd unreachable at start');
      return undefined;
    });
    const model = fresh && (await this.grace.apply(fresh, undefined)).model;
    let text = model ? this.render(template, model) : undefined;
    if (text === undefined && this.current === undefined)
      text = this.render(template, { services: [], rejected: [] });
    if (text === undefined && model) throw new Error('the template does not render; see the log');

    if (this.cfg.manageHaproxy) {
      const adopted = this.haproxy.adopt();
      if (text !== undefined && text !== this.current) await this.swapIn(text, adopted);
      if (!adopted) await this.haproxy.start();
      this.haproxy.supervise();
    } else if (text !== undefined && text !== this.current) {
      await this.swapIn(text, false);
    }

    this.watch();
    this.resyncTimer = setInterval(() => this.schedule('resync', 0), this.cfg.resyncIntervalMs);
  }

  private watch(): void {
    const w = this.etcd.watch().prefix(SERVICES_PREFIX).watcher();
    this.watcher = w;
    w.on('put', () => this.schedule('put'));
    w.on('delete', () => this.schedule('delete'));
    // After a reconnect, events during the outage may be gone: read the whole tree again.
    w.on('connected', () => {
      if (this.watchLost) log.info('etcd watch back');
      this.watchLost = false;
      this.schedule('watch connected', 0);
    });
    w.on('disconnected', (err: Error) => {
      // Once per outage, not at every reconnect attempt.
      if (!this.stopped && !this.watchLost)
        log.warn({ err: err?.message }, 'etcd watch lost; routing with the last config');
      this.watchLost = true;
    });
    w.on('error', (err: Error) => {
      // A cancelled watch (e.g. compacted revision) does not come back on its own.
      log.warn({ err: err.message }, 'etcd watch failed; watching again');
      if (this.watcher !== w || this.stopped) return;
      w.cancel().catch(() => undefined);
      setTimeout(() => !this.stopped && this.watch(), 1000).unref();
    });
  }

  /** Debounced: a burst of registrations becomes one reload. */
  private schedule(reason: string, delayMs = this.cfg.debounceMs): void {
    if (this.stopped) return;
    const now = Date.now();
    if (!this.debounceTimer) this.firstChangeAt = now;
    const wait = Math.max(0, Math.min(delayMs, this.firstChangeAt + MAX_DEBOUNCE_MS - now));
    clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      log.debug({ reason }, 'sync');
      this.sync();
    }, wait);
  }

  private sync(): void {
    if (this.running) {
      this.pending = true;
      return;
    }
    this.running = this.syncOnce()
      .catch((err) => log.error({ err: err.message }, 'sync failed; keeping the last good config'))
      .finally(() => {
        this.running = undefined;
        if (this.pending && !this.stopped) {
          this.pending = false;
          this.sync();
        }
      });
  }

  private async syncOnce(): Promise<void> {
    let model: ServicesModel;
    try {
      model = await this.readServices();
    } catch (err) {
      if (!this.etcdDown)
        log.warn({ err: (err as Error).message }, 'etcd unreachable; routing with the last config');
      this.etcdDown = true;
      return;
    }
    if (this.etcdDown) log.info('etcd is back; resynced');
    this.etcdDown = false;
    model = await this.withGrace(model);
    // Re-read each time, so an operator's edit to the template takes effect at the next change.
    const text = this.render(fs.readFileSync(this.cfg.template, 'utf8'), model);
    if (text === undefined || text === this.current) return;
    await this.swapIn(text, this.cfg.manageHaproxy);
  }

  /** The etcd model plus upstreams that vanished from it but still work (see upstream-grace.ts). */
  private async withGrace(fresh: ServicesModel): Promise<ServicesModel> {
    const statuses = this.cfg.manageHaproxy ? await this.haproxy.serverStatuses() : undefined;
    const { model, decisions } = await this.grace.apply(fresh, statuses);
    for (const d of decisions) {
      const msg =
        d.action === 'kept'
          ? 'upstream gone from etcd but healthy; kept'
          : d.action === 'back'
            ? 'kept upstream registered again'
            : 'upstream gone from etcd; left out';
      log.info(d, msg);
    }
    clearTimeout(this.graceTimer);
    if (this.grace.size > 0 && !this.stopped) {
      this.graceTimer = setTimeout(() => this.schedule('grace recheck', 0), GRACE_RECHECK_MS);
    }
    return model;
  }

  private async readServices(): Promise<ServicesModel> {
    const all = await this.etcd.getAll().prefix(SERVICES_PREFIX).strings();
    const model = buildModel(Object.entries(all).map(([key, value]) => ({ key, value })));
    for (const r of model.rejected) {
      // Once per bad key and value, not at every render.
      const id = `${r.key}\0${all[r.key] ?? ''}`;
      if (this.warned.has(id)) continue;
      this.warned.add(id);
      log.warn(
        { key: JSON.stringify(r.key).slice(0, 300), reason: r.reason },
        'etcd key left out of the config',
      );
    }
    return model;
  }

  private render(template: string, model: ServicesModel): string | undefined {
    try {
      return renderConfig(template, model, {
        bind: this.cfg.bind,
        port: this.cfg.port,
        socket: this.cfg.socket,
        serverStateFile: this.cfg.serverStateFile,
        hardStopAfter: this.cfg.hardStopAfter,
        serverMaxconn: this.cfg.serverMaxconn,
        statsPassword: this.cfg.statsPassword,
      });
    } catch (err) {
      log.error({ err: (err as Error).message }, 'render failed; keeping the last good config');
      return undefined;
    }
  }

  /** Check, atomic rename, reload; on any failure the running config stays as it was. */
  private async swapIn(text: string, reload: boolean): Promise<void> {
    if (text === this.refused) return;
    const started = Date.now();
    const candidate = `${this.cfg.cfgFile}.candidate`;
    fs.writeFileSync(candidate, text, { mode: 0o600 });
    const check = await checkConfig(this.cfg.haproxyBin, candidate);
    if (!check.ok) {
      log.error(
        { output: check.output },
        'haproxy -c rejected the new config; keeping the last good one',
      );
      this.refused = text;
      return;
    }
    fs.renameSync(candidate, this.cfg.cfgFile);
    this.current = text;
    if (reload) {
      await this.haproxy.reload().catch((err) => {
        // Unknown what HAProxy runs now: the next resync reloads again.
        this.current = undefined;
        throw err;
      });
      log.info({ ms: Date.now() - started, reloads: this.haproxy.reloads }, 'haproxy reloaded');
    } else {
      log.info({ ms: Date.now() - started }, 'config written');
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.debounceTimer);
    clearInterval(this.resyncTimer);
    clearTimeout(this.graceTimer);
    await this.running;
    await this.watcher?.cancel().catch(() => undefined);
    this.etcd.close();
    await this.haproxy.stop(this.cfg.stopHaproxyOnExit, this.cfg.stopTimeoutMs);
  }
}
