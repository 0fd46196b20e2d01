// Renders haproxy.cfg from the services model and the template an operator can read and edit.
import { createHash } from 'node:crypto';
import type { ServicesModel } from './services.js';
import { renderTemplate, type View } from './template.js';

export interface RenderSettings {
  bind: string;
  port: number;
  socket: string;
  serverStateFile: string;
  hardStopAfter: string;
  /** maxconn of every server of a backend that is not sticky (Socket.IO keeps its connections). */
  serverMaxconn: number;
  /** Unset: no stats page (it is never served without a password). */
  statsPassword?: string;
}

export function backendName(service: string): string {
  return `svc_${service}`;
}

// The address is part of the server's name: HAProxy's saved server state (kept across reloads) is
// matched by name and would otherwise put an instance restarted on a new port back on its old one.
export function serverName(instance: string, address: string): string {
  return `${instance}_${createHash('sha1').update(address).digest('hex').slice(0, 8)}`;
}

export function buildView(model: ServicesModel, s: RenderSettings): View {
  const prefixed = model.services.filter((svc) => svc.location !== '/');
  // Longest prefix first, so /api/users/admin is matched before /api/users.
  prefixed.sort(
    (a, b) => b.location.length - a.location.length || (a.location < b.location ? -1 : 1),
  );
  const root = model.services.find((svc) => svc.location === '/');
  return {
    bind: s.bind,
    port: s.port,
    socket: s.socket,
    serverStateFile: s.serverStateFile,
    hardStopAfter: s.hardStopAfter,
    serverMaxconn: s.serverMaxconn,
    stats: s.statsPassword ? { password: s.statsPassword } : undefined,
    routes: prefixed.map((svc) => ({ backend: backendName(svc.name), location: svc.location })),
    defaultBackend: root ? backendName(root.name) : undefined,
    backends: model.services.map((svc) => ({
      backend: backendName(svc.name),
      service: svc.name,
      balance: svc.balance,
      sticky: svc.sticky,
      servers: svc.servers.map((srv) => ({
        name: serverName(srv.name, srv.address),
        address: srv.address,
        weight: srv.weight,
        cookie: srv.cookie,
      })),
    })),
  };
}

export function renderConfig(
  template: string,
  model: ServicesModel,
  settings: RenderSettings,
): string {
  return renderTemplate(template, buildView(model, settings));
}
