// The HTTP side of the socketio service: /healthz and /metrics; Socket.IO itself lives in gateway.ts.
import type { Express } from 'express';
import type { Redis } from 'ioredis';
import { createServiceApp } from '@microflack/common';

export interface AppDeps {
  redis: Redis;
}

export function createApp({ redis }: AppDeps): Express {
  return createServiceApp(
    {
      health: {
        // Reported but not critical: without Redis no live updates arrive, yet clients can still
        // connect and post, and taking every instance out of HAProxy would not bring Redis back.
        redis: { critical: false, check: () => redis.ping() },
      },
    },
    () => undefined,
  );
}
