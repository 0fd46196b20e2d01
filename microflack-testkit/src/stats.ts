// HAProxy's view of the instances, from its stats CSV (what operators see at /stats), parsed by
// the LB's own parser.
import { serverRows } from '@microflack/lb/stats-csv';
import { basic } from './index.js';

export interface ServerStats {
  backend: string;
  name: string;
  addr: string;
  status: string;
  /** Sessions open to the server now, and in total. */
  scur: number;
  stot: number;
  /** HTTP answers with a 3xx status (304 Not Modified among them). */
  hrsp3xx: number;
}

export async function serverStats(lbUrl: string, password: string): Promise<ServerStats[]> {
  const res = await fetch(`${lbUrl}/stats;csv`, {
    headers: basic('admin', password),
    signal: AbortSignal.timeout(3000),
  });
  if (res.status !== 200) throw new Error(`stats: ${res.status}`);
  return serverRows(await res.text()).map((r) => ({
    backend: r.pxname ?? '',
    name: r.svname ?? '',
    addr: r.addr ?? '',
    status: r.status ?? '',
    scur: Number(r.scur),
    stot: Number(r.stot),
    hrsp3xx: Number(r.hrsp_3xx ?? 0),
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

/** The instance's server in `backend` (an instance may serve several: messages also serves rooms). */
export async function statsOf(
  lbUrl: string,
  password: string,
  instance: string,
  backend?: string,
): Promise<ServerStats | undefined> {
  return (await serverStats(lbUrl, password)).find(
    (s) => isServerOf(s, instance) && (backend === undefined || s.backend === backend),
  );
}
