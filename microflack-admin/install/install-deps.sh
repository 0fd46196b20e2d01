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
  [redis-server]=redis-server [supervisord]=supervisor [chromium]=chromium
)
missing=()
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

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "Node.js 20 or newer is needed (found $(node -v)); see microflack-admin/install/setup-host.sh" >&2
  exit 1
fi

stamp=node_modules/.microflack-lock-hash
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  step "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund
  echo "$lock_hash" >"$stamp"
fi

if [ "$build" -eq 1 ]; then
  step "building (tsc -b and bundles)"
  npm run --silent build
fi
step "dependencies ready"
