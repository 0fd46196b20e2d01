// Turns the /services tree from etcd into a checked model; anything not of the expected form is left out.
import { createHash } from 'node:crypto';
import {
  BACKEND_OPTIONS,
  DEFAULT_BALANCE,
  INSTANCE_NAME,
  isBackendOption,
  isLocation,
  locationKey,
  parseUpstream,
  SERVICE_NAME,
  SERVICES_PREFIX,
  SOCKETIO_LOCATION,
} from '@microflack/common';

// The names, values and key layout are the platform's contract, shared with the registering side.
export {
  BACKEND_OPTIONS,
  INSTANCE_NAME,
  parseUpstream,
  SERVICE_NAME,
  SERVICES_PREFIX,
} from '@microflack/common';

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
      if (!isLocation(value)) reject('location is not a path of safe characters starting with /');
      else entry(svc).location = value;
    } else if (parts.length === 3 && kind === 'backend') {
      const option = name ?? '';
      if (!isBackendOption(option)) reject('backend option is not allowed');
      else if (!(BACKEND_OPTIONS[option] as readonly string[]).includes(value))
        reject(`backend ${option} value is not one of ${BACKEND_OPTIONS[option].join(', ')}`);
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
        key: locationKey(name),
        reason: `location ${location} already belongs to ${owner}`,
      });
      continue;
    }
    byLocation.set(location, name);
    services.push({
      name,
      location,
      balance: e.balance ?? DEFAULT_BALANCE,
      sticky: location === SOCKETIO_LOCATION || location.startsWith(`${SOCKETIO_LOCATION}/`),
      servers: [...e.servers.values()],
    });
  }
  return { services, rejected };
}
