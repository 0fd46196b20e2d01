// The messages process applies its live settings from etcd while it runs: link previews off and on
// again, and the log level, each within a second and without a restart.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { configKey, createEtcd, type Etcd } from '@microflack/common';
import {
  bearer,
  makeToken,
  startEtcd,
  startBuiltService,
  waitFor,
  type EtcdServer,
  type ServiceProcess,
} from '@microflack/testkit';

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('messages live settings', () => {
  // Its own etcd: live settings must not reach the other test files' services.
  let etcdServer: EtcdServer;
  let etcd: Etcd;
  let site: http.Server;
  let siteUrl: string;
  let svc: ServiceProcess;

  before(async () => {
    etcdServer = await startEtcd();
    etcd = createEtcd([etcdServer.url]);
    site = http.createServer((_req, res) =>
      res.writeHead(200, { 'Content-Type': 'text/html' }).end('<title>site</title>'),
    );
    await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
    siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`;
    svc = await startBuiltService(packageDir, {
      etcd: etcdServer.url,
      database: 'msglive',
      env: { LINK_PREVIEW_ALLOW_PRIVATE: '1' },
    });
  });
  after(async () => {
    await svc?.stop();
    site.closeAllConnections();
    await new Promise((r) => site.close(r));
    etcd.close();
    await etcdServer.stop();
  });

  async function post(source: string): Promise<number> {
    const res = await fetch(`http://${svc.address}/api/messages`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...bearer(makeToken(3)) },
      body: JSON.stringify({ source }),
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(res.status, 201);
    return ((await res.json()) as { id: number }).id;
  }

  async function html(id: number): Promise<string> {
    const res = await fetch(`http://${svc.address}/api/messages/${id}`, {
      signal: AbortSignal.timeout(5000),
    });
    return ((await res.json()) as { html: string }).html;
  }

  const logLines = () => svc.proc.log().split('\n');

  it('link_previews off: a new message gets no preview; on again: it does', async () => {
    await etcd.put(configKey('messages', 'link_previews')).value('off');
    await waitFor(
      'the setting applied',
      () =>
        logLines().some((l) => l.includes('"live setting applied"') && l.includes('link_previews')),
      1000,
      20,
    );
    const without = await post(`${siteUrl}?off`);
    // A message with a link waits for its preview when previews are on; here none comes.
    await new Promise((r) => setTimeout(r, 1500));
    assert.doesNotMatch(await html(without), /<blockquote>/);

    await etcd.put(configKey('messages', 'link_previews')).value('on');
    await waitFor(
      'on again',
      () => logLines().filter((l) => l.includes('"live setting applied"')).length >= 2,
      1000,
      20,
    );
    const withPreview = await post(`${siteUrl}?on`);
    await waitFor('the preview', async () => (await html(withPreview)).includes('<blockquote>'));
  });

  it('a bad value is refused and logged, and the setting keeps its value', async () => {
    await etcd.put(configKey('messages', 'link_previews')).value('sometimes');
    await waitFor(
      'the refusal logged',
      () => logLines().some((l) => l.includes('"live setting refused"') && l.includes('sometimes')),
      1000,
      20,
    );
    const id = await post(`${siteUrl}?still-on`);
    await waitFor('the preview', async () => (await html(id)).includes('<blockquote>'));
  });

  it('log_level debug takes effect at once; deleting it brings back the environment level', async () => {
    const debugLines = () => logLines().filter((l) => l.startsWith('{"level":20')).length;
    assert.equal(debugLines(), 0, 'LOG_LEVEL=info logs no debug line');
    await etcd.put(configKey('all', 'log_level')).value('debug');
    await waitFor(
      'log_level applied',
      () => logLines().some((l) => l.includes('"live setting applied"') && l.includes('log_level')),
      1000,
      20,
    );
    // A link that yields no preview is logged at debug level by the previewer.
    await post('http://127.0.0.1:9/unreachable');
    await waitFor('a debug line', () => debugLines() > 0, 5000, 50);
    await etcd.delete().key(configKey('all', 'log_level'));
    await waitFor(
      'back to info',
      () => logLines().some((l) => l.includes('"live setting removed; back to the default"')),
      1000,
      20,
    );
    const before = debugLines();
    await post('http://127.0.0.1:9/unreachable-again');
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(debugLines(), before, 'no debug line after the level went back to info');
  });
});
