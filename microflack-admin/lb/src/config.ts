// The configurator's environment, read once and validated; the platform's names where they exist.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, type Env } from '@microflack/common';
import { z } from 'zod';

// Packaged next to the sources: lb/dist/config.js (or lb/src/config.ts) -> lb/haproxy.cfg.tmpl.
const DEFAULT_TEMPLATE = fileURLToPath(new URL('../haproxy.cfg.tmpl', import.meta.url));
// It goes into `stats auth admin:<password>`: one token, no separators.
const STATS_PASSWORD = /^[A-Za-z0-9._~+/=-]{8,128}$/;

const flag = z
  .enum(['0', '1', 'true', 'false', 'yes', 'no'])
  .transform((v) => ['1', 'true', 'yes'].includes(v));

/** The configurator's variables beyond the platform's BaseEnv. */
export const LbEnv = {
  MICROFLACK_PORT: z.coerce.number().int().min(1).max(65535).default(8080),
  LB_BIND: z.union([z.ipv4(), z.literal('*')]).default('127.0.0.1'),
  LB_STATE_DIR: z.string().optional(),
  LB_TEMPLATE: z.string().default(DEFAULT_TEMPLATE),
  HAPROXY_BIN: z
    .string()
    .default(fs.existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : 'haproxy'),
  HAPROXY_CFG: z.string().optional(),
  HAPROXY_PID_FILE: z.string().optional(),
  HAPROXY_SOCKET: z.string().optional(),
  LB_MANAGE_HAPROXY: flag.default(true),
  LB_HAPROXY_ON_EXIT: z.enum(['stop', 'keep']).default('stop'),
  LB_STATS_PASSWORD: z.string().optional(),
  LB_SECRETS_FILE: z.string().optional(),
  LB_DEBOUNCE_MS: z.coerce.number().int().min(0).max(10000).default(150),
  LB_RESYNC_INTERVAL_MS: z.coerce.number().int().min(500).max(600000).default(5000),
  LB_HARD_STOP_AFTER: z
    .string()
    .regex(/^\d+(ms|s|m|h)$/)
    .default('10m'),
  LB_STOP_TIMEOUT_MS: z.coerce.number().int().min(0).max(600000).default(10000),
  LB_UPSTREAM_GRACE_MS: z.coerce.number().int().min(0).max(600000).default(15000),
  LB_SERVER_MAXCONN: z.coerce.number().int().min(1).max(100000).default(32),
};

export interface LbConfig {
  etcd: string[];
  port: number;
  bind: string;
  stateDir: string;
  template: string;
  haproxyBin: string;
  cfgFile: string;
  pidFile: string;
  socket: string;
  masterSocket: string;
  serverStateFile: string;
  haproxyLog: string;
  manageHaproxy: boolean;
  stopHaproxyOnExit: boolean;
  statsPassword?: string;
  debounceMs: number;
  resyncIntervalMs: number;
  hardStopAfter: string;
  /** How long a stopping HAProxy may take to finish requests before it is terminated. */
  stopTimeoutMs: number;
  /**
   * How long an upstream that vanished from etcd stays in the config while HAProxy still sees it
   * healthy (registry churn after an etcd outage must not empty a working backend).
   */
  upstreamGraceMs: number;
  /** Requests an instance of an HTTP service is given at once; the rest wait in HAProxy's queue. */
  serverMaxconn: number;
  logLevel: string;
}

/** KEY=value lines, as in the platform's secrets file (shell-sourceable; quotes optional). */
export function readSecretsFile(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!.trim().replace(/^(['"])(.*)\1$/, '$2');
  }
  return out;
}

export function loadLbConfig(env: Env = process.env): LbConfig {
  const c = loadConfig(LbEnv, env);
  const stateDir = path.resolve(c.LB_STATE_DIR ?? path.join(c.MICROFLACK_HOME, 'lb'));
  let statsPassword = c.LB_STATS_PASSWORD;
  const secretsFile = c.LB_SECRETS_FILE ?? path.join(c.MICROFLACK_HOME, 'secrets.env');
  if (!statsPassword && fs.existsSync(secretsFile))
    statsPassword = readSecretsFile(secretsFile).LB_STATS_PASSWORD;
  if (statsPassword && !STATS_PASSWORD.test(statsPassword)) {
    throw new Error(
      'bad environment:\n  LB_STATS_PASSWORD: must be 8-128 characters of A-Z a-z 0-9 . _ ~ + / = -',
    );
  }
  return {
    etcd: c.ETCD,
    port: c.MICROFLACK_PORT,
    // `*` (all addresses, as scripts write it) is 0.0.0.0 to HAProxy.
    bind: c.LB_BIND === '*' ? '0.0.0.0' : c.LB_BIND,
    stateDir,
    template: path.resolve(c.LB_TEMPLATE),
    haproxyBin: c.HAPROXY_BIN,
    cfgFile: path.resolve(c.HAPROXY_CFG ?? path.join(stateDir, 'haproxy.cfg')),
    pidFile: path.resolve(c.HAPROXY_PID_FILE ?? path.join(stateDir, 'haproxy.pid')),
    socket: path.resolve(c.HAPROXY_SOCKET ?? path.join(stateDir, 'haproxy.sock')),
    masterSocket: path.join(stateDir, 'haproxy-master.sock'),
    serverStateFile: path.join(stateDir, 'server-state'),
    haproxyLog: path.join(stateDir, 'haproxy.log'),
    manageHaproxy: c.LB_MANAGE_HAPROXY,
    stopHaproxyOnExit: c.LB_HAPROXY_ON_EXIT === 'stop',
    statsPassword,
    debounceMs: c.LB_DEBOUNCE_MS,
    resyncIntervalMs: c.LB_RESYNC_INTERVAL_MS,
    hardStopAfter: c.LB_HARD_STOP_AFTER,
    stopTimeoutMs: c.LB_STOP_TIMEOUT_MS,
    upstreamGraceMs: c.LB_UPSTREAM_GRACE_MS,
    serverMaxconn: c.LB_SERVER_MAXCONN,
    logLevel: c.LOG_LEVEL,
  };
}
