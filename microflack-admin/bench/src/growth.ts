// The list and search paths as the messages table grows: 1k, 100k, (1M) stored messages. Each must
// stay flat: every one is a keyset or index lookup bounded by its page, whatever is stored.
import mysql from 'mysql2/promise';
import type { Api } from './seed.js';
import { spread, type Spread } from './live.js';

const BATCH = 5000;
// Stored messages say "old message word<k>" with k < WORDS: a search for one word matches one
// stored message in WORDS (1,000 of 1M), as a rare word does in a real history.
const WORDS = 1000;
const SEARCH_WORD = 'word417';

/** One path of the growth table, measured at every size. */
interface GrowthPath {
  name: string;
  /** The path to GET; `middle` is an id about halfway into the stored messages. */
  path(middle: number): string;
  /** Sent with the caller's token. */
  auth?: boolean;
}

const PATHS: GrowthPath[] = [
  {
    name: 'GET /api/messages?updated_since=<1 min ago>',
    path: () => `/api/messages?updated_since=${Math.floor(Date.now() / 1000) - 60}`,
  },
  {
    name: 'GET /api/messages?before=latest&limit=50',
    path: () => '/api/messages?before=latest&limit=50',
  },
  {
    name: 'GET /api/messages?before=<middle>&limit=50 (history)',
    path: (middle) => `/api/messages?before=${middle}&limit=50`,
  },
  {
    name: `GET /api/messages?q=<rare word>&limit=20 (search, token)`,
    path: () => `/api/messages?q=${SEARCH_WORD}&limit=20`,
    auth: true,
  },
  { name: 'GET /api/rooms (token: unread and mentions)', path: () => '/api/rooms', auth: true },
];

export type GrowthRow = { stored: number; path: string } & Spread;

/** Adds old messages (two days back, outside any recent window) until the table holds `total`. */
async function fillTo(
  conn: mysql.Connection,
  total: number,
  onProgress: (n: number) => void,
): Promise<void> {
  const [rows] = await conn.query('SELECT COUNT(*) AS n FROM messages');
  let n = Number((rows as Array<{ n: number }>)[0]?.n ?? 0);
  const old = Math.floor(Date.now() / 1000) - 2 * 86400;
  while (n < total) {
    const count = Math.min(BATCH, total - n);
    const values = Array.from({ length: count }, (_, i) => {
      const text = `old message word${(n + i) % WORDS}`;
      return [old + ((n + i) % 3600), old + ((n + i) % 3600), text, text, 1, 1];
    });
    await conn.query(
      'INSERT INTO messages (created_at, updated_at, source, html, user_id, room_id) VALUES ?',
      [values],
    );
    n += count;
    if (n % 100000 === 0 || n === total) onProgress(n);
  }
}

async function latency(
  api: Api,
  path: string,
  headers: Record<string, string>,
  requests: number,
): Promise<Spread> {
  const delays: number[] = [];
  for (let i = 0; i < requests; i++) {
    const t0 = performance.now();
    const res = await api.fetch(path, { headers });
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`GET ${path} answered ${res.status}`);
    delays.push(performance.now() - t0);
  }
  return spread(delays);
}

export async function measureGrowth(
  api: Api,
  databaseUrl: string,
  token: string,
  sizes: number[],
  requests: number,
): Promise<GrowthRow[]> {
  const conn = await mysql.createConnection({ uri: databaseUrl, connectTimeout: 5000 });
  const out: GrowthRow[] = [];
  try {
    for (const size of sizes) {
      await fillTo(conn, size, (n) => console.log(`    ${n} messages stored`));
      const [rows] = await conn.query('SELECT MIN(id) AS lo, MAX(id) AS hi FROM messages');
      const { lo, hi } = (rows as Array<{ lo: number; hi: number }>)[0] ?? { lo: 0, hi: 0 };
      const middle = Math.floor((Number(lo) + Number(hi)) / 2);
      for (const p of PATHS) {
        const path = p.path(middle);
        const headers: Record<string, string> = p.auth ? { authorization: `Bearer ${token}` } : {};
        await latency(api, path, headers, Math.min(20, requests)); // warm-up
        out.push({ stored: size, path: p.name, ...(await latency(api, path, headers, requests)) });
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
