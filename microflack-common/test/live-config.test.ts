// Live settings from etcd (/config/<service>/<key>, /config/all/<key>): applied by a running
// instance within a second, validated (a bad value is refused, the old one stays), removable.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createEtcd, type Etcd } from '../src/etcd.js';
import { configKey, logLevel, onOff, watchLiveSettings } from '../src/live-config.js';
import { startEtcd, waitFor, type EtcdServer } from '@microflack/testkit';

describe('live settings', () => {
  // A private etcd: /config/all/* would reach every service of the shared one.
  let server: EtcdServer;
  let etcd: Etcd;
  before(async () => {
    server = await startEtcd();
    etcd = createEtcd([server.url]);
  });
  after(async () => {
    etcd.close();
    await server.stop();
  });

  it('applies a put within a second, refuses a bad value, and goes back to the default on delete', async () => {
    const svc = `live${Date.now()}`;
    const applied: Array<string | undefined> = [];
    const live = watchLiveSettings(etcd, svc, {
      log_level: { schema: logLevel, apply: (v: string | undefined) => applied.push(v) },
    });
    await live.ready;
    assert.deepEqual(applied, [], 'nothing set: nothing applied');

    let t0 = Date.now();
    await etcd.put(configKey(svc, 'log_level')).value('debug');
    await waitFor('debug applied', () => applied.at(-1) === 'debug', 1000, 10);
    assert.ok(Date.now() - t0 < 1000);
    assert.deepEqual(live.current(), { log_level: 'debug' });

    // Refused: the value in force stays, and nothing is applied.
    await etcd.put(configKey(svc, 'log_level')).value('loud');
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(applied, ['debug']);
    assert.deepEqual(live.current(), { log_level: 'debug' });

    t0 = Date.now();
    await etcd.delete().key(configKey(svc, 'log_level'));
    await waitFor('default back', () => applied.length === 2, 1000, 10);
    assert.equal(applied[1], undefined);
    assert.ok(Date.now() - t0 < 1000);
    assert.deepEqual(live.current(), {});
    await live.close();
  });

  it('reads values set before it started; the service key wins over /config/all', async () => {
    const svc = `livepre${Date.now()}`;
    await etcd.put(configKey('all', 'previews')).value('off');
    try {
      const seen: Array<boolean | undefined> = [];
      const live = watchLiveSettings(etcd, svc, {
        previews: { schema: onOff, apply: (v: boolean | undefined) => seen.push(v) },
      });
      await live.ready;
      assert.deepEqual(seen, [false], 'the platform-wide value applies at start');
      await etcd.put(configKey(svc, 'previews')).value('on');
      await waitFor('own key applied', () => seen.at(-1) === true, 1000, 10);
      // A platform-wide change does not override the service's own key.
      await etcd.put(configKey('all', 'previews')).value('no');
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(seen, [false, true]);
      // Without the service's key, the platform-wide one is in force again.
      await etcd.delete().key(configKey(svc, 'previews'));
      await waitFor('platform-wide back', () => seen.at(-1) === false, 1000, 10);
      await live.close();
    } finally {
      await etcd.delete().key(configKey('all', 'previews'));
    }
  });

  it('ignores unknown keys and other services, and validates numbers by their schema', async () => {
    const svc = `livenum${Date.now()}`;
    const seen: Array<number | undefined> = [];
    const live = watchLiveSettings(etcd, svc, {
      attempts: {
        schema: z.coerce.number().int().min(1).max(100),
        apply: (v: number | undefined) => seen.push(v),
      },
    });
    await live.ready;
    await etcd.put(configKey(svc, 'nonsense')).value('1');
    await etcd.put(configKey(`${svc}x`, 'attempts')).value('7');
    await etcd.put(configKey(svc, 'attempts')).value('1000');
    await etcd.put(configKey(svc, 'attempts')).value('12');
    await waitFor('12 applied', () => seen.at(-1) === 12, 1000, 10);
    assert.deepEqual(seen, [12], 'only the valid value of its own service');
    await live.close();
    await etcd.delete().prefix(configKey(svc, ''));
    await etcd.delete().prefix(configKey(`${svc}x`, ''));
  });
});
