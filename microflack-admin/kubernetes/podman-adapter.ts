// Turns the manifests `kubectl kustomize` renders into what Debian's podman 4.3 `kube play` runs
// the same way a cluster would. Every podman workaround is here, each with its reason, so that the
// manifests themselves stay right for a real cluster (docs/deploy/kubernetes.md#the-podman-run).
//
// What the adapter plays the part of, and why:
// - the ReplicaSet: a Deployment becomes its pods, `<name>-<i>`, one `kube play` each, so that each
//   gets the static IP chosen here (`--ip`);
// - the kubelet's downward API and $(VAR) expansion: podman refuses `fieldRef: status.podIP` and
//   leaves `$(POD_IP)` as it is, so both are filled in here (a value from a Secret too: the play
//   files are then secret, and live in a private temporary directory);
// - cluster DNS and kube-proxy: podman ignores Services; each pod gets `hostAliases` naming every
//   Service (short and qualified names) with the IP of a pod it selects. A Service whose port
//   differs from its pods' port cannot be played so (a name has no port): it is refused, except the
//   LoadBalancer one, whose role the caller plays by reaching the LB pods at their IPs;
// - Secrets: podman's `kube play` misreads a Secret object, but reads `secretKeyRef` from a podman
//   secret holding a flat JSON map of base64 values: the caller creates those (`secrets`);
// - probes: podman turns a liveness probe into a healthcheck run by `/bin/sh -c` (arguments joined
//   by spaces), an httpGet one with curl and a tcpSocket one with nc, which the images do not have:
//   each becomes a command the image can run, quoted for that shell. podman ignores readiness and
//   startup probes and lifecycle hooks: they are removed, as is `ports` (podman would publish every
//   containerPort on the host; pod IPs are reachable from the host anyway);
// - emptyDir: podman makes one owned by root, mode 755, or with the image's owner (Kubernetes: mode
//   777), where the non-root user cannot write: each becomes a hostPath directory under `volumesDir`
//   that the caller creates with mode 777 (`PlannedPod.hostDirs`);
// - images are local: `imagePullPolicy: Never`.
// What podman cannot do at all (NetworkPolicies, PodDisruptionBudgets, autoscalers, the
// LoadBalancer) is listed in `ignored`.
import { parseAllDocuments, stringify } from 'yaml';

type Obj = Record<string, unknown>;
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Obj;
  data?: Record<string, string>;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    fieldRef?: { fieldPath: string };
    secretKeyRef?: { name: string; key: string };
    configMapKeyRef?: { name: string; key: string };
  };
}
interface Probe {
  httpGet?: { path?: string; port: number | string };
  tcpSocket?: { port: number | string };
  exec?: { command: string[] };
  [k: string]: unknown;
}
interface Container {
  name: string;
  image: string;
  env?: EnvVar[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: unknown;
  imagePullPolicy?: string;
}
interface PodSpec {
  containers: Container[];
  hostAliases?: { ip: string; hostnames: string[] }[];
  [k: string]: unknown;
}

export interface PlannedPod {
  /** The pod's name (`<deployment>-<i>`), also its INSTANCE_NAME when the manifest asks for it. */
  name: string;
  ip: string;
  /** `app.kubernetes.io/name` of the pod. */
  app: string;
  /** `app.kubernetes.io/component`: backing, service or lb. */
  component: string;
  /** Container names, as podman names them: `<pod>-<container>`. */
  containers: string[];
  /** The play file: the ConfigMaps and the Pod. Holds secret values: keep it private. */
  yaml: string;
  /** Directories standing for the pod's emptyDir volumes: create them, mode 777, before playing. */
  hostDirs: string[];
}

export interface PodmanPlan {
  /** podman secrets to create first: `podman secret create <name> -` with `json` on stdin. */
  secrets: { name: string; json: string }[];
  /** In start order: backing servers, then services, then the LB. */
  pods: PlannedPod[];
  /** What podman cannot play, as `Kind/name`. */
  ignored: string[];
}

export interface AdaptOptions {
  /** The IP for each pod, in order (from the podman network made for the run). */
  nextIp: () => string;
  /** Where the emptyDir volumes' directories go (one per pod and volume). */
  volumesDir: string;
}

const ORDER = ['backing', 'service', 'lb'];

export function adaptForPodman(rendered: string, opts: AdaptOptions): PodmanPlan {
  const objects = parseAllDocuments(rendered)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
  const byKind = (kind: string) => objects.filter((o) => o.kind === kind);
  const configMaps = byKind('ConfigMap');
  const secrets = byKind('Secret');
  const ignored: string[] = [];

  // Deployments (and StatefulSets) -> their pods, each with its address.
  const hpaMin = new Map<string, number>();
  for (const h of byKind('HorizontalPodAutoscaler')) {
    const spec = h.spec as { scaleTargetRef: { name: string }; minReplicas?: number };
    hpaMin.set(spec.scaleTargetRef.name, spec.minReplicas ?? 1);
  }
  const pods: { name: string; ip: string; labels: Record<string, string>; spec: PodSpec }[] = [];
  for (const w of [...byKind('Deployment'), ...byKind('StatefulSet')]) {
    const spec = w.spec as {
      replicas?: number;
      template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
    };
    const replicas = spec.replicas ?? hpaMin.get(w.metadata.name) ?? 1;
    for (let i = 0; i < replicas; i++) {
      pods.push({
        name: `${w.metadata.name}-${i}`,
        ip: opts.nextIp(),
        labels: { ...spec.template.metadata.labels },
        spec: structuredClone(spec.template.spec),
      });
    }
  }

  // Services -> host names for the pods' /etc/hosts.
  const aliases: { ip: string; hostnames: string[] }[] = [];
  for (const s of byKind('Service')) {
    const spec = s.spec as {
      type?: string;
      selector?: Record<string, string>;
      ports: { port: number; targetPort?: number | string }[];
    };
    const selected = pods.filter((p) =>
      Object.entries(spec.selector ?? {}).every(([k, v]) => p.labels[k] === v),
    );
    if (!spec.selector || selected.length === 0) {
      ignored.push(`Service/${s.metadata.name} (selects no pod)`);
      continue;
    }
    const samePorts = spec.ports.every(
      (p) => containerPort(selected[0]!.spec, p.targetPort ?? p.port) === p.port,
    );
    if (spec.type === 'LoadBalancer') {
      ignored.push(`Service/${s.metadata.name} (LoadBalancer: reach the pods at their IPs)`);
      continue;
    }
    if (!samePorts) {
      throw new Error(
        `Service/${s.metadata.name}: its port differs from its pods' port, which a host name cannot carry`,
      );
    }
    const ns = s.metadata.namespace ?? 'default';
    const n = s.metadata.name;
    aliases.push({
      ip: selected[0]!.ip,
      hostnames: [n, `${n}.${ns}`, `${n}.${ns}.svc`, `${n}.${ns}.svc.cluster.local`],
    });
  }
  for (const kind of ['NetworkPolicy', 'PodDisruptionBudget', 'HorizontalPodAutoscaler']) {
    for (const o of byKind(kind)) ignored.push(`${kind}/${o.metadata.name}`);
  }

  const secretValue = (name: string, key: string) => {
    const s = secrets.find((x) => x.metadata.name === name);
    const b64 = s?.data?.[key];
    return b64 === undefined ? undefined : Buffer.from(b64, 'base64').toString('utf8');
  };
  const configValue = (name: string, key: string) =>
    configMaps.find((c) => c.metadata.name === name)?.data?.[key];

  const planned: PlannedPod[] = pods.map((pod) => {
    const namespace = objects.find((o) => o.metadata.namespace)?.metadata.namespace ?? 'default';
    const component = pod.labels['app.kubernetes.io/component'] ?? 'service';
    for (const c of pod.spec.containers) {
      const known = new Map<string, string>();
      for (const ef of c.envFrom ?? []) {
        if (ef.configMapRef) {
          const data = configMaps.find((m) => m.metadata.name === ef.configMapRef!.name)?.data;
          for (const [k, v] of Object.entries(data ?? {})) known.set(k, v);
        }
      }
      c.env = (c.env ?? []).map((e) => {
        let value: string | undefined;
        const from = e.valueFrom;
        if (from?.fieldRef) {
          value = fieldValue(from.fieldRef.fieldPath, pod.name, pod.ip, namespace);
          known.set(e.name, value);
          return { name: e.name, value };
        }
        if (from?.secretKeyRef) value = secretValue(from.secretKeyRef.name, from.secretKeyRef.key);
        else if (from?.configMapKeyRef)
          value = configValue(from.configMapKeyRef.name, from.configMapKeyRef.key);
        else if (e.value !== undefined) {
          value = expand(e.value, known);
          known.set(e.name, value);
          return { name: e.name, value };
        }
        if (value !== undefined) known.set(e.name, value);
        return e;
      });
      if (c.livenessProbe) c.livenessProbe = execProbe(c.livenessProbe, pod.spec, component);
      delete c.readinessProbe;
      delete c.startupProbe;
      delete c.lifecycle;
      delete c.ports;
      c.imagePullPolicy = 'Never';
    }
    pod.spec.hostAliases = [...(pod.spec.hostAliases ?? []), ...aliases];
    const hostDirs: string[] = [];
    const volumes = (pod.spec.volumes ?? []) as { name: string; emptyDir?: unknown }[];
    pod.spec.volumes = volumes.map((v) => {
      if (!v.emptyDir) return v;
      const dir = `${opts.volumesDir}/${pod.name}/${v.name}`;
      hostDirs.push(dir);
      return { name: v.name, hostPath: { path: dir, type: 'Directory' } };
    });
    const podObject = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: pod.name, labels: pod.labels },
      spec: pod.spec,
    };
    return {
      name: pod.name,
      ip: pod.ip,
      app: pod.labels['app.kubernetes.io/name'] ?? pod.name,
      component,
      containers: pod.spec.containers.map((c) => `${pod.name}-${c.name}`),
      yaml: [...configMaps, podObject].map((o) => stringify(o)).join('---\n'),
      hostDirs,
    };
  });
  planned.sort((a, b) => ORDER.indexOf(a.component) - ORDER.indexOf(b.component));

  return {
    secrets: secrets.map((s) => ({ name: s.metadata.name, json: JSON.stringify(s.data ?? {}) })),
    pods: planned,
    ignored,
  };
}

function fieldValue(path: string, name: string, ip: string, namespace: string): string {
  switch (path) {
    case 'metadata.name':
      return name;
    case 'metadata.namespace':
      return namespace;
    case 'status.podIP':
      return ip;
    default:
      throw new Error(`fieldRef ${path}: not played by the podman adapter`);
  }
}

/** Kubernetes' $(VAR) expansion: variables defined before; $$ escapes; unknown ones stay. */
function expand(value: string, known: Map<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name?: string) =>
    m === '$$' ? '$' : (known.get(name!) ?? m),
  );
}

function containerPort(spec: PodSpec, port: number | string): number | undefined {
  if (typeof port === 'number') return port;
  for (const c of spec.containers) {
    const p = c.ports?.find((x) => x.name === port);
    if (p) return p.containerPort;
  }
  return undefined;
}

/**
 * The probe as a command for `/bin/sh -c` in the pod's image: MicroFlack's images (services, LB)
 * have Node, the backing servers' (Debian) have bash. Single-quoted, since podman joins the words.
 */
function execProbe(probe: Probe, spec: PodSpec, component: string): Probe {
  const { httpGet, tcpSocket, exec, ...timing } = probe;
  if (exec) return probe;
  const port = containerPort(spec, (httpGet ?? tcpSocket)!.port);
  if (port === undefined) throw new Error('a probe names a port no container declares');
  let command: string[];
  if (component === 'backing') {
    // bash opens the TCP connection itself; no curl or nc in those images.
    command = ['bash', '-c', `'exec 3<>/dev/tcp/127.0.0.1/${port}'`];
  } else if (httpGet) {
    const url = `http://127.0.0.1:${port}${httpGet.path ?? '/'}`;
    command = [
      'node',
      '-e',
      `'fetch("${url}",{signal:AbortSignal.timeout(2000)}).then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))'`,
    ];
  } else {
    command = [
      'node',
      '-e',
      `'require("net").connect(${port},"127.0.0.1").on("connect",()=>process.exit(0)).on("error",()=>process.exit(1))'`,
    ];
  }
  return { ...timing, exec: { command } };
}
