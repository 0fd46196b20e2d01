// The platform's environment, parsed and validated once at start; nothing else reads process.env.
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import dotenv from 'dotenv';
import { z } from 'zod';
import {
  BalanceSchema,
  DEFAULT_BALANCE,
  INSTANCE_NAME_MAX,
  InstanceNameSchema,
  sanitizeInstanceName,
  UpstreamAddressSchema,
} from './contract/index.js';

// The original's development default; accepted only outside production.
export const DEV_JWT_SECRET_KEY = 'top-secret!';

const hostPort = /^[A-Za-z0-9.-]+:\d{1,5}$/;

/** `sentinel://host:port,host:port/<master name>`: the value of REDIS for Redis behind Sentinels. */
export const REDIS_SENTINEL_PATTERN =
  /^sentinel:\/\/([A-Za-z0-9.-]+:\d{1,5}(?:,[A-Za-z0-9.-]+:\d{1,5})*)\/([A-Za-z0-9._-]+)$/;

/** Default of EVENTS_REPLAY_BYTES: about 10 s of posts' events at 3,000 posts/s. */
export const DEFAULT_EVENTS_REPLAY_BYTES = 16 * 1024 * 1024;

/** Every variable a MicroFlack process reads; services extend it (see loadConfig). */
export const BaseEnv = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  LB: z.url({ protocol: /^https?$/ }).default('http://127.0.0.1:8080'),
  ETCD: z
    .string()
    .default('http://127.0.0.1:2379')
    .transform((s) => s.split(',').map((u) => u.trim()))
    .pipe(z.array(z.url({ protocol: /^https?$/ })).min(1)),
  // One server, or the primary that Sentinels name: sentinel://host:port,host:port/<name>.
  REDIS: z
    .string()
    .refine(
      (s) => hostPort.test(s) || REDIS_SENTINEL_PATTERN.test(s),
      'must be host:port or sentinel://host:port[,host:port...]/<name>',
    )
    .optional(),
  DATABASE_URL: z.string().min(1).optional(),
  JWT_SECRET_KEY: z.string().min(1).default(DEV_JWT_SECRET_KEY),
  // What the load balancer reaches this instance at: it must accept it as an upstream.
  SERVICE_URL: UpstreamAddressSchema.optional(),
  // One list with the load balancer's: a value it refuses would be left out of its config.
  LB_ALGORITHM: BalanceSchema.default(DEFAULT_BALANCE),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info'),
  MICROFLACK_HOME: z.string().default(path.join(os.homedir(), '.microflack')),
  HOST: z.string().default('127.0.0.1'),
  PORT: z.coerce.number().int().min(0).max(65535).default(0),
  // Exactly what the load balancer accepts in an upstream key: another name would register and
  // be left out of HAProxy.
  INSTANCE_NAME: InstanceNameSchema.optional(),
  // How long a stopping instance keeps answering after deregistering, so the LB reconfigures first.
  SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).max(60000).default(2000),
  // Behind Sentinels: bytes of events kept until the server they went to is confirmed the primary.
  EVENTS_REPLAY_BYTES: z.coerce
    .number()
    .int()
    .min(0)
    .max(2 ** 30)
    .default(DEFAULT_EVENTS_REPLAY_BYTES),
});

export type BaseConfig = Omit<z.infer<typeof BaseEnv>, 'INSTANCE_NAME'> & { INSTANCE_NAME: string };
export type Env = Record<string, string | undefined>;

/** Reads `.env` in development (never overriding the real environment), then validates. */
export function loadConfig<S extends z.ZodRawShape = Record<never, never>>(
  extra?: S,
  env: Env = process.env,
): BaseConfig & z.infer<z.ZodObject<S>> {
  if (env === process.env && env.NODE_ENV !== 'production') dotenv.config({ quiet: true });
  return parseConfig(extra ?? ({} as S), env);
}

/**
 * Whether services hold every answer to its documented schema (the response check): under
 * NODE_ENV=test, as the test runner and the test platforms set it, never in production.
 */
export function responseChecksEnabled(env: Env = process.env): boolean {
  return env.NODE_ENV === 'test';
}

export function parseConfig<S extends z.ZodRawShape>(
  extra: S,
  env: Env,
): BaseConfig & z.infer<z.ZodObject<S>> {
  // Empty strings mean "unset", as in the shell scripts that export them.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ''));
  const schema = BaseEnv.extend(extra);
  const parsed = schema.safeParse(cleaned);
  const problems: string[] = [];
  const data = parsed.data as (BaseConfig & z.infer<z.ZodObject<S>>) | undefined;
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      problems.push(`${issue.path.join('.')}: ${issue.message}`);
    }
  } else if (data?.NODE_ENV === 'production') {
    const key = data.JWT_SECRET_KEY;
    if (key === DEV_JWT_SECRET_KEY || key.length < 32) {
      problems.push(
        'JWT_SECRET_KEY: must be set to a secret of at least 32 characters in production',
      );
    }
  }
  // Stop here: a half-configured instance would register and take traffic.
  if (problems.length > 0 || !data) throw new ConfigError(problems);
  data.INSTANCE_NAME ??= defaultInstanceName();
  return data;
}

/**
 * `<hostname>-<pid>-<4 hex>`, the hostname made to fit the instance-name pattern (any character it
 * refuses becomes `-`, a leading one is dropped) and cut so the whole stays within its length.
 */
export function defaultInstanceName(
  hostname: string = os.hostname(),
  pid: number = process.pid,
): string {
  const suffix = `-${pid}-${randomBytes(2).toString('hex')}`;
  return sanitizeInstanceName(hostname, INSTANCE_NAME_MAX - suffix.length) + suffix;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(`bad environment:\n  ${problems.join('\n  ')}`);
  }
}
