// The kernel's own count of what went wrong on the wire: a fan-out's rare slow post is often not
// the platform's doing but a packet the kernel dropped and TCP sent again after its timeout.
import fs from 'node:fs';

export interface NetCounters {
  /** TCP segments sent again (Tcp RetransSegs in /proc/net/snmp). */
  retransSegs: number;
  /** Retransmission timeouts that fired (TcpExt TCPTimeouts in /proc/net/netstat): each held a
   * connection's data for at least TCP's minimum RTO, 200 ms. */
  timeouts: number;
  /** Packets dropped because a CPU's input backlog was full (net.core.netdev_max_backlog):
   * loopback traffic goes through it, so a burst of writes to thousands of local sockets can
   * overflow it (second column of /proc/net/softnet_stat, summed over CPUs). */
  backlogDrops: number;
}

/** The counters now, or undefined where /proc cannot be read (another OS, a sandbox). */
export function netCounters(): NetCounters | undefined {
  try {
    const retransSegs = counter('/proc/net/snmp', 'Tcp:', 'RetransSegs');
    const timeouts = counter('/proc/net/netstat', 'TcpExt:', 'TCPTimeouts');
    let backlogDrops = 0;
    for (const line of fs.readFileSync('/proc/net/softnet_stat', 'utf8').trim().split('\n')) {
      backlogDrops += parseInt(line.trim().split(/\s+/)[1] ?? '0', 16);
    }
    if (![retransSegs, timeouts, backlogDrops].every(Number.isFinite)) return undefined;
    return { retransSegs, timeouts, backlogDrops };
  } catch {
    return undefined;
  }
}

/** One counter of a /proc/net table: a line of names, then a line of values, both `prefix`ed. */
function counter(file: string, prefix: string, name: string): number {
  const [names, values] = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith(prefix))
    .map((l) => l.split(/\s+/));
  return Number(values?.[names?.indexOf(name) ?? -1]);
}

/** What happened between two readings (undefined if either is). */
export function netDelta(before?: NetCounters, after?: NetCounters): NetCounters | undefined {
  if (!before || !after) return undefined;
  return {
    retransSegs: after.retransSegs - before.retransSegs,
    timeouts: after.timeouts - before.timeouts,
    backlogDrops: after.backlogDrops - before.backlogDrops,
  };
}

/** The input backlog's length (net.core.netdev_max_backlog), if readable. */
export function netdevMaxBacklog(): number | undefined {
  try {
    const n = Number(fs.readFileSync('/proc/sys/net/core/netdev_max_backlog', 'utf8').trim());
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}
