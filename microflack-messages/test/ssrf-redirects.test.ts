// SSRF through the message flow: links, and redirects from an allowed site, to loopback (by name,
// IPv4, IPv6 and odd spellings), 10.x and the cloud metadata address: none is ever fetched.
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import dns from 'node:dns';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { bearer, makeToken, startStack, type TestStack } from '@microflack/testkit';
import { startMessagesApp, type TestApp } from '@microflack/testkit/apps';

/** A server that only counts the requests it gets: any hit is a fetch that should not have been. */
async function startCanary(host: string) {
  let hits = 0;
  const server = http.createServer((_req, res) => {
    hits++;
    res.writeHead(200, { 'Content-Type': 'text/html' }).end('<title>internal secret</title>');
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, resolve);
    });
  } catch {
    return undefined; // e.g. no IPv6 loopback here
  }
  return {
    port: (server.address() as AddressInfo).port,
    hits: () => hits,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

async function resolvesToLoopback(name: string): Promise<boolean> {
  try {
    const all = await dns.promises.lookup(name, { all: true });
    return all.length > 0 && all.every((a) => a.address.startsWith('127.') || a.address === '::1');
  } catch {
    return false;
  }
}

describe('link previews never reach internal addresses, through links or redirects', () => {
  let stack: TestStack;
  let t: TestApp;
  let site: http.Server;
  let siteHits = 0;
  const SITE_HOST = '127.0.0.3';
  const canaries: Array<NonNullable<Awaited<ReturnType<typeof startCanary>>>> = [];
  const targets: string[] = [];

  before(async () => {
    stack = await startStack();
    const v4 = await startCanary('127.0.0.1');
    const v4b = await startCanary('127.0.0.2');
    const v6 = await startCanary('::1');
    for (const c of [v4, v4b, v6]) if (c) canaries.push(c);
    assert.ok(v4 && v4b, 'loopback canaries listen');
    const p = v4.port;
    targets.push(
      `http://127.0.0.1:${p}/`,
      `http://127.0.0.2:${v4b.port}/`,
      `http://localhost:${p}/`,
      `http://LOCALHOST:${p}/`,
      `http://localhost.:${p}/`,
      `http://[::ffff:127.0.0.1]:${p}/`,
      `http://[::ffff:7f00:1]:${p}/`,
      `http://0x7f000001:${p}/`,
      `http://2130706433:${p}/`,
      `http://0177.0.0.1:${p}/`,
      `http://127.1:${p}/`,
      `http://0:${p}/`,
      `http://[::1]:${v6?.port ?? p}/`,
      `http://[0:0:0:0:0:0:0:1]:${v6?.port ?? p}/`,
      'http://169.254.169.254/latest/meta-data/',
      'http://[fd00:ec2::254]/latest/meta-data/',
      'http://10.0.0.1/',
      'http://10.255.255.254:8080/',
      'http://192.168.0.1/',
      'http://172.16.0.1/',
    );
    // This machine's own name, when it resolves to loopback (as /etc/hosts usually makes it).
    if (await resolvesToLoopback(os.hostname())) targets.push(`http://${os.hostname()}:${p}/`);
    // The first hop is a site the policy allows by address; only where it redirects is internal.
    site = http.createServer((req, res) => {
      siteHits++;
      const to = new URL(req.url ?? '/', 'http://x').searchParams.get('url') ?? '/';
      res.writeHead(302, { Location: to }).end();
    });
    await new Promise<void>((r) => site.listen(0, SITE_HOST, r));
    t = await startMessagesApp(stack, 'mariadb', {
      allowPrivate: false,
      allowAddresses: [SITE_HOST],
      timeoutMs: 2000,
    });
    // Events go to the shared Redis, where other files' subscribers match messages by id: ids of
    // our own range keep ours from being taken for theirs.
    await t.db.raw('ALTER TABLE messages AUTO_INCREMENT = ?', [randomInt(1e6, 1e9)]);
  });
  after(async () => {
    await t.close();
    site.closeAllConnections();
    await new Promise((r) => site.close(r));
    for (const c of canaries) await c.close();
    await stack.stop();
  });

  it('previews none of them, directly or after a redirect: tried N, fetched 0', async () => {
    const sitePort = (site.address() as AddressInfo).port;
    const links = [
      ...targets,
      ...targets.map((u) => `http://${SITE_HOST}:${sitePort}/to?url=${encodeURIComponent(u)}`),
    ];
    const token = makeToken(1);
    const posted: Array<{ id: number; html: string; link: string }> = [];
    for (const link of links) {
      // A markdown link, so that every spelling becomes an <a> whatever linkify makes of it.
      const res = await request(t.app)
        .post('/api/messages')
        .set(bearer(token))
        .send({ source: `[x](${link})` });
      assert.equal(res.status, 201, res.text);
      posted.push({ id: res.body.id, html: res.body.html, link });
    }
    await t.app.previewer.idle();
    const previewed: string[] = [];
    for (const m of posted) {
      const now = await request(t.app).get(`/api/messages/${m.id}`);
      if (now.body.html !== m.html) previewed.push(`${m.link}: ${now.body.html}`);
    }
    const fetched = canaries.reduce((n, c) => n + c.hits(), 0);
    console.log(
      `SSRF: tried ${links.length} links (${targets.length} direct, ${targets.length} via redirect), fetched ${fetched}, previewed ${previewed.length}`,
    );
    assert.equal(fetched, 0);
    assert.deepEqual(previewed, []);
    // The redirects were really followed as far as the allowed first hop.
    assert.equal(siteHits, targets.length);
  });
});
