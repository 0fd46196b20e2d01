// The set of revoked tokens, kept in memory and current through an etcd watch.
import type { Etcd3, Watcher } from 'etcd3';
import {
  REVOKED_PREFIX,
  REVOKED_TOKENS_PREFIX,
  REVOKED_USERS_PREFIX,
  revokedTokenKey,
  revokedUserKey,
} from './contract/index.js';
import { logger } from './log.js';

const log = logger.child({ module: 'revocation' });

export { REVOKED_TOKENS_PREFIX, REVOKED_USERS_PREFIX } from './contract/index.js';
// Lease slack so a revocation outlives the token even with small clock differences.
export const REVOCATION_SLACK_SECONDS = 5;
// The longest token lifetime anyone issues; a revoke-all record must outlive every token.
export const MAX_TOKEN_LIFETIME_SECONDS = 7 * 24 * 3600;

export interface RevocationList {
  isRevoked(jti: string, userId: number, iat: number): boolean;
  revokeToken(claims: { jti: string; exp: number }): Promise<void>;
  revokeAllTokens(userId: number): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly size: number;
}

export function createRevocationList(etcd: Etcd3): RevocationList {
  const revokedJtis = new Set<string>();
  const revokedUsersUntil = new Map<number, number>();
  let watcher: Watcher | undefined;
  let disconnectedAt: number | undefined;

  function apply(key: string, value: string): void {
    if (key.startsWith(REVOKED_TOKENS_PREFIX)) {
      revokedJtis.add(key.slice(REVOKED_TOKENS_PREFIX.length));
    } else if (key.startsWith(REVOKED_USERS_PREFIX)) {
      const userId = Number(key.slice(REVOKED_USERS_PREFIX.length));
      const until = Number(value);
      if (Number.isInteger(userId) && Number.isFinite(until)) {
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
    isRevoked(jti, userId, iat) {
      if (revokedJtis.has(jti)) return true;
      const until = revokedUsersUntil.get(userId);
      return until !== undefined && iat <= until;
    },
    async revokeToken({ jti, exp }) {
      const remaining = exp - Math.floor(Date.now() / 1000);
      await putWithLease(revokedTokenKey(jti), '', remaining + REVOCATION_SLACK_SECONDS);
    },
    async revokeAllTokens(userId) {
      const now = Math.floor(Date.now() / 1000);
      await putWithLease(
        revokedUserKey(userId),
        String(now),
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
