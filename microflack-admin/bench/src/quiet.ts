// A load run starts on a quiet machine, so that what the runs before left running (MariaDB purging
// the rows of the write runs, say) is not counted as its cost, and a run that is slow says whether
// the machine was busy. Why: the fan-out to 9,500 that followed the HTTP runs took 368 ms of a
// gateway's CPU a post where the same fan-out run alone took 205 ms. That is not the whole story:
// the next full run, quiet before its fan-outs (4-7% busy), still took 556 ms.
import fs from 'node:fs';
import os from 'node:os';
import { cpuMs } from './live.js';

/** Busy share of all cores (0 to 1) in os.cpus() times between two readings. */
function busyShare(before: os.CpuInfo[], after: os.CpuInfo[]): number {
  let busy = 0;
  let total = 0;
  after.forEach((cpu, i) => {
    const was = before[i]?.times;
    if (!was) return;
    const d = {
      user: cpu.times.user - was.user,
      nice: cpu.times.nice - was.nice,
      sys: cpu.times.sys - was.sys,
      idle: cpu.times.idle - was.idle,
      irq: cpu.times.irq - was.irq,
    };
    const all = d.user + d.nice + d.sys + d.idle + d.irq;
    total += all;
    busy += all - d.idle;
  });
  return total > 0 ? busy / total : 0;
}

/** Every process's CPU ms so far, by pid (a process gone meanwhile is left out). */
function processCpu(): Map<number, number> {
  const all = new Map<number, number>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const ms = cpuMs(Number(entry));
    if (ms !== undefined) all.set(Number(entry), ms);
  }
  return all;
}

function commandOf(pid: number): string {
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    return argv
      .slice(0, 3)
      .map((a) => a.split('/').pop())
      .join(' ')
      .slice(0, 60);
  } catch {
    return `pid ${pid}`;
  }
}

export interface Quiet {
  /** How long it waited, in ms. */
  waitedMs: number;
  /** The busy share of the last second watched. */
  busy: number;
  /** When still busy at the deadline: the processes that used the most CPU in that last second. */
  busiest?: string[];
}

/**
 * Waits, one second at a time and at most `maxMs`, until the machine's cores were busy less than
 * `threshold` of a second (this process's own watching included).
 */
export async function waitQuiet(maxMs = 60000, threshold = 0.15): Promise<Quiet> {
  const started = Date.now();
  for (;;) {
    const cpus = os.cpus();
    const procs = Date.now() - started + 1000 >= maxMs ? processCpu() : undefined;
    await new Promise((r) => setTimeout(r, 1000));
    const busy = busyShare(cpus, os.cpus());
    const waitedMs = Date.now() - started;
    if (busy < threshold) return { waitedMs, busy };
    if (procs) {
      const after = processCpu();
      const busiest = [...after]
        .map(([pid, ms]) => [pid, ms - (procs.get(pid) ?? ms)] as const)
        .filter(([, ms]) => ms >= 20)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 5)
        .map(([pid, ms]) => `${commandOf(pid)} ${ms} ms`);
      return { waitedMs, busy, busiest };
    }
  }
}

/** One line for the log: how long the machine took to be quiet, or what kept it busy. */
export function describeQuiet(q: Quiet): string {
  const share = `${Math.round(q.busy * 100)}%`;
  return q.busiest
    ? `the machine was still ${share} busy after ${Math.round(q.waitedMs / 1000)} s: ${q.busiest.join(', ') || 'no single process'}`
    : `the machine was quiet (${share} busy) after ${Math.round(q.waitedMs / 1000)} s`;
}
