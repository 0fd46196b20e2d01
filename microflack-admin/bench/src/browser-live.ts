// The live path as people see it: a keypress in one Chromium page to the text on another page's
// screen, with 1,000 messages already shown there.
import { randomBytes } from 'node:crypto';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '@microflack/testkit/browser';
import { spread, type Spread } from './live.js';
import type { Api } from './seed.js';

/** The room everyone is in (the client opens it first). */
const GENERAL = 1;
const INPUT = '#post-form input[name=source]';
const MESSAGE = '#messages li.message';
/** Bounds: one marker to the other screen, loading the history, the whole step. */
const SAMPLE_TIMEOUT_MS = 10000;
const HISTORY_TIMEOUT_MS = 120000;
const STEP_TIMEOUT_MS = 300000;
const SAMPLE_GAP_MS = 200;

export interface BrowserLive extends Spread {
  /** Message nodes on the reader's screen before the first sample, and after the last. */
  shownBefore: number;
  shownAfter: number;
  /** Message nodes that appeared in, and left, the reader's list while sampling. */
  nodesAdded: number;
  nodesRemoved: number;
  /** Keypress to the DOM insertion (the row above is to the next animation frame after it). */
  dom: Spread;
}

/** What the reader page records (window.__mfLive), installed by `observe`. */
interface Recorder {
  seen: Record<string, { dom: number; frame?: number }>;
  added: number;
  removed: number;
}

/** Posts `count` messages into general through the API, 20 at a time, with progress. */
async function fillGeneral(api: Api, token: string, count: number): Promise<void> {
  const auth = { Authorization: `Bearer ${token}` };
  const tag = randomBytes(3).toString('hex');
  for (let i = 0; i < count; i += 20) {
    await Promise.all(
      Array.from({ length: Math.min(20, count - i) }, (_, j) =>
        api.json('/api/messages', {
          method: 'POST',
          headers: auth,
          body: JSON.stringify({
            source: `screenful ${tag} ${i + j} with *markdown* and \`code\``,
            room_id: GENERAL,
          }),
        }),
      ),
    );
    if ((i + 20) % 200 === 0 || i + 20 >= count) {
      console.log(`    posted ${Math.min(i + 20, count)} of ${count} messages`);
    }
  }
}

async function signIn(page: Page, lb: string, nickname: string, password: string): Promise<void> {
  await page.goto(lb, { timeout: 30000 });
  const mode = await page.getAttribute('body', 'data-mode');
  if (mode !== 'socketio') throw new Error(`the page is in ${mode} mode, not socketio`);
  await page.fill('#login-form input[name=nickname]', nickname);
  await page.fill('#login-form input[name=password]', password);
  await page.press('#login-form input[name=password]', 'Enter');
  await page.locator('#post-form').waitFor({ state: 'visible', timeout: 60000 });
  await page.locator(MESSAGE).first().waitFor({ timeout: 30000 });
}

/** Scrolls the reader's list to the top until `shown` messages are on it (the client loads older
 * pages of 50 as the top comes near), then back to the bottom, where new messages are followed. */
async function showHistory(page: Page, shown: number): Promise<number> {
  const deadline = Date.now() + HISTORY_TIMEOUT_MS;
  let count = await page.locator(MESSAGE).count();
  let lastReport = 0;
  while (count < shown) {
    if (Date.now() > deadline) {
      throw new Error(`the reader page shows ${count} messages after 120 s, not ${shown}`);
    }
    await page.evaluate(() => {
      const list = document.querySelector<HTMLElement>('#messages');
      if (list) list.scrollTop = 0;
    });
    // The next page is in once the count grows (or "Beginning of the room." if there is none).
    const grew = await page
      .waitForFunction(
        ([selector, before]) => document.querySelectorAll(selector).length > before,
        [MESSAGE, count] as const,
        { timeout: 10000 },
      )
      .then(
        () => true,
        () => false,
      );
    const now = await page.locator(MESSAGE).count();
    if (!grew && now === count) {
      const status = await page.textContent('#history-status').catch(() => null);
      throw new Error(
        `the reader page shows ${count} messages and loads no more (${status ?? 'no status'})`,
      );
    }
    count = now;
    if (count - lastReport >= 200 || count >= shown) {
      console.log(`    reader page shows ${count} messages`);
      lastReport = count;
    }
  }
  await page.evaluate(() => {
    const list = document.querySelector<HTMLElement>('#messages');
    if (list) list.scrollTop = list.scrollHeight;
  });
  return count;
}

/** Records, in the reader page, when each marker's text is first in the message list (DOM) and the
 * animation frame that follows (the frame that paints it), in wall-clock milliseconds. */
async function observe(page: Page, markerPrefix: string): Promise<void> {
  await page.evaluate(
    ([selector, prefix]) => {
      const rec: Recorder = { seen: {}, added: 0, removed: 0 };
      (window as unknown as { __mfLive: Recorder }).__mfLive = rec;
      const list = document.querySelector('#messages');
      if (!list) throw new Error('no #messages list');
      const pattern = new RegExp(`${prefix}-\\d+`, 'g');
      new MutationObserver((records) => {
        const now = performance.timeOrigin + performance.now();
        const fresh: string[] = [];
        for (const r of records) {
          for (const n of r.addedNodes) {
            if (n instanceof Element && n.matches(selector)) rec.added++;
            for (const m of n.textContent?.match(pattern) ?? []) {
              if (!rec.seen[m]) {
                rec.seen[m] = { dom: now };
                fresh.push(m);
              }
            }
          }
          for (const n of r.removedNodes) {
            if (n instanceof Element && n.matches(selector)) rec.removed++;
          }
        }
        if (fresh.length > 0) {
          requestAnimationFrame(() => {
            const frame = performance.timeOrigin + performance.now();
            for (const m of fresh) (rec.seen[m] as { frame?: number }).frame = frame;
          });
        }
      }).observe(list, { childList: true, subtree: true });
    },
    [MESSAGE, markerPrefix] as const,
  );
}

/** Records, in the writer page, the wall-clock time of each Enter keydown in the message input. */
async function hookKeypress(page: Page): Promise<void> {
  await page.evaluate((input) => {
    const w = window as unknown as { __mfEnterAt?: number };
    document.querySelector(input)?.addEventListener(
      'keydown',
      (ev) => {
        if ((ev as KeyboardEvent).key === 'Enter') {
          w.__mfEnterAt = performance.timeOrigin + performance.now();
        }
      },
      { capture: true },
    );
  }, INPUT);
}

async function sample(writer: Page, reader: Page, marker: string): Promise<[number, number]> {
  await writer.fill(INPUT, `${marker} typed live`);
  await writer.evaluate(() => {
    (window as unknown as { __mfEnterAt?: number }).__mfEnterAt = undefined;
  });
  await writer.press(INPUT, 'Enter');
  const seen = await reader.waitForFunction(
    (m) => {
      const s = (window as unknown as { __mfLive: Recorder }).__mfLive.seen[m];
      return s?.frame !== undefined ? s : undefined;
    },
    marker,
    { timeout: SAMPLE_TIMEOUT_MS },
  );
  const at = (await seen.jsonValue()) as { dom: number; frame: number };
  const enterAt = await writer.evaluate(
    () => (window as unknown as { __mfEnterAt?: number }).__mfEnterAt,
  );
  if (enterAt === undefined) throw new Error('the writer page saw no Enter keydown');
  // The writer's box is cleared once its post is answered: the next sample starts from there.
  await writer.waitForFunction(
    (input) => document.querySelector<HTMLInputElement>(input)?.value === '',
    INPUT,
    { timeout: SAMPLE_TIMEOUT_MS },
  );
  return [at.frame - enterAt, at.dom - enterAt];
}

/**
 * Two people in one Chromium (two contexts): the reader scrolls until `shown` messages of general
 * are on its screen, the writer types a marker and presses Enter, `samples` times. Each sample is
 * the writer page's Enter keydown to the reader page's first animation frame after the marker's
 * node is in its list; both clocks are performance.timeOrigin + performance.now() on one machine.
 */
export async function measureBrowserLive(
  api: Api,
  people: { token: string; writer: string; reader: string; password: string },
  samples: number,
  shown = 1000,
): Promise<BrowserLive> {
  console.log(`    posting ${shown} messages into general`);
  await fillGeneral(api, people.token, shown);
  let browser: Browser | undefined;
  let timer: NodeJS.Timeout | undefined;
  const run = async (): Promise<BrowserLive> => {
    browser = await launchChromium();
    const readerContext = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    const writerContext = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    const reader = await readerContext.newPage();
    const writer = await writerContext.newPage();
    await signIn(reader, api.lb, people.reader, people.password);
    await signIn(writer, api.lb, people.writer, people.password);
    const shownBefore = await showHistory(reader, shown);
    const prefix = `live${randomBytes(4).toString('hex')}`;
    await observe(reader, prefix);
    await hookKeypress(writer);
    const toFrame: number[] = [];
    const toDom: number[] = [];
    for (let i = 0; i < samples; i++) {
      const [frame, dom] = await sample(writer, reader, `${prefix}-${i}`);
      toFrame.push(frame);
      toDom.push(dom);
      await new Promise((r) => setTimeout(r, SAMPLE_GAP_MS));
    }
    const rec = await reader.evaluate(() => (window as unknown as { __mfLive: Recorder }).__mfLive);
    const shownAfter = await reader.locator(MESSAGE).count();
    // Only what changed is rendered: each sample adds its one node, none is replaced.
    if (rec.removed > 0 || rec.added !== samples || shownAfter !== shownBefore + samples) {
      throw new Error(
        `the reader's list was re-rendered: ${rec.added} message nodes added and ${rec.removed} ` +
          `removed for ${samples} new messages (${shownBefore} shown before, ${shownAfter} after)`,
      );
    }
    return {
      ...spread(toFrame),
      shownBefore,
      shownAfter,
      nodesAdded: rec.added,
      nodesRemoved: rec.removed,
      dom: spread(toDom),
    };
  };
  try {
    return await Promise.race([
      run(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the browser live path took over ${STEP_TIMEOUT_MS / 1000} s`)),
          STEP_TIMEOUT_MS,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    await (browser as Browser | undefined)?.close();
  }
}
