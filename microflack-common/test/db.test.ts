import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { databaseCheck, isMysql, openDb, type Migration } from '../src/db.js';
import { createTestDatabase, tempDir } from '@microflack/testkit';

const migrations: Migration[] = [
  {
    name: '001-create-things',
    up: (db) =>
      db.schema.createTable('things', (t) => {
        t.increments('id');
        t.string('name', 32).notNullable().unique();
      }),
  },
];

describe('openDb', () => {
  it('uses MariaDB for a mysql:// URL, and migrations are safe when 4 instances start at once', async () => {
    const url = await createTestDatabase('dbtest');
    const dbs = await Promise.all(
      [1, 2, 3, 4].map(() =>
        openDb({ databaseUrl: url, home: tempDir('h'), service: 'things' }, migrations),
      ),
    );
    assert.ok(isMysql(dbs[0]!));
    await dbs[0]!('things').insert({ name: 'a' });
    assert.deepEqual(await dbs[3]!('things').select('name'), [{ name: 'a' }]);
    const applied = await dbs[1]!('knex_migrations').count({ n: '*' });
    assert.equal(Number(applied[0]?.n), 1);
    await Promise.all(dbs.map((d) => d.destroy()));
  });

  it('checks health on a connection of its own: a pool busy with slow queries does not fail it', async () => {
    const url = await createTestDatabase('dbhealth');
    const db = await openDb({ databaseUrl: url, home: tempDir('h'), service: 'things' }, []);
    const check = databaseCheck(db);
    // Every connection of the request pool (8) held by a slow query.
    const slow = Array.from({ length: 8 }, () => db.raw('select sleep(2)'));
    await new Promise((r) => setTimeout(r, 200));
    const t0 = performance.now();
    await check();
    const ms = performance.now() - t0;
    // /healthz gives each check 400 ms.
    assert.ok(ms < 400, `the health check waited ${Math.round(ms)} ms behind the pool`);
    await Promise.all(slow);
    await db.destroy();
  });

  it('defaults to an embedded SQLite file under MICROFLACK_HOME/data', async () => {
    const home = tempDir('h');
    const db = await openDb({ home, service: 'things' }, migrations);
    assert.ok(!isMysql(db));
    await db('things').insert({ name: 'b' });
    assert.equal(db.client.config.connection.filename, path.join(home, 'data', 'things.sqlite'));
    await db.destroy();
    const again = await openDb({ home, service: 'things' }, migrations);
    assert.deepEqual(await again('things').select('name'), [{ name: 'b' }]);
    await again.destroy();
  });
});
