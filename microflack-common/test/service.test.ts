import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { HttpError } from '../src/errors.js';
import { createServiceApp } from '../src/service.js';

function sampleApp(healthy = true) {
  return createServiceApp(
    {
      health: {
        database: {
          critical: true,
          check: async () => {
            if (!healthy) throw new Error('down');
          },
        },
        redis: {
          critical: false,
          check: async () => {
            throw new Error('refused');
          },
        },
      },
    },
    (app) => {
      app.post('/api/echo', (req, res) => res.status(201).json(req.body));
      app.get('/api/teapot', () => {
        throw new HttpError(418, 'short and stout');
      });
      app.get('/api/boom', () => {
        throw new Error('secret internals at /srv/app.ts:12');
      });
      app.get('/api/items/:id', (req, res) => res.json({ id: req.params.id }));
    },
  );
}

describe('createServiceApp', () => {
  const app = sampleApp();

  it('answers 413 with a JSON error for a body over 64 KB', async () => {
    const res = await request(app)
      .post('/api/echo')
      .set('Content-Type', 'application/json')
      .send(JSON.stringify({ s: 'x'.repeat(70 * 1024) }));
    assert.equal(res.status, 413);
    assert.deepEqual(res.body, { error: 'request body too large' });
  });

  it('accepts a body just under the limit', async () => {
    const res = await request(app)
      .post('/api/echo')
      .send({ s: 'x'.repeat(60 * 1024) });
    assert.equal(res.status, 201);
  });

  it('answers 400 for malformed JSON', async () => {
    const res = await request(app)
      .post('/api/echo')
      .set('Content-Type', 'application/json')
      .send('{"a":');
    assert.equal(res.status, 400);
    assert.deepEqual(res.body, { error: 'malformed JSON body' });
  });

  it('answers 404 JSON for an unknown route', async () => {
    const res = await request(app).get('/nope');
    assert.equal(res.status, 404);
    assert.deepEqual(res.body, { error: 'not found' });
  });

  it('turns an HttpError into its status and message', async () => {
    const res = await request(app).get('/api/teapot');
    assert.equal(res.status, 418);
    assert.deepEqual(res.body, { error: 'short and stout' });
  });

  it('answers 500 without the stack or the message of an unexpected error', async () => {
    const res = await request(app).get('/api/boom');
    assert.equal(res.status, 500);
    assert.deepEqual(res.body, { error: 'internal error' });
    assert.doesNotMatch(res.text, /srv|secret/);
  });

  it('reports reachability on /healthz: 200 when only a non-critical check fails', async () => {
    const res = await request(app).get('/healthz');
    assert.equal(res.status, 200);
    assert.equal(res.body.checks.database, 'ok');
    assert.match(res.body.checks.redis, /unreachable: refused/);
  });

  it('answers 503 on /healthz when a critical check fails', async () => {
    const res = await request(sampleApp(false)).get('/healthz');
    assert.equal(res.status, 503);
    assert.equal(res.body.status, 'unavailable');
  });

  it('counts requests per route and status in /metrics', async () => {
    await request(app).get('/api/items/1');
    await request(app).get('/api/items/2');
    await request(app).get('/nope');
    const res = await request(app).get('/metrics');
    assert.equal(res.status, 200);
    const line = res.text
      .split('\n')
      .find((l) =>
        l.startsWith('http_requests_total{method="GET",route="/api/items/:id",status="200"}'),
      );
    assert.ok(line, res.text.slice(0, 2000));
    assert.ok(Number(line.split(' ').pop()) >= 2);
    assert.match(res.text, /http_request_duration_seconds_bucket\{/);
  });
});

describe('a service process under SIGTERM', () => {
  let stack: import('@microflack/testkit').TestStack;
  before(async () => {
    const { startStack } = await import('@microflack/testkit');
    stack = await startStack();
  });
  after(() => stack.stop());

  it('finishes an in-flight request before exiting', async () => {
    const { spawnBackend } = await import('@microflack/testkit/http-backends');
    const fx = await spawnBackend(stack.etcd, 'drain', { env: { SHUTDOWN_GRACE_MS: '100' } });
    const slow = fetch(`http://${fx.address}/slow?ms=800`).then(async (r) => ({
      status: r.status,
      body: await r.text(),
    }));
    await new Promise((r) => setTimeout(r, 100));
    fx.proc.signal('SIGTERM');
    const res = await slow;
    assert.equal(res.status, 200);
    assert.equal(res.body, 'done');
    const code =
      fx.proc.child.exitCode ?? (await new Promise((r) => fx.proc.child.once('exit', (c) => r(c))));
    assert.equal(code, 0);
  });
});
