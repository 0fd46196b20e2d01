// mfbench: every path through HAProxy against its ceiling, measured in one run on one machine.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';
import { createEtcd, serviceKeysPrefix } from '@microflack/common';
import { bcryptCeiling, startTrivialServer, type TrivialServer } from './ceilings.js';
import { CALLERS, growthTable, measureGrowth, type GrowthRow } from './growth.js';
import { measureBrowserLive, type BrowserLive } from './browser-live.js';
import {
  cpuMs,
  measureFanout,
  measureRegistration,
  measureRevocation,
  type Fanout,
  type Spread,
} from './live.js';
import { runLoad, type LoadResult } from './load.js';
import { describeQuiet, waitQuiet } from './quiet.js';
import { netdevMaxBacklog, type NetCounters } from './netstat.js';
import { ADMIN_DIR, bringUp, openFiles, privateMb, rssMb, type Platform } from './platform.js';
import { createApi, seed, seedUsers, waitSettled, type Api, type Seeded } from './seed.js';

const STEPS = ['http', 'sign-in', 'live', 'browser-live', 'fanout', 'growth', 'scale-out'] as const;
type Step = (typeof STEPS)[number];

const USAGE = `Usage: mfbench [--lb URL --etcd URL] [--duration S] [--smoke] [--big] [--out FILE] [--write-md]
               [--only STEP,...] [--fanout N,...]
Brings up a platform on a temporary MICROFLACK_HOME (or uses the one at --lb), seeds 50 users and
200 messages, measures every path through HAProxy against its ceiling, prints a table and writes JSON.
  --duration S  seconds per load run (default 15)      --smoke  a few seconds per path, small sizes
  --big         also the 1M-message growth case         --write-md  write BENCHMARKS.md at the top
  --no-install  run mfup --no-install (use the checkout's build as it is)
  --only STEPS  only these steps, comma-separated: http, sign-in, live (revocation and
                registration), browser-live, fanout, growth, scale-out
  --fanout N,.. the fan-out's client counts (default 1,100,1000,10000; with --smoke 1,10)`;

const options = {
  lb: { type: 'string' },
  etcd: { type: 'string' },
  duration: { type: 'string', default: '15' },
  smoke: { type: 'boolean', default: false },
  big: { type: 'boolean', default: false },
  out: { type: 'string' },
  'write-md': { type: 'boolean', default: false },
  'no-install': { type: 'boolean', default: false },
  only: { type: 'string' },
  fanout: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

function parseArguments() {
  try {
    return parseArgs({ options }).values;
  } catch (err) {
    // Misuse is the caller's mistake, not a crash: say what was wrong, how to call it, exit 2.
    console.error(`mfbench: ${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
}
const args = parseArguments();

if (args.help) {
  console.log(USAGE);
  process.exit(0);
}

const smoke = args.smoke;
const seconds = smoke ? 2 : Number(args.duration);
if (!Number.isFinite(seconds) || seconds <= 0) {
  console.error(`mfbench: --duration must be a positive number of seconds\n${USAGE}`);
  process.exit(2);
}
/**
 * An unmeasured run before each measured one, at the same concurrency against the same target
 * (platform and ceiling alike): a service that has just started, or has not yet served this path,
 * runs it unoptimised (V8 compiles a function hot only after many calls) on cold caches. At
 * 03b9a4b the first 15 s of POST /api/messages at concurrency 32 gave 1,409 req/s and the same load
 * later in the same run 2,695: the first measured the JIT, not the service.
 */
const warmupSeconds = smoke ? 1 : Math.min(5, seconds);
const only = args.only?.split(',').map((x) => x.trim());
const unknownStep = only?.find((x) => !(STEPS as readonly string[]).includes(x));
if (unknownStep !== undefined || (only && args['write-md'])) {
  console.error(
    `mfbench: ${unknownStep !== undefined ? `no step ${unknownStep}` : '--write-md needs every step'}\n${USAGE}`,
  );
  process.exit(2);
}
const runs = (s: Step) => !only || only.includes(s);
const fanoutClients = args.fanout
  ? args.fanout.split(',').map(Number)
  : smoke
    ? [1, 10]
    : [1, 100, 1000, 10000];
if (fanoutClients.some((n) => !Number.isInteger(n) || n < 1)) {
  console.error(`mfbench: --fanout takes positive whole numbers of clients\n${USAGE}`);
  process.exit(2);
}
const concurrencies = [32, 128];
const MAX_SIGN_IN_CONCURRENCY = Math.max(...concurrencies);

interface Row extends LoadResult {
  path: string;
  concurrency: number;
  ceilingRps?: number;
  ratio?: number;
  /** CPU ms a request cost each part of the platform (instances summed by service) and this process. */
  cpuMsPerRequest?: Record<string, number>;
}

/**
 * Runs `load` and counts the CPU every process of the platform and this one (the load generator,
 * and the trivial server of a ceiling) spent on it, per request: where a path's time goes when
 * everything shares the machine's cores. Undefined without the platform's pids.
 */
async function withCpu(
  platform: Platform,
  load: () => Promise<LoadResult>,
): Promise<LoadResult & { cpuMsPerRequest?: Record<string, number> }> {
  const pids = await platform.programPids();
  const haproxy = Number((await platform.lbInfo())?.Pid);
  if (haproxy) pids.set('haproxy', haproxy);
  const before = [...pids].map(([name, pid]) => [name, pid, cpuMs(pid)] as const);
  const self = process.cpuUsage();
  const r = await load();
  if (pids.size === 0 || r.requests === 0) return r;
  const spent: Record<string, number> = {};
  for (const [name, pid, was] of before) {
    const now = cpuMs(pid);
    if (was === undefined || now === undefined) continue;
    // Instances by service; the lb program is the configurator (HAProxy is counted on its own).
    const part = name.replace(/-[0-9a-f]+$/, '');
    spent[part] = (spent[part] ?? 0) + now - was;
  }
  const used = process.cpuUsage(self);
  spent.bench = (used.user + used.system) / 1000;
  const perRequest: Record<string, number> = {};
  let other = 0;
  for (const [part, ms] of Object.entries(spent).sort((a, b) => b[1] - a[1])) {
    const each = ms / r.requests;
    // The parts that take no part in the path (a heartbeat, a registration) together.
    if (each < 0.005) other += each;
    else perRequest[part] = Math.round(each * 1000) / 1000;
  }
  if (other >= 0.001) perRequest.other = Math.round(other * 1000) / 1000;
  return { ...r, cpuMsPerRequest: perRequest };
}

const step = (s: string) => console.log(`==> ${s}`);

async function main(): Promise<void> {
  const platform = await bringUp({ lb: args.lb, etcd: args.etcd, install: !args['no-install'] });
  try {
    await benchmark(platform);
  } finally {
    await platform.stop();
  }
}

// What the steps of one run share: the platform, its seeded users, and the results so far.
interface Run {
  platform: Platform;
  api: Api;
  seeded: Seeded;
  bearer: { Authorization: string };
  rows: Row[];
  results: Record<string, unknown>;
}

/** How long after the platform came up, without requests, idle memory is read. */
const IDLE_SETTLE_SECONDS = 20;

type LoadSpec = Omit<Parameters<typeof runLoad>[0], 'connections' | 'durationSeconds'>;

interface Memory {
  /** RSS as the platform has just come up (start-up's garbage not yet collected). */
  startedMb?: number;
  idleMb?: number;
  idlePrivateMb?: number;
  afterLoadMb?: number;
}

/** The floor: a Node process with the services' flags that loads nothing, 3 s after its start. */
async function bareNodeMemory(): Promise<Memory> {
  const child = spawn(
    process.execPath,
    ['--max-semi-space-size=2', '-e', 'setInterval(() => {}, 1e6)'],
    {
      stdio: 'ignore',
    },
  );
  try {
    await new Promise((r) => setTimeout(r, 3000));
    const pid = child.pid as number;
    return { idleMb: rssMb(pid), idlePrivateMb: privateMb(pid) };
  } finally {
    child.kill();
  }
}

async function benchmark(platform: Platform): Promise<void> {
  const api = createApi(platform.lb);
  const results: Record<string, unknown> = {
    machine: machine(),
    date: new Date().toISOString(),
    settings: { durationSeconds: seconds, concurrencies, smoke },
  };
  const upAt = Date.now();
  const memory: Record<string, Memory> = { 'node (nothing loaded)': await bareNodeMemory() };
  for (const [name, pid] of await platform.instancePids()) {
    memory[name] = { startedMb: rssMb(pid) };
  }
  // Idle is after a while without requests: V8's memory reducer collects start-up's garbage and
  // gives pages back once a process has been idle for about 8 s.
  const settleMs = (smoke ? 3 : IDLE_SETTLE_SECONDS) * 1000 - (Date.now() - upAt);
  if (settleMs > 0) {
    step(`waiting ${Math.round(settleMs / 1000)} s without requests for idle memory`);
    await new Promise((r) => setTimeout(r, settleMs));
  }
  for (const [name, pid] of await platform.instancePids()) {
    memory[name] = { ...memory[name], idleMb: rssMb(pid), idlePrivateMb: privateMb(pid) };
  }

  step('seeding 50 users and 200 messages');
  const seeded = await seed(api, 50, smoke ? 40 : 200);
  const run: Run = {
    platform,
    api,
    seeded,
    bearer: { Authorization: `Bearer ${seeded.token}` },
    rows: [],
    results,
  };

  if (runs('http')) await measureHttpPaths(run);
  if (runs('sign-in')) await measureSignIn(run);
  for (const [name, pid] of await platform.instancePids()) {
    memory[name] = { ...memory[name], afterLoadMb: rssMb(pid) };
  }
  await waitSettled(api);
  results.live = await measureLivePaths(run);
  if (runs('growth')) await measureGrowthStep(run);
  if (runs('scale-out')) await measureScaleOut(run);

  results.load = run.rows;
  results.memory = memory;
  report(results);
}

/**
 * One path at every concurrency, each run followed (with `ceiling`) by the same load on a trivial
 * server answering as many bytes behind the same HAProxy, so that both see the same machine: on a
 * shared 2-core host, conditions drift within minutes.
 */
async function loadPath(
  run: Run,
  label: string,
  spec: LoadSpec,
  opts: {
    minSeconds?: number;
    ceiling?: boolean;
    notModified?: boolean;
    cpu?: boolean;
    /** false: no unmeasured run first (sign-in: its queue would outlast the warm-up). */
    warmup?: boolean;
  } = {},
): Promise<void> {
  const { platform, api, rows } = run;
  const duration = Math.max(seconds, opts.minSeconds ?? 0);
  let trivial: Awaited<ReturnType<typeof startTrivialServer>> | undefined;
  let bytes = 0;
  const warm = opts.warmup ?? true;
  for (const c of concurrencies) {
    await waitSettled(api);
    if (warm) await warmUp({ ...spec, connections: c }, `${label} at concurrency ${c}`);
    step(`${label} at concurrency ${c} for ${duration} s`);
    const measure = (load: () => Promise<LoadResult>) =>
      opts.cpu ? withCpu(platform, load) : load();
    const r = await measure(() => runLoad({ ...spec, connections: c, durationSeconds: duration }));
    const row: Row = { path: label, concurrency: c, ...r };
    rows.push(row);
    if (!opts.ceiling || !platform.etcd) continue;
    if (!trivial) {
      bytes = r.bytesPerResponse;
      trivial = await startTrivialServer(platform.etcd, bytes, platform.lb, {
        notModified: opts.notModified,
      });
    }
    const what = opts.notModified ? '304' : `${bytes}-byte`;
    const ceilingSpec = {
      url: platform.lb + (trivial as TrivialServer).path,
      connections: c,
      okStatus: opts.notModified ? 304 : undefined,
    };
    if (warm) await warmUp(ceilingSpec, `the ceiling for ${label} at concurrency ${c}`);
    step(`ceiling for ${label}: ${what} trivial server at concurrency ${c}`);
    const ceiling = await measure(() => runLoad({ ...ceilingSpec, durationSeconds: duration }));
    row.ceilingRps = ceiling.rps;
    row.ratio = Math.round((row.rps / ceiling.rps) * 1000) / 1000;
    rows.push({ path: `ceiling ${what} (${label})`, concurrency: c, ...ceiling });
  }
  await trivial?.stop();
}

/** The same load for `warmupSeconds`, not measured (see `warmupSeconds`). */
async function warmUp(spec: LoadSpec & { connections: number }, what: string): Promise<void> {
  step(`warming up: ${what} for ${warmupSeconds} s, not measured`);
  await runLoad({ ...spec, durationSeconds: warmupSeconds });
}

/** The read and write paths of messages and users, each against its trivial-server ceiling. */
async function measureHttpPaths(run: Run): Promise<void> {
  const { lb } = run.platform;
  await loadPath(run, 'GET /api/messages', { url: `${lb}/api/messages` }, { ceiling: true });
  await loadPath(
    run,
    'GET /api/messages (token)',
    { url: `${lb}/api/messages`, headers: run.bearer },
    { ceiling: true },
  );
  await loadPath(
    run,
    'POST /api/messages',
    {
      url: `${lb}/api/messages`,
      method: 'POST',
      headers: run.bearer,
      body: JSON.stringify({ source: 'load *test* message' }),
    },
    { ceiling: true, cpu: true },
  );
  // The same list, asked again with the ETag it has: 304, no body.
  const current = await run.api.fetch('/api/messages');
  await current.arrayBuffer();
  await loadPath(
    run,
    'GET /api/messages If-None-Match (304)',
    {
      url: `${lb}/api/messages`,
      headers: { 'if-none-match': current.headers.get('etag') ?? '' },
      okStatus: 304,
    },
    { ceiling: true, notModified: true },
  );
  await loadPath(run, 'GET /api/users', { url: `${lb}/api/users` }, { ceiling: true });
  // Rooms (issue 16): the caller's room list, a page of a room's history, a full-text search.
  await loadPath(
    run,
    'GET /api/rooms (token)',
    { url: `${lb}/api/rooms`, headers: run.bearer },
    { ceiling: true },
  );
  await loadPath(
    run,
    'GET /api/messages history page',
    { url: `${lb}/api/messages?room_id=1&before=latest&limit=50` },
    { ceiling: true },
  );
  await loadPath(
    run,
    'GET /api/messages search',
    { url: `${lb}/api/messages?q=load+message` },
    { ceiling: true },
  );
}

/** POST /api/tokens against raw bcrypt on all cores at the cost the users service hashes with. */
async function measureSignIn(run: Run): Promise<void> {
  const { platform, api, seeded } = run;
  // Raw bcrypt before the sign-in load, not after: users is still draining that load's queue for
  // seconds after the load generator stops, and would compete with the measurement.
  await waitSettled(api);
  const cost = await bcryptCost(platform);
  step(`ceiling for POST /api/tokens: raw bcrypt at cost ${cost} on all cores`);
  const bcrypt = await bcryptCeiling(cost, smoke ? 2 : 10);
  // Sign-ins rotate over users of their own, as many people signing in would: twice as many as the
  // most sign-ins in flight, because the login throttle counts a nickname's attempts in flight
  // (parallel guesses must not all pass), and 128 at once over the 50 seeded users, with the 503s
  // retried while users drains its bcrypt queue, left some nicknames with more than the free ones
  // in flight (429). bcrypt makes each take a sizeable share of a core: a run shorter than 8 s
  // would end before a queue of 128 is answered.
  step(`sign-in users: registering ${2 * MAX_SIGN_IN_CONCURRENCY} of their own`);
  const signers = await seedUsers(api, 2 * MAX_SIGN_IN_CONCURRENCY, seeded.password);
  await waitSettled(api);
  let next = 0;
  await loadPath(
    run,
    'POST /api/tokens',
    {
      url: `${platform.lb}/api/tokens`,
      method: 'POST',
      headersFor: () => {
        const nickname = signers[next++ % signers.length] as string;
        const basic = Buffer.from(`${nickname}:${seeded.password}`).toString('base64');
        return { Authorization: `Basic ${basic}` };
      },
    },
    { minSeconds: 8, warmup: false },
  );
  for (const row of run.rows.filter((x) => x.path === 'POST /api/tokens')) {
    row.ceilingRps = bcrypt.hashesPerSecond;
    row.ratio = Math.round((row.rps / bcrypt.hashesPerSecond) * 1000) / 1000;
  }
  run.results.bcrypt = { cost, ...bcrypt };
}

/** A fan-out row: measured at `clients`; `asked` and `limitedBy` when fewer than asked fit. */
/** `direct`: the clients connected straight to this many gateways, not through the LB. */
type FanoutRow = Fanout & { asked?: number; limitedBy?: string; direct?: number; quiet?: string };

/** A fan-out size that could not be measured, and why. */
interface FanoutFailure {
  what: string;
  error: string;
  /** What HAProxy logged about its servers meanwhile (checks failing, servers DOWN), if any. */
  lb?: string[];
}

interface Live {
  revocation?: Spread;
  registration?: Spread;
  browser?: BrowserLive;
  fanout?: FanoutRow[];
  /** Fan-out sizes that could not be measured, and why (the other steps go on). */
  fanoutFailed?: FanoutFailure[];
}

/** Revocation everywhere, registration to first routed request, a keypress to another browser's
 * screen, post_message to updated_model at up to 10,000 sockets. */
async function measureLivePaths(run: Run): Promise<Live> {
  const { platform, api, seeded } = run;
  const live: Live = {};
  if (runs('live')) {
    step('live paths: revocation everywhere');
    live.revocation = await measureRevocation(
      api,
      seeded.nickname,
      seeded.password,
      smoke ? 3 : 20,
    );
    if (platform.etcd) {
      step('live paths: registration to first routed request');
      live.registration = await measureRegistration(platform.lb, platform.etcd, smoke ? 2 : 10);
    }
  }
  if (runs('browser-live')) {
    step('live paths: keypress to the other page in Chromium, 1,000 messages shown');
    await waitSettled(api);
    live.browser = await measureBrowserLive(
      api,
      {
        token: seeded.token,
        writer: seeded.nicknames[1] as string,
        reader: seeded.nicknames[2] as string,
        password: seeded.password,
      },
      smoke ? 3 : 30,
    );
  }
  if (runs('fanout')) {
    const fanout: FanoutRow[] = [];
    const failed: FanoutFailure[] = [];
    for (const asked of fanoutClients) {
      await waitSettled(api);
      const room = await fanoutRoom(platform);
      let clients = asked;
      if (room && room.max < asked) {
        // Fewer than asked fit under a limit of this machine: measured at what fits, and said so.
        clients = room.max >= 1000 ? Math.floor(room.max / 500) * 500 : room.max;
        if (clients < 1) throw new Error(`no fan-out client fits: ${room.reason}`);
        console.log(`    ${asked} clients do not fit: ${room.reason}; measuring ${clients}`);
      }
      step(`live paths: post_message to updated_model at ${clients} clients`);
      const row = await fanoutOrFailure(
        `fanout to ${clients} clients`,
        failed,
        async () =>
          measureFanout(
            platform.lb,
            seeded.token,
            clients,
            smoke ? 5 : 30,
            await cpuPids(platform),
          ),
        platform.home,
      );
      if (row) {
        if (clients !== asked) Object.assign(row, { asked, limitedBy: room?.reason });
        fanout.push(row);
      }
      // HAProxy's descriptors cap the clients through the LB below what was asked: the gateways'
      // own fan-out at the full count, the clients connected to them straight (no LB between).
      let gateways = clients !== asked && room?.lb ? await gatewayUrls(platform) : [];
      // On a platform of its own, as a deployment expecting this many sockets would run: a
      // gateway per core (one gateway is one thread writing every socket).
      const cores = os.cpus().length;
      if (gateways.length > 0 && gateways.length < cores && !args.lb) {
        step(`adding socketio instances up to one per core (${cores})`);
        for (let n = gateways.length; n < cores; n++) await platform.mf('mfrun', 'socketio');
        gateways = await gatewayUrls(platform);
      }
      const roomDirect = gateways.length > 0 ? await fanoutRoom(platform, false) : undefined;
      if (gateways.length > 0 && (!roomDirect || roomDirect.max >= asked)) {
        await waitSettled(api);
        step(
          `live paths: post_message to updated_model at ${asked} clients, straight to the gateways`,
        );
        const what = `fanout to ${asked} clients straight to the gateways`;
        const straight = await fanoutOrFailure(
          what,
          failed,
          async () =>
            measureFanout(
              platform.lb,
              seeded.token,
              asked,
              smoke ? 5 : 30,
              await cpuPids(platform),
              gateways,
            ),
          platform.home,
        );
        if (straight) fanout.push({ ...straight, direct: gateways.length });
      }
    }
    live.fanout = fanout;
    if (failed.length > 0) live.fanoutFailed = failed;
  }
  return live;
}

/**
 * One fan-out measured and logged, or its failure recorded (and said) so that the run goes on: a
 * size that cannot be measured on this machine this time is a finding of the report, not a reason
 * to lose every other figure of a half-hour run.
 */
async function fanoutOrFailure(
  what: string,
  failed: FanoutFailure[],
  measure: () => Promise<Fanout>,
  home?: string,
): Promise<FanoutRow | undefined> {
  // On a quiet machine: what the runs before left running is not this run's cost.
  const quiet = describeQuiet(await waitQuiet(smoke ? 3000 : 60000));
  console.log(`    ${quiet}`);
  const lbLog = home ? path.join(home, 'lb', 'haproxy.log') : undefined;
  const logFrom = lbLog && fs.existsSync(lbLog) ? fs.statSync(lbLog).size : undefined;
  try {
    const row: FanoutRow = { ...(await measure()), quiet };
    logFanout(row);
    return row;
  } catch (err) {
    const error = (err as Error).message;
    console.log(`    ${what} failed: ${error}`);
    const lb = lbLog && logFrom !== undefined ? serverEvents(lbLog, logFrom) : [];
    for (const line of lb) console.log(`      LB: ${line}`);
    failed.push({ what, error, ...(lb.length > 0 ? { lb } : {}) });
    return undefined;
  }
}

/**
 * HAProxy's lines about its servers and backends written to `file` after byte `from` (a check
 * failing, a server DOWN or UP, a backend without servers), at most 20: why it answered 503.
 */
function serverEvents(file: string, from: number): string[] {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.min(size - from, 4 << 20));
    fs.readSync(fd, buf, 0, buf.length, from);
    return buf
      .toString('utf8')
      .split('\n')
      .filter((l) => /Server \S+ is (DOWN|UP)|has no server available|Health check/.test(l))
      .slice(0, 20);
  } finally {
    fs.closeSync(fd);
  }
}

/** Each process's CPU ms a post in a fan-out, with the kernel's part: `socketio 220 (130)`. */
function fanoutCpu(f: Fanout, name: (k: string) => string): string {
  return Object.entries(f.cpuMsPerPost)
    .map(([k, v]) => {
      const kernel = f.kernelMsPerPost[k];
      return `${name(k)} ${v}${kernel === undefined ? '' : ` (${kernel})`}`;
    })
    .join(', ');
}

/** A fan-out's result as the run goes: first and last client, and where its CPU went. */
function logFanout(f: Fanout): void {
  console.log(
    `    first client p50 ${f.first.p50Ms} ms, last p50 ${f.p50Ms} ms; CPU ms a post (kernel's part): ${fanoutCpu(f, (k) => k)}`,
  );
  console.log(`    ${connectedIn(f)}`);
  const net = fanoutNet(f);
  if (net) console.log(`    ${net}`);
}

/** How long the clients took to connect, and how many handshakes were tried again. */
function connectedIn(f: Fanout): string {
  const retries = f.connectRetries > 0 ? `, ${f.connectRetries} handshakes tried again` : '';
  return `${f.clients} clients connected in ${f.connectSeconds} s${retries}`;
}

/**
 * What the kernel did on the wire during a fan-out's posts, and the slowest post's share: a post
 * held up by a dropped packet waits for TCP's retransmission timeout (200 ms, doubling), which no
 * work of the platform's explains.
 */
function fanoutNet(f: Fanout): string | undefined {
  if (!f.postsNet) return undefined;
  const sum = (k: keyof NetCounters) => f.postsNet?.reduce((n, x) => n + x[k], 0) ?? 0;
  const slowest = f.postsMs.indexOf(Math.max(...f.postsMs));
  const s = f.postsNet[slowest];
  const backlog = netdevMaxBacklog();
  return (
    `kernel during the ${f.postsMs.length} posts: ${sum('retransSegs')} TCP segments sent again ` +
    `(${sum('timeouts')} retransmission timeouts), ${sum('backlogDrops')} packets dropped at a full input backlog` +
    `${backlog ? ` (net.core.netdev_max_backlog ${backlog})` : ''}; slowest post ${f.postsMs[slowest]} ms ` +
    `with ${s?.retransSegs ?? 0} sent again (${s?.timeouts ?? 0} timeouts) and ${s?.backlogDrops ?? 0} dropped`
  );
}

/** The processes a fan-out's CPU is counted for: the socketio instances and HAProxy's workers. */
async function cpuPids(platform: Platform): Promise<Map<string, number>> {
  const pids = new Map(
    [...(await platform.instancePids())].filter(([name]) => name.startsWith('socketio-')),
  );
  const master = Number((await platform.lbInfo())?.Pid);
  if (master) pids.set('haproxy', master);
  return pids;
}

/**
 * How many more WebSocket clients fit through the LB: HAProxy holds at most `Maxconn` client
 * connections (two descriptors each, its client's and its server's side: without a maxconn of its
 * own, HAProxy derives it from its open-files limit), and every client is also a descriptor in
 * this process and in a socketio instance. The tightest of them, and what it is; undefined when
 * none of them can be read (a platform of another machine).
 */
async function fanoutRoom(
  platform: Platform,
  throughLb = true,
): Promise<{ max: number; reason: string; lb?: boolean } | undefined> {
  const limits: Array<{ max: number; reason: string; lb?: boolean }> = [];
  const info = await platform.lbInfo();
  if (throughLb && info?.Maxconn) {
    const maxconn = Number(info.Maxconn);
    limits.push({
      // A few connections of this process's own (its REST calls) besides the clients.
      max: maxconn - Number(info.CurrConns ?? 0) - 20,
      reason: `HAProxy's maxconn is ${maxconn}, from its open-files limit ${info['Ulimit-n']}`,
      lb: true,
    });
  }
  const self = openFiles('self');
  if (self) {
    limits.push({
      max: self.limit - self.open - 100,
      reason: `this process may open ${self.limit} files (${self.open} open)`,
    });
  }
  const gateways = [...(await platform.instancePids())].filter(([n]) => n.startsWith('socketio-'));
  const gatewayFiles = gateways.map(([, pid]) => openFiles(pid));
  if (gateways.length > 0 && gatewayFiles.every((f) => f !== undefined)) {
    limits.push({
      max: gatewayFiles.reduce(
        (n, f) =>
          n + (f as { limit: number; open: number }).limit - (f as { open: number }).open - 100,
        0,
      ),
      reason: `the socketio instances may open ${gatewayFiles.map((f) => f?.limit).join(', ')} files`,
    });
  }
  return limits.sort((a, b) => a.max - b.max)[0];
}

/** Each socketio instance's own address (its upstream key in etcd), as an http:// URL. */
async function gatewayUrls(platform: Platform): Promise<string[]> {
  if (!platform.etcd) return [];
  const etcd = createEtcd([platform.etcd]);
  try {
    const all = await etcd
      .getAll()
      .prefix(`${serviceKeysPrefix('socketio')}upstream/`)
      .strings();
    // `host:port[ weight N]`
    return Object.values(all).map((v) => `http://${v.split(' ')[0]}`);
  } finally {
    etcd.close();
  }
}

/** GET /api/messages?updated_since as the messages table grows (with MariaDB only). */
async function measureGrowthStep(run: Run): Promise<void> {
  const messagesDb = run.platform.databaseUrl('messages');
  if (!messagesDb) return;
  const growthSizes = smoke ? [1000] : args.big ? [1000, 100000, 1000000] : [1000, 100000];
  step(`growth: the list and search paths with ${growthSizes.join(', ')} stored messages`);
  // Callers of their own for the paths with a token: a caller's answers are kept for that caller.
  const callers = run.seeded.nicknames.slice(0, smoke ? 2 : CALLERS);
  const tokens = [];
  for (const nickname of callers) tokens.push(await run.api.token(nickname, run.seeded.password));
  run.results.growth = await measureGrowth(
    run.api,
    messagesDb,
    tokens,
    growthSizes,
    smoke ? 20 : 200,
  );
}

/** POST /api/messages with one instance, then two (only on a platform this run brought up). */
async function measureScaleOut(run: Run): Promise<void> {
  const { platform, api } = run;
  if (!platform.home) return;
  step('scale-out: POST /api/messages with 1, then 2 messages instances');
  const post = {
    url: `${platform.lb}/api/messages`,
    method: 'POST' as const,
    headers: run.bearer,
    body: JSON.stringify({ source: 'scale-out message' }),
    connections: 32,
    durationSeconds: seconds,
  };
  await waitSettled(api);
  await warmUp(post, 'POST /api/messages on 1 instance');
  const one = await runLoad(post);
  await platform.mf('mfrun', 'messages', '--count', '1');
  await waitSettled(api);
  // The new instance has never served a request: warmed up as the first was.
  await warmUp(post, 'POST /api/messages on 2 instances');
  const two = await runLoad(post);
  run.results.scaleOut = {
    oneInstance: one,
    twoInstances: two,
    speedup: Math.round((two.rps / one.rps) * 100) / 100,
  };
}

async function bcryptCost(platform: Platform): Promise<number> {
  const url = platform.databaseUrl('users');
  if (!url) return 11;
  const conn = await mysql.createConnection({ uri: url, connectTimeout: 5000 });
  try {
    const [rows] = await conn.query('SELECT password_hash FROM users LIMIT 1');
    const hash = (rows as Array<{ password_hash: string }>)[0]?.password_hash ?? '';
    return Number(/^\$2[aby]\$(\d\d)\$/.exec(hash)?.[1] ?? 11);
  } finally {
    await conn.end();
  }
}

function machine() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
  };
}

function fmt(n: number | undefined, digits = 1): string {
  return n === undefined ? '-' : n.toFixed(digits);
}

function report(results: Record<string, unknown>): void {
  const rows = results.load as Row[];
  const lines: string[] = [];
  lines.push('| path | conc. | req/s | p50 ms | p99 ms | errors | ceiling req/s | ratio |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) {
    lines.push(
      `| ${r.path} | ${r.concurrency} | ${fmt(r.rps)} | ${r.p50Ms} | ${r.p99Ms} | ${r.errors} | ${fmt(r.ceilingRps)} | ${r.ratio === undefined ? '-' : `${(r.ratio * 100).toFixed(1)}%`} |`,
    );
  }
  const live = results.live as Live;
  const liveLines = [
    '| live path | p50 ms | p99 ms | max ms | samples |',
    '| --- | ---: | ---: | ---: | ---: |',
  ];
  const liveNotes: string[] = [];
  const liveRow = (label: string, s: Spread) =>
    liveLines.push(`| ${label} | ${s.p50Ms} | ${s.p99Ms} | ${s.maxMs} | ${s.samples} |`);
  if (live.revocation) liveRow('revocation', live.revocation);
  if (live.registration) liveRow('registration', live.registration);
  if (live.browser) {
    const b = live.browser;
    liveRow(
      `keypress to the other page's screen, Chromium, ${b.shownBefore.toLocaleString('en')} messages shown`,
      b,
    );
  }
  for (const f of live.fanout ?? []) {
    const asked = f.asked ? ` (${f.asked} asked: ${f.limitedBy})` : '';
    const how = f.direct
      ? ` straight to ${f.direct} gateway${f.direct > 1 ? 's' : ''} (no LB)`
      : '';
    liveRow(`fanout to ${f.clients} clients${how}${asked}, one Node process receiving all`, f);
  }
  for (const f of live.fanoutFailed ?? []) {
    liveLines.push(`| ${f.what}: failed (below) | - | - | - | 0 |`);
    liveNotes.push(
      `The ${f.what} failed: ${f.error}.` +
        (f.lb ? ` HAProxy meanwhile: ${f.lb.map((l) => `\`${l}\``).join('; ')}.` : ''),
    );
  }
  // Where a large fan-out's time goes: every process involved shares the machine's cores.
  for (const f of (live.fanout ?? []).filter((x) => x.clients >= 1000)) {
    const cpu = fanoutCpu(f, (k) => k.replace(/-[0-9a-f]+$/, ''));
    liveNotes.push(
      `Fan-out to ${f.clients}${f.direct ? ` straight to ${f.direct} gateway(s)` : ''}: first client p50 ${f.first.p50Ms} ms, last p50 ${f.p50Ms} ms; CPU ms a post (kernel's part): ${cpu}.`,
    );
    const net = fanoutNet(f);
    if (net) liveNotes.push(`Fan-out to ${f.clients}: ${net}; ${connectedIn(f)}.`);
    if (f.quiet) liveNotes.push(`Fan-out to ${f.clients}: before it, ${f.quiet}.`);
  }
  // Where a write's time goes, and what the machine's cores allow at that cost.
  const cores = (results.machine as ReturnType<typeof machine>).cores;
  const httpNotes: string[] = [];
  for (const r of rows.filter((x) => x.cpuMsPerRequest)) {
    const parts = Object.entries(r.cpuMsPerRequest ?? {});
    const sum = parts.reduce((n, [, v]) => n + v, 0);
    httpNotes.push(
      `${r.path} at ${r.concurrency}: CPU ms a request: ${parts.map(([k, v]) => `${k} ${v}`).join(', ')}; ` +
        `sum ${sum.toFixed(3)}, so at most ${Math.round((cores * 1000) / sum)} req/s on ${cores} cores (measured ${fmt(r.rps)}).`,
    );
  }
  const growthLines = growthTable((results.growth as GrowthRow[] | undefined) ?? []);
  const memory = results.memory as Record<string, Memory>;
  const memLines = [
    `| instance | RSS MB just started | idle RSS MB (${IDLE_SETTLE_SECONDS} s without requests) | idle private MB (USS) | after load RSS MB |`,
    '| --- | ---: | ---: | ---: | ---: |',
    ...Object.entries(memory).map(
      ([k, v]) =>
        `| ${k} | ${v.startedMb === undefined ? '-' : fmt(v.startedMb)} | ${fmt(v.idleMb)} | ${fmt(v.idlePrivateMb)} | ${v.afterLoadMb === undefined ? '-' : fmt(v.afterLoadMb)} |`,
    ),
  ];
  const scale = results.scaleOut as
    { oneInstance: LoadResult; twoInstances: LoadResult; speedup: number } | undefined;
  const scaleLines = scale
    ? [
        `POST /api/messages at concurrency 32: 1 instance ${fmt(scale.oneInstance.rps)} req/s (p99 ${scale.oneInstance.p99Ms} ms), 2 instances ${fmt(scale.twoInstances.rps)} req/s (p99 ${scale.twoInstances.p99Ms} ms): ×${scale.speedup}`,
      ]
    : [];
  const bcrypt = results.bcrypt as
    { cost: number; hashesPerSecond: number; cores: number } | undefined;
  const m = results.machine as ReturnType<typeof machine>;
  const text = [
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGb} GiB, ${m.os}, Node ${m.node}; ${results.date}`,
    `Load runs: ${seconds} s each through HAProxy, each after ${warmupSeconds} s of the same load not measured (platform and ceiling alike; not the sign-in, whose bcrypt queue would outlast it).${bcrypt ? ` bcrypt ceiling: ${bcrypt.hashesPerSecond} hashes/s at cost ${bcrypt.cost} on ${bcrypt.cores} cores.` : ''}`,
    ...(only ? [`Only: ${only.join(', ')}.`] : []),
    '',
    ...(rows.length > 0 ? [...lines, ''] : []),
    ...(httpNotes.length > 0 ? [...httpNotes, ''] : []),
    ...liveLines,
    '',
    ...(liveNotes.length > 0 ? [...liveNotes, ''] : []),
    ...(results.growth ? [...growthLines, ''] : []),
    ...memLines,
    '',
    ...scaleLines,
  ].join('\n');
  console.log(`\n${text}\n`);
  const out = args.out ?? path.join(os.tmpdir(), `mfbench-${Date.now()}.json`);
  fs.writeFileSync(out, JSON.stringify(results, null, 2));
  console.log(`results written to ${out}`);
  if (args['write-md']) {
    const md = path.join(ADMIN_DIR, '..', 'BENCHMARKS.md');
    fs.writeFileSync(
      md,
      `# MicroFlack benchmarks\n\nWritten by \`microflack-admin/bin/mfbench --write-md\`; do not edit by hand.\n\n${text}\n`,
    );
    console.log(`table written to ${md}`);
  }
}

main().catch((err) => {
  console.error(`mfbench: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
