// The registering side (platform config, registry) and the LB accept exactly the same names and
// values: anything one accepts and the other refuses would register and be left out of HAProxy.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import * as common from '@microflack/common';
import {
  BACKEND_OPTIONS as CONTRACT_BACKEND_OPTIONS,
  defaultInstanceName,
  INSTANCE_NAME as CONTRACT_INSTANCE_NAME,
  parseConfig,
  registrationProblems,
  upstreamKey,
} from '@microflack/common';
import { BACKEND_OPTIONS, buildModel, INSTANCE_NAME, SERVICE_NAME } from '../src/services.js';

function configAccepts(env: Record<string, string>): boolean {
  try {
    parseConfig({}, env);
    return true;
  } catch (err) {
    assert.ok(err instanceof common.ConfigError, String(err));
    return false;
  }
}

/** Whether the LB routes to an instance registered under this name, this address and options. */
function lbRoutes(instance: string, address = '127.0.0.1:5000', balance?: string): boolean {
  const kvs = [
    { key: upstreamKey('svc', instance), value: address },
    ...(balance === undefined ? [] : [{ key: '/services/svc/backend/balance', value: balance }]),
  ];
  const model = buildModel(kvs);
  const svc = model.services.find((s) => s.name === 'svc');
  return model.rejected.length === 0 && svc?.servers.some((s) => s.name === instance) === true;
}

const INSTANCE_NAMES: Array<[string, boolean]> = [
  ['users-1a2b3c', true],
  ['a', true],
  ['7', true],
  ['Host.Example.COM-1234-beef', true],
  ['under_score', true],
  ['x'.repeat(64), true],
  ['x'.repeat(65), false],
  ['.hidden', false],
  ['-dash', false],
  ['_under', false],
  ['has space', false],
  ['slash/x', false],
  ['colon:x', false],
  ['ünicode', false],
  ['new\nline', false],
];

describe('registry contract: platform config and LB agree', () => {
  it('the config checks instance names with the LB pattern itself', () => {
    assert.equal(INSTANCE_NAME, CONTRACT_INSTANCE_NAME);
    assert.equal(SERVICE_NAME, common.SERVICE_NAME);
    assert.equal(BACKEND_OPTIONS, CONTRACT_BACKEND_OPTIONS);
  });

  it('an instance name is accepted by the config exactly when the LB routes to it', () => {
    for (const [name, expected] of INSTANCE_NAMES) {
      assert.equal(configAccepts({ INSTANCE_NAME: name }), expected, `config: ${name}`);
      assert.equal(lbRoutes(name), expected, `LB: ${name}`);
      assert.equal(INSTANCE_NAME.test(name), expected, `pattern: ${name}`);
      const problems = registrationProblems({
        service: 'svc',
        instance: name,
        address: '1.2.3.4:5',
      });
      assert.equal(problems.length === 0, expected, `registry: ${name}`);
    }
  });

  it('the default instance name always passes, whatever the host is called', () => {
    const hostname = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 300 }),
      fc.constantFrom('', '.', '-', '...local', '-x-', 'ünï.cødé', 'host name', 'a'.repeat(253)),
      fc.domain(),
    );
    fc.assert(
      fc.property(hostname, fc.integer({ min: 1, max: 4194304 }), (host, pid) => {
        const name = defaultInstanceName(host, pid);
        assert.ok(INSTANCE_NAME.test(name), JSON.stringify(name));
        assert.match(name, new RegExp(`-${pid}-[0-9a-f]{4}$`));
        assert.ok(lbRoutes(name), name);
      }),
      { numRuns: 500 },
    );
    // A real host's name is kept when it already fits.
    assert.match(
      defaultInstanceName('web-1.example.com', 42),
      /^web-1\.example\.com-42-[0-9a-f]{4}$/,
    );
    const config = parseConfig({}, {});
    assert.ok(lbRoutes(config.INSTANCE_NAME), config.INSTANCE_NAME);
  });

  it('LB_ALGORITHM takes every balance value the LB takes, and only those', () => {
    for (const balance of BACKEND_OPTIONS.balance) {
      assert.equal(parseConfig({}, { LB_ALGORITHM: balance }).LB_ALGORITHM, balance);
      assert.ok(lbRoutes('i1', '127.0.0.1:5000', balance), balance);
    }
    for (const balance of ['hash', 'RoundRobin', 'roundrobin ', 'uri']) {
      assert.equal(configAccepts({ LB_ALGORITHM: balance }), false, balance);
      assert.equal(lbRoutes('i1', '127.0.0.1:5000', balance), false, balance);
    }
  });

  it('SERVICE_URL is accepted exactly when the LB takes it as an upstream address', () => {
    const table: Array<[string, boolean]> = [
      ['127.0.0.1:5000', true],
      ['app-1.internal:8080', true],
      ['localhost:1', true],
      ['10.0.0.1:65535', true],
      ['10.0.0.1:0', false],
      ['10.0.0.1:65536', false],
      ['999.1.1.1:80', false],
      ['[::1]:80', false],
      ['-bad.host:80', false],
      ['host_name:80', false],
      ['127.0.0.1', false],
      ['127.0.0.1:80 # x', false],
    ];
    for (const [url, expected] of table) {
      assert.equal(configAccepts({ SERVICE_URL: url }), expected, `config: ${url}`);
      assert.equal(lbRoutes('i1', url), expected, `LB: ${url}`);
    }
  });

  it('settings nobody reads are gone', () => {
    const config = parseConfig({}, { SERVICE_NAME: 'users', SECRET_KEY: 'x' }) as Record<
      string,
      unknown
    >;
    assert.equal('SERVICE_NAME' in config, false);
    assert.equal('SECRET_KEY' in config, false);
  });
});
