// Property-based fuzzing of a running app: generated requests, each with a timeout, checked for
// "never 5xx" and "a rejected request leaves the database as it was". Shared by the three services.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import fc from 'fast-check';

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';
export const METHODS: Method[] = ['GET', 'POST', 'PUT', 'DELETE'];

export interface FuzzRequest {
  method: Method;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

export interface FuzzAnswer {
  status: number;
  text: string;
  headers: http.IncomingHttpHeaders;
}

export const REQUEST_TIMEOUT_MS = 5000;

/** An app listening on loopback, and a keep-alive client for it. */
export async function serve(app: Express) {
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as AddressInfo).port;
  const agent = new http.Agent({ keepAlive: false });
  return {
    port,
    send(req: FuzzRequest): Promise<FuzzAnswer> {
      return new Promise((resolve, reject) => {
        const r = http.request(
          {
            host: '127.0.0.1',
            port,
            method: req.method,
            path: req.path,
            // Node sends a GET or DELETE body unframed unless told its length.
            headers:
              req.body === undefined
                ? req.headers
                : { ...req.headers, 'content-length': String(req.body.length) },
            agent,
            timeout: REQUEST_TIMEOUT_MS,
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                text: Buffer.concat(chunks).toString('utf8'),
                headers: res.headers,
              }),
            );
            res.on('error', reject);
          },
        );
        // A hang is a failure, not a wait.
        r.on('timeout', () =>
          r.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms (hang)`)),
        );
        r.on('error', reject);
        r.end(req.body);
      });
    },
    async close() {
      agent.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

// Text: any code point, lone surrogate halves, controls, and the characters parsers care about.
const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
const nasty = fc.constantFrom(
  '\u0000',
  '\u001f',
  '\u007f',
  '\u2028',
  '\ufeff',
  '\uffff',
  '💥',
  'é',
  '%',
  '%00',
  '%ZZ',
  ':',
  '/',
  '\\',
  "'",
  '"',
  '<script>',
  '${x}',
  '__proto__',
  'constructor',
  ' ',
  '\t',
  '\n',
);
const unit = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: loneSurrogate },
  { weight: 1, arbitrary: nasty },
);
export const text = (maxLength = 40) => fc.string({ unit, maxLength });

/** Strings from nothing to beyond the 64 KB body limit. */
export const hugeText = fc
  .tuple(
    fc.constantFrom(1000, 4000, 4001, 20000, 60 * 1024, 64 * 1024, 70 * 1024),
    fc.string({ unit, minLength: 1, maxLength: 4 }),
  )
  .map(([n, s]) => s.repeat(Math.ceil(n / s.length)).slice(0, n));

const scalar = fc.oneof(
  text(),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom(0, -1, 1e308, -0, Number.MAX_SAFE_INTEGER + 2, 2 ** 63),
);
const wrongValue = fc.oneof(
  scalar,
  fc.array(scalar, { maxLength: 3 }),
  fc.dictionary(text(8), scalar, { maxKeys: 3 }),
  hugeText,
);

/** A JSON body for an endpoint whose objects take these keys. */
export function jsonBody(keys: string[]): fc.Arbitrary<string> {
  const right = fc.record(Object.fromEntries(keys.map((k) => [k, wrongValue])), {
    requiredKeys: [],
  });
  // Plausible values too, so that some cases get past validation.
  const plausible = fc.record(
    Object.fromEntries(keys.map((k) => [k, fc.oneof(text(40), fc.string({ maxLength: 12 }))])),
    { requiredKeys: [] },
  );
  const withExtra = fc
    .tuple(right, fc.dictionary(fc.oneof(text(10), fc.constantFrom('__proto__', 'id')), scalar))
    .map(([r, extra]) => ({ ...extra, ...r }));
  return fc
    .oneof(
      { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
      { weight: 3, arbitrary: right },
      { weight: 3, arbitrary: plausible },
      { weight: 1, arbitrary: withExtra },
      { weight: 1, arbitrary: fc.array(right, { maxLength: 2 }) },
    )
    .map((v) => JSON.stringify(v) ?? 'null');
}

export const rawBody = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
  fc
    .constantFrom('{', '{"a":', '[1,2', '\u0000', '{"source": "x"}garbage', 'nickname=a&password=b')
    .map((s) => Buffer.from(s)),
  text(200).map((s) => Buffer.from(s)),
);

export function bodyArb(keys: string[]): fc.Arbitrary<Buffer | undefined> {
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 6, arbitrary: jsonBody(keys).map((s) => Buffer.from(s)) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.constantFrom(...keys, 'x'), hugeText)
        .map(([k, v]) => Buffer.from(JSON.stringify({ [k]: v }))),
    },
    { weight: 2, arbitrary: rawBody },
  );
}

// Header values Node can send at all: tab, visible ASCII and Latin-1.
const headerChar = fc.oneof(
  fc.integer({ min: 0x20, max: 0x7e }),
  fc.integer({ min: 0x80, max: 0xff }),
  fc.constant(0x09),
);
export const headerText = (maxLength = 60) =>
  fc.array(headerChar, { maxLength }).map((cs) => String.fromCharCode(...cs));

const base64ish = fc.oneof(
  fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b).toString('base64')),
  text(30).map((s) => Buffer.from(s).toString('base64')),
  fc.tuple(text(20), text(20)).map(([u, p]) => Buffer.from(`${u}:${p}`).toString('base64')),
  fc.stringMatching(/^[A-Za-z0-9+/=]{0,40}$/),
  fc.constantFrom('', '=', '====', 'Og==', 'Og', 'OjoK', 'A'.repeat(9000)),
);

/** Authorization values: absent, valid ones (supplied), and garbage of every kind. */
export function authorizationArb(valid: string[]): fc.Arbitrary<string | undefined> {
  const parts: Array<fc.WeightedArbitrary<string | undefined>> = [
    { weight: 2, arbitrary: fc.constant(undefined) },
    { weight: 2, arbitrary: headerText(80) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.constantFrom('Bearer ', 'bearer ', 'Bearer  ', 'BEARER\t'), headerText(120))
        .map(([a, b]) => a + b),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.constantFrom('Basic ', 'basic ', 'Basic  ', 'BASIC '), base64ish)
        .map(([a, b]) => a + b),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          fc.constantFrom('Bearer '),
          fc.array(fc.stringMatching(/^[A-Za-z0-9_-]{0,40}$/), { minLength: 1, maxLength: 5 }),
        )
        .map(([a, segs]) => a + segs.join('.')),
    },
  ];
  if (valid.length > 0) parts.push({ weight: 4, arbitrary: fc.constantFrom(...valid) });
  return fc.oneof(...parts);
}

export const contentTypeArb = fc.oneof(
  fc.constant(undefined),
  fc.constantFrom(
    'application/json',
    'application/json; charset=utf-8',
    'application/json; charset=latin1',
    'application/json; charset=utf-16',
    'application/json; charset=bogus',
    'APPLICATION/JSON',
    'application/merge-patch+json',
    'application/vnd.api+json',
    'text/plain',
    'text/html',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/octet-stream',
    '*/*',
    ';',
  ),
  headerText(40),
);

export const extraHeadersArb = fc.record(
  {
    'content-encoding': fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'compress', 'x, y'),
    'x-forwarded-for': fc.oneof(
      headerText(40),
      fc.constantFrom('1.2.3.4', '::1', '127.0.0.1, 10.0.0.1', 'unknown', ', ,', '999.1.1.1'),
    ),
    accept: headerText(30),
    'accept-charset': headerText(20),
    'if-none-match': headerText(20),
    origin: headerText(30),
    cookie: headerText(40),
  },
  { requiredKeys: [] },
);

/** A path segment as a client might send it: encoded text, numbers of every shape, odd bytes. */
export function encodeSegment(s: string): string {
  // Buffer.from turns a lone surrogate into U+FFFD, which encodeURIComponent would refuse.
  let out = '';
  for (const byte of Buffer.from(s)) {
    const ch = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-_.~]/.test(ch) ? ch : `%${byte.toString(16).padStart(2, '0')}`;
  }
  return out;
}

// Characters Node puts on the request line as they are (0x21-0x7e but '?' and '#').
const rawPathChar = fc
  .integer({ min: 0x21, max: 0x7e })
  .filter((c) => c !== 0x3f && c !== 0x23)
  .map((c) => String.fromCharCode(c));

export function idArb(real: string[]): fc.Arbitrary<string> {
  return fc.oneof(
    ...(real.length > 0 ? [{ weight: 2, arbitrary: fc.constantFrom(...real) }] : []),
    { weight: 2, arbitrary: fc.integer({ min: -10, max: 1e9 }).map(String) },
    { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 10n ** 40n }).map(String) },
    { weight: 1, arbitrary: fc.double().map(String) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        '0',
        '00',
        '01',
        '1e3',
        '0x10',
        '-1',
        '+1',
        '%201',
        'me',
        'ME',
        '%6de',
        '..',
        '%2e%2e',
        '%00',
        '%',
        '%ff',
        '%c0%af',
        '%ed%a0%80',
        '9007199254740993',
        '999999999999999999999',
        'NaN',
        'Infinity',
        '1;2',
        '1%2f2',
        '1/2',
      ),
    },
    { weight: 2, arbitrary: text(20).map(encodeSegment) },
    {
      weight: 1,
      arbitrary: fc.array(rawPathChar, { minLength: 1, maxLength: 20 }).map((a) => a.join('')),
    },
  );
}

/** A query string (with its '?') built from these parameter names and garbage. */
export function queryArb(names: string[]): fc.Arbitrary<string> {
  const value = fc.oneof(
    fc.integer({ min: -2, max: 2e9 }).map(String),
    fc.constantFrom('', '0', '1', 'true', 'false', '-1', '1e3', '1,2', ',', '1,2,3', 'NaN'),
    fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).map(String),
    text(20).map(encodeSegment),
    fc.array(rawPathChar, { maxLength: 10 }).map((a) => a.join('').replace(/[&=]/g, '')),
  );
  const name = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...names) },
    { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'a[b]', 'a[]', '') },
    { weight: 1, arbitrary: text(8).map(encodeSegment) },
  );
  const pair = fc
    .tuple(name, fc.option(value, { nil: undefined }))
    .map(([n, v]) => (v === undefined ? n : `${n}=${v}`));
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant('') },
    {
      weight: 4,
      arbitrary: fc.array(pair, { minLength: 1, maxLength: 4 }).map((ps) => `?${ps.join('&')}`),
    },
    { weight: 1, arbitrary: fc.array(rawPathChar, { maxLength: 30 }).map((a) => `?${a.join('')}`) },
  );
}

export interface EndpointSpec {
  method: Method;
  /** Path with `:id` where a generated id goes. */
  path: string;
}

export interface FuzzOptions {
  /** Existing ids worth hitting (so that some cases reach the handler's deeper checks). */
  ids: () => string[];
  /** Authorization values that are valid right now; each tagged with whether it is a bearer token. */
  validAuth: () => string[];
  bodyKeys: string[];
  queryNames: string[];
  /** A digest of all the service's stored state. */
  snapshot: () => Promise<string>;
  /**
   * The same without what a request with a valid credential may change even when its body is then
   * refused (the users service marks the token's holder seen); defaults to snapshot.
   */
  contentSnapshot?: () => Promise<string>;
  numRuns: number;
  seed?: number;
}

export interface FuzzFigures {
  cases: number;
  status5xx: number;
  rejected: number;
  byStatus: Record<number, number>;
}

/** Well-formed requests with plausible values, so that a share of cases reach the handlers' depths. */
function nearValidArb(spec: EndpointSpec, o: FuzzOptions): fc.Arbitrary<FuzzRequest> {
  const ids = o.ids();
  const valid = o.validAuth();
  const path = spec.path.includes(':id')
    ? fc.constantFrom(...(ids.length > 0 ? ids : ['1'])).map((id) => spec.path.replace(':id', id))
    : fc.constant(spec.path);
  const plausible = fc.record(
    Object.fromEntries(
      o.bodyKeys.map((k) => [k, fc.oneof(text(40), fc.string({ maxLength: 12 }))]),
    ),
    { requiredKeys: [] },
  );
  return fc
    .record({
      path,
      query: queryArb(o.queryNames),
      authorization: valid.length > 0 ? fc.constantFrom(...valid) : fc.constant(undefined),
      body: fc.option(plausible, { nil: undefined }),
    })
    .map(({ path, query, authorization, body }) => {
      const headers: Record<string, string> = {};
      if (authorization !== undefined) headers.authorization = authorization;
      if (body === undefined) return { method: spec.method, path: path + query, headers };
      headers['content-type'] = 'application/json';
      return {
        method: spec.method,
        path: path + query,
        headers,
        body: Buffer.from(JSON.stringify(body)),
      };
    });
}

export function requestArb(spec: EndpointSpec, o: FuzzOptions): fc.Arbitrary<FuzzRequest> {
  return fc.oneof(
    { weight: 4, arbitrary: anyRequestArb(spec, o) },
    { weight: 1, arbitrary: nearValidArb(spec, o) },
  );
}

function anyRequestArb(spec: EndpointSpec, o: FuzzOptions): fc.Arbitrary<FuzzRequest> {
  const pathArb = spec.path.includes(':id')
    ? idArb(o.ids()).map((id) => spec.path.replace(':id', id))
    : fc.constant(spec.path);
  return fc
    .record({
      path: pathArb,
      query: queryArb(o.queryNames),
      authorization: authorizationArb(o.validAuth()),
      contentType: contentTypeArb,
      extra: extraHeadersArb,
      body: bodyArb(o.bodyKeys),
    })
    .map(({ path, query, authorization, contentType, extra, body }) => {
      const headers: Record<string, string> = {};
      // Most with no odd encoding, so that bodies get parsed.
      for (const [k, v] of Object.entries(extra)) {
        if (k !== 'content-encoding' || body?.[0] !== 0x7b) headers[k] = v;
      }
      if (authorization !== undefined) headers.authorization = authorization;
      if (contentType !== undefined) headers['content-type'] = contentType;
      else if (body !== undefined) headers['content-type'] = 'application/json';
      return { method: spec.method, path: path + query, headers, body };
    });
}

function describeCase(req: FuzzRequest): string {
  const body = req.body ? req.body.subarray(0, 300).toString('utf8') : '';
  return `${req.method} ${req.path.slice(0, 300)} ${JSON.stringify(req.headers).slice(0, 400)} ${body}`;
}

/**
 * Runs numRuns generated requests at one endpoint, one at a time: none may take longer than the
 * timeout, answer 5xx, or (when answered 4xx) change the stored state.
 */
export async function fuzzEndpoint(
  send: (req: FuzzRequest) => Promise<FuzzAnswer>,
  spec: EndpointSpec,
  o: FuzzOptions,
): Promise<FuzzFigures> {
  const figures: FuzzFigures = { cases: 0, status5xx: 0, rejected: 0, byStatus: {} };
  const validAuth = new Set(o.validAuth());
  const content = o.contentSnapshot ?? o.snapshot;
  let last = '';
  const result = await fc.check(
    fc.asyncProperty(requestArb(spec, o), async (req) => {
      const holder = validAuth.has(req.headers.authorization ?? '');
      const before = holder ? await content() : await o.snapshot();
      const res = await send(req);
      const previous = last;
      last = `${res.status} ${describeCase(req)}`;
      figures.cases++;
      figures.byStatus[res.status] = (figures.byStatus[res.status] ?? 0) + 1;
      if (res.status >= 500) figures.status5xx++;
      assert.ok(
        res.status < 500,
        `${res.status} ${res.text.slice(0, 200)} for ${describeCase(req)}`,
      );
      assert.ok(res.status >= 200, `status ${res.status}`);
      if (res.status >= 400) {
        figures.rejected++;
        // Every refusal is the one JSON shape (HTTP parser errors never reach express, and have none).
        if (res.headers['content-type']?.includes('application/json')) {
          assert.equal(typeof JSON.parse(res.text).error, 'string', describeCase(req));
        }
        const after = holder ? await content() : await o.snapshot();
        if (after !== before) {
          throw new Error(
            `a ${res.status} changed the stored state: ${describeCase(req)}\nbefore: ${before.slice(0, 2000)}\nafter:  ${after.slice(0, 2000)}\nprevious: ${previous}`,
          );
        }
      }
    }),
    { numRuns: o.numRuns, seed: o.seed, endOnFailure: true },
  );
  // fast-check's own report prints the whole counterexample, which may be a 70 KB body.
  if (result.failed) {
    const [req] = result.counterexample ?? [];
    const cause = result.errorInstance instanceof Error ? result.errorInstance.message : '';
    throw new Error(
      `seed ${result.seed}: ${cause.slice(0, 1500)}${req ? `\ncase: ${describeCase(req)}` : ''}`,
    );
  }
  return figures;
}

/**
 * Fuzzes one endpoint as fuzzEndpoint does, prints its figures, and asserts that every case ran and
 * that none was answered 5xx.
 */
export async function fuzzEndpointClean(
  send: Parameters<typeof fuzzEndpoint>[0],
  spec: EndpointSpec,
  o: FuzzOptions,
): Promise<FuzzFigures> {
  const f = await fuzzEndpoint(send, spec, o);
  console.log(report(spec, f));
  assert.equal(f.cases, o.numRuns);
  assert.equal(f.status5xx, 0);
  return f;
}

export function report(spec: EndpointSpec, f: FuzzFigures): string {
  const statuses = Object.entries(f.byStatus)
    .map(([s, n]) => `${s}:${n}`)
    .join(' ');
  return `fuzz ${spec.method} ${spec.path}: cases ${f.cases}, 5xx ${f.status5xx}, rejected ${f.rejected} (${statuses})`;
}

/** MariaDB's table checksum plus a row count, for "the database unchanged". */
export async function tableDigest(
  db: { raw(sql: string): Promise<unknown> },
  table: string,
  columns?: string[],
): Promise<string> {
  if (!columns) {
    const [rows] = (await db.raw(`CHECKSUM TABLE \`${table}\` EXTENDED`)) as [
      Array<{ Checksum: unknown }>,
    ];
    return String(rows[0]?.Checksum);
  }
  const cols = columns.map((c) => `COALESCE(\`${c}\`, '')`).join(", '|', ");
  const [rows] = (await db.raw(
    `SELECT COUNT(*) AS n, COALESCE(SUM(CRC32(CONCAT(${cols}))), 0) AS s, COALESCE(BIT_XOR(CRC32(CONCAT(${cols}))), 0) AS x FROM \`${table}\``,
  )) as [Array<{ n: unknown; s: unknown; x: unknown }>];
  return `${rows[0]?.n}/${rows[0]?.s}/${rows[0]?.x}`;
}
