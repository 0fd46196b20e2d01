// Background link previews: a small queue of message ids, persisted as `preview_pending` rows.
import { logger, type Events, type Knex } from '@microflack/common';
import {
  DEFAULT_FETCH_SETTINGS,
  fetchPreview,
  linksOf,
  PreviewError,
  type FetchSettings,
} from './link-preview.js';
import { audienceOf, findMessage, nowSeconds, toJson } from './messages.js';

const log = logger.child({ module: 'previews' });

export interface PreviewSettings extends Partial<FetchSettings> {
  /** Links previewed per message. */
  maxLinks?: number;
  /** Messages worked on at once. */
  concurrency?: number;
  /** Off: new messages get no previews (a live setting, `link_previews`). Default on. */
  enabled?: boolean;
}

export interface Previewer {
  /** The links of this rendered html that would be previewed (none: no work to schedule). */
  linksOf(html: string): string[];
  /** Turns previews of new messages on or off; work already scheduled finishes. */
  setEnabled(on: boolean): void;
  readonly enabled: boolean;
  schedule(id: number): void;
  /** Schedules every message whose previews are still pending, e.g. after a crash; returns how many. */
  resumePending(): Promise<number>;
  /** Resolves when nothing is queued or running. */
  idle(): Promise<void>;
  /** Aborts work in progress; what is unfinished stays pending for the next start. */
  close(): Promise<void>;
}

export function createPreviewer(
  db: Knex,
  events: Events,
  settings: PreviewSettings = {},
): Previewer {
  const fetchSettings: FetchSettings = { ...DEFAULT_FETCH_SETTINGS, ...settings };
  const maxLinks = settings.maxLinks ?? 3;
  const concurrency = settings.concurrency ?? 4;
  let enabled = settings.enabled ?? true;
  const queue: number[] = [];
  const queued = new Set<number>();
  let running = 0;
  let closed = false;
  const stop = new AbortController();
  let waiters: Array<() => void> = [];

  function pump(): void {
    while (!closed && running < concurrency && queue.length > 0) {
      const id = queue.shift() as number;
      queued.delete(id);
      running++;
      work(id)
        .catch((err) =>
          log.warn({ err, id }, 'link previews failed; left pending for the next start'),
        )
        .finally(() => {
          running--;
          pump();
        });
    }
    if (running === 0 && (queue.length === 0 || closed)) {
      for (const w of waiters) w();
      waiters = [];
    }
  }

  async function work(id: number): Promise<void> {
    const row = await db('messages').where({ id }).first('html', 'preview_pending');
    if (!row || !row.preview_pending) return;
    const base: string = row.html;
    const blocks = await Promise.all(
      linksOf(base, maxLinks).map((url) =>
        fetchPreview(url, fetchSettings, stop.signal).catch((err) => {
          if (!(err instanceof PreviewError)) throw err;
          log.debug({ id, reason: err.message }, 'no preview for a link');
          return '';
        }),
      ),
    );
    // Cut short by shutdown: leave it pending rather than record "no previews".
    if (stop.signal.aborted) return;
    const extra = blocks.join('');
    // Only if the message was not edited meanwhile (an edit re-renders and schedules again).
    const unchanged = { id, html: base, preview_pending: true };
    if (!extra) {
      await db('messages').where(unchanged).update({ preview_pending: false });
      return;
    }
    const updated = await db('messages')
      .where(unchanged)
      .update({ html: base + extra, preview_pending: false, updated_at: nowSeconds() });
    if (updated === 0) return;
    const message = await findMessage(db, id);
    if (message) {
      await events.emitUpdatedModel('Message', toJson(message), audienceOf(message.room_id));
    }
  }

  function schedule(id: number): void {
    if (closed || queued.has(id)) return;
    queued.add(id);
    queue.push(id);
    pump();
  }

  function idle(): Promise<void> {
    if (running === 0 && queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => waiters.push(resolve));
  }

  return {
    linksOf: (html) => (enabled ? linksOf(html, maxLinks) : []),
    setEnabled(on) {
      enabled = on;
    },
    get enabled() {
      return enabled;
    },
    schedule,
    idle,
    async resumePending() {
      const rows: Array<{ id: number }> = await db('messages')
        .where({ preview_pending: true })
        .select('id')
        .orderBy('id');
      for (const { id } of rows) schedule(id);
      if (rows.length > 0) log.info({ count: rows.length }, 'finishing link previews left pending');
      return rows.length;
    },
    async close() {
      closed = true;
      stop.abort();
      queue.length = 0;
      queued.clear();
      await idle();
    },
  };
}
