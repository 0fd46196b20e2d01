// The Kubernetes manifests (issue 14): both overlays render with `kubectl kustomize`, every object
// validates against the Kubernetes API schemas offline (kubernetes-models), and the project's
// rules hold (probes, limits, security context, pinned images, the downward API, no secret in the
// repository). Also the podman adapter's transformations. No servers; a few seconds.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { KUBERNETES_DIR, renderOverlay, secretKeys } from '@microflack/testkit/kubernetes';
import { adaptForPodman } from '../kubernetes/podman-adapter.js';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const SERVICES = ['users', 'tokens', 'messages', 'socketio', 'ui'];
const WORKLOADS = ['Deployment', 'StatefulSet'];

function parse(yaml: string): Obj[] {
  return parseAllDocuments(yaml)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

const find = (objects: Obj[], kind: string, name: string) =>
  objects.find((o) => o.kind === kind && o.metadata.name === name);

/** Every container of every workload, with its pod spec and workload. */
function containers(objects: Obj[]) {
  return objects
    .filter((o) => WORKLOADS.includes(o.kind))
    .flatMap((w) =>
      [...(w.spec.template.spec.initContainers ?? []), ...w.spec.template.spec.containers].map(
        (c: Obj) => ({ workload: w, pod: w.spec.template.spec as Obj, c }),
      ),
    );
}

/** The kubernetes-models class for an object, by its apiVersion and kind. */
async function modelOf(o: Obj): Promise<new (data: Obj) => { validate(): void }> {
  const mod = (await import(`kubernetes-models/${o.apiVersion}/${o.kind}`)) as Record<
    string,
    new (data: Obj) => { validate(): void }
  >;
  const model = mod[o.kind];
  assert.ok(model, `kubernetes-models has ${o.apiVersion} ${o.kind}`);
  return model;
}

describe('Kubernetes manifests', () => {
  it('kubectl has a kustomize of version 5 or newer (the manifests use its fields)', () => {
    const r = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const v = /Kustomize Version: v(\d+)/.exec(r.stdout);
    assert.ok(v && Number(v[1]) >= 5, `kubectl's kustomize: ${r.stdout}`);
  });

  for (const overlay of ['dev', 'production']) {
    describe(`overlays/${overlay}`, () => {
      let objects: Obj[];
      let secrets: Record<string, string>;
      before(() => {
        const rendered = renderOverlay(overlay);
        objects = parse(rendered.yaml);
        secrets = rendered.secrets;
      });

      it('renders, and every object validates against the Kubernetes API schema', async () => {
        assert.ok(objects.length > 20, `${objects.length} objects`);
        // The schemas do refuse what the API server would: a wrong type, a missing field.
        const deployment = find(objects, 'Deployment', 'users')!;
        const Deployment = await modelOf(deployment);
        assert.throws(
          () =>
            new Deployment({
              ...deployment,
              spec: { ...deployment.spec, replicas: 'two' },
            }).validate(),
          /replicas must be integer/,
        );
        assert.throws(
          () =>
            new Deployment({
              ...deployment,
              spec: { ...deployment.spec, selector: undefined },
            }).validate(),
          /selector/,
        );
        for (const o of objects) {
          const Model = await modelOf(o);
          assert.doesNotThrow(
            () => new Model(o).validate(),
            `${o.kind}/${o.metadata.name} is valid`,
          );
        }
      });

      it('gives every container the three probes, requests and limits, and the security context', () => {
        for (const { workload, pod, c } of containers(objects)) {
          const where = `${workload.kind}/${workload.metadata.name} ${c.name}`;
          for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe'])
            assert.ok(c[probe], `${where}: ${probe}`);
          for (const r of ['cpu', 'memory']) {
            assert.ok(c.resources?.requests?.[r], `${where}: requests.${r}`);
            assert.ok(c.resources?.limits?.[r], `${where}: limits.${r}`);
          }
          const sc = c.securityContext ?? {};
          assert.equal(sc.allowPrivilegeEscalation, false, `${where}: no privilege escalation`);
          assert.equal(sc.readOnlyRootFilesystem, true, `${where}: read-only root`);
          assert.ok(sc.capabilities?.drop?.includes('ALL'), `${where}: drops every capability`);
          assert.ok(!sc.capabilities?.add, `${where}: adds no capability`);
          assert.ok(!sc.privileged, `${where}: not privileged`);
          assert.equal(
            sc.runAsNonRoot ?? pod.securityContext?.runAsNonRoot,
            true,
            `${where}: non-root`,
          );
          assert.ok(
            (sc.runAsUser ?? pod.securityContext?.runAsUser) > 0,
            `${where}: a numeric user`,
          );
        }
      });

      it('pins every image to a tag (not latest)', () => {
        for (const { c } of containers(objects)) {
          const m = /^[^:@\s]+(?::([A-Za-z0-9_][A-Za-z0-9_.-]*)|@sha256:[0-9a-f]{64})$/.exec(
            c.image,
          );
          assert.ok(m, `${c.name}: ${c.image} has a tag or digest`);
          assert.notEqual(m[1], 'latest', `${c.name}: ${c.image} is not :latest`);
        }
      });

      it('probes each service on /healthz, gives it its pod IP and name, and stops it gracefully', () => {
        const settings = objects.find(
          (o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('microflack-settings'),
        )!;
        const graceSeconds = Number(settings.data.SHUTDOWN_GRACE_MS) / 1000;
        for (const name of SERVICES) {
          const d = find(objects, 'Deployment', name);
          assert.ok(d, `Deployment ${name}`);
          const pod = d.spec.template.spec;
          const c = pod.containers[0];
          for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
            assert.equal(c[probe].httpGet?.path, '/healthz', `${name} ${probe} on /healthz`);
          }
          const env = c.env as Obj[];
          const at = (n: string) => env.findIndex((e) => e.name === n);
          assert.equal(env[at('POD_IP')]?.valueFrom?.fieldRef?.fieldPath, 'status.podIP');
          assert.equal(env[at('POD_NAME')]?.valueFrom?.fieldRef?.fieldPath, 'metadata.name');
          // Kubernetes expands $(VAR) only from variables defined before.
          assert.equal(env[at('SERVICE_URL')]?.value, '$(POD_IP):8080', `${name} SERVICE_URL`);
          assert.ok(at('POD_IP') < at('SERVICE_URL'), `${name}: POD_IP before SERVICE_URL`);
          assert.equal(env[at('INSTANCE_NAME')]?.value, '$(POD_NAME)');
          assert.ok(at('POD_NAME') < at('INSTANCE_NAME'));
          const preStop = c.lifecycle?.preStop?.exec?.command as string[] | undefined;
          assert.ok(preStop, `${name}: a preStop hook`);
          const preStopSeconds =
            Number(/setTimeout\(.*, (\d+)\)/.exec(preStop.join(' '))?.[1]) / 1000;
          assert.ok(preStopSeconds > 0, `${name}: the preStop waits`);
          // preStop, then SIGTERM: deregistered but answering (SHUTDOWN_GRACE_MS), requests in
          // flight (10 s), connections (2 s), close hooks (3 s each, at most 3): docs/ARCHITECTURE.md.
          const drain = preStopSeconds + graceSeconds + 10 + 2 + 3 * 3;
          assert.ok(pod.terminationGracePeriodSeconds > drain, `${name}: grace > ${drain} s`);
          const pdb = objects.find(
            (o) =>
              o.kind === 'PodDisruptionBudget' &&
              o.spec.selector.matchLabels?.['app.kubernetes.io/name'] === name,
          );
          assert.ok(pdb, `${name}: a PodDisruptionBudget`);
          const hpa = objects.find(
            (o) => o.kind === 'HorizontalPodAutoscaler' && o.spec.scaleTargetRef.name === name,
          );
          assert.ok(hpa, `${name}: a HorizontalPodAutoscaler`);
          assert.equal(d.spec.replicas, undefined, `${name}: the autoscaler owns the count`);
          if (overlay === 'production') assert.ok(hpa.spec.minReplicas >= 2, `${name}: 2 or more`);
          else assert.equal(hpa.spec.minReplicas, 1, `${name}: one replica in dev`);
        }
      });

      it('puts the LB behind a Service of type LoadBalancer', () => {
        const lb = find(objects, 'Deployment', 'lb')!;
        assert.equal(lb.spec.replicas, overlay === 'production' ? 2 : 1);
        const svc = objects.find((o) => o.kind === 'Service' && o.spec.type === 'LoadBalancer');
        assert.deepEqual(svc?.spec.selector, { 'app.kubernetes.io/name': 'lb' });
        assert.equal(
          objects.filter((o) => o.kind === 'Service' && o.spec.type === 'LoadBalancer').length,
          1,
          'nothing else is exposed',
        );
      });

      it('opens only the documented paths between pods', () => {
        const policies = objects.filter((o) => o.kind === 'NetworkPolicy');
        const deny = policies.find((p) => p.metadata.name === 'default-deny')!;
        assert.deepEqual(deny.spec, { podSelector: {}, policyTypes: ['Ingress', 'Egress'] });
        // Each database only from its service.
        const mariadb = policies.find((p) => p.metadata.name === 'mariadb')!;
        assert.deepEqual(mariadb.spec.ingress[0].from[0].podSelector.matchExpressions[0].values, [
          'users',
          'messages',
        ]);
        // Services are reached by the LB only.
        const services = policies.find((p) => p.metadata.name === 'services')!;
        assert.deepEqual(services.spec.ingress, [
          {
            from: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'lb' } } }],
            ports: [{ protocol: 'TCP', port: 8080 }],
          },
        ]);
        // Every pod is under the default deny (same namespace) and every allowed path names a port.
        for (const p of policies)
          for (const rule of [...(p.spec.ingress ?? []), ...(p.spec.egress ?? [])])
            assert.ok(rule.ports?.length > 0, `${p.metadata.name}: every rule names its ports`);
      });

      it('takes the Secret from the generated secrets.env only', () => {
        const secret = objects.find((o) => o.kind === 'Secret')!;
        assert.match(secret.metadata.name, /^microflack-secrets-[a-z0-9]+$/);
        const data = Object.fromEntries(
          Object.entries(secret.data as Record<string, string>).map(([k, v]) => [
            k,
            Buffer.from(v, 'base64').toString(),
          ]),
        );
        assert.deepEqual(data, secrets);
      });

      if (overlay === 'production') {
        it('runs etcd as 3 members, Redis with Sentinel, MariaDB on a volume, spread across nodes', () => {
          const etcd = find(objects, 'StatefulSet', 'etcd')!;
          assert.equal(etcd.spec.replicas, 3);
          assert.ok(etcd.spec.volumeClaimTemplates?.length);
          const redis = find(objects, 'StatefulSet', 'redis')!;
          assert.deepEqual(
            redis.spec.template.spec.containers.map((c: Obj) => c.name),
            ['redis', 'sentinel'],
          );
          const settings = objects.find(
            (o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('microflack-settings'),
          )!;
          assert.match(
            settings.data.REDIS,
            /^sentinel:\/\/(redis-\d\.redis-peers:26379,?){3}\/microflack$/,
          );
          assert.equal(settings.data.ETCD.split(',').length, 3);
          const mariadb = find(objects, 'StatefulSet', 'mariadb')!;
          assert.ok(mariadb.spec.volumeClaimTemplates?.length);
          // Every workload of more than one pod (MariaDB has one primary).
          for (const w of objects.filter(
            (o) => WORKLOADS.includes(o.kind) && o.spec.replicas !== 1,
          )) {
            const anti = w.spec.template.spec.affinity?.podAntiAffinity;
            assert.ok(anti, `${w.metadata.name}: anti-affinity`);
            const terms = [
              ...(anti.requiredDuringSchedulingIgnoredDuringExecution ?? []),
              ...(anti.preferredDuringSchedulingIgnoredDuringExecution ?? []).map(
                (t: Obj) => t.podAffinityTerm,
              ),
            ];
            assert.ok(
              terms.some(
                (t: Obj) =>
                  t.topologyKey === 'kubernetes.io/hostname' &&
                  t.labelSelector.matchLabels['app.kubernetes.io/name'] ===
                    w.spec.template.metadata.labels['app.kubernetes.io/name'],
              ),
              `${w.metadata.name}: kept apart from its own kind across nodes`,
            );
          }
        });
      } else {
        it('runs one etcd, one Redis and one MariaDB in the cluster', () => {
          for (const name of ['etcd', 'redis', 'mariadb']) {
            assert.equal(find(objects, 'Deployment', name)?.spec.replicas, 1, name);
          }
        });
      }
    });
  }

  it('keeps every secret value out of the repository', () => {
    const root = path.resolve(KUBERNETES_DIR, '../..');
    const tracked = spawnSync('git', ['ls-files', '-z', 'microflack-admin/kubernetes'], {
      cwd: root,
      encoding: 'utf8',
    }).stdout.split('\0');
    assert.ok(tracked.length > 5);
    assert.ok(!tracked.some((f) => f.endsWith('/secrets.env')), 'no secrets.env is committed');
    for (const overlay of ['dev', 'production']) {
      const file = `microflack-admin/kubernetes/overlays/${overlay}/secrets.env`;
      const ignored = spawnSync('git', ['check-ignore', '-q', file], { cwd: root });
      assert.equal(ignored.status, 0, `${file} is ignored by git`);
    }
    // The example names the keys and holds no value.
    for (const line of fs
      .readFileSync(path.join(KUBERNETES_DIR, 'secrets.env.example'), 'utf8')
      .split('\n')
      .filter((l) => /^[A-Z]/.test(l)))
      assert.match(line, /^[A-Z_0-9]+=$/, `secrets.env.example: ${line}`);
    assert.deepEqual(secretKeys().sort(), [
      'JWT_SECRET_KEY',
      'LB_STATS_PASSWORD',
      'MARIADB_ROOT_PASSWORD',
      'MF_DB_PASSWORD_MESSAGES',
      'MF_DB_PASSWORD_USERS',
    ]);
    // No committed manifest carries a Secret's data.
    for (const f of tracked.filter((x) => /\.ya?ml$/.test(x))) {
      for (const o of parse(fs.readFileSync(path.join(root, f), 'utf8')))
        assert.ok(o.kind !== 'Secret', `${f}: no Secret object`);
    }
  });
});

describe('the podman adapter', () => {
  let rendered: ReturnType<typeof renderOverlay>;
  before(() => {
    rendered = renderOverlay('dev');
  });

  it('plays the kubelet: the pod IP, the pod name and $(VAR) are filled in', () => {
    let n = 10;
    const plan = adaptForPodman(rendered.yaml, {
      nextIp: () => `10.1.2.${n++}`,
      volumesDir: '/v',
    });
    const users = plan.pods.find((p) => p.app === 'users')!;
    const pod = parse(users.yaml).find((o) => o.kind === 'Pod')!;
    const env = Object.fromEntries(
      (pod.spec.containers[0].env as Obj[]).map((e) => [e.name, e.value ?? e.valueFrom]),
    );
    assert.equal(env.POD_IP, users.ip);
    assert.equal(env.SERVICE_URL, `${users.ip}:8080`);
    assert.equal(env.INSTANCE_NAME, 'users-0');
    assert.equal(
      env.DATABASE_URL,
      `mysql://mf_users:${rendered.secrets.MF_DB_PASSWORD_USERS}@mariadb:3306/users`,
    );
    assert.deepEqual(env.JWT_SECRET_KEY.secretKeyRef.key, 'JWT_SECRET_KEY');
  });

  it('names every Service in /etc/hosts, drops ports and the probes podman ignores, and orders the pods', () => {
    let n = 10;
    const plan = adaptForPodman(rendered.yaml, {
      nextIp: () => `10.1.2.${n++}`,
      volumesDir: '/v',
    });
    assert.deepEqual([...new Set(plan.pods.map((p) => p.component))], ['backing', 'service', 'lb']);
    const etcdIp = plan.pods.find((p) => p.app === 'etcd')!.ip;
    for (const p of plan.pods) {
      const pod = parse(p.yaml).find((o) => o.kind === 'Pod')!;
      const etcd = (pod.spec.hostAliases as Obj[]).find((a) => a.hostnames.includes('etcd'));
      assert.equal(etcd?.ip, etcdIp);
      assert.ok(etcd.hostnames.includes('etcd.microflack-dev.svc.cluster.local'));
      for (const c of pod.spec.containers as Obj[]) {
        assert.equal(c.ports, undefined);
        assert.equal(c.readinessProbe, undefined);
        assert.equal(c.imagePullPolicy, 'Never');
        // podman runs it with /bin/sh -c, its words joined: one quoted argument.
        assert.match(c.livenessProbe.exec.command.join(' '), /^(node -e|bash -c) '[^']+'$/);
      }
      for (const v of pod.spec.volumes as Obj[])
        assert.ok(!v.emptyDir && (v.hostPath?.path.startsWith(`/v/${p.name}/`) ?? true));
    }
    assert.ok(plan.ignored.includes('NetworkPolicy/default-deny'));
    assert.deepEqual(
      plan.secrets.map((s) => Object.keys(JSON.parse(s.json) as object).sort()),
      [secretKeys().sort()],
    );
  });

  it('refuses a Service whose port a host name cannot carry', () => {
    const yaml = rendered.yaml.replace(
      /(name: redis\n(?:.*\n)*?spec:\n {2}ports:\n {2}- name: redis\n {4}port: )6379/,
      '$16380',
    );
    assert.notEqual(yaml, rendered.yaml);
    assert.throws(
      () => adaptForPodman(yaml, { nextIp: () => '10.1.2.3', volumesDir: '/v' }),
      /Service\/redis: its port differs/,
    );
  });
});
