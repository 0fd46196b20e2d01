// The dev overlay, for real (issue 14): the images `mfbuild --images --local-base` builds, run by
// Debian's podman (`kube play`) on a network made for the test, through the podman adapter
// (microflack-admin/kubernetes/podman-adapter.ts). Through the LB pod: register, a token, a post
// that a Socket.IO client receives, the chat in Chromium; then a service's process is killed and
// comes back, routed again. Every pod, secret, network and directory made here is removed after.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { createEtcd } from '@microflack/common';
import { basic, bearer, tempDir, waitFor } from '@microflack/testkit';
import { launchChromium } from '@microflack/testkit/browser';
import { renderOverlay } from '@microflack/testkit/kubernetes';
import { connectClient } from '@microflack/testkit/socketio';
import { adaptForPodman, type PodmanPlan, type PlannedPod } from '../kubernetes/podman-adapter.js';

const admin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TAG = 'k8s-test';
// The first build on a fresh machine makes the base images and installs the dependencies in the
// image (about 8 minutes on 2 cores); later builds reuse every layer that did not change.
const BUILD_TIMEOUT_MS = 15 * 60 * 1000;
// Playing the pods, every check and the clean-up.
const RUN_TIMEOUT_MS = 5 * 60 * 1000;

interface Out {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], timeoutMs = 60000): Promise<Out> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function podman(args: string[], timeoutMs = 60000): Promise<string> {
  const r = await run('podman', args, timeoutMs);
  if (r.code !== 0) throw new Error(`podman ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout.trim();
}

const log = (msg: string) => console.log(`# ${msg}`);
const since = (t: number) => `${((Date.now() - t) / 1000).toFixed(1)} s`;

describe(
  'the dev overlay on podman kube play',
  { timeout: BUILD_TIMEOUT_MS + RUN_TIMEOUT_MS },
  () => {
    const suffix = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
    const network = `mf-k8s-${suffix}`;
    const work = tempDir('k8s-run');
    let plan: PodmanPlan | undefined;
    let networkMade = false;
    const secretsMade: string[] = [];
    const podsMade: string[] = [];
    let lbUrl = '';
    let runStarted = 0;

    const pod = (app: string): PlannedPod => plan!.pods.find((p) => p.app === app)!;

    before(async () => {
      let t = Date.now();
      const build = await run(
        path.join(admin, 'bin', 'mfbuild'),
        ['--images', '--local-base', '--no-compile', TAG],
        BUILD_TIMEOUT_MS,
      );
      assert.equal(build.code, 0, `mfbuild --images failed:\n${build.stdout}\n${build.stderr}`);
      log(`mfbuild --images --local-base: ${since(t)}`);
      for (const line of build.stdout.split('\n').filter((l) => /^\s+localhost\//.test(l)))
        log(line.trim());

      runStarted = Date.now();
      t = Date.now();
      const rendered = renderOverlay('dev', { imageTag: TAG });
      await podman(['network', 'create', network]);
      networkMade = true;
      const subnets = JSON.parse(
        await podman(['network', 'inspect', network, '--format', '{{json .Subnets}}']),
      ) as { subnet: string }[];
      const prefix = /^(\d+\.\d+\.\d+)\.0\/24$/.exec(subnets[0]!.subnet)?.[1];
      assert.ok(prefix, `a /24 network, got ${subnets[0]!.subnet}`);
      let host = 10;
      fs.mkdirSync(path.join(work, 'volumes'), { mode: 0o700 });
      plan = adaptForPodman(rendered.yaml, {
        nextIp: () => `${prefix}.${host++}`,
        volumesDir: path.join(work, 'volumes'),
      });
      log(`podman cannot play: ${plan.ignored.join(', ')}`);

      for (const s of plan.secrets) {
        const file = path.join(work, `${s.name}.json`);
        fs.writeFileSync(file, s.json, { mode: 0o600 });
        await podman(['secret', 'create', s.name, file]);
        secretsMade.push(s.name);
      }
      // Backing servers first and ready (as the services' start needs), then services, then the LB.
      for (const component of ['backing', 'service', 'lb']) {
        const group = plan.pods.filter((p) => p.component === component);
        for (const p of group) {
          for (const d of p.hostDirs) {
            fs.mkdirSync(d, { recursive: true });
            fs.chmodSync(d, 0o777);
          }
          const file = path.join(work, `${p.name}.yaml`);
          fs.writeFileSync(file, p.yaml, { mode: 0o600 });
          podsMade.push(p.name);
          await podman(['kube', 'play', '--network', network, '--ip', p.ip, file], 120000);
        }
        // Each container's liveness probe, as podman runs it (`podman healthcheck run`).
        for (const p of group) {
          for (const c of p.containers) {
            await waitFor(
              `${c} healthy`,
              async () => (await run('podman', ['healthcheck', 'run', c], 15000)).code === 0,
              120000,
              1000,
            );
          }
        }
        log(`${component} pods healthy after ${since(t)}`);
      }
      lbUrl = `http://${pod('lb').ip}:8080`;
    });

    after(async () => {
      const t = Date.now();
      // Every pod at once (one command stops them one after the other): SIGTERM, SIGKILL after 5 s.
      await Promise.all(
        podsMade.map((name) =>
          run('podman', ['pod', 'rm', '--force', '--time', '5', name], 120000),
        ),
      );
      for (const name of secretsMade) await run('podman', ['secret', 'rm', name]);
      if (networkMade) await run('podman', ['network', 'rm', '--force', network]);
      fs.rmSync(work, { recursive: true, force: true });
      const left = await podman(['pod', 'ps', '--filter', `name=^(${podsMade.join('|')})$`, '-q']);
      assert.equal(left, '', 'no pod of the run is left');
      log(`clean-up ${since(t)}; the run took ${since(runStarted)}`);
      assert.ok(Date.now() - runStarted < RUN_TIMEOUT_MS, 'the run stays under 5 minutes');
    });

    it('runs every pod at its own address, and each service registers that address in etcd', async () => {
      const etcd = createEtcd([`http://${pod('etcd').ip}:2379`]);
      try {
        for (const p of plan!.pods) {
          const infra = await podman([
            'pod',
            'inspect',
            p.name,
            '--format',
            '{{.InfraContainerID}}',
          ]);
          const ip = await podman([
            'inspect',
            infra,
            '--format',
            `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`,
          ]);
          assert.equal(ip, p.ip, `${p.name}'s IP`);
          log(`pod ${p.name.padEnd(12)} ${p.ip.padEnd(14)} ${p.component}`);
        }
        for (const p of plan!.pods.filter((x) => x.component === 'service')) {
          // The instance is the pod (INSTANCE_NAME from metadata.name), at the pod's IP (SERVICE_URL
          // from status.podIP): what HAProxy routes to.
          const value = await etcd.get(`/services/${p.app}/upstream/${p.name}`).string();
          assert.equal(value, `${p.ip}:8080`, `${p.app}'s registration`);
        }
      } finally {
        etcd.close();
      }
    });

    it('through the LB pod: register, get a token, post, and a Socket.IO client receives updated_model', async () => {
      const nickname = `k8s${suffix}`.slice(0, 20);
      const password = 'correct horse battery';
      const created = await fetch(`${lbUrl}/api/users`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ nickname, password }),
        signal: AbortSignal.timeout(10000),
      });
      assert.equal(created.status, 201, await created.clone().text());
      assert.match(created.headers.get('x-microflack-instance') ?? '', /^users\/users-0$/);
      const tokenRes = await fetch(`${lbUrl}/api/tokens`, {
        method: 'POST',
        headers: basic(nickname, password),
        signal: AbortSignal.timeout(10000),
      });
      assert.equal(tokenRes.status, 200);
      const { token } = (await tokenRes.json()) as { token: string };

      const socket = await connectClient(lbUrl, ['websocket']);
      try {
        const received = new Promise<{ class: string; model: { source?: string } }>((resolve) => {
          socket.on('updated_model', (e: { class: string; model: { source?: string } }) => {
            if (e.class === 'Message' && e.model.source === 'hello from a pod') resolve(e);
          });
        });
        const posted = await fetch(`${lbUrl}/api/messages`, {
          method: 'POST',
          headers: { ...bearer(token), 'Content-Type': 'application/json' },
          body: JSON.stringify({ source: 'hello from a pod' }),
          signal: AbortSignal.timeout(10000),
        });
        assert.equal(posted.status, 201, await posted.clone().text());
        const event = await Promise.race([
          received,
          new Promise<never>((_, reject) =>
            setTimeout(() => reject(new Error('no updated_model within 10 s')), 10000),
          ),
        ]);
        assert.equal(event.model.source, 'hello from a pod');
        log('register, token, post and updated_model through the LB pod: ok');
      } finally {
        socket.close();
      }
    });

    it('serves the chat to Chromium: sign in, post, and the message shows', async () => {
      const browser = await launchChromium();
      try {
        const page = await browser.newPage();
        const nickname = `web${suffix}`.slice(0, 20);
        await page.goto(lbUrl, { timeout: 20000 });
        // The page's title, or the room on screen and the title once the client has shown it.
        assert.match(await page.title(), /^(general · )?MicroFlack$/);
        await page.fill('#login-form input[name=nickname]', nickname);
        await page.fill('#login-form input[name=password]', 'pod password');
        await page.press('#login-form input[name=password]', 'Enter');
        await page.locator('#post-form').waitFor({ state: 'visible', timeout: 15000 });
        await page.fill('#post-form input[name=source]', 'chat *in* a pod');
        await page.press('#post-form input[name=source]', 'Enter');
        await page
          .locator('#messages li.message .body em', { hasText: 'in' })
          .waitFor({ timeout: 15000 });
        assert.equal(await page.textContent('#me'), nickname);
        log('the chat in Chromium through the LB pod: ok');
      } finally {
        await browser.close();
      }
    });

    it('restarts a killed service process, which registers again and is routed again', async () => {
      const messages = pod('messages');
      const container = messages.containers[0]!;
      const state = async () => {
        const [pid, restarts] = (
          await podman(['inspect', container, '--format', '{{.State.Pid}} {{.RestartCount}}'])
        ).split(' ');
        return { pid: Number(pid), restarts: Number(restarts) };
      };
      const before = await state();
      assert.ok(before.pid > 0);
      // The process itself dies (as a crash would), not a stop asked of podman.
      process.kill(before.pid, 'SIGKILL');
      const t = Date.now();
      await waitFor(
        'the container restarted',
        async () => {
          const now = await state();
          return now.restarts > before.restarts && now.pid > 0 && now.pid !== before.pid;
        },
        60000,
        250,
      );
      // Routed again by HAProxy: the messages list answered by this very instance.
      await waitFor(
        'messages routed again',
        async () => {
          const res = await fetch(`${lbUrl}/api/messages?limit=1`, {
            signal: AbortSignal.timeout(3000),
          }).catch(() => undefined);
          return (
            res?.status === 200 &&
            res.headers.get('x-microflack-instance') === `messages/${messages.name}`
          );
        },
        60000,
        250,
      );
      await waitFor(
        `${container} healthy`,
        async () => (await run('podman', ['healthcheck', 'run', container], 15000)).code === 0,
        60000,
        1000,
      );
      log(`${messages.name} killed, restarted and routed again in ${since(t)}`);
    });

    it('stops a service on SIGTERM as on one host: deregistered, drained, exit 0', async () => {
      const tokens = pod('tokens');
      const container = tokens.containers[0]!;
      const etcd = createEtcd([`http://${pod('etcd').ip}:2379`]);
      try {
        const key = `/services/tokens/upstream/${tokens.name}`;
        assert.equal(await etcd.get(key).string(), `${tokens.ip}:8080`);
        const t = Date.now();
        // SIGTERM to Node (PID 1 of the container), SIGKILL only after 30 s.
        await podman(['stop', '--time', '30', container], 60000);
        const stoppedIn = Date.now() - t;
        assert.equal(await podman(['inspect', container, '--format', '{{.State.ExitCode}}']), '0');
        assert.ok(stoppedIn < 30000, `stopped by itself (${stoppedIn} ms), not killed`);
        assert.equal(await etcd.get(key).string(), null, 'its registration is gone');
        const logs = await run('podman', ['logs', container]);
        assert.match(logs.stdout + logs.stderr, /"reason":"SIGTERM".*"msg":"shutting down"/);
        assert.match(logs.stdout + logs.stderr, /"msg":"stopped"/);
        // The LB no longer routes to it: its own answer, no instance left.
        await waitFor(
          'tokens out of HAProxy',
          async () => {
            const res = await fetch(`${lbUrl}/api/tokens`, {
              method: 'POST',
              signal: AbortSignal.timeout(3000),
            });
            return res.status === 503 && res.headers.get('x-microflack-instance') === 'lb';
          },
          20000,
          250,
        );
        log(`${tokens.name} stopped on SIGTERM in ${stoppedIn} ms, exit 0, deregistered`);
      } finally {
        etcd.close();
      }
    });
  },
);
