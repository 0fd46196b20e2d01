// The sign-in throttle's limits are live settings (/config/users/<key>): a running users process
// applies a new limit within a second, refuses a bad one, and goes back to its environment's when
// the key is deleted.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { configKey, createEtcd, type Etcd } from '@microflack/common';
import {
  basic,
  startEtcd,
  startBuiltService,
  waitFor,
  type EtcdServer,
  type ServiceProcess,
} from '@microflack/testkit';

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('users live throttle limits', () => {
  // Its own etcd: the settings must not reach other test files' users instances.
  let etcdServer: EtcdServer;
  let etcd: Etcd;
  let svc: ServiceProcess;

  before(async () => {
    etcdServer = await startEtcd();
    etcd = createEtcd([etcdServer.url]);
    svc = await startBuiltService(packageDir, {
      etcd: etcdServer.url,
      database: 'userslive',
      env: { BCRYPT_ROUNDS: '10', LOGIN_FREE_FAILURES_PER_NICKNAME: '5' },
    });
  });
  after(async () => {
    await svc?.stop();
    etcd.close();
    await etcdServer.stop();
  });

  async function newUser(): Promise<string> {
    const nickname = `live${randomBytes(4).toString('hex')}`;
    const res = await fetch(`http://${svc.address}/api/users`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ nickname, password: 'the-right-one' }),
      signal: AbortSignal.timeout(10000),
    });
    assert.equal(res.status, 201);
    return nickname;
  }

  /** Wrong guesses one after another until the first 429: the number answered 401 before it. */
  async function guessesBefore429(nickname: string): Promise<number> {
    for (let n = 0; n < 20; n++) {
      const res = await fetch(`http://${svc.address}/api/users/me`, {
        headers: basic(nickname, 'wrong'),
        signal: AbortSignal.timeout(10000),
      });
      await res.arrayBuffer();
      if (res.status === 429) return n;
      assert.equal(res.status, 401);
    }
    throw new Error('never throttled');
  }

  const applied = (key: string) =>
    svc.proc
      .log()
      .split('\n')
      .filter((l) => l.includes('"live setting applied"') && l.includes(key)).length;

  it('a lower limit applies within a second, a bad value is refused, deleting restores the environment', async () => {
    const fromEnv = await guessesBefore429(await newUser());

    await etcd.put(configKey('users', 'login_free_failures_per_nickname')).value('2');
    await waitFor('applied', () => applied('login_free_failures_per_nickname') === 1, 1000, 20);
    const lowered = await guessesBefore429(await newUser());
    assert.equal(fromEnv - lowered, 3, `environment 5: ${fromEnv} guesses; live 2: ${lowered}`);

    await etcd.put(configKey('users', 'login_free_failures_per_nickname')).value('-1');
    await waitFor('refused', () => svc.proc.log().includes('"live setting refused"'), 1000, 20);
    assert.equal(
      await guessesBefore429(await newUser()),
      lowered,
      'the refused value changed nothing',
    );

    await etcd.delete().key(configKey('users', 'login_free_failures_per_nickname'));
    await waitFor(
      'back to the environment',
      () => svc.proc.log().includes('"live setting removed; back to the default"'),
      1000,
      20,
    );
    assert.equal(await guessesBefore429(await newUser()), fromEnv);
  });
});
