// The grace period for upstreams that vanish from etcd (issue 12): kept while healthy, dropped as
// soon as HAProxy or /healthz says otherwise or the grace runs out, and never a lost route.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildModel, type ServicesModel } from '../src/services.js';
import { backendName, serverName } from '../src/render.js';
import { UpstreamGrace } from '../src/upstream-grace.js';

const GRACE = 10000;

function model(entries: Record<string, string>): ServicesModel {
  return buildModel(Object.entries(entries).map(([key, value]) => ({ key, value })));
}

const full = {
  '/services/messages/location': '/api/messages',
  '/services/messages/upstream/m1': '127.0.0.1:5001',
  '/services/messages/upstream/m2': '127.0.0.1:5002',
  '/services/ui/location': '/',
  '/services/ui/upstream/u1': '127.0.0.1:6001',
};

const servers = (m: ServicesModel, svc: string) =>
  m.services
    .find((s) => s.name === svc)
    ?.servers.map((s) => s.name)
    .sort();

/** `entries` without the given keys. */
function without(entries: Record<string, string>, ...keys: string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(entries).filter(([k]) => !keys.includes(k)));
}

const up = (entries: Array<[string, string, string]>) =>
  new Map(
    entries.map(([svc, inst, addr]) => [`${backendName(svc)}/${serverName(inst, addr)}`, 'UP']),
  );

describe('upstream grace', () => {
  it('keeps a vanished upstream that is still healthy, and its route with it', async () => {
    const healthy = new Set(['127.0.0.1:5001', '127.0.0.1:5002']);
    const grace = new UpstreamGrace(GRACE, async (a) => healthy.has(a));
    await grace.apply(model(full), undefined, 0);
    // Every key of messages gone at once (leases expired in an outage), location included.
    const rest = without(
      full,
      '/services/messages/upstream/m1',
      '/services/messages/upstream/m2',
      '/services/messages/location',
    );
    const { model: m, decisions } = await grace.apply(model(rest), undefined, 1000);
    assert.deepEqual(servers(m, 'messages'), ['m1', 'm2']);
    assert.equal(m.services.find((s) => s.name === 'messages')?.location, '/api/messages');
    assert.deepEqual(decisions.map((d) => `${d.instance} ${d.action}`).sort(), [
      'm1 kept',
      'm2 kept',
    ]);
    assert.equal(grace.size, 2);
    // Registered again: no longer a kept one.
    const back = await grace.apply(model(full), undefined, 2000);
    assert.deepEqual(servers(back.model, 'messages'), ['m1', 'm2']);
    assert.equal(grace.size, 0);
  });

  it('drops a vanished upstream at once when /healthz fails (draining or dead)', async () => {
    const grace = new UpstreamGrace(GRACE, async (a) => a !== '127.0.0.1:5002');
    await grace.apply(model(full), undefined, 0);
    const rest = without(full, '/services/messages/upstream/m2');
    const { model: m, decisions } = await grace.apply(model(rest), undefined, 100);
    assert.deepEqual(servers(m, 'messages'), ['m1']);
    assert.deepEqual(
      decisions.map((d) => `${d.instance} ${d.action}`),
      ['m2 dropped'],
    );
  });

  it('drops it when HAProxy does not see it UP, even if /healthz answers', async () => {
    const grace = new UpstreamGrace(GRACE, async () => true);
    await grace.apply(model(full), undefined, 0);
    const rest = without(full, '/services/messages/upstream/m2');
    const statuses = up([['messages', 'm1', '127.0.0.1:5001']]);
    statuses.set(`${backendName('messages')}/${serverName('m2', '127.0.0.1:5002')}`, 'DOWN');
    const { model: m } = await grace.apply(model(rest), statuses, 100);
    assert.deepEqual(servers(m, 'messages'), ['m1']);
  });

  it('drops it when the grace period runs out', async () => {
    const grace = new UpstreamGrace(GRACE, async () => true);
    await grace.apply(model(full), undefined, 0);
    const rest = without(full, '/services/messages/upstream/m2');
    assert.deepEqual(servers((await grace.apply(model(rest), undefined, 100)).model, 'messages'), [
      'm1',
      'm2',
    ]);
    assert.deepEqual(
      servers((await grace.apply(model(rest), undefined, GRACE - 1)).model, 'messages'),
      ['m1', 'm2'],
    );
    const last = await grace.apply(model(rest), undefined, GRACE + 100);
    assert.deepEqual(servers(last.model, 'messages'), ['m1']);
    assert.match(last.decisions[0]?.reason ?? '', /not registered again/);
  });

  it('with a grace of 0, routes exactly what etcd says', async () => {
    const grace = new UpstreamGrace(0, async () => true);
    await grace.apply(model(full), undefined, 0);
    const rest = without(full, '/services/messages/upstream/m2');
    assert.deepEqual(servers((await grace.apply(model(rest), undefined, 1)).model, 'messages'), [
      'm1',
    ]);
  });
});
