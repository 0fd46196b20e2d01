// Settings an operator changes on a running platform, without a restart: etcd keys
// `/config/<service>/<key>` (one service) and `/config/all/<key>` (every service; the service's own
// key wins). Running instances watch them and apply a change within a second. A value that does not
// validate is refused and logged, and the setting keeps its previous value; deleting the key brings
// back the value from the environment.
import type { Etcd, Watcher } from './etcd.js';
import { z } from 'zod';
import { logger } from './log.js';
import { RETRY_POLICIES, retryDelays } from './retry.js';

const log = logger.child({ module: 'live-config' });

export const CONFIG_PREFIX = '/config/';
/** The service name that addresses every service at once. */
export const ALL_SERVICES = 'all';

export function configKey(service: string, key: string): string {
  return `${CONFIG_PREFIX}${service}/${key}`;
}

/** One live setting: how to read its etcd value, and what to do with it. */
export interface LiveSetting<T = unknown> {
  /** Parses the etcd value (a string); its error message says what is accepted. */
  schema: z.ZodType<T>;
  /** Called with the new value, or with undefined when the key is gone (back to the default). */
  apply(value: T | undefined): void;
}

// Settings of different value types side by side: each one's schema and apply agree on its type.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyLiveSetting = LiveSetting<any>;

export interface LiveSettings {
  /** Resolves once the keys present at start are applied (or etcd did not answer in time). */
  readonly ready: Promise<void>;
  /** The raw values in force now, by key (only those set in etcd). */
  current(): Record<string, string>;
  close(): Promise<void>;
}

/** `1`/`0`, `on`/`off`, `true`/`false`, `yes`/`no`. */
export const onOff = z
  .enum(['1', '0', 'on', 'off', 'true', 'false', 'yes', 'no'], {
    error: 'must be one of on, off, 1, 0, true, false, yes, no',
  })
  .transform((v) => ['1', 'on', 'true', 'yes'].includes(v));

export const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
  error: 'must be one of fatal, error, warn, info, debug, trace, silent',
});

const RESYNC_MS = 30000;

/**
 * Applies `/config/all/<key>` and `/config/<service>/<key>` for every key of `settings`, now and
 * whenever they change. Never throws: etcd away means the settings keep their current values.
 */
export function watchLiveSettings(
  etcd: Etcd,
  service: string,
  settings: Record<string, AnyLiveSetting>,
): LiveSettings {
  // Raw values by key, per scope, as last read from etcd.
  const raw = { all: new Map<string, string>(), own: new Map<string, string>() };
  // The raw value each key was last applied with (undefined: the default).
  const applied = new Map<string, string | undefined>();
  const warned = new Set<string>();
  let watcher: Watcher | undefined;
  let closed = false;

  function effective(key: string): string | undefined {
    return raw.own.get(key) ?? raw.all.get(key);
  }

  function settle(key: string): void {
    const setting = Object.hasOwn(settings, key) ? settings[key] : undefined;
    if (!setting) {
      if (!warned.has(key)) log.warn({ key, service }, 'unknown live setting ignored');
      warned.add(key);
      return;
    }
    const value = effective(key);
    if (applied.has(key) ? applied.get(key) === value : value === undefined) return;
    if (value === undefined) {
      setting.apply(undefined);
      applied.set(key, undefined);
      log.info({ key }, 'live setting removed; back to the default');
      return;
    }
    const parsed = setting.schema.safeParse(value);
    if (!parsed.success) {
      const reason = parsed.error.issues.map((i) => i.message).join('; ');
      log.warn(
        { key, value: value.slice(0, 100), reason, keeping: applied.get(key) ?? 'the default' },
        'live setting refused',
      );
      return;
    }
    setting.apply(parsed.data);
    applied.set(key, value);
    log.info({ key, value }, 'live setting applied');
  }

  function parseKey(key: string): { scope: 'all' | 'own'; name: string } | undefined {
    for (const [scope, prefix] of [
      ['own', configKey(service, '')],
      ['all', configKey(ALL_SERVICES, '')],
    ] as const) {
      if (key.startsWith(prefix) && !key.slice(prefix.length).includes('/'))
        return { scope, name: key.slice(prefix.length) };
    }
    return undefined;
  }

  function onPut(key: string, value: string): void {
    const k = parseKey(key);
    if (!k) return;
    raw[k.scope].set(k.name, value);
    settle(k.name);
  }

  function onDelete(key: string): void {
    const k = parseKey(key);
    if (!k) return;
    raw[k.scope].delete(k.name);
    settle(k.name);
  }

  async function resync(): Promise<void> {
    const [own, all] = await Promise.all([
      etcd.getAll().prefix(configKey(service, '')).strings(),
      etcd.getAll().prefix(configKey(ALL_SERVICES, '')).strings(),
    ]);
    const names = new Set([...raw.own.keys(), ...raw.all.keys()]);
    raw.own.clear();
    raw.all.clear();
    for (const [key, value] of [...Object.entries(all), ...Object.entries(own)]) {
      const k = parseKey(key);
      if (!k) continue;
      raw[k.scope].set(k.name, value);
      names.add(k.name);
    }
    for (const name of names) settle(name);
  }

  async function start(): Promise<void> {
    const delays = retryDelays(RETRY_POLICIES.liveSettings);
    for (let attempt = 0; !closed; attempt++) {
      try {
        const w = await etcd.watch().prefix(CONFIG_PREFIX).create();
        if (closed) {
          await w.cancel();
          return;
        }
        watcher = w;
        w.on('put', (kv) => onPut(kv.key.toString(), kv.value.toString()));
        w.on('delete', (kv) => onDelete(kv.key.toString()));
        // Changes made while the watch was down are not replayed: read everything again.
        w.on('connected', () => void resync().catch(() => undefined));
        w.on('error', () => undefined);
        await resync();
        return;
      } catch (err) {
        if (attempt === 0)
          log.warn({ err: (err as Error).message }, 'live settings not read yet; retrying');
        await new Promise((r) => setTimeout(r, delays.next()));
      }
    }
  }

  const ready = Promise.race([start(), new Promise<void>((r) => setTimeout(r, 3000).unref())]);
  const timer = setInterval(() => void resync().catch(() => undefined), RESYNC_MS);
  timer.unref();

  return {
    ready,
    current() {
      const out: Record<string, string> = {};
      for (const [key, value] of applied) if (value !== undefined) out[key] = value;
      return out;
    },
    async close() {
      closed = true;
      clearInterval(timer);
      await watcher?.cancel().catch(() => undefined);
    },
  };
}
