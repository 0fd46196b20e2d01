// Slows password guessing on GET /api/users/me: per nickname and per client address, after a few
// free failures each further one must wait twice as long, up to a ceiling; never a permanent lockout.
import { LRUCache } from 'lru-cache';

export interface ThrottleOptions {
  /** Failures allowed before waiting starts. */
  freeFailuresPerNickname: number;
  freeFailuresPerAddress: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** A key with no failure for this long is forgotten. */
  forgetAfterMs: number;
  /** Bound on memory under a flood of distinct nicknames or addresses. */
  maxEntries: number;
}

export const DEFAULT_THROTTLE: ThrottleOptions = {
  freeFailuresPerNickname: 5,
  freeFailuresPerAddress: 20,
  baseDelayMs: 1000,
  maxDelayMs: 60000,
  forgetAfterMs: 15 * 60000,
  maxEntries: 100000,
};

interface Entry {
  failures: number;
  lastFailureAt: number;
}

export interface LoginThrottle {
  /** Milliseconds to wait before another attempt for this nickname from this address; 0 = go. */
  waitMs(nickname: string, address: string): number;
  /**
   * waitMs, and when it is 0 the attempt is counted as in flight until release(): parallel guesses
   * must not all pass the check before the first of them has failed.
   */
  acquire(nickname: string, address: string): number;
  release(nickname: string, address: string): void;
  failed(nickname: string, address: string): void;
  succeeded(nickname: string): void;
}

export function createLoginThrottle(
  opts: Partial<ThrottleOptions> = {},
  clock: () => number = Date.now,
): LoginThrottle {
  const o = { ...DEFAULT_THROTTLE, ...opts };
  // Least recently failed go first past maxEntries; a key forgetAfterMs past its last failure is
  // gone. Reads (peek) neither refresh an entry nor extend its life: only a failure does.
  const entries = new LRUCache<string, Entry>({
    max: o.maxEntries,
    ttl: o.forgetAfterMs,
    // The throttle's clock, read at every check (lru-cache counts a start time of 0 as no start:
    // an entry written at clock() === 0 is kept until its next failure, as only tests do).
    perf: { now: clock },
    ttlResolution: 0,
  });
  // Attempts checked but not yet decided, per key; they count as failures until they are.
  const inFlight = new Map<string, number>();

  function get(key: string): Entry | undefined {
    return entries.peek(key);
  }

  const delayMs = (over: number) => Math.min(o.maxDelayMs, o.baseDelayMs * 2 ** Math.min(30, over));

  function wait(key: string, free: number, t: number): number {
    const e = get(key);
    const failures = e?.failures ?? 0;
    // An address with no failure may have many honest sign-ins in flight (one NAT, the LB itself,
    // a benchmark); its attempts in flight count only once it has failed. A nickname's always do.
    const pending = key.startsWith('a:') && failures === 0 ? 0 : (inFlight.get(key) ?? 0);
    if (failures + pending < free) return 0;
    // Attempts still being checked decide first; the next one waits as if they had failed.
    if (pending > 0) return delayMs(failures + pending - free);
    if (!e) return 0;
    return Math.max(0, e.lastFailureAt + delayMs(failures - free) - t);
  }

  function count(key: string, by: number): void {
    const n = (inFlight.get(key) ?? 0) + by;
    if (n > 0) inFlight.set(key, n);
    else inFlight.delete(key);
  }

  function bump(key: string, t: number): void {
    const e = get(key) ?? { failures: 0, lastFailureAt: t };
    e.failures++;
    e.lastFailureAt = t;
    // Most recent again, and forgetAfterMs from now.
    entries.set(key, e);
  }

  function waitMs(nickname: string, address: string): number {
    const t = clock();
    return Math.max(
      wait(`n:${nickname}`, o.freeFailuresPerNickname, t),
      wait(`a:${address}`, o.freeFailuresPerAddress, t),
    );
  }

  return {
    waitMs,
    acquire(nickname, address) {
      const ms = waitMs(nickname, address);
      if (ms === 0) {
        count(`n:${nickname}`, 1);
        count(`a:${address}`, 1);
      }
      return ms;
    },
    release(nickname, address) {
      count(`n:${nickname}`, -1);
      count(`a:${address}`, -1);
    },
    failed(nickname, address) {
      const t = clock();
      bump(`n:${nickname}`, t);
      bump(`a:${address}`, t);
    },
    // The address keeps its count: a guesser must not reset it by signing in to an account of its own.
    succeeded(nickname) {
      entries.delete(`n:${nickname}`);
    },
  };
}
