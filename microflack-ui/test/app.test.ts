// The ui service's HTTP surface: the page, the hashed assets and their cache headers.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import request from 'supertest';
import { createApp } from '../src/app.js';
import { loadAssets } from '../src/assets.js';

describe('ui app', () => {
  const assets = loadAssets();
  const app = createApp({ assets, mode: 'socketio' });

  it('GET / answers the page, not cached, naming the hashed assets', async () => {
    const res = await request(app).get('/').expect(200);
    assert.match(res.headers['content-type'] ?? '', /text\/html/);
    assert.equal(res.headers['cache-control'], 'no-cache');
    assert.match(res.headers['content-security-policy'] ?? '', /script-src 'self'/);
    assert.ok(res.text.includes(`/static/${assets.script}`));
    assert.ok(res.text.includes(`/static/${assets.style}`));
    assert.match(res.text, /data-mode="socketio"/);
    assert.match(assets.script, /^app-[A-Z0-9]{8}\.js$/);
    assert.match(assets.style, /^style-[A-Z0-9]{8}\.css$/);
  });

  it('GET / tells the client to poll when built for polling', async () => {
    const res = await request(createApp({ assets, mode: 'polling' }))
      .get('/')
      .expect(200);
    assert.match(res.text, /data-mode="polling"/);
  });

  it('names nothing outside the platform (no CDN)', async () => {
    const res = await request(app).get('/').expect(200);
    assert.doesNotMatch(res.text, /(src|href)="(https?:)?\/\//);
  });

  it('serves the hashed script and stylesheet with a long immutable cache', async () => {
    for (const [file, type] of [
      [assets.script, /javascript/],
      [assets.style, /css/],
    ] as const) {
      const res = await request(app).get(`/static/${file}`).expect(200);
      assert.match(res.headers['content-type'] ?? '', type);
      assert.match(res.headers['cache-control'] ?? '', /max-age=31536000/);
      assert.match(res.headers['cache-control'] ?? '', /immutable/);
    }
  });

  it('bundles socket.io-client into the script', async () => {
    const res = await request(app).get(`/static/${assets.script}`).expect(200);
    assert.match(res.text, /EIO/); // engine.io-client, bundled rather than fetched
    assert.doesNotMatch(res.text, /https?:\/\/(cdn|unpkg|cdnjs)/);
  });

  it('answers 404 JSON for an unknown asset', async () => {
    const res = await request(app).get('/static/app-NOPE.js').expect(404);
    assert.deepEqual(res.body, { error: 'not found' });
  });
});
