// Who a user id is: the users service owns nicknames; messages asks it (through the LB) whether a
// user exists (before a direct room or an invitation) and what the caller's nickname is (to count
// the mentions of it). Answers are kept a little while: nicknames rarely change.
import { HttpError, logger, type LbClient } from '@microflack/common';
import { nicknameKey } from '@microflack/common/api';
import { LRUCache } from 'lru-cache';

const log = logger.child({ module: 'directory' });
const TIMEOUT_MS = 2000;
const TTL_MS = 30_000;

export interface Directory {
  /** The user's nickname identity (nicknameKey), null when no user has this id; throws 503 when users cannot say. */
  nicknameKeyOf(userId: number): Promise<string | null>;
}

export function createDirectory(lb: LbClient): Directory {
  const cache = new LRUCache<number, { key: string | null }>({ max: 10_000, ttl: TTL_MS });
  return {
    async nicknameKeyOf(userId) {
      const hit = cache.get(userId);
      if (hit) return hit.key;
      let res;
      try {
        res = await lb.get<{ nickname?: unknown }>(`/api/users/${userId}`, {
          timeoutMs: TIMEOUT_MS,
        });
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'users unreachable');
        throw new HttpError(503, 'service temporarily unavailable', { 'Retry-After': '1' });
      }
      if (res.status === 404) {
        cache.set(userId, { key: null });
        return null;
      }
      if (res.status !== 200 || typeof res.body?.nickname !== 'string') {
        log.warn({ status: res.status }, 'users answered unexpectedly');
        throw new HttpError(503, 'service temporarily unavailable', { 'Retry-After': '1' });
      }
      const key = nicknameKey(res.body.nickname);
      cache.set(userId, { key });
      return key;
    },
  };
}
