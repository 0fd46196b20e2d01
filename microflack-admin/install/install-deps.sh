#!/usr/bin/env bash
# Installs what MicroFlack needs on Debian/Ubuntu, only what is missing: system packages, npm
# dependencies, the build. Idempotent; takes seconds when everything is present.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--no-build]
Installs missing system packages (apt), then npm dependencies and the build of this checkout.
  --no-build   stop after the npm dependencies
USAGE
}

build=1
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  --no-build) build=0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

step() { printf '==> %s\n' "$*"; }

# binary -> Debian package that provides it
declare -A packages=(
  [etcd]=etcd-server [etcdctl]=etcd-client [haproxy]=haproxy [mariadbd]=mariadb-server
  [mariadb]=mariadb-client [redis-server]=redis-server [redis-cli]=redis-tools
  [supervisord]=supervisor [curl]=curl [rsync]=rsync
)
missing=()
# Only the browser tests need Chromium, and Ubuntu ships it as a snap: try it apart, never fail on it.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  want_chromium=1
else
  want_chromium=0
fi
for bin in "${!packages[@]}"; do
  if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$bin" >/dev/null 2>&1; then
    missing+=("${packages[$bin]}")
  fi
done
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  step "installing system packages: ${missing[*]}"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
  # Debian starts the packaged servers; MicroFlack runs its own, on its own ports and data.
fi
if [ "$want_chromium" -eq 1 ]; then
  step "installing chromium (for the browser tests)"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends chromium ||
    echo "warning: chromium could not be installed; the platform runs without it, the browser tests do not" >&2
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "Node.js 20 or newer is needed (found $(node -v)); see microflack-admin/install/setup-host.sh" >&2
  exit 1
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
