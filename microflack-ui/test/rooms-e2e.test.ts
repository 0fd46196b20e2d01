// Rooms in the browser client, end to end: three people in real Chromium on the whole platform.
// Public and private rooms, a direct conversation, invitations and removal, privacy against a third
// person (list, socket and guessed ids), unread badges and read markers, mentions, typing,
// reactions, deletion seen live, history paging without the view jumping, search, and a draft kept
// when a message is refused. A screenshot of each state goes to test-artifacts/rooms-*.png.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { waitFor } from '@microflack/testkit';
import { startPlatform, type Platform } from '@microflack/testkit/platform';
import { launchChromium } from '@microflack/testkit/browser';

const ARTIFACTS = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../test-artifacts',
);
const LIVE_MS = 10000;

interface Person {
  nickname: string;
  password: string;
  context: BrowserContext;
  page: Page;
  /** Everything the page received from Socket.IO: WebSocket frames and long-polling answers. */
  socketData: string[];
}

describe('rooms in the browser client', () => {
  let platform: Platform;
  let browser: Browser;
  const people: Person[] = [];

  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    // Both kept even when the other fails, so that after() closes what did start.
    const [started, launched] = await Promise.allSettled([startPlatform(), launchChromium()]);
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
    const socketData: string[] = [];
    page.on('websocket', (ws) => {
      ws.on('framereceived', (f) => socketData.push(String(f.payload)));
    });
    page.on('response', (res) => {
      if (res.url().includes('/socket.io/') && res.request().method() === 'GET') {
        res.text().then(
          (t) => socketData.push(t),
          () => undefined,
        );
      }
    });
    const p: Person = {
      nickname: `${prefix}${randomBytes(3).toString('hex')}`,
      password: `pw-${randomBytes(6).toString('hex')}`,
      context,
      page,
      socketData,
    };
    people.push(p);
    await page.goto(platform.url);
    await page.fill('#login-form input[name=nickname]', p.nickname);
    await page.fill('#login-form input[name=password]', p.password);
    await page.press('#login-form input[name=password]', 'Enter');
    await page.locator('#post-form').waitFor({ state: 'visible', timeout: LIVE_MS });
    return p;
  }

  const shot = (p: Person, name: string) =>
    p.page.screenshot({ path: path.join(ARTIFACTS, `rooms-${name}.png`) });

  const roomItem = (p: Person, id: number) => p.page.locator(`#rooms li[data-room-id="${id}"]`);
  const message = (p: Person, text: string) =>
    p.page.locator('#messages li.message', { hasText: text });

  async function currentRoomId(p: Person): Promise<number> {
    const id = await p.page.locator('#rooms li.current').getAttribute('data-room-id');
    return Number(id);
  }

  async function post(p: Person, text: string): Promise<void> {
    const input = p.page.locator('#post-form input[name=source]');
    await input.fill(text);
    await input.press('Enter');
    await message(p, text).waitFor({ timeout: LIVE_MS });
    await waitFor('the box cleared once sent', async () => (await input.inputValue()) === '');
  }

  async function createRoom(p: Person, name: string, topic: string, priv: boolean) {
    await p.page.click('#new-room');
    await p.page.fill('#room-form input[name=name]', name);
    await p.page.fill('#room-form input[name=topic]', topic);
    if (priv) await p.page.check('#room-form input[name=private]');
    await p.page.press('#room-form input[name=name]', 'Enter');
    await p.page.locator('#room-name', { hasText: name }).waitFor({ timeout: LIVE_MS });
    return currentRoomId(p);
  }

  async function openRoom(p: Person, id: number): Promise<void> {
    await roomItem(p, id).locator('button').click();
    await p.page.locator(`#rooms li.current[data-room-id="${id}"]`).waitFor({ timeout: LIVE_MS });
  }

  /** What the page's own fetch gets, with its user's token: a person guessing an id. */
  function fetchAs(p: Person, url: string): Promise<number> {
    return p.page.evaluate(async (u) => {
      const token = sessionStorage.getItem('microflack-token') ?? '';
      const res = await fetch(u, { headers: { Authorization: `Bearer ${token}` } });
      return res.status;
    }, url);
  }

  function tokenOf(p: Person): Promise<string> {
    return p.page.evaluate(() => sessionStorage.getItem('microflack-token') ?? '');
  }

  it(
    'three people: rooms, a DM, privacy, and what a chat is expected to do',
    { timeout: 170000 },
    async () => {
      const started = Date.now();
      const ada = await person('ada', { width: 1100, height: 800 });
      const bob = await person('bob', { width: 390, height: 844 }); // a phone
      const carol = await person('carol', { width: 1000, height: 760 });
      const tag = randomBytes(3).toString('hex');

      // A public room: made by ada, seen live by bob, who joins it and mentions her.
      const lobby = await createRoom(ada, `lobby ${tag}`, 'all welcome', false);
      // Listed for bob, live, as a room to join.
      await bob.page
        .locator(`#rooms li.joinable[data-room-id="${lobby}"]`)
        .waitFor({ timeout: LIVE_MS });
      await openRoom(bob, lobby);
      assert.ok(await bob.page.locator('#post-form').isHidden(), 'not a member: no post box');
      await bob.page.click('#join-room');
      await bob.page.locator('#post-form').waitFor({ state: 'visible', timeout: LIVE_MS });
      await shot(ada, 'create');
      await post(bob, `hello @${ada.nickname}, and @nobody${tag}`);
      const mentioned = message(ada, 'hello').locator('.mention.mention-me');
      await mentioned.waitFor({ timeout: LIVE_MS });
      assert.equal(await mentioned.textContent(), `@${ada.nickname}`);
      assert.equal(await message(ada, 'hello').locator('.mention:not(.mention-me)').count(), 1);
      await shot(ada, 'mention');

      // A private room: ada invites bob; carol never sees it.
      const secret = await createRoom(ada, `secret ${tag}`, 'only us', true);
      await ada.page.click('#members-button');
      await ada.page.fill('#invite-form input[name=nickname]', bob.nickname);
      await ada.page.press('#invite-form input[name=nickname]', 'Enter');
      await ada.page
        .locator('#members li', { hasText: bob.nickname })
        .waitFor({ timeout: LIVE_MS });
      await shot(ada, 'members');
      await ada.page.keyboard.press('Escape');
      await ada.page.locator('#members-dialog').waitFor({ state: 'hidden' });
      // Keyboard use: Tab moves focus, and the focused control shows it.
      await ada.page.keyboard.press('Tab');
      const focusRing = await ada.page.evaluate(() => {
        const el = document.activeElement as HTMLElement | null;
        if (!el || el === document.body) return undefined;
        const style = getComputedStyle(el);
        return {
          tag: el.tagName,
          outline: style.outlineStyle,
          width: parseFloat(style.outlineWidth),
        };
      });
      assert.ok(focusRing, 'Tab focused nothing');
      assert.notEqual(focusRing.outline, 'none', `${focusRing.tag} focused without a visible ring`);
      assert.ok(focusRing.width >= 2, `${focusRing.tag}'s focus ring is ${focusRing.width}px`);
      await roomItem(bob, secret).waitFor({ timeout: LIVE_MS });
      const marker = `classified${tag}`;
      await post(ada, `${marker} plans`);
      const secretMessageId = Number(await message(ada, marker).getAttribute('data-id'));

      // Bob, in the lobby, sees the unread badge; opening the room reads it, for good.
      const badge = roomItem(bob, secret).locator('.badge.unread');
      await badge.filter({ hasText: '1' }).waitFor({ timeout: LIVE_MS });
      await shot(bob, 'unread');
      await openRoom(bob, secret);
      await message(bob, marker).waitFor({ timeout: LIVE_MS });
      await badge.waitFor({ state: 'hidden' });
      await waitFor('the read marker stored', async () => {
        const res = await fetch(`${platform.url}/api/rooms?limit=1000`, {
          headers: { Authorization: `Bearer ${await tokenOf(bob)}` },
          signal: AbortSignal.timeout(5000),
        });
        const { rooms } = (await res.json()) as { rooms: { id: number; unread?: number }[] };
        return rooms.find((r) => r.id === secret)?.unread === 0;
      });
      await bob.page.reload();
      await roomItem(bob, secret).waitFor({ timeout: LIVE_MS });
      assert.ok(await badge.isHidden(), 'still read after a reload');
      await openRoom(bob, secret);
      await message(bob, marker).waitFor({ timeout: LIVE_MS });

      // Carol: the public room is listed, the private one is not, not even by its id.
      await roomItem(carol, lobby).waitFor({ timeout: LIVE_MS });
      assert.equal(await roomItem(carol, secret).count(), 0);
      assert.equal(await fetchAs(carol, `/api/rooms/${secret}`), 404);
      assert.equal(await fetchAs(carol, `/api/messages?room_id=${secret}&before=latest`), 404);
      assert.equal(await fetchAs(carol, `/api/messages/${secretMessageId}`), 404);
      assert.equal(await fetchAs(bob, `/api/messages/${secretMessageId}`), 200);

      // Typing: bob types in the private room, ada sees it.
      await bob.page.locator('#post-form input[name=source]').pressSequentially('abc');
      await ada.page
        .locator('#typing', { hasText: `${bob.nickname} is typing…` })
        .waitFor({ timeout: LIVE_MS });
      await shot(ada, 'typing');
      await bob.page.locator('#post-form input[name=source]').fill('');

      // A reaction, live on the other screen with who reacted.
      await message(ada, marker).locator('.react-open').click();
      await message(ada, marker).locator('.picker button[data-emoji="🎉"]').click();
      const reaction = message(bob, marker).locator('.reactions button[data-emoji="🎉"]');
      await reaction.filter({ hasText: '🎉 1' }).waitFor({ timeout: LIVE_MS });
      assert.equal(await reaction.getAttribute('title'), ada.nickname);
      assert.equal(
        await message(ada, marker).locator('button[data-emoji="🎉"]').getAttribute('aria-pressed'),
        'true',
      );
      await shot(bob, 'reaction');

      // Deleting: the tombstone replaces the message on bob's screen, live.
      const doomed = `soon gone ${tag}`;
      await post(ada, doomed);
      await message(bob, doomed).waitFor({ timeout: LIVE_MS });
      const doomedId = await message(ada, doomed).getAttribute('data-id');
      await message(ada, doomed).locator('.delete').click();
      await message(ada, doomed).locator('.delete', { hasText: 'Delete?' }).click();
      const tomb = bob.page.locator(`#messages li.message.deleted[data-id="${doomedId}"]`);
      await tomb.waitFor({ timeout: LIVE_MS });
      assert.equal((await tomb.locator('.body').innerText()).trim(), 'message deleted');
      await shot(bob, 'deleted');

      // A direct conversation, opened from a participant's name.
      await bob.page.locator(`#users li[data-nickname="${ada.nickname}"] .name`).click();
      await bob.page
        .locator('#room-name', { hasText: `@${ada.nickname}` })
        .waitFor({ timeout: LIVE_MS });
      const dm = await currentRoomId(bob);
      const whisper = `psst ${tag}`;
      await post(bob, whisper);
      await roomItem(ada, dm)
        .locator('.badge.unread', { hasText: '1' })
        .waitFor({ timeout: LIVE_MS });
      assert.equal(await roomItem(ada, dm).locator('.room-label').textContent(), bob.nickname);
      await openRoom(ada, dm);
      await message(ada, whisper).waitFor({ timeout: LIVE_MS });
      await shot(bob, 'dm');
      assert.equal(await roomItem(carol, dm).count(), 0);
      assert.equal(await fetchAs(carol, `/api/rooms/${dm}`), 404);

      // Removal: bob leaves the private room's socket room and list; he hears nothing more of it.
      await openRoom(ada, secret);
      await ada.page.click('#members-button');
      await ada.page.locator('#members li', { hasText: bob.nickname }).locator('.remove').click();
      await ada.page
        .locator('#members li', { hasText: bob.nickname })
        .waitFor({ state: 'detached', timeout: LIVE_MS });
      await ada.page.keyboard.press('Escape');
      await roomItem(bob, secret).waitFor({ state: 'detached', timeout: LIVE_MS });
      const afterRemoval = `after removal ${marker}`;
      await post(ada, afterRemoval);
      assert.equal(await fetchAs(bob, `/api/messages?room_id=${secret}&before=latest`), 404);

      // A draft is kept when a message is refused, and the limit is shown while typing.
      await openRoom(bob, lobby);
      const long = 'x'.repeat(4500);
      const input = bob.page.locator('#post-form input[name=source]');
      await input.fill(long);
      const count = bob.page.locator('#post-count.over');
      await count.waitFor({ timeout: LIVE_MS });
      assert.match((await count.textContent()) ?? '', /4500 \/ 4000/);
      await input.press('Enter');
      await bob.page.locator('#post-error', { hasText: 'at most 4000' }).waitFor();
      assert.equal((await input.inputValue()).length, 4500, 'the draft is kept');
      await shot(bob, 'too-long');
      await input.fill('');

      // History: 130 older messages; scrolling up loads them and the view does not jump.
      const adaToken = await tokenOf(ada);
      for (let i = 0; i < 130; i += 10) {
        await Promise.all(
          Array.from({ length: 10 }, (_, j) =>
            fetch(`${platform.url}/api/messages`, {
              method: 'POST',
              headers: { 'content-type': 'application/json', authorization: `Bearer ${adaToken}` },
              body: JSON.stringify({
                source: `seed ${String(i + j).padStart(3, '0')}`,
                room_id: lobby,
              }),
              signal: AbortSignal.timeout(10000),
            }).then((r) => assert.equal(r.status, 201)),
          ),
        );
      }
      await openRoom(ada, lobby);
      await post(ada, `zebracorn ${tag} is the word`);
      // Bob opens the room afresh: the newest page only.
      await openRoom(bob, dm);
      await openRoom(bob, lobby);
      await message(bob, 'zebracorn').waitFor({ timeout: LIVE_MS });
      const onScreen = () => bob.page.locator('#messages li.message').count();
      assert.equal(await onScreen(), 50, 'the newest page');
      const topId = await bob.page.locator('#messages li.message').first().getAttribute('data-id');
      const topBefore = await bob.page.evaluate((id) => {
        const list = document.querySelector('#messages') as HTMLElement;
        list.scrollTop = 0;
        const li = document.querySelector(`#messages li[data-id="${id}"]`) as HTMLElement;
        return li.getBoundingClientRect().top;
      }, topId);
      await waitFor('an older page on screen', async () => (await onScreen()) > 50);
      const topAfter = await bob.page
        .locator(`#messages li[data-id="${topId}"]`)
        .evaluate((li) => li.getBoundingClientRect().top);
      console.log(`scroll-back: message ${topId} at ${topBefore} px before, ${topAfter} px after`);
      assert.ok(Math.abs(topAfter - topBefore) <= 3, `moved from ${topBefore} to ${topAfter}`);
      await shot(bob, 'scrollback');
      // Further up, to the oldest seeded message.
      await waitFor('the oldest seeded message', async () => {
        await bob.page.evaluate(() => {
          (document.querySelector('#messages') as HTMLElement).scrollTop = 0;
        });
        return (await message(bob, 'seed 000').count()) === 1;
      });

      // Search: ada finds the word; carol, searching the private marker, finds nothing.
      await ada.page.click('#search-button');
      await ada.page.fill('#search-form input[name=q]', 'zebracorn');
      await ada.page.press('#search-form input[name=q]', 'Enter');
      const hit = ada.page.locator('#search-results li', { hasText: `zebracorn ${tag}` });
      await hit.waitFor({ timeout: LIVE_MS });
      assert.equal(await hit.getAttribute('data-room-id'), String(lobby));
      await shot(ada, 'search');
      await ada.page.keyboard.press('Escape');
      await ada.page.locator('#search-pane').waitFor({ state: 'hidden' });
      await carol.page.click('#search-button');
      await carol.page.fill('#search-form input[name=q]', marker);
      await carol.page.press('#search-form input[name=q]', 'Enter');
      await carol.page.locator('#search-status', { hasText: 'Nothing found.' }).waitFor();

      // Over the socket, carol received nothing of the private room or the DM, though she was
      // connected the whole time (and heard the lobby's messages).
      assert.ok(
        carol.socketData.length > 0 && carol.socketData.some((d) => d.includes(`lobby ${tag}`)),
        'carol heard public events',
      );
      const leaked = carol.socketData.filter(
        (d) => d.includes(marker) || d.includes(whisper) || d.includes(`secret ${tag}`),
      );
      assert.deepEqual(leaked, []);

      // The phone shows it all without sideways scrolling.
      const overflow = await bob.page.evaluate(
        () => document.documentElement.scrollWidth - window.innerWidth,
      );
      assert.ok(overflow <= 0, `phone layout overflows by ${overflow} px`);
      await shot(bob, 'phone');
      console.log(`rooms scenario: ${Date.now() - started} ms`);
    },
  );
});
