// The users service's settings beyond the platform's own.
import { answerCacheConfig, rowCacheConfig } from '@microflack/common';
import { z } from 'zod';

/** Bytes of users' JSON kept by default (the list cache, ARCHITECTURE.md "List caches"): some 20,000 users. */
export const DEFAULT_ROW_CACHE_BYTES = 4 * 1024 * 1024;

export const usersConfig = {
  ...answerCacheConfig,
  ...rowCacheConfig(DEFAULT_ROW_CACHE_BYTES),
  // A user not seen for this long is marked offline by the sweep (60 s in the original).
  ONLINE_TIMEOUT_SECONDS: z.coerce.number().int().min(1).max(86400).default(60),
  SWEEP_INTERVAL_MS: z.coerce.number().int().min(100).max(600000).default(5000),
  // How long the sweep leader's etcd lease outlives a crashed leader before another takes over.
  SWEEP_LEADER_TTL_SECONDS: z.coerce.number().int().min(2).max(300).default(10),
  BCRYPT_ROUNDS: z.coerce.number().int().min(10).max(15).default(11),
  // The longest a password hash waits for its turn before the request gets 503 (passwords.ts):
  // under the tokens service's 5 s call to users, so that no hash is made for a caller gone.
  PASSWORD_QUEUE_WAIT_MS: z.coerce.number().int().min(100).max(60000).default(4000),
  // The sign-in throttle (see login-throttle.ts): failures allowed before waiting starts, per
  // nickname and client address together, per nickname (over the addresses that have failed) and
  // per client address; the first wait, doubled per further failure up to the ceiling; and how
  // long a key with no failure is remembered.
  LOGIN_FREE_FAILURES_PER_NICKNAME_ADDRESS: z.coerce.number().int().min(0).max(1000).default(5),
  LOGIN_FREE_FAILURES_PER_NICKNAME: z.coerce.number().int().min(0).max(1000).default(10),
  LOGIN_FREE_FAILURES_PER_ADDRESS: z.coerce.number().int().min(0).max(100000).default(20),
  LOGIN_BASE_DELAY_MS: z.coerce.number().int().min(1000).max(600000).default(1000),
  LOGIN_MAX_DELAY_MS: z.coerce.number().int().min(1000).max(3600000).default(60000),
  LOGIN_FORGET_AFTER_SECONDS: z.coerce.number().int().min(1).max(86400).default(900),
};
