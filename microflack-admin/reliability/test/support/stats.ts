// HAProxy's view of the instances, from its stats CSV (what operators see at /stats).

export interface ServerStats {
  backend: string;
  name: string;
  addr: string;
  status: string;
  /** Sessions open to the server now, and in total. */
  scur: number;
  stot: number;
}

export async function serverStats(lbUrl: string, password: string): Promise<ServerStats[]> {
  const res = await fetch(`${lbUrl}/stats;csv`, {
    headers: { authorization: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}` },
    signal: AbortSignal.timeout(3000),
  });
  if (res.status !== 200) throw new Error(`stats: ${res.status}`);
  const [head, ...rows] = (await res.text()).trim().split('\n');
  const cols = (head ?? '').replace(/^# /, '').split(',');
  const col = (row: string[], name: string) => row[cols.indexOf(name)] ?? '';
  return rows
    .map((line) => line.split(','))
    .filter((r) => r[1] !== 'FRONTEND' && r[1] !== 'BACKEND')
    .map((r) => ({
      backend: col(r, 'pxname'),
      name: col(r, 'svname'),
      addr: col(r, 'addr'),
      status: col(r, 'status'),
      scur: Number(col(r, 'scur')),
      stot: Number(col(r, 'stot')),
    }));
}

/** The instance name a service process runs as, from its log (HAProxy names servers after it). */
export function instanceName(log: string): string {
  const line = log.split('\n').find((l) => l.includes('"instance":"'));
  const name = line ? (JSON.parse(line) as { instance?: string }).instance : undefined;
  if (!name) throw new Error('no instance name in the log yet');
  return name;
}

/** HAProxy names a server `<instance>` or `<instance>_<suffix>`. */
export function isServerOf(s: ServerStats, instance: string): boolean {
  return s.name === instance || s.name.startsWith(`${instance}_`);
}

export async function statsOf(
  lbUrl: string,
  password: string,
  instance: string,
): Promise<ServerStats | undefined> {
  return (await serverStats(lbUrl, password)).find((s) => isServerOf(s, instance));
}
