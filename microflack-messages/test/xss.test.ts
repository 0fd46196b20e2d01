// Stored XSS: hostile payloads posted as messages (and served as link-preview pages) leave only the
// allowed markup in the stored html; as nicknames they are kept verbatim, as JSON text.
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Parser } from 'htmlparser2';
import request from 'supertest';
import type { Express } from 'express';
import type { Knex } from '@microflack/common';
import { bearer, makeToken, startStack, type TestStack } from '@microflack/testkit';
import { usersApp } from '@microflack/testkit/apps';
import { startMessagesApp, type TestApp } from '@microflack/testkit/apps';
import {
  ALLOWED_ATTRIBUTES,
  ALLOWED_INLINE_TAGS,
  PREVIEW_TAGS,
  XSS_PAYLOADS,
} from '@microflack/testkit/xss-corpus';

const SAFE_PROTOCOLS = new Set(['http:', 'https:', 'mailto:']);

/** What in this html could run script or reach outside the allowed subset; [] when nothing. */
function unsafeParts(html: string, allowedTags: string[]): string[] {
  const found: string[] = [];
  const parser = new Parser(
    {
      onopentag(name, attribs) {
        if (!allowedTags.includes(name)) found.push(`element <${name}>`);
        for (const [attr, value] of Object.entries(attribs)) {
          if (!(ALLOWED_ATTRIBUTES[name] ?? []).includes(attr))
            found.push(`attribute ${attr} on <${name}>`);
          if (attr.startsWith('on')) found.push(`event handler ${attr}`);
          // Browsers skip whitespace and control characters inside a scheme.
          const squeezed = [...value].filter((c) => c.charCodeAt(0) > 0x20).join('');
          if (/^(javascript|data|vbscript):/i.test(squeezed)) found.push(`${attr}="${value}"`);
        }
        if (name === 'a') {
          let protocol: string;
          try {
            protocol = new URL(attribs.href ?? '').protocol;
          } catch {
            protocol = 'unparsable';
          }
          if (!SAFE_PROTOCOLS.has(protocol)) found.push(`href "${attribs.href}"`);
          if (attribs.rel !== 'nofollow' && !allowedTags.includes('blockquote'))
            found.push('link without rel=nofollow');
        }
      },
      onprocessinginstruction(name) {
        found.push(`processing instruction ${name}`);
      },
      oncomment() {
        found.push('comment');
      },
      oncdatastart() {
        found.push('CDATA');
      },
    },
    { decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: true },
  );
  parser.write(html);
  parser.end();
  return found;
}

/** A site whose page /p/<n> has payload n as its title and description, for link previews. */
async function startHostileSite() {
  const server = http.createServer((req, res) => {
    const n = Number(/^\/p\/(\d+)$/.exec(req.url ?? '')?.[1]);
    const payload = XSS_PAYLOADS[n];
    if (payload === undefined) return res.writeHead(404).end();
    const attr = payload.replaceAll('"', '&quot;');
    res
      .writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' })
      .end(
        `<html><head><title>${payload}</title><meta name="description" content="${attr}"></head><body>${payload}</body></html>`,
      );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: (n: number) => `http://127.0.0.1:${(server.address() as AddressInfo).port}/p/${n}`,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

// Events go to the shared Redis, where other files' subscribers match messages by id: ids of our
// own range keep ours from being taken for theirs.
async function ownIds(t: TestApp): Promise<void> {
  await t.db.raw('ALTER TABLE messages AUTO_INCREMENT = ?', [randomInt(1e6, 1e9)]);
}

describe('stored XSS', () => {
  let stack: TestStack;

  before(async () => {
    stack = await startStack();
  });
  after(() => stack.stop());

  it('keeps no script, handler or hostile link in stored message html: payloads N, surviving 0', async () => {
    const t = await startMessagesApp(stack, 'mariadb', { allowPrivate: false, maxLinks: 0 });
    await ownIds(t);
    try {
      const token = makeToken(1);
      const surviving: string[] = [];
      for (const payload of XSS_PAYLOADS) {
        const posted = await request(t.app)
          .post('/api/messages')
          .set(bearer(token))
          .send({ source: payload });
        assert.equal(posted.status, 201, `${payload}: ${posted.text}`);
        const stored = await request(t.app).get(posted.headers.location as string);
        assert.equal(stored.body.source, payload, 'the source is kept as typed');
        for (const html of [posted.body.html as string, stored.body.html as string]) {
          const bad = unsafeParts(html, ALLOWED_INLINE_TAGS);
          if (bad.length > 0) surviving.push(`${payload} -> ${html}: ${bad.join(', ')}`);
        }
      }
      // Edited messages are rendered by the same code path, but through PUT.
      const mine = await request(t.app)
        .post('/api/messages')
        .set(bearer(token))
        .send({ source: 'x' });
      for (const payload of XSS_PAYLOADS.slice(0, 40)) {
        await request(t.app)
          .put(mine.headers.location as string)
          .set(bearer(token))
          .send({ source: payload })
          .expect(204);
        const stored = await request(t.app).get(mine.headers.location as string);
        const bad = unsafeParts(stored.body.html, ALLOWED_INLINE_TAGS);
        if (bad.length > 0)
          surviving.push(`edit ${payload} -> ${stored.body.html}: ${bad.join(', ')}`);
      }
      console.log(`XSS messages: payloads ${XSS_PAYLOADS.length}, surviving ${surviving.length}`);
      assert.deepEqual(surviving, []);
    } finally {
      await t.close();
    }
  });

  it('keeps the preview of a hostile page to blockquote, p and escaped text: payloads N, surviving 0', async () => {
    const site = await startHostileSite();
    const t: TestApp = await startMessagesApp(stack, 'mariadb', {
      allowPrivate: true,
      timeoutMs: 3000,
    });
    await ownIds(t);
    try {
      const token = makeToken(1);
      const ids: number[] = [];
      for (let n = 0; n < XSS_PAYLOADS.length; n++) {
        const res = await request(t.app)
          .post('/api/messages')
          .set(bearer(token))
          .send({ source: `see ${site.url(n)}` });
        assert.equal(res.status, 201);
        ids.push(res.body.id);
      }
      await t.app.previewer.idle();
      const surviving: string[] = [];
      let previewed = 0;
      for (const [n, id] of ids.entries()) {
        const html: string = (await request(t.app).get(`/api/messages/${id}`)).body.html;
        if (html.includes('<blockquote>')) previewed++;
        const bad = unsafeParts(html, [...ALLOWED_INLINE_TAGS, ...PREVIEW_TAGS]);
        if (bad.length > 0) surviving.push(`${XSS_PAYLOADS[n]} -> ${html}: ${bad.join(', ')}`);
      }
      console.log(
        `XSS previews: payloads ${XSS_PAYLOADS.length}, previewed ${previewed}, surviving ${surviving.length}`,
      );
      assert.equal(previewed, XSS_PAYLOADS.length, 'every page was previewed');
      assert.deepEqual(surviving, []);
    } finally {
      await t.close();
      await site.close();
    }
  });

  describe('as nicknames', () => {
    let users: Express;
    let db: Knex;
    before(async () => {
      ({ app: users, db } = await usersApp(stack, 'mariadb'));
    });
    after(() => db.destroy());

    it('stores each allowed one verbatim and returns it as JSON text; refuses the rest without echoing it', async () => {
      let stored = 0;
      let refused = 0;
      // Nicknames are at most 32 characters: a longer payload is tried as its first 32 (still hostile).
      const candidates = [...new Set(XSS_PAYLOADS.map((p) => [...p].slice(0, 32).join('')))];
      for (const payload of candidates) {
        const res = await request(users)
          .post('/api/users')
          .send({ nickname: payload, password: 'pw' });
        assert.match(res.headers['content-type'] as string, /^application\/json/);
        if (res.status === 400) {
          refused++;
          assert.ok(!res.text.includes(payload), `the error does not echo ${payload}`);
          continue;
        }
        assert.equal(res.status, 201, `${payload}: ${res.text}`);
        stored++;
        const got = await request(users).get(res.headers.location as string);
        assert.match(got.headers['content-type'] as string, /^application\/json/);
        assert.equal(got.body.nickname, payload);
      }
      const list = await request(users).get('/api/users');
      const nicknames = new Set(list.body.users.map((u: { nickname: string }) => u.nickname));
      assert.equal(nicknames.size, stored);
      console.log(
        `XSS nicknames: payloads ${candidates.length}, stored verbatim ${stored}, refused ${refused} (":", control characters, or taken)`,
      );
      assert.ok(stored > 0);
    });
  });
});
