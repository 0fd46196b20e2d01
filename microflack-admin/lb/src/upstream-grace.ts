// Upstreams that vanish from etcd while their instance still works stay routed for a grace period.
//
// Why: after an etcd outage, leases expire and instances register again; for a moment the tree can
// lack an instance that is alive and serving, or even every instance of a service. Routing only
// from the momentary set of keys would empty a healthy backend (clients get 503s, or worse, another
// service's answer). A vanished upstream is therefore kept while both of these say it is healthy:
// HAProxy's own health check (its status in `show stat`) and a direct GET /healthz from here. An
// instance that deregisters on shutdown answers /healthz with 503 at once (it is draining), and a
// dead one does not answer, so both leave the config as quickly as before; only live ones are kept,
// and never for longer than the grace period (the instance registers itself again within 2 s).
import { backendName, serverName } from './render.js';
import type { Server, Service, ServicesModel } from './services.js';

export interface Kept {
  service: Service;
  server: Server;
  since: number;
}

export interface GraceDecision {
  service: string;
  instance: string;
  address: string;
  /** kept: still routed though gone from etcd; dropped: left out, with the reason. */
  action: 'kept' | 'dropped' | 'back';
  reason: string;
}

/**
 * Whether the instance at `address` says it is healthy: true when GET /healthz answered 200, false
 * when it answered anything else or the connection was refused or reset (draining, or dead), and
 * undefined when no answer came in time: a busy machine is not a verdict, HAProxy's own checks are.
 */
export type HealthProbe = (address: string) => Promise<boolean | undefined>;

const PROBE_TIMEOUT_MS = 800;

export const probeHealthz: HealthProbe = async (address) => {
  try {
    const res = await fetch(`http://${address}/healthz`, {
      signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
      headers: { 'user-agent': 'microflack-lb' },
    });
    await res.arrayBuffer().catch(() => undefined);
    return res.status === 200;
  } catch (err) {
    const name = (err as Error).name;
    return name === 'TimeoutError' || name === 'AbortError' ? undefined : false;
  }
};

const keyOf = (service: string, server: Server) => `${service}\0${server.name}\0${server.address}`;

export class UpstreamGrace {
  private readonly kept = new Map<string, Kept>();
  private last: ServicesModel | undefined;

  constructor(
    private readonly graceMs: number,
    private readonly probe: HealthProbe = probeHealthz,
  ) {}

  /** How many vanished upstreams are routed now (the configurator re-checks while there are any). */
  get size(): number {
    return this.kept.size;
  }

  /**
   * The model to render: `fresh` (from etcd) plus the upstreams that vanished from it but are
   * still healthy and within the grace period. `statuses` is HAProxy's view (`<backend>/<server>`
   * to status), when it answered.
   */
  async apply(
    fresh: ServicesModel,
    statuses: Map<string, string> | undefined,
    now = Date.now(),
  ): Promise<{ model: ServicesModel; decisions: GraceDecision[] }> {
    const decisions: GraceDecision[] = [];
    const byName = new Map(fresh.services.map((s) => [s.name, s]));
    const inFresh = (service: string, server: Server) =>
      byName.get(service)?.servers.some((s) => s.name === server.name) ?? false;

    if (this.graceMs > 0) {
      for (const svc of this.last?.services ?? []) {
        for (const server of svc.servers) {
          const key = keyOf(svc.name, server);
          if (inFresh(svc.name, server) || this.kept.has(key)) continue;
          this.kept.set(key, { service: { ...svc, servers: [] }, server, since: now });
        }
      }
    }

    const checks = [...this.kept].map(async ([key, k]) => {
      const base = { service: k.service.name, instance: k.server.name, address: k.server.address };
      if (inFresh(k.service.name, k.server)) {
        this.kept.delete(key);
        decisions.push({ ...base, action: 'back', reason: 'registered again' });
        return;
      }
      let reason: string | undefined;
      const status = statuses?.get(
        `${backendName(k.service.name)}/${serverName(k.server.name, k.server.address)}`,
      );
      if (now - k.since >= this.graceMs) reason = `not registered again within ${this.graceMs} ms`;
      else if (statuses && !status?.startsWith('UP'))
        reason = `HAProxy sees it ${status || 'absent'}`;
      else if ((await this.probe(k.server.address)) === false)
        reason = '/healthz does not answer 200';
      if (reason) {
        this.kept.delete(key);
        decisions.push({ ...base, action: 'dropped', reason });
      } else if (k.since === now) {
        decisions.push({ ...base, action: 'kept', reason: 'gone from etcd, still healthy' });
      }
    });
    await Promise.all(checks);

    const services = fresh.services.map((s) => ({ ...s, servers: [...s.servers] }));
    const locations = new Set(services.map((s) => s.location));
    for (const k of this.kept.values()) {
      let svc = services.find((s) => s.name === k.service.name);
      if (!svc) {
        // The whole service vanished: keep its route while one of its instances is kept.
        if (locations.has(k.service.location)) continue;
        svc = { ...k.service, servers: [] };
        services.push(svc);
        locations.add(svc.location);
      }
      if (!svc.servers.some((s) => s.name === k.server.name)) svc.servers.push(k.server);
    }
    services.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const s of services) s.servers.sort((a, b) => (a.name < b.name ? -1 : 1));
    const model = { services, rejected: fresh.rejected };
    this.last = model;
    return { model, decisions };
  }
}
