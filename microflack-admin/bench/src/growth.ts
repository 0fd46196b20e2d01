// The list and search paths as the messages table grows: 1k, 100k, (1M) stored messages. Each must
// stay flat: every one is a keyset or index lookup bounded by its page, whatever is stored.
import mysql from 'mysql2/promise';
import type { Api } from './seed.js';
import { spread, type Spread } from './live.js';

const BATCH = 5000;
// Stored messages say "old message word<k>" with k < WORDS: a search for one word matches one
// stored message in WORDS (1,000 of 1M), as a rare word does in a real history.
const WORDS = 1000;
const SEARCH_WORD = 417;
/** Callers whose tokens the paths with a token take in turn. */
export const CALLERS = 20;

/** Where the stored messages are, for the paths to point into them. */
interface Stored {
  /** An id about halfway into the stored messages. */
  middle: number;
  /** The newest id. */
  newest: number;
  /** The messages fillTo stored say `unique<k>`, each its own k, for k in [uniqueFrom, filled). */
  uniqueFrom: number;
  filled: number;
}

/** One path of the growth table, measured at every size. */
interface GrowthPath {
  name: string;
  /** The `i`th request of this path. Every request differs from the others (a cursor, a word, a
   * caller), so that none is answered from memory (ARCHITECTURE.md, "Answers from memory"): the
   * table measures the database's query at each size, not the instance's memory. */
  path(stored: Stored, i: number): string;
  /** Sent with a caller's token: the `i`th request with the `i`th caller's, in turn. */
  auth?: boolean;
}

const PATHS: GrowthPath[] = [
  {
    name: 'GET /api/messages?updated_since=<1 min ago>',
    path: (_, i) => `/api/messages?updated_since=${Math.floor(Date.now() / 1000) - 60 - i}`,
  },
  {
    name: 'GET /api/messages?before=<past the newest>&limit=50 (newest page)',
    path: ({ newest }, i) => `/api/messages?before=${newest + 1 + i}&limit=50`,
  },
  {
    name: 'GET /api/messages?before=<middle>&limit=50 (history)',
    path: ({ middle }, i) => `/api/messages?before=${middle - i}&limit=50`,
  },
  {
    name: `GET /api/messages?q=<rare word>&limit=20 (search, token)`,
    // unique<k> is in one stored message whatever the size: the search's own cost.
    path: ({ uniqueFrom, filled }, i) =>
      `/api/messages?q=unique${uniqueFrom + ((7919 * (i + 1)) % Math.max(1, filled - uniqueFrom))}&limit=20`,
    auth: true,
  },
  {
    name: `GET /api/messages?q=<word in 1 of ${WORDS.toLocaleString('en')}>&limit=20 (search, token; matches grow with the table)`,
    // word<k> is in one stored message in WORDS; 7 and WORDS are coprime, so no word twice. The
    // newest 20 of its matches need every match: FULLTEXT finds them in no order.
    path: (_, i) => `/api/messages?q=word${(SEARCH_WORD + 7 * i) % WORDS}&limit=20`,
    auth: true,
  },
  {
    name: 'GET /api/rooms (token: unread and mentions)',
    // A caller's answer is kept for that caller: a page size per turn through the callers.
    path: (_, i) => `/api/rooms?limit=${100 - (Math.floor(i / CALLERS) % 100)}`,
    auth: true,
  },
];

export type GrowthRow = { stored: number; path: string } & Spread;

/** Adds old messages (two days back, outside any recent window) until the table holds `total`. */
async function fillTo(
  conn: mysql.Connection,
  total: number,
  onProgress: (n: number) => void,
): Promise<number> {
  const [rows] = await conn.query('SELECT COUNT(*) AS n FROM messages');
  let n = Number((rows as Array<{ n: number }>)[0]?.n ?? 0);
  const old = Math.floor(Date.now() / 1000) - 2 * 86400;
  while (n < total) {
    const count = Math.min(BATCH, total - n);
    const values = Array.from({ length: count }, (_, i) => {
      const text = `old message word${(n + i) % WORDS} unique${n + i}`;
      return [old + ((n + i) % 3600), old + ((n + i) % 3600), text, text, 1, 1];
    });
    await conn.query(
      'INSERT INTO messages (created_at, updated_at, source, html, user_id, room_id) VALUES ?',
      [values],
    );
    n += count;
    if (n % 100000 === 0 || n === total) onProgress(n);
  }
  return n;
}

async function latency(
  api: Api,
  p: GrowthPath,
  stored: Stored,
  tokens: string[],
  from: number,
  requests: number,
): Promise<Spread> {
  const delays: number[] = [];
  for (let i = from; i < from + requests; i++) {
    const path = p.path(stored, i);
    const token = tokens[i % tokens.length] as string;
    const headers: Record<string, string> = p.auth ? { authorization: `Bearer ${token}` } : {};
    const t0 = performance.now();
    const res = await api.fetch(path, { headers });
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`GET ${path} answered ${res.status}`);
    delays.push(performance.now() - t0);
  }
  return spread(delays);
}

/** `tokens`: the callers' tokens (CALLERS of them, or fewer in a smoke run). */
export async function measureGrowth(
  api: Api,
  databaseUrl: string,
  tokens: string[],
  sizes: number[],
  requests: number,
): Promise<GrowthRow[]> {
  const conn = await mysql.createConnection({ uri: databaseUrl, connectTimeout: 5000 });
  const out: GrowthRow[] = [];
  let uniqueFrom: number | undefined;
  try {
    for (const size of sizes) {
      const [counted] = await conn.query('SELECT COUNT(*) AS n FROM messages');
      uniqueFrom ??= Number((counted as Array<{ n: number }>)[0]?.n ?? 0);
      const filled = await fillTo(conn, size, (n) => console.log(`    ${n} messages stored`));
      const [rows] = await conn.query('SELECT MIN(id) AS lo, MAX(id) AS hi FROM messages');
      const { lo, hi } = (rows as Array<{ lo: number; hi: number }>)[0] ?? { lo: 0, hi: 0 };
      const stored: Stored = {
        middle: Math.floor((Number(lo) + Number(hi)) / 2),
        newest: Number(hi),
        uniqueFrom,
        filled,
      };
      for (const p of PATHS) {
        // Warm-up with requests of their own (past the measured ones), then the measured ones.
        await latency(api, p, stored, tokens, requests, Math.min(20, requests));
        out.push({
          stored: filled,
          path: p.name,
          ...(await latency(api, p, stored, tokens, 0, requests)),
        });
      }
    }
  } finally {
    await conn.end();
  }
  return out;
}
/** The growth table: a row per path, p50 / p99 per size. */
export function growthTable(rows: GrowthRow[]): string[] {
  const sizes = [...new Set(rows.map((r) => r.stored))];
  const paths = [...new Set(rows.map((r) => r.path))];
  const cell = (path: string, size: number) => {
    const r = rows.find((x) => x.path === path && x.stored === size);
    return r ? `${r.p50Ms} / ${r.p99Ms}` : '';
  };
  return [
    `| path (p50 / p99 ms) | ${sizes.map((s) => `${s.toLocaleString('en')} stored`).join(' | ')} |`,
    `| --- | ${sizes.map(() => '---:').join(' | ')} |`,
    ...paths.map((p) => `| ${p} | ${sizes.map((s) => cell(p, s)).join(' | ')} |`),
  ];
}
