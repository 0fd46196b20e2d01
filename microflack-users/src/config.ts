// The users service's settings beyond the platform's own.
import { z } from 'zod';

export const usersConfig = {
  // A user not seen for this long is marked offline by the sweep (60 s in the original).
  ONLINE_TIMEOUT_SECONDS: z.coerce.number().int().min(1).max(86400).default(60),
  SWEEP_INTERVAL_MS: z.coerce.number().int().min(100).max(600000).default(5000),
  // How long the sweep leader's etcd lease outlives a crashed leader before another takes over.
  SWEEP_LEADER_TTL_SECONDS: z.coerce.number().int().min(2).max(300).default(10),
  BCRYPT_ROUNDS: z.coerce.number().int().min(10).max(15).default(11),
};
