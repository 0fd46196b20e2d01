// The set of revoked tokens, kept in memory and current through an etcd watch.
import type { Etcd, Watcher } from './etcd.js';
import {
  REVOKED_PREFIX,
  REVOKED_TOKENS_PREFIX,
  REVOKED_USERS_PREFIX,
  revokedTokenKey,
  revokedUserKey,
} from './contract/index.js';
import { logger } from './log.js';

const log = logger.child({ module: 'revocation' });

// Not in the original: "revoke all" records, per user, the last moment whose tokens are revoked,
// as Unix seconds: "1712345678" (written before millisecond records; covers that whole second) or
// "1712345678.123" (to the millisecond). A reader that only knows whole seconds parses the second
// form as a number and revokes every token issued up to that second, as it always did.
export { REVOKED_TOKENS_PREFIX, REVOKED_USERS_PREFIX } from './contract/index.js';
// Lease slack so a revocation outlives the token even with small clock differences.
export const REVOCATION_SLACK_SECONDS = 5;
// The longest token lifetime anyone issues; a revoke-all record must outlive every token.
export const MAX_TOKEN_LIFETIME_SECONDS = 7 * 24 * 3600;

export interface RevocationList {
  /**
   * iatMs: the token's millisecond issue time (its iat_ms claim), compared exactly with the
   * revoke-all record; a token without it (issued before the claim existed) is judged by iat, in
   * whole seconds, as before.
   */
  isRevoked(jti: string, userId: number, iat: number, iatMs?: number): boolean;
  revokeToken(claims: { jti: string; exp: number }): Promise<void>;
  /** Revokes every token of the user issued up to now (or up to atMs, if later). */
  revokeAllTokens(userId: number, atMs?: number): Promise<void>;
  /** The last millisecond whose tokens of this user are revoked; -1 if none. */
  revokedUntilMs(userId: number): number;
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly size: number;
}

/** A revoke-all record's value as the last revoked millisecond; undefined if malformed. */
export function parseRevokedUntil(value: string): number | undefined {
  const m = /^([0-9]{1,15})(?:\.([0-9]{3}))?$/.exec(value.trim());
  if (!m) return undefined;
  const seconds = Number(m[1]);
  // Whole seconds: every token issued within that second is revoked, as when they were written.
  return m[2] === undefined ? seconds * 1000 + 999 : seconds * 1000 + Number(m[2]);
}

export function formatRevokedUntil(ms: number): string {
  const whole = Math.floor(ms);
  return `${Math.floor(whole / 1000)}.${String(whole % 1000).padStart(3, '0')}`;
}

export function createRevocationList(etcd: Etcd): RevocationList {
  const revokedJtis = new Set<string>();
  // Per user, the last revoked millisecond.
  const revokedUsersUntil = new Map<number, number>();
  let watcher: Watcher | undefined;
  let disconnectedAt: number | undefined;

  function apply(key: string, value: string): void {
    if (key.startsWith(REVOKED_TOKENS_PREFIX)) {
      revokedJtis.add(key.slice(REVOKED_TOKENS_PREFIX.length));
    } else if (key.startsWith(REVOKED_USERS_PREFIX)) {
      const userId = Number(key.slice(REVOKED_USERS_PREFIX.length));
      const until = parseRevokedUntil(value);
      if (Number.isInteger(userId) && until !== undefined) {
        revokedUsersUntil.set(userId, Math.max(until, revokedUsersUntil.get(userId) ?? 0));
      }
    }
  }

  function forget(key: string): void {
    // A key goes when its lease ends, which is after the token it names has expired.
    if (key.startsWith(REVOKED_TOKENS_PREFIX))
      revokedJtis.delete(key.slice(REVOKED_TOKENS_PREFIX.length));
    else if (key.startsWith(REVOKED_USERS_PREFIX))
      revokedUsersUntil.delete(Number(key.slice(REVOKED_USERS_PREFIX.length)));
  }

  async function load(): Promise<void> {
    for (const prefix of [REVOKED_TOKENS_PREFIX, REVOKED_USERS_PREFIX]) {
      const all = await etcd.getAll().prefix(prefix).strings();
      for (const [key, value] of Object.entries(all)) apply(key, value);
    }
  }

  async function putWithLease(key: string, value: string, ttlSeconds: number): Promise<void> {
    const lease = etcd.lease(Math.max(1, Math.ceil(ttlSeconds)), { autoKeepAlive: false });
    await lease.put(key).value(value);
    // Seen here at once, rather than when the watch event arrives.
    apply(key, value);
  }

  return {
    get size() {
      return revokedJtis.size + revokedUsersUntil.size;
    },
    isRevoked(jti, userId, iat, iatMs) {
      if (revokedJtis.has(jti)) return true;
      const until = revokedUsersUntil.get(userId);
      if (until === undefined) return false;
      return iatMs !== undefined ? iatMs <= until : iat <= Math.floor(until / 1000);
    },
    revokedUntilMs(userId) {
      return revokedUsersUntil.get(userId) ?? -1;
    },
    async revokeToken({ jti, exp }) {
      const remaining = exp - Math.floor(Date.now() / 1000);
      await putWithLease(revokedTokenKey(jti), '', remaining + REVOCATION_SLACK_SECONDS);
    },
    async revokeAllTokens(userId, atMs) {
      const until = Math.max(Date.now(), atMs ?? 0);
      await putWithLease(
        revokedUserKey(userId),
        formatRevokedUntil(until),
        MAX_TOKEN_LIFETIME_SECONDS + REVOCATION_SLACK_SECONDS,
      );
    },
    async start() {
      await load();
      watcher = await etcd.watch().prefix(REVOKED_PREFIX).create();
      watcher.on('put', (kv) => apply(kv.key.toString(), kv.value.toString()));
      watcher.on('delete', (kv) => forget(kv.key.toString()));
      watcher.on('disconnected', () => {
        if (disconnectedAt === undefined) {
          disconnectedAt = Date.now();
          log.warn(
            { revoked: revokedJtis.size },
            'revocation watch lost; the last known set stays in force',
          );
        }
      });
      watcher.on('connected', () => {
        if (disconnectedAt === undefined) return;
        const gapMs = Date.now() - disconnectedAt;
        disconnectedAt = undefined;
        // The watch resumes from its revision, but a reload also covers a compacted history.
        load().then(
          () => log.info({ gapMs }, 'revocation watch back; set reloaded'),
          (err) => log.warn({ err, gapMs }, 'revocation reload failed; the watch carries on'),
        );
      });
      watcher.on('error', (err) => log.warn({ err }, 'revocation watch error'));
    },
    async stop() {
      await watcher?.cancel().catch(() => undefined);
    },
  };
}
