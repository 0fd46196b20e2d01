import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createLbClient, LbUnavailableError } from '../src/lb-client.js';
import { freePort } from '@microflack/testkit';

describe('load-balancer client', () => {
  let server: http.Server;
  let base: string;
  const hits: Record<string, number> = {};

  before(async () => {
    server = http.createServer((req, res) => {
      const key = `${req.method} ${req.url}`;
      hits[key] = (hits[key] ?? 0) + 1;
      const n = hits[key];
      if (req.url === '/flaky' && n <= 2) return res.writeHead(503).end();
      if (req.url === '/bad-gateway') return res.writeHead(502).end();
      if (req.url === '/hang') return; // never answers
      if (req.url === '/always-503') return res.writeHead(503).end();
      // 503 after making the caller wait, as HAProxy would when no instance comes up in time.
      if (req.url === '/slow-503') return void setTimeout(() => res.writeHead(503).end(), 400);
      // A service shedding load: its own 503, its name in the instance header.
      if (req.url === '/shed')
        return res.writeHead(503, { 'x-microflack-instance': 'users-1', 'retry-after': '1' }).end();
      if (req.url === '/lb-503') return res.writeHead(503, { 'x-microflack-instance': 'lb' }).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ n }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  it('backs off and retries a server that answers 503 twice then 200', async () => {
    const res = await createLbClient(base).get<{ n: number }>('/flaky');
    assert.equal(res.status, 200);
    assert.equal(res.body.n, 3);
  });

  it('retries a POST on 503 (nothing was done) but not on 502 (something may have been)', async () => {
    const lb = createLbClient(base);
    hits['POST /flaky'] = 0;
    hits['GET /flaky'] = 0;
    assert.equal((await lb.get('/flaky')).status, 200);
    const res = await lb.post('/bad-gateway', { body: { a: 1 } });
    assert.equal(res.status, 502);
    assert.equal(hits['POST /bad-gateway'], 1);
    await lb.get('/bad-gateway').catch(() => undefined);
    assert.equal(hits['GET /bad-gateway'], 5, 'GET retried 5 times in all');
  });

  it('gives up after 5 tries and reports the last status', async () => {
    const res = await createLbClient(base).get('/always-503');
    assert.equal(res.status, 503);
    assert.equal(hits['GET /always-503'], 5);
  });

  it('retries only within the deadline of the whole call, then answers the last 503', async () => {
    const res = await createLbClient(base).get('/slow-503', { timeoutMs: 1000 });
    assert.equal(res.status, 503);
    // 400 ms a try and the backoff between them: two tries, perhaps a third cut short, never the
    // 5 tries (2 s of waiting and more) a call without a deadline makes.
    const tries = hits['GET /slow-503'] ?? 0;
    assert.ok(tries >= 2 && tries <= 3, `${tries} tries`);
  });

  it("returns a service's own 503 at once (it sheds load), but retries HAProxy's", async () => {
    const lb = createLbClient(base);
    const shed = await lb.get('/shed');
    assert.equal(shed.status, 503);
    assert.equal(shed.headers.get('retry-after'), '1');
    assert.equal(hits['GET /shed'], 1, 'not asked again');
    assert.equal((await lb.get('/lb-503')).status, 503);
    assert.equal(hits['GET /lb-503'], 5, "HAProxy's 503 tried 5 times");
  });

  it('times out a request that never answers', async () => {
    const started = Date.now();
    await assert.rejects(
      createLbClient(base).post('/hang', { timeoutMs: 300 }),
      LbUnavailableError,
    );
    assert.ok(Date.now() - started < 3000);
  });

  it('retries a refused connection, even for a POST, then fails clearly', async () => {
    const port = await freePort();
    await assert.rejects(
      createLbClient(`http://127.0.0.1:${port}`).post('/x', { body: {} }),
      /failed/,
    );
  });
});
