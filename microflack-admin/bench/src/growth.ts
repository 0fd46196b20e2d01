// GET /api/messages?updated_since=<recent> latency as the table grows: 1k, 100k, (1M) stored messages.
import mysql from 'mysql2/promise';
import type { Api } from './seed.js';
import { spread, type Spread } from './live.js';

const BATCH = 5000;

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
    const values = Array.from({ length: count }, (_, i) => [
      old + ((n + i) % 3600),
      old + ((n + i) % 3600),
      'old',
      'old',
      1,
    ]);
    await conn.query(
      'INSERT INTO messages (created_at, updated_at, source, html, user_id) VALUES ?',
      [values],
    );
    n += count;
    if (n % 100000 === 0 || n === total) onProgress(n);
  }
}

async function latency(api: Api, requests: number): Promise<Spread> {
  const since = Math.floor(Date.now() / 1000) - 60;
  const delays: number[] = [];
  for (let i = 0; i < requests; i++) {
    const t0 = performance.now();
    const res = await api.fetch(`/api/messages?updated_since=${since}`);
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`GET /api/messages answered ${res.status}`);
    delays.push(performance.now() - t0);
  }
  return spread(delays);
}

export async function measureGrowth(
  api: Api,
  databaseUrl: string,
  sizes: number[],
  requests: number,
): Promise<Array<{ stored: number } & Spread>> {
  const conn = await mysql.createConnection({ uri: databaseUrl, connectTimeout: 5000 });
  const out: Array<{ stored: number } & Spread> = [];
  try {
    for (const size of sizes) {
      await fillTo(conn, size, (n) => console.log(`    ${n} messages stored`));
      await latency(api, 20); // warm-up
      out.push({ stored: size, ...(await latency(api, requests)) });
    }
  } finally {
    await conn.end();
  }
  return out;
}
