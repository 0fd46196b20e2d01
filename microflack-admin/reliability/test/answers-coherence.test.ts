// Answers from memory (docs/ARCHITECTURE.md) never keep a change from a reader: with two
// instances each of users and messages, a change made through one is seen through the other
// within 1 s while Redis is up, at once while it is down, and within 1 s again once it is back.
// Each instance is asked directly (its registered address), its list kept warm in its memory.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@microflack/testkit';
import { createLogin, type Login } from '@microflack/testkit/load';
import { startPlatform, type Platform } from '@microflack/testkit/platform';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('answers from memory across instances', () => {
  let platform: Platform;
  let login: Login;
  const figures: string[] = [];

  before(async () => {
    platform = await startPlatform({ services: ['users', 'tokens', 'messages'] });
    await platform.startService('messages');
    await platform.startService('users');
    login = await createLogin(platform.url, `coh${Date.now() % 1e6}`);
  });
  after(async () => {
    console.log(`\nanswers from memory:\n${figures.join('\n')}`);
    await platform?.stop();
  });

  const direct = (address: string, path: string, init: RequestInit = {}) =>
    fetch(`http://${address}${path}`, { ...init, signal: AbortSignal.timeout(5000) });

  async function text(address: string, path: string, headers: Record<string, string> = {}) {
    const res = await direct(address, path, { headers });
    assert.equal(res.status, 200, `${address}${path}`);
    return res.text();
  }

  /**
   * Changes through the first instance of `service`, then reads the second one until the change
   * shows; answers how long that took and whether the very first read already had it.
   */
  async function changeAndSee(
    service: 'messages' | 'users',
    label: string,
  ): Promise<{ ms: number; firstRead: boolean }> {
    const [a, b] = platform.instances[service];
    assert.ok(a && b);
    const listPath = service === 'messages' ? '/api/messages?limit=100' : '/api/users?limit=100';
    const mark = `${label}${Date.now() % 1e7}`;
    // Warm: the list answered (and kept) by both, several times.
    for (let i = 0; i < 5; i++) {
      await text(a.address, listPath);
      await text(b.address, listPath);
    }
    let res: Response;
    if (service === 'messages') {
      res = await direct(a.address, '/api/messages', {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${login.token}` },
        body: JSON.stringify({ source: mark }),
      });
    } else {
      res = await direct(a.address, '/api/users', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ nickname: mark, password: 'coherence-pw' }),
      });
    }
    assert.equal(res.status, 201, await res.text());
    const t0 = Date.now();
    let firstRead: boolean | undefined;
    for (;;) {
      const seen = (await text(b.address, listPath)).includes(mark);
      firstRead ??= seen;
      if (seen) break;
      assert.ok(Date.now() - t0 < 1000, `${service}: not seen on the other instance within 1 s`);
      await sleep(5);
    }
    return { ms: Date.now() - t0, firstRead };
  }

  it('shows a change on one instance through the other within 1 s, Redis up', async () => {
    for (const service of ['messages', 'users'] as const) {
      const times: number[] = [];
      for (let round = 0; round < 5; round++) times.push((await changeAndSee(service, 'up')).ms);
      figures.push(
        `  Redis up, ${service}: seen on the other instance after ${times.join(', ')} ms`,
      );
    }
  });

  it('with Redis down answers nothing from memory: the first read after a change has it', async () => {
    await platform.redis.stop();
    try {
      // Each instance notices within 1 s that it no longer hears its own heartbeat.
      await sleep(1500);
      for (const service of ['messages', 'users'] as const) {
        for (let round = 0; round < 5; round++) {
          const { firstRead } = await changeAndSee(service, 'down');
          assert.equal(firstRead, true, `${service}: a stale read while Redis was down`);
        }
        figures.push(`  Redis down, ${service}: every first read after a change had it (5 of 5)`);
      }
    } finally {
      await platform.redis.start();
    }
  });

  it('once Redis is back, answers from memory again and still shows changes within 1 s', async () => {
    const [a] = platform.instances.messages;
    assert.ok(a);
    const fromMemory = async () => {
      const metrics = await text(a.address, '/metrics');
      const line = metrics
        .split('\n')
        .find((l) => l.startsWith('answers_from_memory_total{') && l.includes('source="memory"'));
      return Number(line?.split(' ').pop() ?? 0);
    };
    await waitFor(
      'answers from memory again',
      async () => {
        const before = await fromMemory();
        await text(a.address, '/api/messages?limit=100');
        await text(a.address, '/api/messages?limit=100');
        return (await fromMemory()) > before;
      },
      15000,
    );
    for (const service of ['messages', 'users'] as const) {
      const times: number[] = [];
      for (let round = 0; round < 3; round++) times.push((await changeAndSee(service, 'back')).ms);
      figures.push(`  Redis back, ${service}: seen after ${times.join(', ')} ms`);
    }
  });
});
