// The socketio service as deployed: two instances behind HAProxy, calling the real users, tokens
// and messages services, with events crossing instances through Redis.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Socket } from 'socket.io-client';
import { connectClient } from '@microflack/testkit/socketio';
import { basic, bearer, waitFor, type ServiceProcess } from '@microflack/testkit';
import { startPlatform, type Platform } from '@microflack/testkit/platform';

interface Model {
  class: string;
  model: { id: number; online?: boolean; html?: string; nickname?: string };
}

const clients: Socket[] = [];
async function client(url: string, transports?: string[]): Promise<Socket> {
  const socket = await connectClient(url, transports);
  clients.push(socket);
  return socket;
}

function collect(socket: Socket): Model[] {
  const seen: Model[] = [];
  socket.on('updated_model', (m: Model) => seen.push(m));
  return seen;
}

describe('socketio behind HAProxy with the real services', () => {
  let platform: Platform;
  let one: ServiceProcess;
  let two: ServiceProcess;

  before(async () => {
    platform = await startPlatform({ services: ['users', 'tokens', 'messages', 'socketio'] });
    two = await platform.startService('socketio');
    one = platform.instances.socketio[0] as ServiceProcess;
  });
  after(async () => {
    for (const c of clients) c.close();
    await platform?.stop();
  });

  async function signUp(): Promise<{ id: number; nickname: string; token: string }> {
    const nickname = `sio${randomBytes(3).toString('hex')}`;
    const password = 'correct horse';
    const created = await fetch(`${platform.url}/api/users`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ nickname, password }),
    });
    assert.equal(
      created.status,
      201,
      `POST /api/users: ${created.status} ${await created.clone().text()}`,
    );
    const user = (await created.json()) as { id: number };
    const res = await fetch(`${platform.url}/api/tokens`, {
      method: 'POST',
      headers: basic(nickname, password),
    });
    assert.equal(res.status, 200);
    return { id: user.id, nickname, token: ((await res.json()) as { token: string }).token };
  }

  async function isOnline(id: number): Promise<boolean | undefined> {
    const res = await fetch(`${platform.url}/api/users`);
    const { users } = (await res.json()) as { users: Array<{ id: number; online: boolean }> };
    return users.find((u) => u.id === id)?.online;
  }

  it('ping_user, post_message and disconnect reach users and messages; both instances deliver each event', async () => {
    const me = await signUp();
    const onOne = await client(`http://${one.address}`, ['websocket']);
    const onTwo = await client(`http://${two.address}`, ['polling']);
    const viaLb = await client(platform.url);
    const seen = [collect(onOne), collect(onTwo), collect(viaLb)];
    // Getting a token already marked the user online: sign off first, so the ping has work to do.
    const off = await fetch(`${platform.url}/api/users/me`, {
      method: 'DELETE',
      headers: bearer(me.token),
    });
    assert.equal(off.status, 204);
    assert.equal(await isOnline(me.id), false);

    assert.deepEqual(await onOne.timeout(8000).emitWithAck('ping_user', me.token), { ok: true });
    assert.equal(await isOnline(me.id), true);

    const message = (await onOne
      .timeout(8000)
      .emitWithAck('post_message', { source: 'hello *world*' }, me.token)) as {
      id: number;
      html: string;
      user_id: number;
    };
    assert.match(message.html, /hello <em>world<\/em>/);
    assert.equal(message.user_id, me.id);

    const delivered = (s: Model[]) =>
      s.filter((m) => m.class === 'Message' && m.model.id === message.id).length;
    await waitFor(
      'the message on every client',
      () => seen.every((s) => delivered(s) >= 1),
      5000,
    ).catch((err: Error) => {
      const state = [onOne, onTwo, viaLb].map(
        (c, i) => `${i}:${c.connected}:${delivered(seen[i]!)}`,
      );
      throw new Error(`${err.message} (${state.join(' ')})`, { cause: err });
    });
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(seen.map(delivered), [1, 1, 1], 'exactly one updated_model per client');
    const online = (s: Model[]) =>
      s.some((m) => m.class === 'User' && m.model.id === me.id && m.model.online);
    await waitFor('every client to see the user come online', () => seen.every(online), 5000);

    onOne.close();
    await waitFor(
      'the user to go offline after disconnect',
      async () => (await isOnline(me.id)) === false,
      5000,
    );
    await waitFor(
      'the offline event on the other instance',
      () =>
        seen[1]!.some(
          (m) => m.class === 'User' && m.model.id === me.id && m.model.online === false,
        ),
      5000,
    );
  });

  it('two tabs of one user on two instances: closing one leaves the user online (issue 18 item 11)', async () => {
    const me = await signUp();
    const tabA = await client(`http://${one.address}`, ['websocket']);
    const tabB = await client(`http://${two.address}`, ['websocket']);
    const watcher = await client(platform.url);
    const events = collect(watcher);
    assert.deepEqual(await tabA.timeout(8000).emitWithAck('ping_user', me.token), { ok: true });
    assert.deepEqual(await tabB.timeout(8000).emitWithAck('ping_user', me.token), { ok: true });
    assert.equal(await isOnline(me.id), true);

    tabA.close();
    // The disconnect is handled within moments (a question to every instance through Redis);
    // give it ample time, then the user must still be online, and no offline event was sent.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await isOnline(me.id), true, 'still online while the other tab is connected');
    const offline = () =>
      events.some((m) => m.class === 'User' && m.model.id === me.id && m.model.online === false);
    assert.equal(offline(), false);

    tabB.close();
    await waitFor('offline once the last tab closed', async () => !(await isOnline(me.id)), 5000);
    await waitFor('the offline event', offline, 5000);
  });

  it('a revoked token gets expired_token on the next event', async () => {
    const me = await signUp();
    const socket = await client(platform.url);
    assert.deepEqual(await socket.timeout(8000).emitWithAck('ping_user', me.token), { ok: true });
    const revoked = await fetch(`${platform.url}/api/tokens`, {
      method: 'DELETE',
      headers: bearer(me.token),
    });
    assert.equal(revoked.status, 204);
    const expired = new Promise<void>((resolve) => socket.once('expired_token', () => resolve()));
    const answer = await socket
      .timeout(8000)
      .emitWithAck('post_message', { source: 'after' }, me.token);
    await expired;
    assert.deepEqual(answer, { error: 'authentication required', status: 401 });
  });

  it('bad events are refused or dropped, the instances keep running and others see nothing', async () => {
    const me = await signUp();
    const bystander = await client(`http://${two.address}`, ['websocket']);
    const stray: string[] = [];
    bystander.onAny((event: string) => {
      if (event !== 'updated_model') stray.push(event);
    });
    const socket = await client(`http://${one.address}`, ['websocket']);
    assert.deepEqual(
      await socket.timeout(8000).emitWithAck('post_message', { source: 5 }, me.token),
      {
        error: 'message source must be a string',
        status: 400,
      },
    );
    assert.deepEqual(await socket.timeout(8000).emitWithAck('ping_user', 'not-a-token'), {
      error: 'authentication required',
      status: 401,
    });
    const tooLong = (await socket
      .timeout(8000)
      .emitWithAck('post_message', { source: 'x'.repeat(20000) }, me.token)) as {
      error: string;
      status: number;
    };
    assert.equal(tooLong.status, 400);
    assert.match(tooLong.error, /at most/);
    const gone = new Promise<void>((resolve) => socket.once('disconnect', () => resolve()));
    socket.emit('post_message', { source: 'x'.repeat(100 * 1024) }, me.token);
    await gone;
    assert.ok(one.proc.running && two.proc.running);
    assert.deepEqual(await bystander.timeout(8000).emitWithAck('ping_user', me.token), {
      ok: true,
    });
    assert.deepEqual(stray, []);
  });
});
