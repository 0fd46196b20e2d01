// Stored XSS, checked where it would run: the XSS corpus posted as messages and used as nicknames
// through the real platform, then read in the browser client in Chromium, both on page load and
// live over Socket.IO. A payload "executes" when it opens a dialog, calls the window.__xss hook,
// logs to the console, makes a request of its own, or leaves an element that can run code.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { Nickname, nicknameKey, RoomCreate } from '@microflack/common/api';
import { waitFor } from '@microflack/testkit';
import { XSS_PAYLOADS } from '@microflack/testkit/xss-corpus';
import { startPlatform, type Platform } from '@microflack/testkit/platform';
import { launchChromium } from '@microflack/testkit/browser';
import { createLogin, type Login } from '@microflack/testkit/load';

// Links keep their shape but point at loopback, which the previewer refuses without fetching: the
// test never sends the messages service to the Internet.
function onLoopback(payload: string): string {
  return payload.replace(/(?:www\.)?[a-z]+\.example(?:\.com)?/g, '127.0.0.1');
}

// What the users service accepts as a nickname (at most 32 characters, no ":" or control
// characters, no surrounding spaces); the corpus entries that fit are tried as nicknames.
/** Whether the API takes this as a nickname (the contract's own rules). */
function isNickname(p: string): boolean {
  return Nickname.safeParse(p).success;
}

/** One nickname per identity: `<script>` and `<SCRIPT>` are one user, registered once. */
function onePerIdentity(nicknames: string[]): string[] {
  const seen = new Set<string>();
  return nicknames.filter((n) => {
    const key = nicknameKey(n);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

const EXTRA_NICKNAMES = [
  '<img src=x onerror=alert(1)>',
  '<svg onload=alert(1)>',
  '"><script>alert(1)</script>',
  "'><img src=x onerror=alert(1)>",
  '<b onmouseover=alert(1)>b</b>',
];

// Installed before any page script: every way a payload could make itself known.
const HOOKS = `
  window.__xssHits = [];
  window.__xss = (what) => window.__xssHits.push(String(what));
  for (const name of ['alert', 'confirm', 'prompt', 'print']) {
    const original = window[name];
    window[name] = (...args) => { window.__xss(name + ':' + args.join(',')); };
  }
`;

interface Hits {
  dialogs: string[];
  console: string[];
  pageErrors: string[];
  foreignRequests: string[];
}

describe('the XSS corpus in the browser client', () => {
  let platform: Platform;
  let browser: Browser;
  let author: Login;

  before(async () => {
    // Both kept even when the other fails, so that after() closes what did start.
    const [started, launched] = await Promise.allSettled([startPlatform(), launchChromium()]);
    if (started.status === 'fulfilled') platform = started.value;
    if (launched.status === 'fulfilled') browser = launched.value;
    if (started.status === 'rejected') throw started.reason;
    if (launched.status === 'rejected') throw launched.reason;
    author = await createLogin(platform.url, `xss${randomBytes(3).toString('hex')}`);
  });

  after(async () => {
    await browser?.close();
    await platform?.stop();
  });

  async function postMessage(token: string, source: string): Promise<number> {
    const res = await fetch(`${platform.url}/api/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ source }),
      signal: AbortSignal.timeout(10000),
    });
    const text = await res.text();
    assert.equal(res.status, 201, `${source}: ${text}`);
    return (JSON.parse(text) as { id: number }).id;
  }

  /** A public room named and described by a payload; its id. */
  async function hostileRoom(name: string): Promise<number> {
    const res = await fetch(`${platform.url}/api/rooms`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${author.token}` },
      body: JSON.stringify({ name, topic: name }),
      signal: AbortSignal.timeout(10000),
    });
    const text = await res.text();
    assert.equal(res.status, 201, `${name}: ${text}`);
    return (JSON.parse(text) as { id: number }).id;
  }

  /** A user with the payload as nickname, who posts a message so the name shows as an author. */
  async function hostileUser(nickname: string): Promise<number> {
    const password = `pw-${randomBytes(6).toString('hex')}`;
    const basic = `Basic ${Buffer.from(`${nickname}:${password}`).toString('base64')}`;
    const created = await fetch(`${platform.url}/api/users`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ nickname, password }),
      signal: AbortSignal.timeout(10000),
    });
    assert.equal(created.status, 201, `${nickname}: ${await created.text()}`);
    const tok = await fetch(`${platform.url}/api/tokens`, {
      method: 'POST',
      headers: { authorization: basic },
      signal: AbortSignal.timeout(10000),
    });
    assert.equal(tok.status, 200, `${nickname}: token`);
    return postMessage(((await tok.json()) as { token: string }).token, 'hello from me');
  }

  /** Elements that could run code or load something, in the parts of the page fed by users. */
  function injected(page: Page): Promise<string[]> {
    return page.evaluate(() => {
      const found: string[] = [];
      const risky =
        'script,iframe,frame,object,embed,svg,math,style,link,meta,base,form,img,video,audio,source,input,button,textarea,select,details,template,marquee';
      for (const root of document.querySelectorAll(
        '#messages, #users, #me, #rooms, #room-name, #room-topic',
      )) {
        for (const el of root.querySelectorAll('*')) {
          // The client's own buttons (delete, reactions, names that open a conversation) are made
          // by the client with text only; their attributes are checked like any element's below.
          const own =
            el.matches('button[data-control]') &&
            [...el.querySelectorAll('*')].every(
              (c) =>
                c.matches('span') &&
                [...c.attributes].every((a) => ['class', 'hidden', 'title'].includes(a.name)),
            );
          if (el.matches(risky) && !own) found.push(el.outerHTML.slice(0, 120));
          for (const attr of el.attributes) {
            const value = attr.value.trim().toLowerCase();
            if (
              attr.name.startsWith('on') ||
              attr.name === 'style' ||
              attr.name === 'srcdoc' ||
              ((attr.name === 'href' || attr.name === 'src' || attr.name.endsWith(':href')) &&
                !/^(https?:|mailto:)/.test(value))
            ) {
              found.push(`${el.tagName.toLowerCase()} ${attr.name}="${attr.value.slice(0, 80)}"`);
            }
          }
        }
      }
      return found;
    });
  }

  /** Every handler a payload might hang on is given its event; focus and hover, not clicks. */
  function provoke(page: Page): Promise<void> {
    return page.evaluate(async () => {
      const events = [
        'mouseover',
        'mouseenter',
        'mousemove',
        'focus',
        'focusin',
        'animationstart',
        'toggle',
        'load',
        'error',
      ];
      for (const el of document.querySelectorAll(
        '#messages *, #users *, #rooms *, #room-name, #room-topic',
      )) {
        for (const type of events) el.dispatchEvent(new Event(type, { bubbles: true }));
        (el as HTMLElement).focus?.();
      }
      await new Promise((r) => setTimeout(r, 500));
    });
  }

  it(
    'no payload in a message or a nickname runs, on page load or live',
    { timeout: 150000 },
    async () => {
      const payloads = XSS_PAYLOADS.map(onLoopback);
      const half = Math.ceil(payloads.length / 2);
      const nicknames = onePerIdentity([...XSS_PAYLOADS.filter(isNickname), ...EXTRA_NICKNAMES]);
      const nickHalf = Math.ceil(nicknames.length / 2);
      const ids: number[] = [];

      // Half before the reader arrives: rendered from the REST answer on page load.
      for (const p of payloads.slice(0, half)) ids.push(await postMessage(author.token, p));
      for (const n of nicknames.slice(0, nickHalf)) ids.push(await hostileUser(n));
      // What the API takes as a room name (the contract's own rule), as it stores it.
      const roomNames = [
        ...new Set(
          XSS_PAYLOADS.map((p) => RoomCreate.shape.name.safeParse(p))
            .filter((r) => r.success)
            .map((r) => r.data),
        ),
      ].slice(0, 40);
      const roomHalf = Math.ceil(roomNames.length / 2);
      const roomIds: number[] = [];
      for (const n of roomNames.slice(0, roomHalf)) roomIds.push(await hostileRoom(n));

      const context = await browser.newContext({
        viewport: { width: 1200, height: 900 },
        // The page's Content-Security-Policy (script-src 'self') would stop inline handlers on
        // its own; without it, this checks that the sanitizing and the client are enough alone.
        bypassCSP: true,
      });
      const page = await context.newPage();
      const origin = new URL(platform.url).origin;
      const hits: Hits = { dialogs: [], console: [], pageErrors: [], foreignRequests: [] };
      await page.addInitScript(HOOKS);
      page.on('dialog', (d) => {
        hits.dialogs.push(`${d.type()}: ${d.message()}`);
        void d.dismiss();
      });
      page.on('console', (m) => {
        if (m.type() !== 'debug') hits.console.push(`${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (e) => hits.pageErrors.push(e.message));
      // Nothing a payload names may load: the client's own requests are to the platform's page,
      // its bundle and the API; anything else is a payload at work (and is not let out).
      await context.route('**/*', (route) => {
        const url = route.request().url();
        const own =
          url.startsWith(`${origin}/`) && !/\/x(\.\w+)?(\?|$)/.test(new URL(url).pathname);
        if (!own) hits.foreignRequests.push(url);
        return own ? route.continue() : route.abort();
      });

      await page.goto(platform.url);
      const reader = {
        nickname: `reader${randomBytes(3).toString('hex')}`,
        password: 'pw-reader-1',
      };
      await page.fill('#login-form input[name=nickname]', reader.nickname);
      await page.fill('#login-form input[name=password]', reader.password);
      await page.press('#login-form input[name=password]', 'Enter');
      await page.locator('#post-form').waitFor({ state: 'visible' });

      // The other half while the reader watches: rendered from live updated_model events.
      // The client shows the newest page and loads older ones as the reader scrolls up.
      const shown = async () => {
        await page.evaluate(() => {
          (document.querySelector('#messages') as HTMLElement).scrollTop = 0;
        });
        return page.locator('#messages li.message').count();
      };
      await waitFor(
        'the first half on screen',
        async () => (await shown()) >= ids.length,
        30000,
        200,
      );
      for (const p of payloads.slice(half)) ids.push(await postMessage(author.token, p));
      for (const n of nicknames.slice(nickHalf)) ids.push(await hostileUser(n));
      for (const n of roomNames.slice(roomHalf)) roomIds.push(await hostileRoom(n));
      await waitFor(
        'every room listed',
        async () => (await page.locator('#rooms li[data-room-id]').count()) > roomIds.length,
        30000,
        200,
      );
      const labels = await page.locator('#rooms .room-label').allTextContents();
      for (const n of roomNames) assert.ok(labels.includes(n), `room name ${n} shown as text`);
      // Each hostile room opened: its name and topic in the room's head.
      for (const id of roomIds.slice(0, 10)) {
        await page.locator(`#rooms li[data-room-id="${id}"] button`).click();
        await page.locator(`#rooms li.current[data-room-id="${id}"]`).waitFor();
      }
      await page.locator('#rooms li[data-room-id="1"] button').click();
      await waitFor(
        'every message on screen',
        async () => (await shown()) >= ids.length,
        30000,
        200,
      );
      const names = await page.locator('#users li .name').allTextContents();
      for (const n of nicknames) assert.ok(names.includes(n), `nickname ${n} shown as text`);

      await provoke(page);
      // Reload: the same content, now all from the REST answer.
      await page.reload();
      await waitFor(
        'every message after reload',
        async () => (await shown()) >= ids.length,
        30000,
        200,
      );
      await provoke(page);

      const xssHits = await page.evaluate(
        () => (window as unknown as { __xssHits: string[] }).__xssHits,
      );
      const elements = await injected(page);
      const tried = payloads.length + nicknames.length + roomNames.length;
      const executed =
        hits.dialogs.length + xssHits.length + hits.foreignRequests.length + elements.length;
      console.log(
        `XSS in Chromium: ${payloads.length} message payloads + ${nicknames.length} nicknames + ${roomNames.length} room names and topics = ${tried} tried, ` +
          `${executed} executed (dialogs ${hits.dialogs.length}, hook calls ${xssHits.length}, ` +
          `foreign requests ${hits.foreignRequests.length}, injected elements ${elements.length}); ` +
          `${ids.length} messages on screen`,
      );
      assert.deepEqual(hits.dialogs, []);
      assert.deepEqual(xssHits, []);
      assert.deepEqual(hits.foreignRequests, []);
      assert.deepEqual(elements, []);
      assert.deepEqual(hits.pageErrors, []);
      assert.deepEqual(
        hits.console.filter((c) => /alert|xss|msgbox/i.test(c)),
        [],
        'nothing a payload logged',
      );
      // The nickname payloads appear as text in authors too, not as markup.
      const authors = await page.locator('#messages .author').allTextContents();
      for (const n of nicknames) assert.ok(authors.includes(n), `author ${n} shown as text`);

      // The detectors themselves work: markup inserted unsanitized is caught by each of them.
      await page.evaluate(() =>
        document
          .querySelector('#messages')
          ?.insertAdjacentHTML(
            'beforeend',
            '<li><img src="/x.png" onerror="alert(`control`)"></li>',
          ),
      );
      await waitFor('the control payload to run', async () =>
        (
          await page.evaluate(() => (window as unknown as { __xssHits: string[] }).__xssHits)
        ).includes('alert:control'),
      );
      assert.ok((hits.foreignRequests as string[]).some((u) => u.endsWith('/x.png')));
      assert.ok((await injected(page)).some((e) => e.includes('onerror')));
      await context.close();
    },
  );
});
