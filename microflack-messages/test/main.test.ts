import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { createEtcd, type Etcd } from '@microflack/common';
import {
  bearer,
  createTestDatabase,
  makeToken,
  sharedBackends,
  startBuiltService,
  waitFor,
  type ServiceProcess,
} from '@microflack/testkit';
import { openMessagesDb } from '@microflack/testkit/apps';

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('node dist/main.js', () => {
  let etcd: Etcd;
  let site: http.Server;
  let siteUrl: string;
  let svc: ServiceProcess;
  let databaseUrl: string;
  let pendingId: number;
  before(async () => {
    const backends = await sharedBackends();
    etcd = createEtcd([backends.etcd]);
    site = http.createServer((_req, res) =>
      res.writeHead(200, { 'Content-Type': 'text/html' }).end('<title>site</title>'),
    );
    await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
    siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`;
    // A message left pending by a previous instance that crashed mid-preview.
    databaseUrl = await createTestDatabase('msgproc');
    const db = await openMessagesDb('mariadb', databaseUrl);
    const html = `<a href="${siteUrl}" rel="nofollow">${siteUrl}</a>`;
    const [id] = await db('messages').insert({
      created_at: 1,
      updated_at: 1,
      source: siteUrl,
      html,
      user_id: 1,
      preview_pending: true,
    });
    pendingId = Number(id);
    await db.destroy();
    svc = await startBuiltService(packageDir, {
      env: { DATABASE_URL: databaseUrl, LINK_PREVIEW_ALLOW_PRIVATE: '1' },
    });
  });
  after(async () => {
    await svc?.stop();
    site.closeAllConnections();
    await new Promise((r) => site.close(r));
    etcd.close();
  });

  it('registers its address and location in etcd', async () => {
    await waitFor('registration', async () => {
      const kvs = await etcd.getAll().prefix('/services/messages/').strings();
      return Object.values(kvs).includes(svc.address);
    });
    assert.equal(await etcd.get('/services/messages/location').string(), '/api/messages');
  });

  it('answers /healthz with the database, etcd and Redis reachable', async () => {
    const res = await fetch(`http://${svc.address}/healthz`);
    assert.equal(res.status, 200);
    assert.deepEqual((await res.json()).checks, { database: 'ok', etcd: 'ok', redis: 'ok' });
  });

  it('posts and reads a message over HTTP', async () => {
    const res = await fetch(`http://${svc.address}/api/messages`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...bearer(makeToken(3)) },
      body: JSON.stringify({ source: 'hello *world*!' }),
    });
    assert.equal(res.status, 201);
    const location = res.headers.get('location');
    const got = await fetch(`http://${svc.address}${location}`);
    assert.equal((await got.json()).html, 'hello <em>world</em>!');
  });

  it('finishes at start the previews a crashed instance left pending', async () => {
    let html = '';
    await waitFor('the pending preview', async () => {
      const res = await fetch(`http://${svc.address}/api/messages/${pendingId}`);
      html = (await res.json()).html;
      return html.includes('<blockquote>');
    });
    assert.ok(
      html.endsWith(
        `<blockquote><p><a href="${siteUrl}">site</a></p><p>No description found.</p></blockquote>`,
      ),
    );
  });

  it('deregisters and exits 0 on SIGTERM', async () => {
    const exited = new Promise<number | null>((r) => svc.proc.child.once('exit', (c) => r(c)));
    svc.proc.signal('SIGTERM');
    assert.equal(await exited, 0);
    const upstreams = await etcd.getAll().prefix('/services/messages/upstream/').strings();
    assert.ok(!Object.values(upstreams).includes(svc.address));
  });
});
