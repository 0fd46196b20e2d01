// Turns the /services tree from etcd into a checked model; anything not of the expected form is left out.
import { createHash } from 'node:crypto';

export const SERVICES_PREFIX = '/services/';

export const SERVICE_NAME = /^[a-z][a-z0-9_-]{0,62}$/;
// Instance names are host-derived by default (hostname-pid-hex), so upper case and dots are allowed.
export const INSTANCE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
// A path prefix of unreserved URL characters; no `//`, `.` segments or trailing slash (but `/` itself).
export const LOCATION =
  /^\/(?:[A-Za-z0-9_~-][A-Za-z0-9._~-]*(?:\/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*)?$/;
const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV4 = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const UPSTREAM = /^([^:\s]+):(\d{1,5})(?: weight (\d{1,3}))?$/;

/** Backend options an etcd key may set, with the values each accepts. */
export const BACKEND_OPTIONS: Record<string, ReadonlySet<string>> = {
  balance: new Set(['roundrobin', 'static-rr', 'leastconn', 'first', 'source', 'random']),
};

export const SOCKETIO_LOCATION = '/socket.io';

export interface Server {
  name: string;
  address: string;
  weight: number;
  /** Value of the sticky cookie that pins a client to this server. */
  cookie: string;
}

export interface Service {
  name: string;
  location: string;
  balance: string;
  /** Socket.IO sessions live on one instance: pin each client there with a cookie. */
  sticky: boolean;
  servers: Server[];
}

export interface Rejected {
  key: string;
  reason: string;
}

export interface ServicesModel {
  services: Service[];
  rejected: Rejected[];
}

export interface KeyValue {
  key: string;
  value: string;
}

export function parseUpstream(value: string): { address: string; weight: number } | string {
  const m = UPSTREAM.exec(value);
  if (!m) return 'upstream is not "host:port" optionally followed by " weight N"';
  const [, host = '', portText = '', weightText] = m;
  if (!IPV4.test(host) && (!HOSTNAME.test(host) || /^[\d.]+$/.test(host)))
    return 'upstream host is not an IPv4 address or hostname';
  const port = Number(portText);
  if (port < 1 || port > 65535) return 'upstream port is not 1-65535';
  const weight = weightText === undefined ? 1 : Number(weightText);
  if (weight > 256) return 'upstream weight is not 0-256';
  return { address: `${host}:${port}`, weight };
}

function cookieFor(service: string, instance: string): string {
  // Opaque, so the cookie does not tell clients host names or process ids.
  return createHash('sha256').update(`${service}/${instance}`).digest('hex').slice(0, 12);
}

/** Builds the model; never throws on bad data, which ends up in `rejected` instead. */
export function buildModel(kvs: KeyValue[]): ServicesModel {
  const rejected: Rejected[] = [];
  const raw = new Map<
    string,
    { location?: string; balance?: string; servers: Map<string, Server> }
  >();
  const entry = (svc: string) => {
    let e = raw.get(svc);
    if (!e) raw.set(svc, (e = { servers: new Map() }));
    return e;
  };

  for (const { key, value } of [...kvs].sort((a, b) => (a.key < b.key ? -1 : 1))) {
    if (!key.startsWith(SERVICES_PREFIX)) continue;
    const parts = key.slice(SERVICES_PREFIX.length).split('/');
    const [svc = '', kind, name] = parts;
    const reject = (reason: string) => rejected.push({ key, reason });
    if (!SERVICE_NAME.test(svc)) {
      reject('service name is not of the form [a-z][a-z0-9_-]*');
      continue;
    }
    if (parts.length === 2 && kind === 'location') {
      if (!LOCATION.test(value) || value.length > 200)
        reject('location is not a path of safe characters starting with /');
      else entry(svc).location = value;
    } else if (parts.length === 3 && kind === 'backend') {
      const allowed = BACKEND_OPTIONS[name ?? ''];
      if (!allowed || !Object.hasOwn(BACKEND_OPTIONS, name ?? ''))
        reject('backend option is not allowed');
      else if (!allowed.has(value))
        reject(`backend ${name} value is not one of ${[...allowed].join(', ')}`);
      else entry(svc).balance = value;
    } else if (parts.length === 3 && kind === 'upstream') {
      if (!INSTANCE_NAME.test(name ?? '')) {
        reject('instance name is not of the form [A-Za-z0-9][A-Za-z0-9_.-]*');
        continue;
      }
      const up = parseUpstream(value);
      if (typeof up === 'string') reject(up);
      else entry(svc).servers.set(name!, { name: name!, ...up, cookie: cookieFor(svc, name!) });
    } else {
      reject('key is not location, backend/<option> or upstream/<instance>');
    }
  }

  const services: Service[] = [];
  const byLocation = new Map<string, string>();
  for (const [name, e] of [...raw].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const location = e.location ?? `/${name}`;
    const owner = byLocation.get(location);
    if (owner) {
      // Two services on one prefix: keep the first by name, so the choice does not flap between renders.
      rejected.push({
        key: `${SERVICES_PREFIX}${name}/location`,
        reason: `location ${location} already belongs to ${owner}`,
      });
      continue;
    }
    byLocation.set(location, name);
    services.push({
      name,
      location,
      balance: e.balance ?? 'roundrobin',
      sticky: location === SOCKETIO_LOCATION || location.startsWith(`${SOCKETIO_LOCATION}/`),
      servers: [...e.servers.values()],
    });
  }
  return { services, rejected };
}
