// etcd as a test looks at it from outside: its JSON gateway straight, not the platform's client.
const b64 = (s: string) => Buffer.from(s).toString('base64');

async function gateway<T>(etcdUrl: string, path: string, body: object): Promise<T> {
  const res = await fetch(`${etcdUrl.replace(/\/+$/, '')}${path}`, {
    method: 'POST',
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`etcd ${path}: ${res.status} ${text.slice(0, 200)}`);
  return JSON.parse(text) as T;
}

/** The id of the lease `key` is attached to, '0' for none, undefined when the key is absent. */
export async function leaseOfKey(etcdUrl: string, key: string): Promise<string | undefined> {
  const r = await gateway<{ kvs?: Array<{ lease?: string }> }>(etcdUrl, '/v3/kv/range', {
    key: b64(key),
  });
  const kv = r.kvs?.[0];
  return kv ? (kv.lease ?? '0') : undefined;
}

/** Revokes a lease behind its owner's back (its keys go with it). */
export async function revokeLease(etcdUrl: string, id: string): Promise<void> {
  await gateway(etcdUrl, '/v3/lease/revoke', { ID: id });
}

/** Seconds left to a lease (-1 once it is gone). */
export async function leaseTtl(etcdUrl: string, id: string): Promise<number> {
  const r = await gateway<{ TTL?: string }>(etcdUrl, '/v3/lease/timetolive', { ID: id });
  return Number(r.TTL ?? -1);
}
