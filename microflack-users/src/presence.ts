// Who is online: the sweep that marks silent users offline, run by one instance chosen in etcd.
import { logger, PRESENCE_ELECTION, type Events, type Knex } from '@microflack/common';
import type { Campaign, Election } from '@microflack/common';
import { markStaleUsersOffline, now, toJson } from './users.js';

const log = logger.child({ module: 'presence' });

const CAMPAIGN_RETRY_MS = 1000;

/** One sweep: marks offline everyone not seen for `timeoutSeconds`, and tells the browsers. */
export async function sweepOnce(db: Knex, events: Events, timeoutSeconds: number): Promise<number> {
  const swept = await markStaleUsersOffline(db, now() - timeoutSeconds);
  await Promise.all(swept.map((user) => events.emitUpdatedModel('User', toJson(user))));
  if (swept.length > 0) log.info({ count: swept.length }, 'marked silent users offline');
  return swept.length;
}

export interface SweeperOptions {
  /** The etcd client, or a namespace of it (tests keep their elections apart that way). */
  etcd: { election(name: string, ttl?: number): Election };
  db: Knex;
  events: Events;
  /** This instance's name, shown as the election's leader value. */
  instance: string;
  onlineTimeoutSeconds: number;
  sweepIntervalMs: number;
  leaderTtlSeconds: number;
}

export interface Sweeper {
  readonly leading: boolean;
  /** Resigns (another instance takes over at once) and stops sweeping. */
  stop(): Promise<void>;
}

/**
 * Campaigns in the etcd election; while leader, sweeps every interval. Losing the lease (etcd away
 * longer than the TTL) ends the leadership: sweeping stops and a new campaign starts. A sweep that
 * overlaps a successor's is harmless, as both only mark offline users who are silent.
 */
export function startSweeper(opts: SweeperOptions): Sweeper {
  const election = opts.etcd.election(PRESENCE_ELECTION, opts.leaderTtlSeconds);
  let campaign: Campaign | undefined;
  let timer: NodeJS.Timeout | undefined;
  let retry: NodeJS.Timeout | undefined;
  let sweeping: Promise<unknown> = Promise.resolve();
  let leading = false;
  let stopped = false;

  function tick(): void {
    sweeping = sweepOnce(opts.db, opts.events, opts.onlineTimeoutSeconds).catch((err) =>
      log.warn({ err }, 'sweep failed; next one in an interval'),
    );
  }

  function stopSweeping(): void {
    leading = false;
    clearInterval(timer);
    timer = undefined;
  }

  function campaignNow(): void {
    if (stopped) return;
    const c = election.campaign(opts.instance);
    campaign = c;
    c.on('elected', () => {
      if (stopped || campaign !== c) return;
      leading = true;
      log.info({ instance: opts.instance }, 'elected to run the presence sweep');
      tick();
      timer = setInterval(tick, opts.sweepIntervalMs);
    });
    c.on('error', (err) => {
      if (campaign !== c) return;
      if (leading) log.warn({ err: err.message }, 'lost the presence sweep leadership');
      else log.debug({ err: err.message }, 'presence sweep campaign failed');
      stopSweeping();
      campaign = undefined;
      c.resign().catch(() => undefined);
      if (!stopped) retry = setTimeout(campaignNow, CAMPAIGN_RETRY_MS);
    });
  }

  campaignNow();
  return {
    get leading() {
      return leading;
    },
    async stop() {
      stopped = true;
      clearTimeout(retry);
      stopSweeping();
      const c = campaign;
      campaign = undefined;
      await sweeping;
      await c?.resign().catch((err) => log.warn({ err: err.message }, 'resign failed'));
    },
  };
}
