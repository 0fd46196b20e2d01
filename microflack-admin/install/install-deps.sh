#!/usr/bin/env bash
# Installs what MicroFlack needs on Debian/Ubuntu, only what is missing: system packages, npm
# dependencies, the build. Idempotent; takes seconds when everything is present.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--for run|cluster|test] [--no-build] [--check]
Installs the system packages MicroFlack needs that are missing (apt; the list is requirements.txt
beside this script), then npm dependencies and the build of this checkout.
  --for run     only what the platform needs to run (mfup)
  --for cluster what it needs to run on several simulated hosts (mfcluster): also Galera,
                keepalived, iproute2
  --for test    also what the tests need: shellcheck, Chromium, podman and its configuration,
                kubectl, and what mfcluster needs (the default)
  --no-build    stop after the npm dependencies
  --check       install nothing: name every missing program and exit 1 if there is one
USAGE
}

build=1 scope=test check=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --no-build) build=0 ;;
    --check) check=1 ;;
    --for)
      [ "$#" -ge 2 ] || { usage >&2; exit 2; }
      scope=$2
      shift
      ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
case "$scope" in run | cluster | test) ;; *) usage >&2; exit 2 ;; esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

step() { printf '==> %s\n' "$*"; }

# "<program> <package>" for each program this scope needs that is not on the PATH (sbin included);
# a row naming an absolute path (a library) needs that file.
missing_programs() {
  local prog pkg need
  while read -r prog pkg need; do
    case "$prog" in '' | '#'*) continue ;; esac
    case "$scope/$need" in test/* | */run | cluster/cluster) ;; *) continue ;; esac
    if [[ "$prog" == /* ]]; then
      [ -e "$prog" ] || echo "$prog $pkg"
      continue
    fi
    PATH="$PATH:/usr/sbin:/sbin" command -v "$prog" >/dev/null 2>&1 || echo "$prog $pkg"
  done <"$root/microflack-admin/install/requirements.txt"
  if ! command -v node >/dev/null 2>&1; then echo "node nodejs"; fi
  if ! command -v npm >/dev/null 2>&1; then echo "npm npm"; fi
}

node_ok() {
  command -v node >/dev/null 2>&1 && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]
}

if [ "$check" -eq 1 ]; then
  status=0
  while read -r prog pkg; do
    echo "missing: $prog (Debian package $pkg; microflack-admin/install/install-deps.sh installs it)" >&2
    status=1
  done < <(missing_programs)
  if ! node_ok; then
    echo "missing: Node.js 20 or newer (see microflack-admin/install/setup-host.sh)" >&2
    status=1
  fi
  if [ "$scope" = test ] && [ ! -f /etc/containers/containers.conf.d/50-microflack.conf ]; then
    echo "missing: podman's configuration /etc/containers/containers.conf.d/50-microflack.conf" >&2
    status=1
  fi
  # Installed by this script (stamped with the lock's hash) or by hand (no stamp): either will do,
  # unless the stamp says the lock has changed since.
  if [ ! -d node_modules ]; then
    echo "missing: npm dependencies (npm ci)" >&2
    status=1
  elif [ -f node_modules/.microflack-lock-hash ] &&
    [ "$(cat node_modules/.microflack-lock-hash)" != "$(sha256sum package-lock.json | cut -d' ' -f1)" ]; then
    echo "missing: npm dependencies of the current package-lock.json (npm ci)" >&2
    status=1
  fi
  exit "$status"
fi

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
mapfile -t missing < <(missing_programs | awk '{ print $2 }' | sort -u)
if [ "${#missing[@]}" -gt 0 ]; then
  step "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  for pkg in "${missing[@]}"; do
    # Not `grep -q`: it leaves at the first match, apt-cache then dies of SIGPIPE (141), and under
    # pipefail every package looked missing on a fresh machine.
    if ! apt-cache policy "$pkg" 2>/dev/null | grep 'Candidate: [^(]' >/dev/null; then
      case "$pkg" in
        kubectl)
          # Debian 12's kubernetes-client is kubectl 1.20, whose kustomize (v2) cannot read the
          # manifests; kubectl 1.27 or newer comes from the Kubernetes (or Google Cloud) apt
          # repository, as on the machines MicroFlack's CI runs on.
          echo "kubectl (1.27 or newer, with kustomize 5) is not in this machine's apt sources:" \
            "install it from the Kubernetes apt repository (docs/deploy/kubernetes.md)" >&2
          ;;
        *) echo "no apt package $pkg on this machine" >&2 ;;
      esac
      exit 1
    fi
  done
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
  # Debian starts the packaged servers; MicroFlack runs its own, on its own ports and data.
fi

# podman (the Kubernetes test's `kube play`) with runc, and limits a container may have here (its
# defaults ask for more open files than a sandbox's hard limit allows). A drop-in, so that an
# operator's own containers.conf stays as it is.
podman_conf=/etc/containers/containers.conf.d/50-microflack.conf
podman_conf_text='# Written by MicroFlack'"'"'s install-deps.sh: the runtime and limits of its podman test.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"'
if [ "$scope" = test ] && { [ ! -f "$podman_conf" ] || [ "$(cat "$podman_conf")" != "$podman_conf_text" ]; }; then
  step "configuring podman ($podman_conf)"
  "${sudo[@]}" mkdir -p "$(dirname "$podman_conf")"
  printf '%s\n' "$podman_conf_text" | "${sudo[@]}" tee "$podman_conf" >/dev/null
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "Node.js 20 or newer is needed (found $(node -v)); see microflack-admin/install/setup-host.sh" >&2
  exit 1
fi

# Native modules (better-sqlite3, bcrypt) build against Node's headers. With none configured,
# node-gyp downloads them from nodejs.org, which a machine without internet cannot reach: use the
# headers installed with Node itself when they are there (NodeSource's and Debian's libnode-dev
# put them under /usr/include/node). This must not depend on a user's ~/.npmrc.
if [ -z "${npm_config_nodedir:-}" ] && [ -z "$(npm config get nodedir 2>/dev/null | grep -v '^undefined$' || true)" ]; then
  node_prefix=$(dirname "$(dirname "$(command -v node)")")
  if [ -f "$node_prefix/include/node/node.h" ]; then
    export npm_config_nodedir=$node_prefix
  fi
fi

stamp=node_modules/.microflack-lock-hash
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  step "installing npm dependencies (npm ci)"
  # One npm at a time in this checkout (other tools may be installing too).
  if command -v flock >/dev/null 2>&1; then
    flock /tmp/mf-npm.lock npm ci --no-audit --no-fund
  else
    npm ci --no-audit --no-fund
  fi
  echo "$lock_hash" >"$stamp"
fi

if [ "$build" -eq 1 ]; then
  step "building (tsc -b and bundles)"
  npm run --silent build
fi
step "dependencies ready"
