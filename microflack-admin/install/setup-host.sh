#!/usr/bin/env bash
# Prepares a fresh Debian 12 or Ubuntu 24.04 host for MicroFlack, as root: the system packages
# (etcd, HAProxy, MariaDB, Redis, supervisor, Chromium for the browser tests, build tools) and
# Node.js 20 from NodeSource when no Node.js 20+ is installed. Idempotent.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: sudo $(basename "$0")
Installs MicroFlack's system packages and Node.js 20 (if missing) on Debian 12 / Ubuntu 24.04.
Then, as the user who will run the platform: microflack-admin/install/setup-all-in-one.sh
USAGE
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) echo "$(basename "$0"): unknown argument: $1" >&2; usage >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "$(basename "$0"): run me as root (sudo $0)" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
echo "==> installing system packages"
apt-get update -q
apt-get install -y -q --no-install-recommends \
  ca-certificates curl gnupg git rsync build-essential python3 \
  etcd-server etcd-client haproxy mariadb-server mariadb-client redis-server redis-tools supervisor chromium ||
  # Ubuntu ships Chromium as a snap only; the browser tests can use chromium-browser instead.
  apt-get install -y -q --no-install-recommends \
    ca-certificates curl gnupg git rsync build-essential python3 \
    etcd-server etcd-client haproxy mariadb-server mariadb-client redis-server redis-tools supervisor

# MicroFlack runs its own etcd, Redis, MariaDB, HAProxy and supervisord, on its own ports and data,
# as the user: the distribution's system-wide services are not needed.
for unit in etcd haproxy mariadb redis-server supervisor; do
  systemctl disable --now "$unit" >/dev/null 2>&1 || true
done

node_major=0
if command -v node >/dev/null 2>&1; then
  node_major=$(node -p 'process.versions.node.split(".")[0]')
fi
if [ "$node_major" -lt 20 ]; then
  echo "==> installing Node.js 20 (NodeSource)"
  install -d -m 0755 /etc/apt/keyrings
  curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key |
    gpg --dearmor --yes -o /etc/apt/keyrings/nodesource.gpg
  echo "deb [signed-by=/etc/apt/keyrings/nodesource.gpg] https://deb.nodesource.com/node_20.x nodistro main" \
    >/etc/apt/sources.list.d/nodesource.list
  apt-get update -q
  apt-get install -y -q nodejs
fi
echo "==> host ready: node $(node -v), $(haproxy -v | head -n 1)"
