// MicroFlack end to end: the whole platform behind HAProxy, two people chatting in real Chromium,
// live over Socket.IO and then again with a ui instance that makes browsers poll (NO_SOCKETIO).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { waitFor } from '@microflack/testkit';
import { serverStats } from '@microflack/testkit/stats';
import { startPlatform, type Platform } from '@microflack/testkit/platform';
import { launchChromium } from '@microflack/testkit/browser';

const ARTIFACTS = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../test-artifacts',
);
const MAX_POST_TO_DISPLAY_MS = 2000;
const STATS_PASSWORD = randomBytes(8).toString('hex');

interface Person {
  nickname: string;
  password: string;
  context: BrowserContext;
  page: Page;
  /** Every URL the page asked for, to prove nothing comes from outside the platform. */
  requests: string[];
}

describe('MicroFlack in a browser', () => {
  let platform: Platform;
  let browser: Browser;
  const people: Person[] = [];

  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    // Both kept even when the other fails, so that after() closes what did start.
    const [started, launched] = await Promise.allSettled([
      startPlatform({ statsPassword: STATS_PASSWORD }),
      launchChromium(),
    ]);
    if (started.status === 'fulfilled') platform = started.value;
    if (launched.status === 'fulfilled') browser = launched.value;
    if (started.status === 'rejected') throw started.reason;
    if (launched.status === 'rejected') throw launched.reason;
  });

  after(async () => {
    for (const p of people) await p.context.close().catch(() => undefined);
    await browser?.close();
    await platform?.stop();
  });

  async function person(
    prefix: string,
    viewport: { width: number; height: number },
  ): Promise<Person> {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    const requests: string[] = [];
    page.on('request', (req) => requests.push(req.url()));
    const p: Person = {
      nickname: `${prefix}${randomBytes(3).toString('hex')}`,
      password: `pw-${randomBytes(6).toString('hex')}`,
      context,
      page,
      requests,
    };
    people.push(p);
    return p;
  }

  async function signIn(p: Person, password = p.password): Promise<void> {
    await p.page.fill('#login-form input[name=nickname]', p.nickname);
    await p.page.fill('#login-form input[name=password]', password);
    await p.page.press('#login-form input[name=password]', 'Enter');
  }

  function participant(page: Page, nickname: string, online: boolean) {
    return page.locator(`#users li[data-nickname="${nickname}"][data-online="${online}"]`);
  }

  async function scenario(
    mode: 'socketio' | 'polling',
    beforeClose?: () => Promise<void>,
  ): Promise<number> {
    const alice = await person('alice', { width: 1000, height: 700 });
    const bob = await person('bob', { width: 390, height: 760 }); // a phone
    for (const p of [alice, bob]) {
      await p.page.goto(platform.url);
      assert.equal(await p.page.getAttribute('body', 'data-mode'), mode);
    }
    // Unknown nicknames: each registers, then is signed in.
    await signIn(alice);
    await alice.page.locator('#post-form').waitFor({ state: 'visible' });
    await signIn(bob);
    await bob.page.locator('#post-form').waitFor({ state: 'visible' });
    assert.equal(await alice.page.textContent('#me'), alice.nickname);

    await participant(alice.page, bob.nickname, true).waitFor({ timeout: 5000 });
    await participant(bob.page, alice.nickname, true).waitFor({ timeout: 5000 });
    await participant(alice.page, alice.nickname, true).waitFor({ timeout: 5000 });

    await alice.page.fill('#post-form input[name=source]', 'hello *world*');
    const posted = Date.now();
    await alice.page.press('#post-form input[name=source]', 'Enter');
    const seen = bob.page
      .locator('#messages li.message', { hasText: 'hello world' })
      .filter({ has: bob.page.locator('.author', { hasText: alice.nickname }) });
    await seen.locator('.body em', { hasText: 'world' }).waitFor({ timeout: 10000 });
    const elapsedMs = Date.now() - posted;
    console.log(`[${mode}] post to display on the other browser: ${elapsedMs} ms`);
    assert.ok(elapsedMs <= MAX_POST_TO_DISPLAY_MS, `shown after ${elapsedMs} ms`);
    assert.equal((await seen.locator('.body').innerText()).trim(), 'hello world');
    assert.equal(await seen.locator('.author').textContent(), alice.nickname);
    // The sender's input is cleared once its POST is answered, which may come after the other
    // browser has shown the message.
    await alice.page.waitForFunction(
      () => document.querySelector<HTMLInputElement>('#post-form input[name=source]')?.value === '',
      undefined,
      { timeout: 5000 },
    );

    // Only HTML that the server sanitized is inserted: an event handler never runs.
    await bob.page.fill(
      '#post-form input[name=source]',
      '<img src="/x.png" onerror="window.__pwned=1"> **bold**',
    );
    await bob.page.press('#post-form input[name=source]', 'Enter');
    await alice.page
      .locator('#messages li.message .body strong', { hasText: 'bold' })
      .waitFor({ timeout: 5000 });
    assert.equal(
      await alice.page.evaluate(() => (window as { __pwned?: number }).__pwned),
      undefined,
    );

    const shot = path.join(ARTIFACTS, mode === 'socketio' ? 'chat.png' : 'chat-polling.png');
    await alice.page.screenshot({ path: shot });
    await bob.page.screenshot({ path: shot.replace('.png', '-phone.png') });
    assert.ok(fs.statSync(shot).size > 5000);

    // A phone-sized screen shows everything without sideways scrolling.
    const overflow = await bob.page.evaluate(
      () => document.documentElement.scrollWidth - window.innerWidth,
    );
    assert.ok(overflow <= 0, `phone layout overflows by ${overflow} px`);

    await alice.page.click('#signout');
    await alice.page.locator('#login-form').waitFor({ state: 'visible' });
    await participant(bob.page, alice.nickname, false).waitFor({ timeout: 5000 });

    // A known nickname with a wrong password: an error in the form, still signed out.
    await signIn({ ...alice, nickname: bob.nickname }, 'not-the-password');
    await alice.page
      .locator('#login-error', { hasText: /wrong password/i })
      .waitFor({ timeout: 5000 });
    assert.ok(await alice.page.locator('#post-form').isHidden());

    const origin = new URL(platform.url).origin;
    for (const p of [alice, bob]) {
      const outside = p.requests.filter(
        (u) => !u.startsWith(origin + '/') && !u.startsWith('data:'),
      );
      assert.deepEqual(outside, [], 'every request stays on the platform');
      const external = await p.page.evaluate(() =>
        [...document.querySelectorAll('script[src], link[href]')]
          .map((e) => e.getAttribute('src') ?? e.getAttribute('href') ?? '')
          .filter((u) => /^(https?:)?\/\//.test(u)),
      );
      assert.deepEqual(external, []);
    }
    await beforeClose?.();
    for (const p of [alice, bob]) await p.context.close();
    return elapsedMs;
  }

  it('two people chat live over Socket.IO', { timeout: 60000 }, async () => {
    await scenario('socketio');
  });

  it(
    'a reader back from a lost connection catches up twice: what the first answer lacked comes with the second',
    { timeout: 60000 },
    async () => {
      // The message is posted while the reader's gateway is down (its event goes to nobody), and
      // the reader's first catch-up answer lacks it, as an answer up to a second old may (answers
      // from memory, ARCHITECTURE.md): the second catch-up, RESYNC_AGAIN_MS later, must bring it.
      const bob = await person('bob', { width: 1000, height: 700 });
      await bob.page.goto(platform.url);
      await signIn(bob);
      await bob.page.locator('#post-form').waitFor({ state: 'visible' });
      const poster = {
        nickname: `carol${randomBytes(3).toString('hex')}`,
        password: 'pw-long-enough-1',
      };
      const api = (p: string, init: RequestInit) =>
        fetch(platform.url + p, { ...init, signal: AbortSignal.timeout(5000) });
      assert.equal(
        (
          await api('/api/users', {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify(poster),
          })
        ).status,
        201,
      );
      const basic = Buffer.from(`${poster.nickname}:${poster.password}`).toString('base64');
      const { token } = (await (
        await api('/api/tokens', { method: 'POST', headers: { Authorization: `Basic ${basic}` } })
      ).json()) as { token: string };

      const [gateway] = platform.instances.socketio;
      assert.ok(gateway);
      await platform.stopService('socketio', gateway);
      const text = `missed while away ${randomBytes(3).toString('hex')}`;
      const res = await api('/api/messages', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
        body: JSON.stringify({ source: text }),
      });
      assert.equal(res.status, 201);
      const { id } = (await res.json()) as { id: number };

      const asked: string[] = [];
      await bob.page.route(/\/api\/messages\?.*updated_since=/, async (route) => {
        const url = route.request().url();
        asked.push(url);
        const response = await route.fetch();
        const body = (await response.json()) as { messages: Array<{ id: number }> };
        if (asked.length === 1) body.messages = body.messages.filter((m) => m.id !== id);
        await route.fulfill({ response, json: body });
      });
      await platform.startService('socketio');
      const started = Date.now();
      await bob.page
        .locator('#messages li.message', { hasText: text })
        .waitFor({ timeout: 15000 })
        .catch(async (err: Error) => {
          // What the page did meanwhile, to tell a reconnect that never came from a catch-up
          // that did not bring the message.
          const shown = await bob.page.locator('#status').textContent();
          throw new Error(
            `${err.message}\n${Date.now() - started} ms after the gateway was back; status ` +
              `'${shown}'; catch-up requests: ${asked.join(', ') || 'none'}`,
            { cause: err },
          );
        });
      assert.ok(asked.length >= 2, `catch-up requests: ${asked.join(', ')}`);
      // Both from the same point: the second is not moved on by what was heard in between.
      const since = asked.map((u) => new URL(u).searchParams.get('updated_since'));
      assert.equal(since[1], since[0]);
      await bob.page.unroute(/\/api\/messages\?.*updated_since=/);
      await bob.context.close();
    },
  );

  it(
    'a post whose acknowledgement was lost, sent again, is one message (the same Idempotency-Key)',
    { timeout: 60000 },
    async () => {
      const dave = await person('dave', { width: 1000, height: 700 });
      // Between the page and the gateway: every post_message frame is recorded, and the answer to
      // the first is dropped, as when the connection dies after the gateway posted.
      const posts: Array<{ id: string; key: unknown }> = [];
      let dropped = '';
      let upgraded = false;
      await dave.page.routeWebSocket(/\/socket\.io\//, (ws) => {
        const server = ws.connectToServer();
        ws.onMessage((frame) => {
          if (frame === '5') upgraded = true;
          const m = typeof frame === 'string' ? /^42(\d+)(\[.*)$/s.exec(frame) : null;
          const args = m ? (JSON.parse(m[2] as string) as unknown[]) : [];
          if (m && args[0] === 'post_message') {
            posts.push({
              id: m[1] as string,
              key: (args[1] as { idempotency_key?: unknown }).idempotency_key,
            });
          }
          server.send(frame);
        });
        server.onMessage((frame) => {
          const ack = typeof frame === 'string' ? /^43(\d+)\[/.exec(frame) : null;
          if (ack && !dropped && posts[0]?.id === ack[1]) {
            dropped = frame as string;
            return;
          }
          ws.send(frame);
        });
      });
      await dave.page.goto(platform.url);
      await signIn(dave);
      await dave.page.locator('#post-form').waitFor({ state: 'visible' });
      await waitFor('the socket on WebSocket', async () => upgraded, 10000, 100);
      const text = `only once ${randomBytes(3).toString('hex')}`;
      const input = dave.page.locator('#post-form input[name=source]');
      await input.fill(text);
      await input.press('Enter');
      // Posted (its updated_model shows it), but the sender never heard: after the acknowledgement
      // timeout the draft is still there, with the error.
      await dave.page.locator('#post-error', { hasText: 'could not be sent' }).waitFor({
        timeout: 15000,
      });
      assert.ok(dropped, 'the first acknowledgement was dropped');
      assert.equal(await input.inputValue(), text);
      await input.press('Enter');
      await dave.page.waitForFunction(
        () =>
          document.querySelector<HTMLInputElement>('#post-form input[name=source]')?.value === '',
        undefined,
        { timeout: 10000 },
      );
      assert.equal(posts.length, 2);
      assert.match(String(posts[0]?.key), /^[0-9a-f]{32}$/);
      assert.equal(posts[1]?.key, posts[0]?.key, 'sent again with the same key');
      assert.equal(await dave.page.locator('#post-error').innerText(), '');
      const shown = dave.page.locator('#messages li.message', { hasText: text });
      assert.equal(await shown.count(), 1);
      const stored = (await (
        await fetch(`${platform.url}/api/messages?limit=100`, { signal: AbortSignal.timeout(5000) })
      ).json()) as { messages: Array<{ source: string }> };
      assert.equal(
        stored.messages.filter((m) => m.source === text).length,
        1,
        'one message stored',
      );
      await dave.context.close();
    },
  );

  it(
    'the same with NO_SOCKETIO, polling the REST API every second',
    { timeout: 60000 },
    async () => {
      const [live] = platform.instances.ui;
      assert.ok(live);
      await platform.stopService('ui', live);
      await platform.startService('ui', { NO_SOCKETIO: '1' });
      let polling = 0;
      await waitFor('only the polling ui to be routed', async () => {
        const html = await (
          await fetch(platform.url, { signal: AbortSignal.timeout(2000) })
        ).text();
        polling = html.includes('data-mode="polling"') ? polling + 1 : 0;
        return polling >= 3;
      });
      const notModified = async () =>
        (await serverStats(platform.url, STATS_PASSWORD))
          .filter((s) => s.backend === 'svc_messages' || s.backend === 'svc_users')
          .reduce((n, s) => n + s.hrsp3xx, 0);
      const before304 = await notModified();
      // Polls of unchanged lists are revalidated: If-None-Match from the browser's cache, 304
      // without a body from the services. The scenario changes the lists almost every second, so
      // it ends with a quiet stretch (pages still open, nothing changing) of up to 10 polls.
      let answered304 = 0;
      await scenario('polling', async () => {
        const quietFrom = Date.now();
        try {
          await waitFor(
            'a poll of an unchanged list answered 304',
            async () => (answered304 = (await notModified()) - before304) > 0,
            10000,
            250,
          );
        } finally {
          console.log(
            `[polling] 304 answers from messages and users: ${answered304} ` +
              `(quiet stretch ${Date.now() - quietFrom} ms)`,
          );
        }
      });
      assert.ok(answered304 > 0, 'no poll was answered 304');
    },
  );
});
